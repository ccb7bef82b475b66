"""The fair loss comparison's tables: headline (with intervals), tuning candidates, paired
differences and metric against anchor imbalance.

They read the report's run table (:func:`ghmbench.reporting.run_table.load_runs`): the ``final`` column marks
the runs at each loss's selected setting (every run when the runs are not a protocol sweep), the
metric columns hold the reported split's numbers, ``rise`` the convergence check, and
``eval_detections`` / ``eval_ground_truth`` the files the image bootstrap needs.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ghmbench.reporting import published
from ghmbench.reporting.cells import fmt_interval
from ghmbench.reporting.convergence import mean_rise, still_rising
from ghmbench.reporting.intervals import (
    ImageEval,
    Interval,
    bootstrap_values,
    paired_difference,
    se_interval,
    t_interval,
)
from ghmbench.reporting.run_table import (
    LOSS_ORDER,
    REG_ORDER,
    label_columns,
    loss_label,
    order_key,
    regression_label,
    sort_rows,
)
from ghmbench.reporting.tables import best_loss_cell, loss_grid
from ghmbench.store.fields import COMPLETE_STATUSES, COMPLETED, DIVERGED
from ghmbench.sweep.selection import Selection


class Bootstrap:
    """Image bootstrap of single runs, each run matched once and its replicates computed once.

    Args:
        n_boot: replicates (0 = no bootstrap).
        seed: seed of the resamples; runs on the same images share them, so differences are paired.
    """

    def __init__(self, n_boot: int = 500, seed: int = 0):
        self.n_boot, self.seed = n_boot, seed
        self._evals: dict[tuple, ImageEval] = {}
        self._values: dict[tuple, np.ndarray] = {}

    def available(self, run: pd.Series) -> bool:
        """True when the bootstrap is on and the run has its evaluation files."""
        return (
            self.n_boot > 0
            and isinstance(run.get("eval_detections"), str)
            and isinstance(run.get("eval_ground_truth"), str)
        )

    def _eval(self, run: pd.Series) -> ImageEval:
        key = (run["eval_detections"], run["eval_ground_truth"])
        if key not in self._evals:
            self._evals[key] = ImageEval(json.loads(Path(key[1]).read_text()), json.loads(Path(key[0]).read_text()))
        return self._evals[key]

    def _replicates(self, run: pd.Series, metric: str) -> np.ndarray:
        key = (run["eval_detections"], metric)
        if key not in self._values:
            self._values[key] = bootstrap_values(self._eval(run), self.n_boot, self.seed, metric)
        return self._values[key]

    def interval(self, run: pd.Series, metric: str) -> Interval:
        """The run's metric (as recorded) with its bootstrap interval (normal, standard error)."""
        return se_interval(float(run[metric]), self._replicates(run, metric), bounds=(0.0, 1.0))

    def difference(self, a: pd.Series, b: pd.Series, metric: str) -> Interval | None:
        """a - b with the interval over the same image resamples; None on different images."""
        return self.contrast([a, b], [1.0, -1.0], metric)

    def contrast(self, runs: list[pd.Series], weights: list[float], metric: str) -> Interval | None:
        """The weighted sum of the runs' metric (e.g. a difference of differences) with its interval over
        the same image resamples; None when the runs were not evaluated on the same images."""
        ids = self._eval(runs[0]).image_ids
        if any(not np.array_equal(self._eval(r).image_ids, ids) for r in runs[1:]):
            return None
        point = sum(w * float(r[metric]) for r, w in zip(runs, weights))
        return se_interval(point, sum(w * self._replicates(r, metric) for r, w in zip(runs, weights)))


def _done(part: pd.DataFrame, metric: str) -> pd.DataFrame:
    return part[(part["status"] == COMPLETED) & part[metric].notna()]


def cell_interval(part: pd.DataFrame, metric: str, boot: Bootstrap) -> Interval:
    """Mean and 95% interval over the configuration's seeds; the image bootstrap for a single run."""
    done = _done(part, metric)
    if len(done) == 1 and boot.available(done.iloc[0]):
        return boot.interval(done.iloc[0], metric)
    return t_interval(done[metric])


