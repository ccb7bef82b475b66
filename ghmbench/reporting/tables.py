"""The report's tables: :class:`Table` (cells, numbers, best cells; Markdown and LaTeX), cell
formatting, the summary table and the paper-shaped tables (Focal Loss Table 1a / 1b, GHM-C bins x
momentum, classification x regression loss).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from ghmbench.reporting import published
from ghmbench.reporting.cells import fmt_summary_cell
from ghmbench.reporting.convergence import CONVERGENCE_NOTE, still_rising
from ghmbench.reporting.run_table import (
    LOSS_ORDER,
    REG_ORDER,
    final_runs,
    label_columns,
    loss_label,
    regression_label,
    summarize,
    varying_columns,
)


@dataclass
class Table:
    """A rendered table: cells as strings, which of them hold a best value (bold when rendered),
    plus numbers for CSV."""

    name: str
    title: str
    cells: pd.DataFrame  # strings
    numbers: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    best: pd.DataFrame | None = None  # shaped like cells: True where a cell holds a best value

    def __post_init__(self) -> None:
        best = self.best if self.best is not None else pd.DataFrame(index=self.cells.index)
        self.best = best.reindex(index=self.cells.index, columns=self.cells.columns, fill_value=False).astype(bool)

    def _texts(self, render: Callable[[str], str], bold: Callable[[str], str]) -> pd.DataFrame:
        """The cells as rendered text ("-" for a missing cell), best ones in bold."""
        texts = self.cells.fillna("-").map(lambda s: render(str(s)))
        return texts.where(~self.best, texts.map(bold))

    def markdown(self) -> str:
        body = self._texts(str, lambda s: f"**{s}**").to_markdown(index=False, disable_numparse=True)
        notes = "".join(f"\n\n{n}" for n in self.notes)
        return f"### {self.title}\n\n{body}{notes}\n"

    def latex(self) -> str:
        esc = self._texts(_tex_escape, lambda s: f"\\textbf{{{s}}}")
        esc.columns = [_tex_escape(str(c)) for c in esc.columns]
        return esc.to_latex(index=False, escape=False, caption=_tex_escape(self.title), label=f"tab:{self.name}")


def best_mask(cells: pd.DataFrame, hits: list[tuple[object, str]]) -> pd.DataFrame:
    """A best-cell mask shaped like ``cells``, True at the (row label, column) ``hits``."""
    best = pd.DataFrame(False, index=cells.index, columns=cells.columns)
    for row, col in hits:
        best.loc[row, col] = True
    return best


def loss_grid(
    frame: pd.DataFrame, cell: Callable[[pd.DataFrame], tuple[str, dict]], trailing: Callable[[str], dict]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Classification loss (rows) x regression loss (columns) in the papers' order, by their display names.

    Args:
        frame: rows with ``loss`` and ``regression`` (runs, or one summary row per pair).
        cell: the text and numbers of one pair's rows ("-" where a pair has none).
        trailing: the columns that end a loss's row.

    Returns:
        (cells, numbers): the table's strings, and one numbers row per cell (``loss``, ``regression``, ...).
    """
    regs = sorted(frame["regression"].unique(), key=lambda r: REG_ORDER.get(r, 99))
    rows, nums = [], []
    for loss in sorted(frame["loss"].unique(), key=lambda v: LOSS_ORDER.get(v, 99)):
        row = {"classification": loss_label(loss)}
        for reg in regs:
            part = frame[(frame["loss"] == loss) & (frame["regression"] == reg)]
            if part.empty:
                row[regression_label(reg)] = "-"
                continue
            row[regression_label(reg)], numbers = cell(part)
            nums.append({"loss": loss, "regression": reg, **numbers})
        rows.append(row | trailing(loss))
    return pd.DataFrame(rows), pd.DataFrame(nums)


def best_loss_cell(cells: pd.DataFrame, numbers: pd.DataFrame, column: str = "mean") -> pd.DataFrame:
    """The best-cell mask of a :func:`loss_grid`: True at the pair(s) with the highest ``column``."""
    if numbers.empty or not numbers[column].notna().any():
        return best_mask(cells, [])
    top = numbers[numbers[column] == numbers[column].max()]
    hits = [
        (cells["classification"] == loss_label(r["loss"]), regression_label(r["regression"])) for _, r in top.iterrows()
    ]
    return best_mask(cells, hits)


def _tex_escape(s: str) -> str:
    for a, b in [
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("_", r"\_"),
        ("#", r"\#"),
        ("±", r"$\pm$"),
        ("α", r"$\alpha$"),
        ("γ", r"$\gamma$"),
    ]:
        s = s.replace(a, b)
    return s


