"""The papers' shapes, each stated before the runs as one contrast of cells (paired over the same
test images) and read as *reproduces* (its interval above 0), *does not reproduce* (below 0) or
*no clear difference*.

Focal Loss (Lin et al., 2017), Table 1a/1b: CE's best alpha is high; the best alpha falls as gamma
rises; gamma 2 is the best gamma. GHM (Li, Liu & Wang, 2019): M = 30 bins and momentum .75 are the
best; GHM-C is more robust to outliers (mislabelled objects) than Focal Loss, because it gives them
less weight.
"""

from __future__ import annotations

import pandas as pd

from ghmbench.reporting.comparison import Bootstrap
from ghmbench.reporting.noise_table import NOISE_KINDS, curves, noise_runs
from ghmbench.reporting.settings import FOCAL, GHM, cell, fmt_delta, grid_cells, verdict
from ghmbench.reporting.tables import Table

Contrast = tuple[str, str, list, list[float]]
"""(claim, what is measured, runs (None where a cell is missing), weights)."""


def _best_by_validation(cells: pd.DataFrame, mask: pd.Series) -> pd.Series | None:
    part = cells[mask]
    return part.loc[part["val_AP"].idxmax()] if len(part) else None


def focal_contrasts(cells: pd.DataFrame) -> list[Contrast]:
    """Focal Loss Table 1a / 1b as contrasts of the gamma x alpha grid."""
    at = lambda g, a: cell(cells, FOCAL, g, a)  # noqa: E731
    best_at_2 = _best_by_validation(cells, cells["loss.gamma"] == 2)
    best_other = _best_by_validation(cells, cells["loss.gamma"] != 2)
    return [
        (
            "CE's best α is high (Table 1a: α .75 beats α .25 at γ 0)",
            "AP(γ 0, α .75) − AP(γ 0, α .25)",
            [at(0, 0.75), at(0, 0.25)],
            [1.0, -1.0],
        ),
        (
            "The best α falls as γ rises (Table 1b: .75 at γ 0, .25 at γ 2)",
            "[AP(γ 2, α .25) − AP(γ 2, α .75)] − [AP(γ 0, α .25) − AP(γ 0, α .75)]",
            [at(2, 0.25), at(2, 0.75), at(0, 0.25), at(0, 0.75)],
            [1.0, -1.0, -1.0, 1.0],
        ),
        (
            "γ 2 is the best γ (Table 1b)",
            "AP(best α at γ 2) − AP(best cell at another γ), both chosen on validation",
            [best_at_2, best_other],
            [1.0, -1.0],
        ),
    ]


def ghm_contrasts(cells: pd.DataFrame) -> list[Contrast]:
    """The GHM paper's choices (M 30, momentum .75) against the best alternative on each axis."""
    default = cell(cells, GHM, 30, 0.75)
    other_m = _best_by_validation(cells, (cells["loss.momentum"] == 0.75) & (cells["loss.bins"] != 30))
    other_momentum = _best_by_validation(cells, (cells["loss.bins"] == 30) & (cells["loss.momentum"] != 0.75))
    return [
        (
            "M = 30 is the best number of bins (GHM paper)",
            "AP(M 30) − AP(best other M), momentum .75, chosen on validation",
            [default, other_m],
            [1.0, -1.0],
        ),
        (
            "Momentum .75 is the best momentum (GHM paper)",
            "AP(momentum .75) − AP(best other momentum), M 30, chosen on validation",
            [default, other_momentum],
            [1.0, -1.0],
        ),
    ]


def noise_contrasts(df: pd.DataFrame) -> list[Contrast]:
    """GHM-C loses less AP than Focal from clean to the highest noise level, for each kind of noise."""
    runs = noise_runs(df)
    if runs is None:
        return []
    by = curves(runs)
    out = []
    for kind in NOISE_KINDS.values():
        ghm, focal = by.get(("ghm", kind)), by.get(("focal", kind))
        if ghm is None or focal is None or ghm.iloc[-1]["level"] != focal.iloc[-1]["level"]:
            continue
        level = f"{ghm.iloc[-1]['level']:.0%}"
        out.append(
            (
                f"GHM-C is more robust than Focal to {kind} (GHM paper: outliers)",
                f"[AP GHM-C({level}) − AP GHM-C(clean)] − [AP Focal({level}) − AP Focal(clean)]",
                [ghm.iloc[-1], ghm.iloc[0], focal.iloc[-1], focal.iloc[0]],
                [1.0, -1.0, -1.0, 1.0],
            )
        )
    return out


def mechanism_rows(df: pd.DataFrame) -> list[dict]:
    """Whether GHM-C gave the mislabelled objects' anchors less weight than Focal at every noisy level."""
    runs = noise_runs(df)
    if runs is None:
        return []
    rows = []
    for kind in NOISE_KINDS.values():
        parts = {
            loss: runs[(runs["loss"] == loss) & (runs["noise"] == kind)].set_index("level")["noisy_relative_weight"]
            for loss in ("ghm", "focal")
        }
        levels = sorted(set(parts["ghm"].index) & set(parts["focal"].index))
        if not levels:
            continue
        lower = [parts["ghm"][lv] < parts["focal"][lv] for lv in levels]
        measured = ", ".join(f"{lv:.0%}: {parts['ghm'][lv]:.2f} vs {parts['focal'][lv]:.2f}" for lv in levels)
        word = "reproduces" if all(lower) else "does not reproduce" if not any(lower) else "mixed"
        rows.append(
            {
                "claim": f"GHM-C gives mislabelled objects ({kind}) less weight than Focal",
                "measured": f"weight per mislabelled anchor / clean positive, GHM-C vs Focal: {measured}",
                "Δ [95% interval]": "(measured over training, no interval)",
                "verdict": word,
            }
        )
    return rows


def shapes_table(df: pd.DataFrame, metric: str, boot: Bootstrap) -> Table | None:
    """Every claim the runs allow, with its contrast and verdict."""
    contrasts: list[Contrast] = []
    for grid, make in ((FOCAL, focal_contrasts), (GHM, ghm_contrasts)):
        cells = grid_cells(df, grid)
        if cells is not None:
            contrasts += make(cells)
    contrasts += noise_contrasts(df)
    rows = [
        _row(claim, measured, runs, weights, metric, boot) for claim, measured, runs, weights in contrasts
    ] + mechanism_rows(df)
    if not rows:
        return None
    title = f"Which of the papers' shapes reproduce (test {metric}; each contrast fixed before the runs)"
    notes = [
        "Intervals: 95%, bootstrap over the test images, the same resamples for every run of a contrast (one seed per "
        "cell). reproduces: the interval lies above 0; does not reproduce: below 0."
    ]
    return Table("shapes", title, pd.DataFrame(rows), pd.DataFrame(rows), notes)


def _row(claim: str, measured: str, runs: list, weights: list[float], metric: str, boot: Bootstrap) -> dict:
    missing = any(r is None for r in runs)
    iv = None if missing or not all(boot.available(r) for r in runs) else boot.contrast(runs, weights, metric)
    return {
        "claim": claim,
        "measured": measured,
        "Δ [95% interval]": "not in these runs" if missing else fmt_delta(iv),
        "verdict": "-" if missing else verdict(iv),
    }


__all__ = ["focal_contrasts", "ghm_contrasts", "mechanism_rows", "noise_contrasts", "shapes_table"]