def headline_table(df: pd.DataFrame, metric: str, selections: dict[str, Selection], boot: Bootstrap, split: str):
    """Classification (rows) x regression (columns) over the final runs, intervals in the cells.

    Returns:
        (cells, numbers, best): string cells, one numbers row per cell, and the best-cell mask
        (True at the best mean).
    """
    final = df[df["final"]]

    def cell(part: pd.DataFrame) -> tuple[str, dict]:
        iv = cell_interval(part, metric, boot)
        rise = mean_rise(part.loc[part["status"] == COMPLETED, "rise"] if "rise" in part else [])
        flag = still_rising(rise)
        div, fail = int((part["status"] == DIVERGED).sum()), int((~part["status"].isin(COMPLETE_STATUSES)).sum())
        text = fmt_interval(iv, len(part), div, fail) + (" not converged" if flag else "")
        numbers = {"split": split, "mean": iv.mean, "lo": iv.lo, "hi": iv.hi, "n": iv.n, "interval": iv.method}
        return text, numbers | {"rise": rise, "not_converged": flag}

    def trailing(loss: str) -> dict:
        row = {}
        if selections:
            row[f"selected on val {next(iter(selections.values())).metric}"] = (
                selections[loss].describe() if loss in selections else "-"
            )
        return row | published.ghm_comparison_column(loss)

    cells, numbers = loss_grid(final, cell, trailing)
    return cells, numbers, best_loss_cell(cells, numbers)


