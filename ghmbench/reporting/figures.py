"""Report figures (matplotlib, PNG) of the comparisons: AP against gamma, the loss comparison,
validation learning curves, metric against anchor imbalance, the settings heatmaps and the label-noise
curves. Each returns a :class:`Figure`: its file and the caption report.md shows under it (what is
drawn, on which split, at which schedule, and what the error bars are). The GHM paper's gradient
figures are in :mod:`.gradient_figures`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ghmbench.reporting.intervals import t_interval
from ghmbench.reporting.run_table import (
    LOSS_ORDER,
    REG_ORDER,
    final_runs,
    loss_label,
    regression_label,
    reported_split,
)

COLORS = {"ce": "tab:blue", "focal": "tab:orange", "ghm": "tab:green", "qfl": "tab:red", "vfl": "tab:purple"}
INTERVALS = "95% intervals: Student t over seeds; for a single run, a bootstrap over the test images"


@dataclass(frozen=True)
class Figure:
    """A written figure and its caption."""

    path: Path
    caption: str


def plural(n: int, word: str) -> str:
    """``"1 seed"``, ``"3 seeds"``."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def per_point(seeds: int) -> str:
    """``"one seed per point"``, ``"up to 3 seeds per point"``."""
    return "one seed per point" if seeds <= 1 else f"up to {seeds} seeds per point"


def schedule_text(values: pd.Series | None) -> str:
    """``"36 epochs"`` when every run shares one schedule, ``"12-36 epochs"`` otherwise ("" unknown)."""
    epochs = sorted({int(v) for v in pd.to_numeric(values, errors="coerce").dropna()}) if values is not None else []
    if not epochs:
        return ""
    return f"{epochs[0]} epochs" if len(epochs) == 1 else f"{epochs[0]}-{epochs[-1]} epochs"


def _schedule(values: pd.Series | None) -> str:
    """``", 36 epochs"`` to append to a title or label (see :func:`schedule_text`); "" when unknown."""
    epochs = schedule_text(values)
    return f", {epochs}" if epochs else ""


def sentence(text: str) -> str:
    """``"test AP"`` -> ``"Test AP"``: the first letter raised, the rest kept (str.capitalize lowers "AP")."""
    return text[:1].upper() + text[1:]


def _split(df: pd.DataFrame) -> str:
    """The split the runs' metrics come from, spelled out ("test", "validation", or both)."""
    return reported_split(df).replace("val", "validation")


def _context(df: pd.DataFrame, metric: str) -> str:
    """``"test AP, 36 epochs"``: the split, metric and schedule a figure's y axis shows."""
    return f"{_split(df)} {metric}{_schedule(df.get('train.epochs'))}"


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(plt, fig, path: Path, caption: str) -> Figure:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Figure(path, caption)


def _dodge(k: int, count: int, width: float) -> float:
    """Offset of the k-th of ``count`` series drawn at the same x, so their error bars sit side by side."""
    return (k - (count - 1) / 2) * width


def _errors(mean: pd.Series, lo: pd.Series, hi: pd.Series) -> np.ndarray:
    """Asymmetric error bar lengths (0 where an interval is missing)."""
    return np.nan_to_num(np.array([mean - lo, hi - mean], dtype=float).clip(min=0))


def ap_vs_gamma(df: pd.DataFrame, metric: str, out: Path) -> Figure | None:
    """Focal runs: metric against gamma, one line per alpha (dodged), 95% t intervals over seeds."""
    part = df[(df["loss"] == "focal") & df[metric].notna()]
    if part.empty or part["loss.gamma"].nunique() < 2:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    alphas = sorted(part["loss.alpha"].unique())
    for k, alpha in enumerate(alphas):
        cells = [(g, t_interval(sub[metric])) for g, sub in part[part["loss.alpha"] == alpha].groupby("loss.gamma")]
        x = np.array([g for g, _ in cells]) + _dodge(k, len(alphas), 0.04)
        mean = pd.Series([iv.mean for _, iv in cells])
        err = _errors(mean, pd.Series([iv.lo for _, iv in cells]), pd.Series([iv.hi for _, iv in cells]))
        ax.errorbar(x, mean, yerr=err, marker="o", capsize=3, label=f"α = {alpha:g}")
    seeds = int(part.groupby(["loss.gamma", "loss.alpha"]).size().max())
    ax.set_xlabel("γ")
    ax.set_ylabel(_context(part, metric))
    ax.set_title(f"Focal loss: {metric} against γ ({per_point(seeds)})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    caption = (
        f"Focal Loss {_context(part, metric)} against γ, one line per α, points side by side at each γ; "
        "error bars: 95% Student t intervals over seeds (none for a single seed)."
    )
    return save(plt, fig, out / "ap_vs_gamma.png", caption)