def _metric_cells(summary: pd.DataFrame, metrics: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cells, best mask): a formatted column per metric, its best mean marked."""
    cells = pd.DataFrame(index=summary.index)
    best_cells = pd.DataFrame(index=summary.index)
    for m in metrics:
        cells[m] = [fmt_summary_cell(r, m) for _, r in summary.iterrows()]
        best = summary[f"{m}_mean"].max()
        if not math.isnan(best):
            hit = summary[f"{m}_mean"] == best
            best_cells[m] = hit
        else:
            best_cells[m] = False
    return cells, best_cells


def summary_table(df: pd.DataFrame, group_by: list[str], metrics: list[str]) -> Table:
    """Every configuration (seeds aggregated), best mean per metric column marked."""
    summary = summarize(df, group_by, metrics)
    cells = label_columns(summary[group_by].astype(str))
    cells["runs"] = [f"{r['completed']}/{r['runs']}" for _, r in summary.iterrows()]
    metric_cells, best = _metric_cells(summary, metrics)
    cells = pd.concat([cells, metric_cells], axis=1)
    notes = []
    if summary["rise"].notna().any():
        cells["converged"] = summary["rise"].map(
            lambda r: "-" if math.isnan(r) else (f"not converged (+{r:.3f})" if still_rising(r) else "yes")
        )
        if summary["rise"].map(still_rising).any():  # the note explains a flag; none, no note
            notes.append(CONVERGENCE_NOTE)
    return Table("summary", "All configurations: mean ± std (n completed) over seeds", cells, summary, notes, best)


def _constant_or_note(part: pd.DataFrame, axes: list[str]) -> str | None:
    others = [c for c in varying_columns(part) if c not in axes]
    if others:
        return f"skipped: its runs also differ in {', '.join(others[:4])}; filter the runs folder or use --group-by"
    return None


def ce_alpha_table(df: pd.DataFrame, metric: str) -> Table | None:
    """Focal Loss paper Table 1a: alpha-balanced CE (or focal with gamma 0) by alpha."""
    gamma = df.get("loss.gamma")
    part = (
        df[(df["loss"] == "ce") | ((df["loss"] == "focal") & (gamma == 0))]
        if gamma is not None
        else df[df["loss"] == "ce"]
    )
    part = part[part["regression"] == part["regression"].iloc[0]] if len(part) else part
    if part.empty or "loss.alpha" not in part or part["loss.alpha"].nunique() < 2:
        return None
    # CE runs have no gamma and focal gamma-0 runs have 0: not a difference between them
    note = _constant_or_note(part.drop(columns="loss.gamma", errors="ignore"), ["loss.alpha"])
    title = "α-balanced CE (γ = 0) by α, as Focal Loss Table 1a"
    if note:
        return Table("ce_alpha", title, pd.DataFrame(), pd.DataFrame(), [note])
    metrics = ["AP", "AP50", "AP75"] if metric in ("AP", "AP50", "AP75") else [metric]
    summary = summarize(part, ["loss.alpha"], metrics).sort_values("loss.alpha").reset_index(drop=True)
    cells = pd.DataFrame({"α": summary["loss.alpha"].map(lambda a: f"{a:g}")})
    metric_cells, best = _metric_cells(summary, metrics)
    cells = pd.concat([cells, metric_cells], axis=1)
    cells[f"paper AP ({published.FOCAL_SCALE.format('1a')})"] = summary["loss.alpha"].map(
        lambda a: _paper(published.FOCAL_TABLE_1A, a, 0)
    )
    return Table("ce_alpha", title, cells, summary, best=best)


def _paper(table: dict, key: float, index: int) -> str:
    for k, v in table.items():
        if abs(k - key) < 1e-9:
            return published.ap(v[index])
    return "-"


def _grid_table(
    df: pd.DataFrame,
    metric: str,
    loss: str,
    rows_key: str,
    cols_key: str,
    symbols: tuple[str, str],
    name: str,
    title: str,
    paper: Callable[[float], str],
    paper_label: str,
) -> Table | None:
    """metric by rows_key x cols_key for one loss, the best column per row and overall marked."""
    part = df[df["loss"] == loss]
    if part.empty or rows_key not in part or part[rows_key].nunique() < 2 or part[cols_key].nunique() < 1:
        return None
    note = _constant_or_note(part, [rows_key, cols_key])
    if note:
        return Table(name, title, pd.DataFrame(), pd.DataFrame(), [note])
    rs, cs = symbols
    summary = summarize(part, [rows_key, cols_key], [metric])
    rows, nums, hits = [], [], []
    for value in sorted(summary[rows_key].unique()):
        sub = summary[summary[rows_key] == value]
        row = {rs: f"{value:g}"}
        for col in sorted(summary[cols_key].dropna().unique()):
            hit = sub[sub[cols_key] == col]
            r = hit.iloc[0] if not hit.empty else None
            row[f"{cs}={col:g}"] = "-" if r is None else fmt_summary_cell(r, metric)
        means = sub.set_index(cols_key)[f"{metric}_mean"]
        if means.notna().any():
            best = means.idxmax()
            hits.append((len(rows), f"{cs}={best:g}"))  # best of this row
            row[f"best {cs}"], row[f"best {metric}"] = f"{best:g}", f"{means.max():.3f}"
        else:
            row[f"best {cs}"], row[f"best {metric}"] = "-", "-"
        row[paper_label] = paper(float(value))
        rows.append(row)
        nums.append({rows_key: value, **{f"{cols_key}={c:g}": v for c, v in means.items()}})
    cells = pd.DataFrame(rows)
    numeric = pd.to_numeric(cells[f"best {metric}"], errors="coerce")
    if numeric.notna().any():
        idx = numeric.idxmax()
        hits.append((idx, f"best {metric}"))
    return Table(name, title, cells, pd.DataFrame(nums), best=best_mask(cells, hits))


def focal_grid_table(df: pd.DataFrame, metric: str) -> Table | None:
    """Focal Loss paper Table 1b: metric by gamma x alpha, with the best alpha per gamma."""

    def paper(gamma: float) -> str:
        ref = published.FOCAL_TABLE_1B.get(gamma)
        return f"{ref[0]:g} / {published.ap(ref[1])}" if ref else "-"

    title = f"Focal loss {metric} by γ (rows) x α (columns), as Focal Loss Table 1b; best α per γ in bold"
    return _grid_table(
        df,
        metric,
        "focal",
        "loss.gamma",
        "loss.alpha",
        ("γ", "α"),
        "focal_gamma_alpha",
        title,
        paper,
        f"paper best α / AP ({published.FOCAL_SCALE.format('1b')})",
    )


def ghm_ablation_table(df: pd.DataFrame, metric: str) -> Table | None:
    """GHM-C unit regions (bins, rows) x momentum (columns), with the paper's AP per M."""

    def paper(bins: float) -> str:
        ref = published.GHM_BINS.get(int(bins))
        return published.ap(ref) if ref is not None else "-"

    title = f"GHM-C {metric} by bins M (rows) x momentum (columns); best momentum per M in bold"
    return _grid_table(
        df,
        metric,
        "ghm",
        "loss.bins",
        "loss.momentum",
        ("M", "momentum"),
        "ghm_bins_momentum",
        title,
        paper,
        f"paper AP by M ({published.GHM_SCALE})",
    )


