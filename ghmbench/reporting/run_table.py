"""The report's run table: one row per run record (identity, status, metrics, flattened semantic
config), and its aggregation over seeds.

Also the papers' order of the losses (:data:`LOSS_ORDER`, :data:`REG_ORDER`) and their display
names (:func:`loss_label`, :func:`regression_label`: "ghm" is GHM-C as a classification loss and
GHM-R as a box regression loss), shared by the tables, the fair comparison and the figures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from ghmbench.reporting.convergence import convergence_rise, mean_rise
from ghmbench.store.fields import COMPLETE_STATUSES, COMPLETED, DIVERGED, METRICS
from ghmbench.store.records import METRICS_FILE, flat_config, protocol_column, semantic_config, validation_columns
from ghmbench.sweep.selection import ProtocolError, Selection, final_mask, select_settings

RUN_COLUMNS = [
    "run_key",
    "run_dir",
    "loss",
    "regression",
    "seed",
    "status",
    "diverged_at_step",
    "epochs_done",
    "wall_time_s",
]
LOSS_ORDER = {"ce": 0, "focal": 1, "ghm": 2, "qfl": 3, "vfl": 4}
REG_ORDER = {"smooth_l1": 0, "l1": 1, "ghm": 2, "giou": 3}
LOSS_LABELS = {"ce": "CE", "focal": "Focal", "ghm": "GHM-C", "qfl": "QFL", "vfl": "VFL"}
REG_LABELS = {"smooth_l1": "smooth L1", "l1": "L1", "ghm": "GHM-R", "giou": "GIoU"}


def loss_label(key: object) -> str:
    """A classification loss's display name ("GHM-C" for ``ghm``); a loss of one's own keeps its name."""
    return LOSS_LABELS.get(str(key), str(key))


def regression_label(key: object) -> str:
    """A box regression loss's display name ("GHM-R" for ``ghm``, "smooth L1" for ``smooth_l1``)."""
    return REG_LABELS.get(str(key), str(key))


def label_columns(cells: pd.DataFrame) -> pd.DataFrame:
    """Table cells with their ``loss`` and ``regression`` columns in display names (CSV numbers keep the keys)."""
    labelled = cells.copy()
    for column, label in (("loss", loss_label), ("regression", regression_label)):
        if column in labelled:
            labelled[column] = labelled[column].map(label)
    return labelled


class ReportError(ValueError):
    """Nothing to report, or a bad option; the message is one line."""


# ----------------------------------------------------------------------------- loading


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
            print(
                f"warning: {file}: unreadable run record ({type(e).__name__}: {str(e).splitlines()[0][:80]}), skipped",
                file=sys.stderr,
            )
            if skipped is not None:
                skipped.append(file)
            continue
        out.append((file, record))
    return out


def _record_row(file: Path, record: dict, cfg: dict) -> dict:
    """The run table's row of one record (see :func:`load_runs`); ``cfg``: its semantic config."""
    row = {c: record.get(c) for c in RUN_COLUMNS}
    row["run_dir"] = str(file.parent)
    row.update({m: (record.get("metrics") or {}).get(m) for m in METRICS})
    row["metrics_split"] = record.get("metrics_split") or "val"
    row.update(validation_columns(record))
    row["steps"] = record.get("steps")
    row["rise"] = convergence_rise(record.get("curve"), record.get("steps"))
    anchors = record.get("anchors") or {}
    row["neg_per_pos"], row["pos_per_image"] = anchors.get("neg_per_pos"), anchors.get("positive_per_image")
    files = record.get("eval_files") or {}
    for key in ("detections", "ground_truth"):
        path = file.parent / files[key] if files.get(key) else None
        row[f"eval_{key}"] = str(path) if path is not None and path.is_file() else None
    row["protocol"] = protocol_column(record)
    noisy = record.get("noisy_weight") or {}  # label noise: the gradient weight on mislabelled objects
    row["noisy_grad_share"], row["noisy_relative_weight"] = (
        noisy.get("noisy_grad_share"),
        noisy.get("noisy_relative_weight"),
    )
    flat = flat_config(cfg, ("loss", "regression", "model", "dataset", "train"))
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
        cfg = semantic_config(OmegaConf.create(record.get("config") or {}))
        rows.append(_record_row(file, record, cfg))
        hists[record["run_key"]] = {
            "g_hist": record.get("g_hist"),
            "config": cfg,
            "curve": record.get("curve"),
            "steps": record.get("steps"),
        }
    if not rows:
        raise ReportError(f"no run records (*/{METRICS_FILE}) under {', '.join(map(str, paths))}")
    df = pd.DataFrame(rows)
    for m in METRICS:
        df[m] = pd.to_numeric(df[m], errors="coerce")
        df[f"val_{m}"] = pd.to_numeric(df[f"val_{m}"], errors="coerce")
    for c in ("rise", "neg_per_pos", "pos_per_image", "noisy_grad_share", "noisy_relative_weight"):
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


