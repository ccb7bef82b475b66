"""Which settings? The report's answer for a settings grid (Focal Loss's gamma x alpha, GHM-C's bins x
momentum): every cell's test metric with an image-bootstrap interval and the cell selected on
validation; the best column per row; the selected cell against the papers' default over seeds; and
the papers' shapes, each as a pre-set contrast with its interval and a verdict.

A grid's cells are its loss's seed-0 runs at the schedule most of them share; where a cell was tuned
(several optimiser settings, :data:`TUNED`), its run is the one with the best validation metric. One
run per cell, so its interval is a bootstrap over the test images, and contrasts between cells are
paired image by image. Cells with several seeds are compared with the default cell paired by seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ghmbench.reporting.cells import fmt_interval
from ghmbench.reporting.comparison import Bootstrap, difference_text
from ghmbench.reporting.convergence import convergence_note, still_rising
from ghmbench.reporting.intervals import Interval, paired_difference, t_interval
from ghmbench.reporting.run_table import fixed_data_note
from ghmbench.reporting.tables import Table, best_mask
from ghmbench.store.fields import COMPLETED


@dataclass(frozen=True)
class Grid:
    """A settings grid: the loss, its two axes (config columns and symbols), the papers' default cell."""

    name: str
    loss: str
    label: str
    rows: str
    cols: str
    symbols: tuple[str, str]
    default: tuple[float, float]


FOCAL = Grid("focal_settings", "focal", "Focal Loss", "loss.gamma", "loss.alpha", ("γ", "α"), (2.0, 0.25))
GHM = Grid("ghm_settings", "ghm", "GHM-C", "loss.bins", "loss.momentum", ("M", "momentum"), (30, 0.75))
GRIDS = (FOCAL, GHM)
TUNED = ("train.lr", "train.batch_size")
"""The optimiser settings a cell may be tuned over: they tell a cell's candidates apart."""
VERDICTS = ("reproduces", "no clear difference", "does not reproduce")
INTERVAL_NOTE = (
    "Intervals: 95%, normal, from a bootstrap over the test images (one trained model per cell; the data draw and the "
    "training's randomness are not covered)."
)


def verdict(iv: Interval | None) -> str:
    """``reproduces`` when the interval of a claim's contrast lies above 0, ``does not reproduce`` below, else no clear
    difference."""
    if iv is None or math.isnan(iv.lo):
        return "-"
    return VERDICTS[0] if iv.lo > 0 else VERDICTS[2] if iv.hi < 0 else VERDICTS[1]


def fmt_delta(iv: Interval | None) -> str:
    """``+0.012 [-0.004, +0.028]``; ``-`` without an interval."""
    return "-" if iv is None or math.isnan(iv.mean) else difference_text(iv.mean, iv.lo, iv.hi)


def delta_columns(delta: Interval | None) -> dict:
    """A difference's numbers as a table's CSV holds them (NaN without one)."""
    return {
        "delta": delta.mean if delta else math.nan,
        "delta_lo": delta.lo if delta else math.nan,
        "delta_hi": delta.hi if delta else math.nan,
    }