def loss_comparison_table(df: pd.DataFrame, metric: str) -> Table | None:
    """GHM paper comparison: classification loss (rows) x regression loss (columns), final runs."""
    df = final_runs(df)
    if df.empty or df["loss"].nunique() < 2 and df["regression"].nunique() < 2:
        return None
    cells_per = df.groupby(["loss", "regression"])
    for (loss, reg), part in cells_per:
        if _constant_or_note(part, []):
            return Table(
                "loss_comparison",
                f"{metric}: classification x regression loss",
                pd.DataFrame(),
                pd.DataFrame(),
                [
                    f"skipped: the {loss_label(loss)} + {regression_label(reg)} runs differ in more than the seed "
                    f"({', '.join(varying_columns(part)[:4])})"
                ],
            )
    summary = summarize(df, ["loss", "regression"], [metric])

    def cell(pair: pd.DataFrame) -> tuple[str, dict]:
        r = pair.iloc[0]
        numbers = {"mean": r[f"{metric}_mean"], "std": r[f"{metric}_std"], "n": r[f"{metric}_n"]}
        return fmt_summary_cell(r, metric), numbers

    cells, numbers = loss_grid(
        summary, cell, lambda loss: {published.GHM_COMPARISON_COLUMN: published.ghm_comparison_cell(loss)}
    )
    title = f"{metric}: classification (rows) x regression loss (columns), mean ± std (n) over seeds"
    return Table("loss_comparison", title, cells, numbers, best=best_loss_cell(cells, numbers))