def final_runs(df: pd.DataFrame) -> pd.DataFrame:
    """The runs a comparison reports: those at each loss's selected setting (every run without a protocol)."""
    return df[df["final"]] if "final" in df else df


def reported_split(df: pd.DataFrame) -> str:
    """The split of the reported metrics of the (final, completed) runs: test, val or "test and val"."""
    part = final_runs(df)
    splits = sorted(set(part.loc[part["status"] == COMPLETED, "metrics_split"].dropna())) or ["val"]
    return " and ".join(sorted(splits, reverse=True))


def order_key(col: pd.Series) -> pd.Series:
    """Sort key: losses and regressions in the papers' order, numbers by value, other columns as text."""
    order = {"loss": LOSS_ORDER, "regression": REG_ORDER}.get(str(col.name))
    if order:
        return col.map(lambda v: order.get(v, 99))
    numeric = pd.to_numeric(col, errors="coerce")
    return numeric if numeric.notna().sum() == col.notna().sum() else col.astype(str)


def sort_rows(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``frame`` sorted by ``keys`` (the papers' loss order, then each key by value; missing last)."""
    keys = [k for k in keys if k in frame]
    if frame.empty or not keys:
        return frame.reset_index(drop=True)
    return frame.sort_values(keys, key=order_key, na_position="last", kind="stable").reset_index(drop=True)


def fixed_data_note(df: pd.DataFrame) -> str | None:
    """What intervals over seeds cover when the runs' data is read from disk (fixed splits); None for
    the generated digits, whose reports say it where the draw follows the seed (protocol.seed_draws)."""
    names = sorted(set(df["dataset.name"].astype(str))) if "dataset.name" in df else []
    if not names or names == ["digits"]:
        return None
    return (
        f"Seeds on fixed data (dataset={', '.join(names)}): every seed trained on the same images, so intervals over "
        "seeds cover the training's randomness (initialisation, data order, augmentation), not the choice of images; "
        "protocol.seed_draws has no data draw to follow there."
    )


def varying_columns(df: pd.DataFrame) -> list[str]:
    """Config columns whose value differs between runs (seed excluded, and the data draw where it follows the seed)."""
    cfg_cols = [c for c in df.columns if "." in c]
    follows_seed = (
        "dataset.seed" in df and "seed" in df and bool((df["dataset.seed"].astype(str) == df["seed"].astype(str)).all())
    )
    return [c for c in cfg_cols if df[c].astype(str).nunique() > 1 and not (c == "dataset.seed" and follows_seed)]


# ----------------------------------------------------------------------------- aggregation


def summarize(df: pd.DataFrame, group_by: list[str], metrics: list[str]) -> pd.DataFrame:
    """Aggregate over seeds: per group (rows sorted by the group's keys), run counts by status and
    mean / std / n per metric.

    Mean and std are over completed runs (std with ddof 1, NaN for a single run); ``rise`` is
    their mean convergence rise (NaN without validation curves).
    """
    missing = [c for c in group_by if c not in df.columns]
    if missing:
        raise ReportError(f"--group-by {missing[0]!r} is not a column; allowed: {', '.join(_groupable(df))}")
    rows = []
    for key, part in df.groupby(group_by, dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        done = part[part["status"] == COMPLETED]
        row = dict(zip(group_by, key))
        row |= {
            "runs": len(part),
            "completed": len(done),
            "diverged": int((part["status"] == DIVERGED).sum()),
            "failed": int((~part["status"].isin(COMPLETE_STATUSES)).sum()),
            "seeds": ",".join(str(s) for s in sorted(part["seed"].dropna().astype(int))),
        }
        for m in metrics:
            values = done[m].dropna()
            row[f"{m}_mean"] = values.mean() if len(values) else np.nan
            row[f"{m}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
            row[f"{m}_n"] = len(values)
        row["rise"] = mean_rise(done["rise"]) if "rise" in done else np.nan
        rows.append(row)
    return sort_rows(pd.DataFrame(rows), group_by)


def _groupable(df: pd.DataFrame) -> list[str]:
    return ["loss", "regression", "seed", *[c for c in df.columns if "." in c]]