def loss_comparison(df: pd.DataFrame, numbers: pd.DataFrame, metric: str, out: Path) -> Figure | None:
    """Grouped bars: metric per classification loss, one bar per regression loss, with the headline
    table's 95% intervals (``numbers``: its rows ``loss``, ``regression``, ``mean``, ``lo``, ``hi``, ``n``)."""
    if numbers.empty or numbers["loss"].nunique() < 2:
        return None
    losses = sorted(numbers["loss"].unique(), key=lambda v: LOSS_ORDER.get(v, 99))
    regs = sorted(numbers["regression"].unique(), key=lambda v: REG_ORDER.get(v, 99))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.8 / len(regs)
    for j, reg in enumerate(regs):
        sub = numbers[numbers["regression"] == reg].set_index("loss").reindex(losses)
        x = np.arange(len(losses)) + _dodge(j, len(regs), width)
        err = _errors(sub["mean"], sub["lo"], sub["hi"])
        ax.bar(x, sub["mean"].fillna(0), width, yerr=err, capsize=4, label=f"boxes: {regression_label(reg)}")
    final = final_runs(df)
    seeds = int(numbers["n"].max())
    ax.set_xticks(np.arange(len(losses)), [loss_label(v) for v in losses])
    ax.set_ylabel(_context(final, metric))
    ax.set_title(f"{sentence(_split(final))} {metric} by loss: mean of {plural(seeds, 'seed')}, 95% intervals")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    caption = (
        f"The headline table as bars: {_context(final, metric)} per classification loss (groups) and box regression "
        f"loss (bars), each loss at its selected setting; {INTERVALS}."
    )
    return save(plt, fig, out / "loss_comparison.png", caption)


def learning_curves(df: pd.DataFrame, hists: dict[str, dict], out: Path, metric: str = "AP") -> Figure | None:
    """Validation metric against training step of the final runs: per classification loss the
    mean over seeds (line) and their min-max (band); one panel per regression loss."""
    final = final_runs(df)
    curves = {
        k: [(p["step"], p.get(metric)) for p in (hists.get(k, {}).get("curve") or []) if p.get(metric) is not None]
        for k in final["run_key"]
    }
    final = final[final["run_key"].map(lambda k: len(curves.get(k, [])) >= 2)]
    if final.empty:
        return None
    regs = sorted(final["regression"].unique(), key=lambda v: REG_ORDER.get(v, 99))
    plt = pyplot()
    fig, axes = plt.subplots(1, len(regs), figsize=(5 * len(regs), 4), squeeze=False, sharey=True)
    for ax, reg in zip(axes[0], regs):
        part = final[final["regression"] == reg]
        for loss in sorted(part["loss"].unique(), key=lambda v: LOSS_ORDER.get(v, 99)):
            runs = [np.array(sorted(curves[k]), dtype=float) for k in part.loc[part["loss"] == loss, "run_key"]]
            steps = np.unique(np.concatenate([r[:, 0] for r in runs]))
            ys = np.array([np.interp(steps, r[:, 0], r[:, 1]) for r in runs])
            color = COLORS.get(loss)
            label = f"{loss_label(loss)} ({plural(len(runs), 'seed')})"
            ax.plot(steps, np.nanmean(ys, axis=0), color=color, label=label)
            ax.fill_between(steps, np.nanmin(ys, axis=0), np.nanmax(ys, axis=0), color=color, alpha=0.2)
        if pd.to_numeric(part["steps"], errors="coerce").notna().any():
            ax.axvline(0.75 * float(pd.to_numeric(part["steps"]).max()), color="gray", ls=":", lw=1)
        ax.set_title(f"boxes: {regression_label(reg)}")
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel(f"validation {metric}")
    schedule = _schedule(final.get("train.epochs"))
    fig.suptitle(f"Learning curves{schedule}: mean over seeds, band min-max; dotted: 75% of training", fontsize=10)
    epochs = schedule_text(final.get("train.epochs"))
    caption = (
        f"Validation {metric} during training of the final runs ({epochs or 'their schedule'}), one panel per box "
        "regression loss: the line is the mean over seeds, the band their range (min to max). The convergence check "
        "compares the end with the dotted line (75% of training)."
    )
    return save(plt, fig, out / "learning_curves.png", caption)