def candidates_table(selections: dict[str, Selection]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Every tuning candidate of every loss with its validation metric; the selected one marked.

    Returns:
        (cells, numbers, best): the best-cell mask is True at the selected candidates' metric.
    """
    frames = [s.candidates.assign(loss=loss) for loss, s in selections.items()]
    numbers = pd.concat(frames, ignore_index=True)
    axes = next(iter(selections.values())).axes  # one protocol: every loss is tuned on the same axes
    numbers = sort_rows(numbers[["loss", *[c for c in numbers.columns if c != "loss"]]], ["loss", *axes])
    col = next(c for c in numbers.columns if c.startswith("val_"))
    cells = label_columns(numbers[["loss", *axes]]).astype(object)
    for c in axes:
        cells[c] = cells[c].map(lambda v: f"{v:g}" if isinstance(v, float) else str(v))
    cells[col] = numbers[col].map(lambda v: "-" if pd.isna(v) else f"{v:.3f}")
    cells[col] = np.where(numbers["selected"], cells[col] + " (selected)", cells[col])
    cells["runs"] = [f"{n}/{runs}" for n, runs in zip(numbers["n"], numbers["runs"])]  # scored / launched
    best_cells = pd.DataFrame(False, index=cells.index, columns=cells.columns)
    best_cells[col] = numbers["selected"].astype(bool).to_numpy()
    return cells, numbers, best_cells


def compare(a: pd.DataFrame, b: pd.DataFrame, metric: str, boot: Bootstrap) -> tuple[Interval | None, str]:
    """a - b: paired by seed with >= 2 common seeds, else a paired image bootstrap of one run each.

    Returns:
        (difference or None, how it was paired).
    """
    a, b = _done(a, metric), _done(b, metric)
    sa, sb = dict(zip(a["seed"], a[metric])), dict(zip(b["seed"], b[metric]))
    common = sorted(set(sa) & set(sb))
    if len(common) >= 2:
        return paired_difference(sa, sb), f"paired by seed (n={len(common)})"
    if a.empty or b.empty:
        return None, "no completed runs"
    ra = a[a["seed"] == common[0]].iloc[0] if common else a.iloc[0]
    rb = b[b["seed"] == common[0]].iloc[0] if common else b.iloc[0]
    if not (boot.available(ra) and boot.available(rb)):
        return None, "single runs without evaluation files"
    diff = boot.difference(ra, rb, metric)
    if diff is None:
        return None, "single runs on different images"
    return diff, f"paired image bootstrap (B={boot.n_boot}; seeds {ra['seed']} / {rb['seed']})"


def difference_text(mean: float, lo: float, hi: float) -> str:
    """A paired difference as the differences table writes it, "+0.048 [+0.019, +0.078]"; without
    the interval when it is NaN (one pair of seeds)."""
    return f"{mean:+.3f}" + (f" [{lo:+.3f}, {hi:+.3f}]" if not math.isnan(lo) else "")


def differences_table(df: pd.DataFrame, metric: str, boot: Bootstrap) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every pair of classification losses under each regression, and GHM-R - smooth L1 under
    each classification loss: mean paired difference, 95% interval, verdict. Losses by their
    display names (:func:`loss_label`, :func:`regression_label`), in the CSV too."""
    final = df[df["final"]]
    losses = sorted(final["loss"].unique(), key=lambda v: LOSS_ORDER.get(v, 99))
    regs = sorted(final["regression"].unique(), key=lambda r: REG_ORDER.get(r, 99))
    pairs = []  # (name a, name b, under, frame a, frame b)
    for reg in regs:
        at = final[final["regression"] == reg]
        for lo_loss, hi_loss in itertools.combinations(losses, 2):
            a, b = at[at["loss"] == hi_loss], at[at["loss"] == lo_loss]
            pairs.append((loss_label(hi_loss), loss_label(lo_loss), f"regression {regression_label(reg)}", a, b))
    if "ghm" in regs and "smooth_l1" in regs:
        for loss in losses:
            at = final[final["loss"] == loss]
            a, b = at[at["regression"] == "ghm"], at[at["regression"] == "smooth_l1"]
            pairs.append(
                (regression_label("ghm"), regression_label("smooth_l1"), f"classification {loss_label(loss)}", a, b)
            )
    rows, nums = [], []
    for name_a, name_b, under, a, b in pairs:
        if a.empty or b.empty:
            continue
        diff, how = compare(a, b, metric, boot)
        text = "-" if diff is None else difference_text(diff.mean, diff.lo, diff.hi)
        verdict = "-" if diff is None else diff.verdict(name_a, name_b)
        rows.append(
            {"A − B": f"{name_a} − {name_b}", "under": under, f"Δ{metric}": text, "paired": how, "verdict": verdict}
        )
        nums.append(
            {"a": name_a, "b": name_b, "under": under}
            | ({} if diff is None else {"mean": diff.mean, "lo": diff.lo, "hi": diff.hi, "n": diff.n})
            | {"paired": how, "verdict": verdict}
        )
    return pd.DataFrame(rows), pd.DataFrame(nums)


LABEL_NOISE_KEYS = ("dataset.unannotated_rate", "dataset.class_noise")
"""Dataset settings that corrupt the training labels: the label-noise table's axes, not imbalance settings."""


def imbalance_columns(df: pd.DataFrame, varying: list[str]) -> list[str]:
    """The dataset settings that vary among runs carrying an anchor neg:pos ratio ([] otherwise), label noise aside."""
    if "neg_per_pos" not in df or df["neg_per_pos"].isna().all():
        return []
    return [c for c in varying if c.startswith("dataset.") and c not in LABEL_NOISE_KEYS]


def imbalance_table(
    df: pd.DataFrame, metric: str, settings: list[str], boot: Bootstrap | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Metric (mean [95% CI] (n)) per loss x dataset setting, with the anchor negative:positive ratio.

    A setting with a single run gets the image bootstrap's interval when ``boot`` is given.
    """
    final = df[df["final"] & df["neg_per_pos"].notna()]
    keys = ["loss", "regression", *settings]
    rows, nums = [], []
    for key, part in final.groupby(keys, dropna=False, sort=False):
        iv = cell_interval(part, metric, boot) if boot is not None else t_interval(_done(part, metric)[metric])
        ratio = float(part["neg_per_pos"].mean())
        setting = dict(zip(keys, key))
        rows.append(
            {**{k: str(v) for k, v in setting.items()}, "neg:pos": f"{ratio:.0f}", metric: fmt_interval(iv, len(part))}
        )
        nums.append({**setting, "neg_per_pos": ratio, "mean": iv.mean, "lo": iv.lo, "hi": iv.hi, "n": iv.n})
    numbers = pd.DataFrame(nums).sort_values(["loss", "regression", "neg_per_pos"], key=order_key)
    cells = label_columns(pd.DataFrame(rows).loc[numbers.index]).reset_index(drop=True)
    return cells, numbers.reset_index(drop=True)
