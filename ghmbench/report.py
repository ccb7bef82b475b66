"""``ghmbench report``: run records -> pandas tables (Markdown, LaTeX, CSV) and figures.

Tables aggregate over seeds (mean ± std and n over completed runs); diverged and failed runs
are counted and shown, never dropped. Figure drawing lives in ``figures.py``.
"""

from __future__ import annotations

import json
import math
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from ghmbench import reference
from ghmbench.protocol import ProtocolError, Selection, final_mask, select_settings
from ghmbench.results import METRICS_FILE, semantic_config
from ghmbench.stats import CONVERGENCE_TOL, convergence_rise

METRICS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100"]
RUN_COLUMNS = ["run_key", "run_dir", "loss", "regression", "seed", "status", "diverged_at_step", "epochs_done", "wall_time_s"]
LOSS_ORDER = {"ce": 0, "focal": 1, "ghm": 2}
REG_ORDER = {"smooth_l1": 0, "l1": 1, "ghm": 2}


class ReportError(ValueError):
    """Nothing to report, or a bad option; the message is one line."""


# ----------------------------------------------------------------------------- loading


def _flatten(prefix: str, value: object, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = json.dumps(value) if isinstance(value, list) else value


def find_records(paths: list[Path]) -> list[Path]:
    """metrics.json files of the run folders in (or given as) ``paths``; hidden folders skipped."""
    files: list[Path] = []
    for path in paths:
        path = Path(path).expanduser()
        if (path / METRICS_FILE).is_file():
            files.append(path / METRICS_FILE)
        elif path.is_dir():
            files += sorted(p for p in path.glob(f"*/{METRICS_FILE}") if not p.parent.name.startswith("."))
        else:
            raise ReportError(f"{path}: no such runs folder")
    return files


def read_records(paths: list[Path], skipped: list[Path] | None = None) -> list[tuple[Path, dict]]:
    """(file, record) of every readable run record; an unreadable or foreign one is skipped with a
    one-line warning (and appended to ``skipped``)."""
    out = []
    for file in find_records(paths):
        try:
            record = json.loads(file.read_text())
            if not isinstance(record, dict) or "run_key" not in record:
                raise ValueError("not a run record")
        except (OSError, ValueError) as e:
            print(f"warning: {file}: unreadable run record ({type(e).__name__}: {str(e).splitlines()[0][:80]}), skipped", file=sys.stderr)
            if skipped is not None:
                skipped.append(file)
            continue
        out.append((file, record))
    return out


def _record_row(file: Path, record: dict) -> dict:
    """The run table's row of one record (see :func:`load_runs`)."""
    row = {c: record.get(c) for c in RUN_COLUMNS}
    row["run_dir"] = str(file.parent)
    row.update({m: (record.get("metrics") or {}).get(m) for m in METRICS})
    row["metrics_split"] = record.get("metrics_split") or "val"
    val = record.get("val_metrics") or record.get("metrics") or {}
    row.update({f"val_{m}": val.get(m) for m in METRICS})
    row["steps"] = record.get("steps")
    row["rise"] = convergence_rise(record.get("curve"), record.get("steps"))
    anchors = record.get("anchors") or {}
    row["neg_per_pos"], row["pos_per_image"] = anchors.get("neg_per_pos"), anchors.get("positive_per_image")
    files = record.get("eval_files") or {}
    for key in ("detections", "ground_truth"):
        path = file.parent / files[key] if files.get(key) else None
        row[f"eval_{key}"] = str(path) if path is not None and path.is_file() else None
    row["protocol"] = json.dumps((record.get("config") or {}).get("protocol"), sort_keys=True)
    cfg = semantic_config(OmegaConf.create(record.get("config") or {}))
    flat: dict = {}
    for section in ("loss", "regression", "model", "dataset", "train"):
        _flatten(section, cfg.get(section, {}), flat)
    flat.pop("loss.name", None)
    flat.pop("regression.name", None)
    return row | flat


def load_runs(paths: list[Path]) -> tuple[pd.DataFrame, dict[str, dict]]:
    """One row per run: identity, status, reported metrics, the flattened semantic config, and
    ``metrics_split``, ``val_<metric>``, ``rise`` (convergence), ``neg_per_pos``, ``eval_*`` (files
    of the image bootstrap), ``protocol`` (JSON) and ``final`` (a final run of the protocol; every
    run when the records are not protocol runs).

    Returns:
        (DataFrame, {run_key: {"g_hist", "config", "curve", "steps"}}) for the figures.

    Raises:
        ReportError: no records, or records of different protocols. Unreadable records are
            skipped (``df.attrs["skipped"]`` lists them).
    """
    rows, hists, skipped = [], {}, []
    for file, record in read_records(paths, skipped):
        rows.append(_record_row(file, record))
        cfg = semantic_config(OmegaConf.create(record.get("config") or {}))
        hists[record["run_key"]] = {"g_hist": record.get("g_hist"), "config": cfg, "curve": record.get("curve"), "steps": record.get("steps")}
    if not rows:
        raise ReportError(f"no run records (*/{METRICS_FILE}) under {', '.join(map(str, paths))}")
    df = pd.DataFrame(rows)
    for m in METRICS:
        df[m] = pd.to_numeric(df[m], errors="coerce")
        df[f"val_{m}"] = pd.to_numeric(df[f"val_{m}"], errors="coerce")
    for c in ("rise", "neg_per_pos", "pos_per_image"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df = df.sort_values(["loss", "regression", "seed"], key=order_key).reset_index(drop=True)
    df["final"] = final_mask(df, selections(df))
    df.attrs["skipped"] = [str(f) for f in skipped]  # unreadable records, counted in the report's header
    return df, hists


def selections(df: pd.DataFrame) -> dict[str, Selection]:
    """Each loss's selected setting under the runs' protocol ({} when they are not protocol runs).

    Raises:
        ReportError: the runs carry different protocols, or a malformed one.
    """
    try:
        return select_settings(df)
    except ProtocolError as e:
        raise ReportError(str(e)) from None


def order_key(col: pd.Series) -> pd.Series:
    """Sort key: losses and regressions in the papers' order, other columns as they are."""
    order = {"loss": LOSS_ORDER, "regression": REG_ORDER}.get(str(col.name))
    return col.map(lambda v: order.get(v, 99)) if order else col


def varying_columns(df: pd.DataFrame) -> list[str]:
    """Config columns whose value differs between runs (seed excluded)."""
    cfg_cols = [c for c in df.columns if "." in c]
    return [c for c in cfg_cols if df[c].astype(str).nunique() > 1]


# ----------------------------------------------------------------------------- aggregation


def summarize(df: pd.DataFrame, group_by: list[str], metrics: list[str]) -> pd.DataFrame:
    """Aggregate over seeds: per group, run counts by status and mean / std / n per metric.

    Mean and std are over completed runs (std with ddof 1, NaN for a single run); ``rise`` is
    their mean convergence rise (NaN without validation curves).
    """
    missing = [c for c in group_by if c not in df.columns]
    if missing:
        raise ReportError(f"--group-by {missing[0]!r} is not a column; allowed: {', '.join(_groupable(df))}")
    rows = []
    for key, part in df.groupby(group_by, dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        done = part[part["status"] == "completed"]
        row = dict(zip(group_by, key))
        row |= {
            "runs": len(part),
            "completed": len(done),
            "diverged": int((part["status"] == "diverged").sum()),
            "failed": int((~part["status"].isin(["completed", "diverged"])).sum()),
            "seeds": ",".join(str(s) for s in sorted(part["seed"].dropna().astype(int))),
        }
        for m in metrics:
            values = done[m].dropna()
            row[f"{m}_mean"] = values.mean() if len(values) else np.nan
            row[f"{m}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
            row[f"{m}_n"] = len(values)
        rises = done["rise"].dropna() if "rise" in done else pd.Series(dtype=float)
        row["rise"] = rises.mean() if len(rises) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _groupable(df: pd.DataFrame) -> list[str]:
    return ["loss", "regression", "seed", *[c for c in df.columns if "." in c]]


# ----------------------------------------------------------------------------- rendering


@dataclass
class Table:
    """A rendered table: cells as strings (with best values marked), plus numbers for CSV."""

    name: str
    title: str
    cells: pd.DataFrame  # strings; best values wrapped in \x00 markers
    numbers: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        body = self.cells.fillna("-").map(lambda s: str(s).replace("\x00", "**")).to_markdown(index=False, disable_numparse=True)
        notes = "".join(f"\n\n{n}" for n in self.notes)
        return f"### {self.title}\n\n{body}{notes}\n"

    def latex(self) -> str:
        esc = self.cells.fillna("-").map(lambda s: _tex_escape(str(s)).replace("\x00", "@@"))
        esc = esc.map(lambda s: _bold_tex(s))
        esc.columns = [_tex_escape(str(c)) for c in esc.columns]
        return esc.to_latex(index=False, escape=False, caption=_tex_escape(self.title), label=f"tab:{self.name}")


def _tex_escape(s: str) -> str:
    for a, b in [("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("±", r"$\pm$"), ("α", r"$\alpha$"), ("γ", r"$\gamma$")]:
        s = s.replace(a, b)
    return s


def _bold_tex(s: str) -> str:
    parts = s.split("@@")
    return "".join(f"\\textbf{{{p}}}" if i % 2 else p for i, p in enumerate(parts))


def fmt_cell(mean: float, std: float, n: int, runs: int, diverged: int, failed: int, digits: int = 3) -> str:
    """``0.651 ± 0.012 (3)``; groups without a completed run say why."""
    if n == 0:
        if runs and diverged == runs:
            return f"diverged ({diverged}/{runs})"
        if runs and failed:
            return f"failed ({failed}/{runs})" if not diverged else f"diverged {diverged}, failed {failed} /{runs}"
        return "-"
    text = f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if not math.isnan(std) else "")
    extra = []
    if diverged:
        extra.append(f"{diverged} diverged")
    if failed:
        extra.append(f"{failed} failed")
    return text + f" ({n}" + (", " + ", ".join(extra) if extra else "") + ")"


def _metric_cells(summary: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    cells = pd.DataFrame(index=summary.index)
    for m in metrics:
        cells[m] = [
            fmt_cell(r[f"{m}_mean"], r[f"{m}_std"], r[f"{m}_n"], r["runs"], r["diverged"], r["failed"]) for _, r in summary.iterrows()
        ]
        best = summary[f"{m}_mean"].max()
        if not math.isnan(best):
            hit = summary[f"{m}_mean"] == best
            cells.loc[hit, m] = "\x00" + cells.loc[hit, m] + "\x00"
    return cells


def summary_table(df: pd.DataFrame, group_by: list[str], metrics: list[str]) -> Table:
    """Every configuration (seeds aggregated), best mean per metric column marked."""
    summary = summarize(df, group_by, metrics)
    cells = summary[group_by].astype(str).copy()
    cells["runs"] = [f"{r['completed']}/{r['runs']}" for _, r in summary.iterrows()]
    cells = pd.concat([cells, _metric_cells(summary, metrics)], axis=1)
    notes = []
    if summary["rise"].notna().any():
        cells["converged"] = summary["rise"].map(lambda r: "-" if math.isnan(r) else (f"not converged (+{r:.3f})" if r > CONVERGENCE_TOL else "yes"))
        notes.append(_CONVERGENCE_NOTE)
    return Table("summary", "All configurations: mean ± std (n completed) over seeds", cells, summary, notes)


_CONVERGENCE_NOTE = (
    f"*not converged*: validation AP still rose by more than {CONVERGENCE_TOL:g} (mean over seeds) between 75% of training and its end."
)


def _constant_or_note(part: pd.DataFrame, axes: list[str]) -> str | None:
    others = [c for c in varying_columns(part) if c not in axes]
    if others:
        return f"skipped: its runs also differ in {', '.join(others[:4])}; filter the runs folder or use --group-by"
    return None


def ce_alpha_table(df: pd.DataFrame, metric: str) -> Table | None:
    """Focal Loss paper Table 1a: alpha-balanced CE (or focal with gamma 0) by alpha."""
    gamma = df.get("loss.gamma")
    part = df[(df["loss"] == "ce") | ((df["loss"] == "focal") & (gamma == 0))] if gamma is not None else df[df["loss"] == "ce"]
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
    cells = pd.concat([cells, _metric_cells(summary, metrics)], axis=1)
    cells["paper AP % (Table 1a)"] = summary["loss.alpha"].map(lambda a: _paper(reference.FOCAL_TABLE_1A, a, 0))
    return Table("ce_alpha", title, cells, summary)


def _paper(table: dict, key: float, index: int) -> str:
    for k, v in table.items():
        if abs(k - key) < 1e-9:
            return f"{v[index]:g}"
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
    rows, nums = [], []
    for value in sorted(summary[rows_key].unique()):
        sub = summary[summary[rows_key] == value]
        row = {rs: f"{value:g}"}
        for col in sorted(summary[cols_key].dropna().unique()):
            hit = sub[sub[cols_key] == col]
            r = hit.iloc[0] if not hit.empty else None
            row[f"{cs}={col:g}"] = "-" if r is None else fmt_cell(r[f"{metric}_mean"], r[f"{metric}_std"], r[f"{metric}_n"], r["runs"], r["diverged"], r["failed"])
        means = sub.set_index(cols_key)[f"{metric}_mean"]
        if means.notna().any():
            best = means.idxmax()
            row[f"{cs}={best:g}"] = "\x00" + row[f"{cs}={best:g}"] + "\x00"  # best of this row
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
        cells.loc[idx, f"best {metric}"] = "\x00" + cells.loc[idx, f"best {metric}"] + "\x00"
    return Table(name, title, cells, pd.DataFrame(nums))


def focal_grid_table(df: pd.DataFrame, metric: str) -> Table | None:
    """Focal Loss paper Table 1b: metric by gamma x alpha, with the best alpha per gamma."""

    def paper(gamma: float) -> str:
        ref = reference.FOCAL_TABLE_1B.get(gamma)
        return f"{ref[0]:g} / {ref[1]:g}" if ref else "-"

    title = f"Focal loss {metric} by γ (rows) x α (columns), as Focal Loss Table 1b; best α per γ in bold"
    return _grid_table(df, metric, "focal", "loss.gamma", "loss.alpha", ("γ", "α"), "focal_gamma_alpha", title, paper, "paper best α / AP % (Table 1b)")


def ghm_ablation_table(df: pd.DataFrame, metric: str) -> Table | None:
    """GHM-C unit regions (bins, rows) x momentum (columns), with the paper's AP per M."""

    def paper(bins: float) -> str:
        ref = reference.GHM_BINS.get(int(bins))
        return f"{ref:g}" if ref is not None else "-"

    title = f"GHM-C {metric} by bins M (rows) x momentum (columns); best momentum per M in bold"
    return _grid_table(df, metric, "ghm", "loss.bins", "loss.momentum", ("M", "momentum"), "ghm_bins_momentum", title, paper, "paper AP % by M (GHM paper)")


def loss_comparison_table(df: pd.DataFrame, metric: str) -> Table | None:
    """GHM paper comparison: classification loss (rows) x regression loss (columns), final runs."""
    df = df[df["final"]] if "final" in df else df
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
                [f"skipped: the {loss} + {reg} runs differ in more than the seed ({', '.join(varying_columns(part)[:4])})"],
            )
    summary = summarize(df, ["loss", "regression"], [metric])
    regs = sorted(summary["regression"].unique(), key=lambda r: REG_ORDER.get(r, 99))
    best = summary[f"{metric}_mean"].max()
    rows, nums = [], []
    for loss in sorted(summary["loss"].unique(), key=lambda v: LOSS_ORDER.get(v, 99)):
        row = {"classification": loss}
        for reg in regs:
            hit = summary[(summary["loss"] == loss) & (summary["regression"] == reg)]
            if hit.empty:
                row[reg] = "-"
                continue
            r = hit.iloc[0]
            text = fmt_cell(r[f"{metric}_mean"], r[f"{metric}_std"], r[f"{metric}_n"], r["runs"], r["diverged"], r["failed"])
            row[reg] = "\x00" + text + "\x00" if r[f"{metric}_mean"] == best else text
            nums.append({"loss": loss, "regression": reg, "mean": r[f"{metric}_mean"], "std": r[f"{metric}_std"], "n": r[f"{metric}_n"]})
        row["paper AP % (GHM paper; smooth L1 / GHM-R)"] = " / ".join(
            f"{reference.GHM_COMPARISON[(loss, reg)]:g}" if (loss, reg) in reference.GHM_COMPARISON else "-" for reg in ("smooth_l1", "ghm")
        )
        rows.append(row)
    return Table("loss_comparison", f"{metric}: classification (rows) x regression loss (columns), mean ± std (n) over seeds", pd.DataFrame(rows), pd.DataFrame(nums))


# ----------------------------------------------------------------------------- the report


def reported_split(df: pd.DataFrame) -> str:
    """The split of the reported metrics of the (final, completed) runs: test, val or "test and val"."""
    part = df[df["final"]] if "final" in df else df
    splits = sorted(set(part.loc[part["status"] == "completed", "metrics_split"].dropna())) or ["val"]
    return " and ".join(sorted(splits, reverse=True))


def split_note(df: pd.DataFrame) -> str:
    """One sentence saying which split the numbers come from, and when selection used it too."""
    split, sel = reported_split(df), "final" in df and not df["final"].all()
    if split == "test":
        return "Metrics are on the held-out test split" + ("; settings were selected on the validation split." if sel else ".")
    same = " Selection and reporting used the same split (there is no test split), so the selected settings' numbers are optimistic." if sel else ""
    if split == "val":
        return "Metrics are on the validation split." + (same or " There is no held-out test split.")
    return "Metrics are on the test split for some runs and the validation split for others (runs without a test split)." + same


def comparison_tables(df: pd.DataFrame, metric: str, n_boot: int = 500, headline: bool = True, boot_seed: int = 0) -> list[Table]:
    """The fair comparison: headline with intervals and paired differences (when ``headline``),
    tuning candidates, metric against imbalance."""
    from ghmbench import comparison as C

    sels, boot, split = selections(df), C.Bootstrap(n_boot, boot_seed), reported_split(df)
    final = df[df["final"]]
    tables = []
    if headline:
        cells, nums = C.headline_table(df, metric, sels, boot, split)
        title = f"Headline: {split} {metric}, classification (rows) x regression (columns), mean [95% interval] (n) over seeds"
        notes = [
            "Intervals: Student t over seeds; a single run's is a bootstrap over test images (point ± 1.96 bootstrap standard errors)"
            + (f" (B = {n_boot})." if n_boot else " (off)."),
            split_note(df),
        ]
        if sels:
            notes.insert(0, f"Final runs: each loss's runs at the setting selected on validation {next(iter(sels.values())).metric}.")
        if nums.get("not_converged", pd.Series(dtype=bool)).any():
            notes.append(_CONVERGENCE_NOTE)
        tables.append(Table("headline", title, cells, nums, notes))
        cells, nums = C.differences_table(df, metric, boot)
        if not cells.empty:
            note = "Δ = A − B of the reported metric with its 95% interval; a verdict only when the interval excludes 0."
            tables.append(Table("differences", f"Paired differences of {split} {metric}", cells, nums, [note]))
    if sels:
        cells, nums = C.candidates_table(sels)
        tables.append(Table("candidates", "Tuning candidates per loss, scored on the validation split; selected in bold", cells, nums))
    settings = C.imbalance_columns(final, varying_columns(final))
    if settings:
        cells, nums = C.imbalance_table(df, metric, settings, boot)
        tables.append(Table("imbalance", f"{split} {metric} against the anchors' negative:positive ratio, mean [95% interval] (n)", cells, nums))
    return tables


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
    tables = [summary_table(df, group_by, metrics)]
    comparison = loss_comparison_table(df, metric)  # None or a skip note unless the final runs form a loss x regression grid
    tables += comparison_tables(df, metric, n_boot, headline=comparison is not None and not comparison.cells.empty)
    for table in (comparison, *(make(df, metric) for make in (ce_alpha_table, focal_grid_table, ghm_ablation_table))):
        if table is not None:
            tables.append(table)
    return tables


def write_report(df: pd.DataFrame, tables: list[Table], out: Path, figures: list[Path], sources: list[Path]) -> Path:
    """Write runs.csv / runs.parquet, each table as .md / .tex / .csv, and report.md."""
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "runs.csv", index=False)
    df.astype({c: str for c in df.columns if df[c].dtype == object}).to_parquet(out / "runs.parquet", index=False)
    parts = [
        "# ghmbench report\n",
        f"{len(df)} runs from {', '.join(str(s) for s in sources)}: "
        + ", ".join(f"{n} {s}" for s, n in df["status"].value_counts().items())
        + (f"; {len(df.attrs['skipped'])} unreadable metrics.json skipped" if df.attrs.get("skipped") else "")
        + ". Cells: mean ± std over seeds (number of completed runs) unless a table says otherwise; best value per column in bold.\n",
        split_note(df) + "\n",
    ]
    for t in tables:
        if not t.cells.empty:
            (out / f"{t.name}.md").write_text(t.markdown())
            (out / f"{t.name}.tex").write_text(t.latex())
            t.numbers.to_csv(out / f"{t.name}.csv", index=False)
        parts.append(t.markdown() if not t.cells.empty else f"### {t.title}\n\n" + "\n".join(t.notes) + "\n")
    if figures:
        parts.append("### Figures\n\n" + "\n".join(f"![{p.stem}]({p.name})" for p in figures) + "\n")
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
) -> Report:
    """``ghmbench report``: read the run records under ``paths`` and write the tables, figures
    and report.md to ``out`` (default: ``<first path>/report``). Also ``ghmbench.report(paths)``.

    Args:
        paths: runs folders (or run folders).
        metric: the metric of the paper-shaped tables and figures.
        group_by: the summary table's columns (a list or ``"loss,loss.gamma"``; default: loss,
            regression and every config key that varies).
        bootstrap: image bootstrap replicates for single-run intervals (0 = off).

    Raises:
        ReportError: no records, a bad option, or records of different protocols.
    """
    from ghmbench.figures import make_figures

    sources = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)] or [Path("runs")]
    out_dir = Path(out) if out is not None else sources[0] / "report"
    columns = [c.strip() for c in group_by.split(",") if c.strip()] if isinstance(group_by, str) else group_by
    df, hists = load_runs(sources)
    tables = build_tables(df, metric, columns or None, bootstrap)
    figures = make_figures(df, hists, metric, out_dir, tables)
    path = write_report(df, tables, out_dir, figures, sources)
    return Report(df, {t.name: t for t in tables}, figures, path)


class _CallableModule(types.ModuleType):
    """This module, callable: ``ghmbench.report(paths, ...)`` is :func:`make_report` (``ghmbench.report``
    is both the Python entry point and the module, whose names import as before)."""

    def __call__(self, *args, **kwargs) -> Report:
        return make_report(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
