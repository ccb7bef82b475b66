"""``ghmbench report``: run records -> pandas tables (Markdown, LaTeX, CSV), figures and report.md.

Tables aggregate over seeds (mean ± std and n over completed runs); diverged and failed runs
are counted and shown, never dropped. The run table is built in ``run_table.py``, the tables in
``tables.py`` and ``comparison.py``, the figures in ``figures.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ghmbench.reporting import comparison
from ghmbench.reporting import figures as fig
from ghmbench.reporting.convergence import CONVERGENCE_NOTE
from ghmbench.reporting.gradient_figures import gradient_norm_distribution, reweighted_gradient
from ghmbench.reporting.iou_aware import iou_aware_table
from ghmbench.reporting.noise_table import noise_table
from ghmbench.reporting.run_table import (
    ReportError,
    fixed_data_note,
    load_runs,
    reported_split,
    selections,
    varying_columns,
)
from ghmbench.reporting.settings import GRIDS, best_per_row_table, grid_cells, grid_table, seeds_table, tuning_table
from ghmbench.reporting.shapes import shapes_table
from ghmbench.reporting.tables import (
    Table,
    ce_alpha_table,
    focal_grid_table,
    ghm_ablation_table,
    loss_comparison_table,
    summary_table,
)
from ghmbench.store.fields import METRICS


def split_note(df: pd.DataFrame) -> str:
    """One sentence saying which split the numbers come from, and when selection used it too."""
    split, sel = reported_split(df), "final" in df and not df["final"].all()
    if split == "test":
        return "Metrics are on the held-out test split" + (
            "; settings were selected on the validation split." if sel else "."
        )
    same = (
        " Selection and reporting used the same split (there is no test split), so the selected settings' numbers are "
        "optimistic."
        if sel
        else ""
    )
    if split == "val":
        return "Metrics are on the validation split." + (same or " There is no held-out test split.")
    return (
        "Metrics are on the test split for some runs and the validation split for others (runs without a test split)."
        + same
    )


def comparison_tables(
    df: pd.DataFrame, metric: str, n_boot: int = 500, headline: bool = True, boot_seed: int = 0
) -> list[Table]:
    """The fair comparison: headline with intervals and paired differences (when ``headline``),
    tuning candidates, metric against imbalance."""
    sels, boot, split = selections(df), comparison.Bootstrap(n_boot, boot_seed), reported_split(df)
    final = df[df["final"]]
    tables = []
    if headline:
        cells, nums, best = comparison.headline_table(df, metric, sels, boot, split)
        title = (
            f"Headline: {split} {metric}, classification (rows) x regression (columns), mean [95% interval] (n) over "
            "seeds"
        )
        notes = [
            "Intervals: Student t over seeds; a single run's is a bootstrap over test images (point ± 1.96 bootstrap "
            "standard errors)" + (f" (B = {n_boot})." if n_boot else " (off)."),
            split_note(df),
        ]
        if fixed_data_note(df):
            notes.append(fixed_data_note(df))
        if sels:
            notes.insert(
                0,
                "Final runs: each loss's runs at the setting selected on validation "
                f"{next(iter(sels.values())).metric}.",
            )
        if nums.get("not_converged", pd.Series(dtype=bool)).any():
            notes.append(CONVERGENCE_NOTE)
        tables.append(Table("headline", title, cells, nums, notes, best))
        cells, nums = comparison.differences_table(df, metric, boot)
        if not cells.empty:
            note = (
                "Δ = A − B of the reported metric with its 95% interval; a verdict only when the interval excludes 0."
            )
            tables.append(Table("differences", f"Paired differences of {split} {metric}", cells, nums, [note]))
        tables += [t for t in (iou_aware_table(df, boot),) if t is not None]
    if sels:
        cells, nums, best = comparison.candidates_table(sels)
        tables.append(
            Table(
                "candidates",
                "Tuning candidates per loss, scored on the validation split; selected in bold",
                cells,
                nums,
                best=best,
            )
        )
    settings = comparison.imbalance_columns(final, varying_columns(final))
    if settings:
        cells, nums = comparison.imbalance_table(df, metric, settings, boot)
        tables.append(
            Table(
                "imbalance",
                f"{split} {metric} against the anchors' negative:positive ratio, mean [95% interval] (n)",
                cells,
                nums,
            )
        )
    return tables


def settings_tables(df: pd.DataFrame, metric: str, n_boot: int = 500, boot_seed: int = 0) -> list[Table]:
    """Which settings? Each settings grid the runs hold (cells, best per row, seeds against the
    papers' default), the label-noise table, and the papers' shapes as verdicts."""
    boot = comparison.Bootstrap(n_boot, boot_seed)
    tables = []
    for grid in GRIDS:
        cells = grid_cells(df, grid)
        if cells is not None:
            tables += [grid_table(cells, grid, metric, boot), best_per_row_table(cells, grid, metric, boot)]
            tables += [t for t in (tuning_table(df, cells, grid, metric),) if t is not None]
        # also without a grid: a few cells over seeds (the shorter-budget runs)
        tables += [t for t in (seeds_table(df, grid, metric),) if t is not None]
    return tables + [t for t in (noise_table(df, metric, boot), shapes_table(df, metric, boot)) if t is not None]


def build_tables(df: pd.DataFrame, metric: str, group_by: list[str] | None, n_boot: int = 500) -> list[Table]:
    """The summary table, the fair-comparison tables and whichever paper-shaped tables the runs allow.

    Args:
        df: :func:`load_runs`'s table.
        metric: the metric of the comparison and paper-shaped tables.
        group_by: the summary table's grouping (default: loss, regression and every varying key).
        n_boot: image bootstrap replicates for single runs (0 = none).
    """
    if metric not in METRICS:
        raise ReportError(f"--metric {metric!r} is not allowed; allowed: {', '.join(METRICS)}")
    if group_by is None:
        group_by = ["loss", "regression", *[c for c in varying_columns(df) if c not in ("loss", "regression")]]
    metrics = list(dict.fromkeys([metric, "AP", "AP50", "AP75"]))
    tables = [summary_table(df, group_by, metrics), *settings_tables(df, metric, n_boot)]
    loss_table = loss_comparison_table(
        df, metric
    )  # None or a skip note unless the final runs form a loss x regression grid
    tables += comparison_tables(df, metric, n_boot, headline=loss_table is not None and not loss_table.cells.empty)
    for table in (loss_table, *(make(df, metric) for make in (ce_alpha_table, focal_grid_table, ghm_ablation_table))):
        if table is not None:
            tables.append(table)
    return tables


def make_figures(
    df: pd.DataFrame, hists: dict[str, dict], metric: str, out: Path, tables: list[Table]
) -> list[fig.Figure]:
    """Every figure the runs allow; the AP figures only beside their (non-empty) tables."""
    out.mkdir(parents=True, exist_ok=True)
    made = {t.name: t for t in tables if not t.cells.empty}
    figures = [gradient_norm_distribution(df, hists, out), fig.learning_curves(df, hists, out)]
    if "imbalance" in made:
        figures.append(fig.imbalance(made["imbalance"].numbers, df, metric, out))
    if "focal_gamma_alpha" in made:
        figures.append(fig.ap_vs_gamma(df, metric, out))
    if "loss_comparison" in made and "headline" in made:
        figures.append(fig.loss_comparison(df, made["headline"].numbers, metric, out))
    figures += [fig.settings_heatmap(made[g.name].numbers, g, metric, out) for g in GRIDS if g.name in made]
    if "label_noise" in made:
        figures.append(fig.label_noise_figure(made["label_noise"].numbers, metric, out))
    if df["loss"].isin(["ghm", "focal"]).any():
        figures.append(reweighted_gradient(df, hists, out))
    return [f for f in figures if f is not None]


def write_report(
    df: pd.DataFrame,
    tables: list[Table],
    out: Path,
    figures: list[fig.Figure],
    sources: list[Path],
    note: str | None = None,
) -> Path:
    """Write runs.csv / runs.parquet, each table as .md / .tex / .csv, and report.md (``note``: a line
    in bold under its title, e.g. what the runs are for)."""
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "runs.csv", index=False)
    df.astype({c: str for c in df.columns if df[c].dtype == object}).to_parquet(out / "runs.parquet", index=False)
    parts = [
        "# ghmbench report\n",
        *([f"**{note}**\n"] if note else []),
        f"{fig.plural(len(df), 'run')} from {', '.join(str(s) for s in sources)}: "
        + ", ".join(f"{n} {s}" for s, n in df["status"].value_counts().items())
        + (f"; {len(df.attrs['skipped'])} unreadable metrics.json skipped" if df.attrs.get("skipped") else "")
        + ". Cells: mean ± std over seeds (number of completed runs) unless a table says otherwise; "
        "best value per column in bold.\n",
        split_note(df) + "\n",
    ]
    for t in tables:
        if not t.cells.empty:
            (out / f"{t.name}.md").write_text(t.markdown())
            (out / f"{t.name}.tex").write_text(t.latex())
            t.numbers.to_csv(out / f"{t.name}.csv", index=False)
        parts.append(t.markdown() if not t.cells.empty else f"### {t.title}\n\n" + "\n".join(t.notes) + "\n")
    if figures:
        parts.append(
            "### Figures\n\n" + "\n".join(f"![{f.path.stem}]({f.path.name})\n\n*{f.caption}*\n" for f in figures)
        )
    report = out / "report.md"
    report.write_text("\n".join(parts))
    return report


@dataclass
class Report:
    """What :func:`make_report` made: the run table, the tables by name, the figures and report.md."""

    runs: pd.DataFrame
    tables: dict[str, Table]
    figures: list[Path]
    path: Path


def make_report(
    paths: str | Path | list[str | Path] = ("runs",),
    out: str | Path | None = None,
    metric: str = "AP",
    group_by: str | list[str] | None = None,
    bootstrap: int = 500,
    note: str | None = None,
) -> Report:
    """``ghmbench report``: read the run records under ``paths`` and write the tables, figures
    and report.md to ``out`` (default: ``<first path>/report``). Also :func:`ghmbench.report`.

    Args:
        paths: runs folders (or run folders).
        metric: the metric of the paper-shaped tables and figures.
        group_by: the summary table's columns (a list or ``"loss,loss.gamma"``; default: loss,
            regression and every config key that varies).
        bootstrap: image bootstrap replicates for single-run intervals (0 = off).
        note: a line for the report's header, e.g. "A setup check, not a verdict" (``make bench-quick``).

    Raises:
        ReportError: no records, a bad option, or records of different protocols.
    """
    sources = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)] or [Path("runs")]
    out_dir = Path(out) if out is not None else sources[0] / "report"
    columns = [c.strip() for c in group_by.split(",") if c.strip()] if isinstance(group_by, str) else group_by
    df, hists = load_runs(sources)
    tables = build_tables(df, metric, columns or None, bootstrap)
    figures = make_figures(df, hists, metric, out_dir, tables)
    path = write_report(df, tables, out_dir, figures, sources, note)
    return Report(df, {t.name: t for t in tables}, [f.path for f in figures], path)
