"""The label-noise report: each loss's test metric against the share of corrupted training labels
(missing annotations, wrong classes), its drop from the clean run, and the gradient weight the loss
gave the mislabelled objects' anchors over training (:mod:`ghmbench.detection.noisy_weight`)."""

from __future__ import annotations

import math

import pandas as pd

from ghmbench.reporting.cells import fmt_interval
from ghmbench.reporting.comparison import LABEL_NOISE_KEYS, Bootstrap
from ghmbench.reporting.run_table import LOSS_ORDER, loss_label
from ghmbench.reporting.settings import delta_columns, fmt_delta
from ghmbench.reporting.tables import Table
from ghmbench.store.fields import COMPLETED

NOISE_KINDS = dict(zip(LABEL_NOISE_KEYS, ("missing annotations", "wrong classes")))


def noise_runs(df: pd.DataFrame) -> pd.DataFrame | None:
    """The completed seed-0 runs of a label-noise sweep with a ``noise`` (kind) and ``level`` column
    (clean runs: level 0 of every kind); None unless some runs have label noise."""
    part = df[(df["status"] == COMPLETED) & (df["seed"] == 0)].copy()
    for key in NOISE_KINDS:
        part[key] = pd.to_numeric(part[key], errors="coerce").fillna(0.0) if key in part else 0.0
    noisy = sum((part[key] > 0).astype(int) for key in NOISE_KINDS)
    if not (noisy == 1).any():
        return None
    part = part[noisy <= 1]  # one kind of noise at a time
    part["noise"] = [
        next((kind for key, kind in NOISE_KINDS.items() if row[key] > 0), "clean") for _, row in part.iterrows()
    ]
    part["level"] = [max(row[key] for key in NOISE_KINDS) for _, row in part.iterrows()]
    return part


def curves(runs: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """(loss, noise kind) -> its runs by level, the clean run first (level 0)."""
    out = {}
    for loss in sorted(runs["loss"].unique(), key=lambda x: LOSS_ORDER.get(x, 99)):
        mine = runs[runs["loss"] == loss]
        clean = mine[mine["noise"] == "clean"].head(1)
        for kind in NOISE_KINDS.values():
            noisy = mine[mine["noise"] == kind].drop_duplicates("level").sort_values("level")
            if len(noisy):
                out[(loss, kind)] = pd.concat([clean, noisy])
    return out


def noise_table(df: pd.DataFrame, metric: str, boot: Bootstrap) -> Table | None:
    """Loss x noise kind x level: test metric, difference from the clean run, gradient weight on the mislabelled."""
    runs = noise_runs(df)
    if runs is None:
        return None
    rows, nums = [], []
    for (loss, kind), part in curves(runs).items():
        clean = part.iloc[0] if part.iloc[0]["level"] == 0 else None
        for _, run in part.iterrows():
            iv = boot.interval(run, metric) if boot.available(run) else None
            delta = (
                boot.difference(run, clean, metric)
                if clean is not None and run["level"] > 0 and boot.available(run)
                else None
            )
            share, relative = run.get("noisy_grad_share"), run.get("noisy_relative_weight")
            rows.append(
                {
                    "loss": loss_label(loss),
                    "label noise": kind,
                    "level": f"{run['level']:.0%}",
                    f"test {metric}": fmt_interval(iv) if iv else f"{run[metric]:.3f}",
                    "Δ vs clean": fmt_delta(delta) if delta else "-",
                    "gradient share on mislabelled": _pct(share),
                    "weight per mislabelled anchor / clean positive": _num(relative),
                }
            )
            nums.append(
                {
                    "loss": loss,
                    "noise": kind,
                    "level": run["level"],
                    metric: run[metric],
                    "lo": iv.lo if iv else math.nan,
                    "hi": iv.hi if iv else math.nan,
                    **delta_columns(delta),
                    "noisy_grad_share": share,
                    "noisy_relative_weight": relative,
                    "rise": run["rise"],
                    "epochs": run.get("train.epochs"),
                }
            )
    title = (
        f"Label noise (training labels only): test {metric} [95% interval] by loss, kind and share of corrupted "
        "labels, and the gradient weight on the mislabelled objects' anchors"
    )
    notes = [
        "Intervals: bootstrap over the clean test images (one seed per cell); Δ vs clean is paired image by image "
        "with the loss's clean run.",
        "Gradient share: the share of the classification loss's gradient |dL/dx| (summed over training) that reached "
        "the anchors of mislabelled objects. "
        "Weight per anchor: a mislabelled object's anchor's mean gradient over a correctly labelled positive anchor's "
        "(1 = alike, below 1 = down-weighted).",
    ]
    return Table("label_noise", title, pd.DataFrame(rows), pd.DataFrame(nums), notes)


def _pct(value: object) -> str:
    return "-" if value is None or pd.isna(value) else f"{float(value):.1%}"


def _num(value: object) -> str:
    return "-" if value is None or pd.isna(value) else f"{float(value):.2f}"


__all__ = ["NOISE_KINDS", "curves", "noise_runs", "noise_table"]