def imbalance(numbers: pd.DataFrame, df: pd.DataFrame, metric: str, out: Path) -> Figure | None:
    """Metric against the anchors' negative:positive ratio (log x), one line per loss (and
    regression), dodged 95% interval error bars; ``numbers`` is the imbalance table's numbers."""
    if numbers.empty:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    several = numbers["regression"].nunique() > 1
    groups = list(numbers.groupby(["loss", "regression"], sort=False))
    for k, ((loss, reg), sub) in enumerate(groups):
        sub = sub.sort_values("neg_per_pos")
        x = sub["neg_per_pos"] * 10 ** _dodge(k, len(groups), 0.02)  # side by side on the log axis
        label = loss_label(loss) + (f" + {regression_label(reg)}" if several else "")
        color = None if several else COLORS.get(loss)
        err = _errors(sub["mean"], sub["lo"], sub["hi"])
        ax.errorbar(x, sub["mean"], yerr=err, marker="o", capsize=3, color=color, label=label)
    final = final_runs(df)
    seeds = int(numbers["n"].max())
    ax.set_xscale("log")
    ax.set_xlabel("negative : positive anchors (training, log scale)")
    ax.set_ylabel(_context(final, metric))
    ax.set_title(f"{metric} against anchor imbalance: {per_point(seeds)}, 95% intervals", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    caption = (
        f"{sentence(_context(final, metric))} against the training anchors' negative:positive ratio (log scale), "
        f"one line per loss, points side by side at each ratio; {INTERVALS}."
    )
    return save(plt, fig, out / "imbalance.png", caption)


def settings_heatmap(numbers: pd.DataFrame, grid, metric: str, out: Path) -> Figure | None:
    """A settings grid's test metric as a heatmap (``settings.grid_table``'s numbers): each cell's value
    written in it, the cell selected on validation framed, the papers' default starred."""
    if numbers.empty:
        return None
    plt = pyplot()
    rows, cols = sorted(numbers[grid.rows].unique()), sorted(numbers[grid.cols].unique())
    values = np.full((len(rows), len(cols)), np.nan)
    for _, r in numbers.iterrows():
        values[rows.index(r[grid.rows]), cols.index(r[grid.cols])] = r[metric]
    fig, ax = plt.subplots(figsize=(1.3 * len(cols) + 2.2, 0.8 * len(rows) + 1.8))
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    for _, r in numbers.iterrows():
        i, j = rows.index(r[grid.rows]), cols.index(r[grid.cols])
        text = f"{r[metric]:.3f}" + (" *" if r["default"] else "")
        color = "white" if r[metric] < np.nanmean(values) else "black"
        ax.text(j, i, text, ha="center", va="center", color=color, fontsize=9)
        if r["selected"]:
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
    rs, cs = grid.symbols
    ax.set_xticks(range(len(cols)), [f"{c:g}" for c in cols])
    ax.set_yticks(range(len(rows)), [f"{r:g}" for r in rows])
    ax.set_xlabel(cs)
    ax.set_ylabel(rs)
    schedule = _schedule(numbers.get("epochs"))
    title = f"{grid.label}: test {metric}, one seed per cell{schedule}"
    title += "\nred frame: selected on validation; *: the papers' default"
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label=f"test {metric}")
    caption = (
        f"{grid.label}: test {metric} of every {rs} x {cs} cell{schedule} (one seed each; the table beside gives each "
        "cell's 95% interval, a bootstrap over the test images). Red frame: the cell selected on validation; *: the "
        "papers' default."
    )
    return save(plt, fig, out / f"{grid.name}.png", caption)


def label_noise_figure(numbers: pd.DataFrame, metric: str, out: Path) -> Figure | None:
    """Test metric (top) and the weight per mislabelled anchor relative to a clean positive (bottom)
    against the share of corrupted training labels, one column per kind of noise, one line per loss."""
    if numbers.empty:
        return None
    plt = pyplot()
    kinds = list(dict.fromkeys(numbers["noise"]))
    fig, axes = plt.subplots(2, len(kinds), figsize=(5.2 * len(kinds), 7), squeeze=False, sharex="col")
    losses = list(dict.fromkeys(numbers["loss"]))
    for col, kind in enumerate(kinds):
        part = numbers[numbers["noise"] == kind]
        for k, loss in enumerate(losses):
            mine = part[part["loss"] == loss].sort_values("level")
            x = mine["level"].to_numpy() * 100 + _dodge(k, len(losses), 0.8)
            err = _errors(mine[metric], mine["lo"], mine["hi"])
            color, label = COLORS.get(loss), loss_label(loss)
            axes[0, col].errorbar(x, mine[metric], yerr=err, marker="o", capsize=3, color=color, label=label)
            noisy = mine[mine["level"] > 0]
            axes[1, col].plot(
                noisy["level"] * 100, noisy["noisy_relative_weight"], marker="o", color=color, label=label
            )
        axes[0, col].set_title(f"{kind} in the training labels")
        axes[0, col].set_ylabel(f"test {metric} (95% bootstrap over images)")
        axes[1, col].axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        axes[1, col].set_ylabel("gradient per mislabelled anchor\n/ per clean positive anchor")
        axes[1, col].set_xlabel("corrupted training labels (%)")
        axes[0, col].legend()
    schedule = _schedule(numbers.get("epochs"))
    fig.suptitle(f"Label noise: one seed per cell{schedule}, validation and test labels clean", fontsize=11)
    caption = (
        f"Top: test {metric} against the share of corrupted training labels (one seed per point{schedule}; 95% "
        "intervals: bootstrap over the test images; points side by side). Bottom: the gradient each loss gave a "
        "mislabelled object's anchor, relative to a correctly labelled positive anchor, summed over training (1: "
        "treated alike)."
    )
    return save(plt, fig, out / "label_noise.png", caption)