def _same(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def grid_cells(df: pd.DataFrame, grid: Grid) -> pd.DataFrame | None:
    """The grid's one-seed cells (one completed seed-0 run each, at the schedule most share), or None
    unless both axes have at least two values."""
    if grid.rows not in df or grid.cols not in df:
        return None
    part = df[(df["loss"] == grid.loss) & (df["seed"] == 0) & (df["status"] == COMPLETED)]
    if "train.epochs" in part and len(part):
        part = part[part["train.epochs"] == part["train.epochs"].mode().iloc[0]]
    if part.empty or part[grid.rows].nunique() < 2 or part[grid.cols].nunique() < 2:
        return None
    best = part.groupby([grid.rows, grid.cols])["val_AP"].idxmax()  # a tuned cell's candidate selected on validation
    part = part.loc[best.to_numpy()].sort_values([grid.rows, grid.cols]).reset_index(drop=True)
    part["selected"] = part.index == part["val_AP"].idxmax()
    part["default"] = [
        _same(r, grid.default[0]) and _same(c, grid.default[1]) for r, c in zip(part[grid.rows], part[grid.cols])
    ]
    return part


def cell(cells: pd.DataFrame, grid: Grid, row: float, col: float) -> pd.Series | None:
    """The run of cell (row, col), None when the grid lacks it."""
    hit = cells[[_same(r, row) and _same(c, col) for r, c in zip(cells[grid.rows], cells[grid.cols])]]
    return hit.iloc[0] if len(hit) else None


def grid_table(cells: pd.DataFrame, grid: Grid, metric: str, boot: Bootstrap) -> Table:
    """Test metric by row (rows) x column (columns), the selected cell in bold, the default starred."""
    rs, cs = grid.symbols
    cols = sorted(cells[grid.cols].unique())
    rows, nums, hits = [], [], []
    for r_value in sorted(cells[grid.rows].unique()):
        row = {rs: f"{r_value:g}"}
        for c_value in cols:
            run = cell(cells, grid, r_value, c_value)
            if run is None:
                row[f"{cs} {c_value:g}"] = "-"
                continue
            iv = (
                boot.interval(run, metric)
                if boot.available(run)
                else Interval(float(run[metric]), math.nan, math.nan, 1)
            )
            flag = (" *" if run["default"] else "") + (" †" if still_rising(run["rise"]) else "")
            row[f"{cs} {c_value:g}"] = (
                f"{iv.mean:.3f}" + ("" if math.isnan(iv.lo) else f" [{iv.lo:.3f}, {iv.hi:.3f}]") + flag
            )
            nums.append(
                {
                    grid.rows: r_value,
                    grid.cols: c_value,
                    metric: iv.mean,
                    "lo": iv.lo,
                    "hi": iv.hi,
                    f"val_{metric}": run[f"val_{metric}"],
                    "rise": run["rise"],
                    "selected": run["selected"],
                    "default": run["default"],
                    "epochs": run.get("train.epochs"),
                }
            )
            if run["selected"]:
                hits.append((len(rows), f"{cs} {c_value:g}"))
        rows.append(row)
    table = pd.DataFrame(rows)
    title = (
        f"{grid.label}: test {metric} by {rs} (rows) x {cs} (columns), one seed per cell, [95% interval]; selected on "
        "validation in bold, the papers' default *"
    )
    notes = [INTERVAL_NOTE]
    if any(still_rising(n["rise"]) for n in nums):
        notes.append(convergence_note("† not converged", metric, over=""))  # one seed per cell
    return Table(grid.name, title, table, pd.DataFrame(nums), notes, best=best_mask(table, hits))


def tuning_table(df: pd.DataFrame, cells: pd.DataFrame, grid: Grid, metric: str) -> Table | None:
    """Each cell's optimiser setting selected on validation, where the cells were tuned (None otherwise)."""
    tuned = [c for c in TUNED if c in df]
    part = df[(df["loss"] == grid.loss) & (df["seed"] == 0)]
    if not tuned or part.groupby([grid.rows, grid.cols])[tuned].nunique().max().max() < 2:
        return None
    rs, cs = grid.symbols

    def text(run: pd.Series) -> str:
        setting = ", ".join(f"{c.split('.')[-1]} {run[c]:g}" for c in tuned)
        return f"{setting} (val {run[f'val_{metric}']:.3f})"

    table = cells.pivot(index=grid.rows, columns=grid.cols, values="run_key")
    shown = pd.DataFrame(
        {
            f"{cs} {c:g}": [text(cells[cells["run_key"] == k].iloc[0]) if isinstance(k, str) else "-" for k in table[c]]
            for c in table.columns
        }
    )
    shown.insert(0, rs, [f"{r:g}" for r in table.index])
    title = (
        f"{grid.label}: each cell's optimiser setting ({' x '.join(tuned)} candidates), selected on validation {metric}"
    )
    return Table(f"{grid.name}_tuning", title, shown, cells[[grid.rows, grid.cols, *tuned, f"val_{metric}"]])


def best_per_row_table(cells: pd.DataFrame, grid: Grid, metric: str, boot: Bootstrap) -> Table:
    """For each row value: the column with the best validation metric, its test metric and its
    difference from the papers' default cell (paired over the same test images)."""
    rs, cs = grid.symbols
    default = cell(cells, grid, *grid.default)
    rows, nums = [], []
    for r_value, part in cells.groupby(grid.rows):
        best = part.loc[part[f"val_{metric}"].idxmax()]
        test_best = part.loc[part[metric].idxmax()]
        iv = boot.interval(best, metric) if boot.available(best) else None
        delta = boot.difference(best, default, metric) if default is not None and boot.available(best) else None
        rows.append(
            {
                rs: f"{r_value:g}",
                f"best {cs} (validation)": f"{best[grid.cols]:g}",
                f"test {metric}": fmt_interval(iv) if iv else f"{best[metric]:.3f}",
                f"Δ vs default ({rs} {grid.default[0]:g}, {cs} {grid.default[1]:g})": (
                    "(the default)" if best["default"] else fmt_delta(delta)
                ),
                f"best {cs} on test": f"{test_best[grid.cols]:g}",
            }
        )
        nums.append(
            {
                grid.rows: r_value,
                grid.cols: best[grid.cols],
                metric: best[metric],
                **delta_columns(delta),
            }
        )
    title = (
        f"{grid.label}: the best {cs} for each {rs} (selected on validation), test {metric} [95% interval] and its "
        "paired difference from the papers' default"
    )
    return Table(f"{grid.name}_best", title, pd.DataFrame(rows), pd.DataFrame(nums), [INTERVAL_NOTE])


def seeds_table(df: pd.DataFrame, grid: Grid, metric: str) -> Table | None:
    """Cells with several seeds against the default cell, paired by seed, at every schedule they have."""
    part = df[(df["loss"] == grid.loss) & (df["status"] == COMPLETED)]
    if grid.rows not in part or grid.cols not in part:
        return None
    rs, cs = grid.symbols
    rows, nums = [], []
    keys = [grid.rows, grid.cols, *[c for c in TUNED if c in part]]
    for epochs, at in part.groupby("train.epochs"):
        by_cell = {key: dict(zip(g["seed"], g[metric])) for key, g in at.groupby(keys) if g["seed"].nunique() >= 2}
        default = next(
            (v for k, v in by_cell.items() if _same(k[0], grid.default[0]) and _same(k[1], grid.default[1])), None
        )
        for (r_value, c_value, *setting), values in by_cell.items():
            iv = t_interval(values.values())
            delta = paired_difference(values, default) if default is not None and values is not default else None
            rows.append(
                {
                    "epochs": int(epochs),
                    "cell": f"{rs} {r_value:g}, {cs} {c_value:g}",
                    "setting": ", ".join(f"{k.split('.')[-1]} {v:g}" for k, v in zip(keys[2:], setting)),
                    f"test {metric}, mean [95% t] (seeds)": fmt_interval(iv),
                    "Δ vs default, paired by seed": fmt_delta(delta) if delta is not None else "(the default)",
                    "verdict": delta.verdict("cell", "default") if delta is not None else "-",
                }
            )
            nums.append(
                {
                    "train.epochs": epochs,
                    grid.rows: r_value,
                    grid.cols: c_value,
                    metric: iv.mean,
                    "lo": iv.lo,
                    "hi": iv.hi,
                    **delta_columns(delta),
                }
            )
    if not rows or all(r["Δ vs default, paired by seed"] == "(the default)" for r in rows):
        return None
    title = f"{grid.label}: cells with several seeds against the papers' default, paired by seed, by schedule"
    notes = [
        fixed_data_note(df)
        or "Intervals: Student t over seeds. Where the runs drew their data per seed (protocol.seed_draws), seed s "
        "trained and was tested on its own draw s of the data, so these intervals cover the data draw as well as the "
        "training's randomness."
    ]
    return Table(f"{grid.name}_seeds", title, pd.DataFrame(rows), pd.DataFrame(nums), notes)


__all__ = [
    "FOCAL",
    "GHM",
    "GRIDS",
    "Grid",
    "best_per_row_table",
    "cell",
    "delta_columns",
    "fmt_delta",
    "grid_cells",
    "grid_table",
    "seeds_table",
    "tuning_table",
    "verdict",
]
