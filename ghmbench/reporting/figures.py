"""Report figures (matplotlib, PNG): AP against gamma, the loss comparison, validation learning
curves, metric against anchor imbalance, and the GHM paper's two figures from this project's own
training: the gradient-norm distribution and the reweighted against the original gradient norm.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ghmbench.reporting.run_table import LOSS_ORDER, REG_ORDER, summarize
from ghmbench.reporting.settings import GRIDS
from ghmbench.store.fields import COMPLETED

COLORS = {"ce": "tab:blue", "focal": "tab:orange", "ghm": "tab:green"}
LABELS = {"ce": "CE", "focal": "Focal", "ghm": "GHM-C"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def ap_vs_gamma(df: pd.DataFrame, metric: str, out: Path) -> Path | None:
    """Focal runs: metric against gamma, one line per alpha, std error bars."""
    part = df[df["loss"] == "focal"]
    if part.empty or part["loss.gamma"].nunique() < 2:
        return None
    summary = summarize(part, ["loss.alpha", "loss.gamma"], [metric])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for alpha, sub in summary.groupby("loss.alpha"):
        sub = sub.sort_values("loss.gamma")
        ax.errorbar(
            sub["loss.gamma"],
            sub[f"{metric}_mean"],
            yerr=sub[f"{metric}_std"].fillna(0),
            marker="o",
            capsize=3,
            label=f"α = {alpha:g}",
        )
    ax.set_xlabel("γ")
    ax.set_ylabel(metric)
    ax.set_title(f"Focal loss: {metric} against γ")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, out / "ap_vs_gamma.png")


def loss_comparison(df: pd.DataFrame, metric: str, out: Path) -> Path | None:
    """Grouped bars: metric per classification loss, one bar per regression loss, std error bars (final runs)."""
    df = df[df["final"]] if "final" in df else df
    if df["loss"].nunique() < 2:
        return None
    summary = summarize(df, ["loss", "regression"], [metric])
    losses = sorted(summary["loss"].unique(), key=lambda v: LOSS_ORDER.get(v, 99))
    regs = sorted(summary["regression"].unique(), key=lambda v: REG_ORDER.get(v, 99))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.8 / len(regs)
    for j, reg in enumerate(regs):
        sub = summary[summary["regression"] == reg].set_index("loss").reindex(losses)
        x = np.arange(len(losses)) + (j - (len(regs) - 1) / 2) * width
        ax.bar(
            x,
            sub[f"{metric}_mean"].fillna(0),
            width,
            yerr=sub[f"{metric}_std"].fillna(0),
            capsize=4,
            label=f"reg: {reg}",
        )
    ax.set_xticks(np.arange(len(losses)), [LABELS.get(v, v) for v in losses])
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by loss (mean ± std over seeds)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(plt, fig, out / "loss_comparison.png")


def learning_curves(df: pd.DataFrame, hists: dict[str, dict], out: Path, metric: str = "AP") -> Path | None:
    """Validation metric against training step of the final runs: per classification loss the
    mean over seeds (line) and their min-max (band); one panel per regression loss."""
    final = df[df["final"]] if "final" in df else df
    curves = {
        k: [(p["step"], p.get(metric)) for p in (hists.get(k, {}).get("curve") or []) if p.get(metric) is not None]
        for k in final["run_key"]
    }
    final = final[final["run_key"].map(lambda k: len(curves.get(k, [])) >= 2)]
    if final.empty:
        return None
    regs = sorted(final["regression"].unique(), key=lambda v: REG_ORDER.get(v, 99))
    plt = _plt()
    fig, axes = plt.subplots(1, len(regs), figsize=(5 * len(regs), 4), squeeze=False, sharey=True)
    for ax, reg in zip(axes[0], regs):
        part = final[final["regression"] == reg]
        for loss in sorted(part["loss"].unique(), key=lambda v: LOSS_ORDER.get(v, 99)):
            runs = [np.array(sorted(curves[k]), dtype=float) for k in part.loc[part["loss"] == loss, "run_key"]]
            steps = np.unique(np.concatenate([r[:, 0] for r in runs]))
            ys = np.array([np.interp(steps, r[:, 0], r[:, 1]) for r in runs])
            color = COLORS.get(loss)
            ax.plot(steps, np.nanmean(ys, axis=0), color=color, label=f"{LABELS.get(loss, loss)} ({len(runs)} seeds)")
            ax.fill_between(steps, np.nanmin(ys, axis=0), np.nanmax(ys, axis=0), color=color, alpha=0.2)
        if pd.to_numeric(part["steps"], errors="coerce").notna().any():
            ax.axvline(0.75 * float(pd.to_numeric(part["steps"]).max()), color="gray", ls=":", lw=1)
        ax.set_title(f"regression: {reg}")
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel(f"validation {metric}")
    fig.suptitle("Learning curves (mean, min-max over seeds; dotted: 75% of training)", fontsize=10)
    return _save(plt, fig, out / "learning_curves.png")


def imbalance(numbers: pd.DataFrame, metric: str, out: Path) -> Path | None:
    """Metric against the anchors' negative:positive ratio (log x), one line per loss (and
    regression), 95% interval error bars; ``numbers`` is the imbalance table's numbers."""
    if numbers.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    several = numbers["regression"].nunique() > 1
    for (loss, reg), sub in numbers.groupby(["loss", "regression"], sort=False):
        sub = sub.sort_values("neg_per_pos")
        err = np.array([sub["mean"] - sub["lo"], sub["hi"] - sub["mean"]]).clip(min=0)
        label = LABELS.get(loss, loss) + (f" + {reg}" if several else "")
        ax.errorbar(
            sub["neg_per_pos"],
            sub["mean"],
            yerr=np.nan_to_num(err),
            marker="o",
            capsize=3,
            color=None if several else COLORS.get(loss),
            label=label,
        )
    ax.set_xscale("log")
    ax.set_xlabel("negative : positive anchors (training)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} against anchor imbalance (95% intervals)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(plt, fig, out / "imbalance.png")


def _mean_hist(df: pd.DataFrame, hists: dict[str, dict], loss: str) -> tuple[np.ndarray, dict] | None:
    """Average last-epoch g histogram (fractions) of one loss's completed runs, preferring smooth L1."""
    part = df[(df["loss"] == loss) & (df["status"] == COMPLETED)]
    if part.empty:
        return None
    preferred = part[part["regression"] == "smooth_l1"]
    part = preferred if not preferred.empty else part
    arrays = [np.asarray(hists[k]["g_hist"], dtype=float) for k in part["run_key"] if hists.get(k, {}).get("g_hist")]
    arrays = [a for a in arrays if a.sum() > 0 and len(a) == len(arrays[0])]
    if not arrays:
        return None
    frac = np.mean([a / a.sum() for a in arrays], axis=0)
    return frac, hists[part["run_key"].iloc[0]]["config"]


def gradient_norm_distribution(df: pd.DataFrame, hists: dict[str, dict], out: Path) -> Path | None:
    """Fraction of valid anchor x class entries against g = |p - y| at the end of training."""
    curves = {loss: h for loss in ("ce", "focal", "ghm") if (h := _mean_hist(df, hists, loss)) is not None}
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for loss, (frac, _) in curves.items():
        centers = (np.arange(len(frac)) + 0.5) / len(frac)
        ax.semilogy(centers, np.where(frac > 0, frac, np.nan), marker=".", color=COLORS[loss], label=LABELS[loss])
    ax.set_xlabel("gradient norm g = |p − p*|")
    ax.set_ylabel("fraction of entries")
    ax.set_title("Gradient norm distribution, last training epoch")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return _save(plt, fig, out / "gradient_norm_distribution.png")


def focal_reweighted(g: np.ndarray, gamma: float) -> np.ndarray:
    """|d FL / d x| as a function of g (alpha aside): g^gamma (g - gamma (1 - g) ln(1 - g))."""
    g = np.clip(g, 0, 1 - 1e-12)
    return g**gamma * (g - gamma * (1 - g) * np.log1p(-g))


def ghm_reweighted(g: np.ndarray, frac: np.ndarray, bins: int) -> np.ndarray:
    """g * tot / (R_j n) with R_j the density of g's GHM bin, from a histogram of fractions."""
    fine = len(frac)
    coarse = np.add.reduceat(frac, np.linspace(0, fine, bins + 1).astype(int)[:-1])
    n = max(1, int((coarse > 0).sum()))
    idx = np.minimum((g * bins).astype(int), bins - 1)
    density = coarse[idx]
    return np.where(density > 0, g / (np.maximum(density, 1e-300) * n), np.nan)


def reweighted_gradient(df: pd.DataFrame, hists: dict[str, dict], out: Path) -> Path | None:
    """Reweighted against original gradient norm: CE (identity), Focal, GHM-C (suppression)."""
    g = (np.arange(1000) + 0.5) / 1000
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(g, g, color=COLORS["ce"], label="CE (no reweighting)")
    focal = df[df["loss"] == "focal"]
    gamma = float(focal["loss.gamma"].iloc[0]) if not focal.empty and "loss.gamma" in focal else 2.0
    ax.loglog(g, focal_reweighted(g, gamma), color=COLORS["focal"], label=f"Focal (γ = {gamma:g})")
    ghm = _mean_hist(df, hists, "ghm")
    ce = _mean_hist(df, hists, "ce")
    if ghm is not None:
        bins = int(ghm[1]["loss"]["bins"])
        if ce is not None:  # the paper's view: GHM-C's weights on the gradient distribution of a CE model
            ax.loglog(
                g,
                ghm_reweighted(g, ce[0], bins),
                color=COLORS["ghm"],
                label=f"GHM-C (M = {bins}) on the CE run's density",
            )
        ax.loglog(
            g,
            ghm_reweighted(g, ghm[0], bins),
            color=COLORS["ghm"],
            ls="--",
            label=f"GHM-C (M = {bins}) on its own final density",
        )
    ax.set_xlabel("original gradient norm g")
    ax.set_ylabel("reweighted gradient norm")
    ax.set_title("Gradient norm after reweighting")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(plt, fig, out / "reweighted_gradient_norm.png")


def _schedule(numbers: pd.DataFrame) -> str:
    """``", 36 epochs"`` when every row of a table's numbers shares one schedule, else ``""``."""
    epochs = numbers["epochs"].dropna().unique() if "epochs" in numbers else []
    return f", {int(epochs[0])} epochs" if len(epochs) == 1 else ""


def settings_heatmap(numbers: pd.DataFrame, grid, metric: str, out: Path) -> Path | None:
    """A settings grid's test metric as a heatmap (``settings.grid_table``'s numbers): each cell's value
    written in it, the cell selected on validation framed, the papers' default starred."""
    if numbers.empty:
        return None
    plt = _plt()
    rows, cols = sorted(numbers[grid.rows].unique()), sorted(numbers[grid.cols].unique())
    values = np.full((len(rows), len(cols)), np.nan)
    for _, r in numbers.iterrows():
        values[rows.index(r[grid.rows]), cols.index(r[grid.cols])] = r[metric]
    fig, ax = plt.subplots(figsize=(1.3 * len(cols) + 2.2, 0.8 * len(rows) + 1.8))
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    for _, r in numbers.iterrows():
        i, j = rows.index(r[grid.rows]), cols.index(r[grid.cols])
        ax.text(
            j,
            i,
            f"{r[metric]:.3f}" + (" *" if r["default"] else ""),
            ha="center",
            va="center",
            color="white" if r[metric] < np.nanmean(values) else "black",
            fontsize=9,
        )
        if r["selected"]:
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
    rs, cs = grid.symbols
    ax.set_xticks(range(len(cols)), [f"{c:g}" for c in cols])
    ax.set_yticks(range(len(rows)), [f"{r:g}" for r in rows])
    ax.set_xlabel(cs)
    ax.set_ylabel(rs)
    schedule = _schedule(numbers)
    ax.set_title(
        f"{grid.label}: test {metric}, one seed per cell{schedule}\nred frame: selected on validation; *: the papers' "
        "default",
        fontsize=10,
    )
    fig.colorbar(image, ax=ax, label=f"test {metric}")
    return _save(plt, fig, out / f"{grid.name}.png")


def label_noise_figure(numbers: pd.DataFrame, metric: str, out: Path) -> Path | None:
    """Test metric (top) and the weight per mislabelled anchor relative to a clean positive (bottom)
    against the share of corrupted training labels, one column per kind of noise, one line per loss."""
    if numbers.empty:
        return None
    plt = _plt()
    kinds = list(dict.fromkeys(numbers["noise"]))
    fig, axes = plt.subplots(2, len(kinds), figsize=(5.2 * len(kinds), 7), squeeze=False, sharex="col")
    losses = list(dict.fromkeys(numbers["loss"]))
    for col, kind in enumerate(kinds):
        part = numbers[numbers["noise"] == kind]
        for k, loss in enumerate(losses):
            mine = part[part["loss"] == loss].sort_values("level")
            x = mine["level"].to_numpy() * 100 + (k - (len(losses) - 1) / 2) * 0.8  # dodged: bars side by side
            err = np.vstack([mine[metric] - mine["lo"], mine["hi"] - mine[metric]])
            axes[0, col].errorbar(
                x, mine[metric], yerr=err, marker="o", capsize=3, color=COLORS.get(loss), label=LABELS.get(loss, loss)
            )
            noisy = mine[mine["level"] > 0]
            axes[1, col].plot(
                noisy["level"] * 100,
                noisy["noisy_relative_weight"],
                marker="o",
                color=COLORS.get(loss),
                label=LABELS.get(loss, loss),
            )
        axes[0, col].set_title(f"{kind} in the training labels")
        axes[0, col].set_ylabel(f"test {metric} (95% bootstrap over images)")
        axes[1, col].axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        axes[1, col].set_ylabel("gradient per mislabelled anchor\n/ per clean positive anchor")
        axes[1, col].set_xlabel("corrupted training labels (%)")
        axes[0, col].legend()
    schedule = _schedule(numbers)
    fig.suptitle(f"Label noise: one seed per cell{schedule}, validation and test labels clean", fontsize=11)
    return _save(plt, fig, out / "label_noise.png")


def make_figures(df: pd.DataFrame, hists: dict[str, dict], metric: str, out: Path, tables: list) -> list[Path]:
    """Every figure the runs allow; the AP figures only beside their (non-skipped) tables.

    Args:
        tables: the report's tables (or their names: then no imbalance figure).
    """
    out.mkdir(parents=True, exist_ok=True)
    by_name = {t: None for t in tables if isinstance(t, str)} | {
        t.name: t for t in tables if not isinstance(t, str) and not t.cells.empty
    }
    tables = list(by_name)
    made = [gradient_norm_distribution(df, hists, out), learning_curves(df, hists, out)]
    if by_name.get("imbalance") is not None:
        made.append(imbalance(by_name["imbalance"].numbers, metric, out))
    if "focal_gamma_alpha" in tables:
        made.append(ap_vs_gamma(df, metric, out))
    if "loss_comparison" in tables:
        made.append(loss_comparison(df, metric, out))
    for grid in GRIDS:
        if by_name.get(grid.name) is not None:
            made.append(settings_heatmap(by_name[grid.name].numbers, grid, metric, out))
    if by_name.get("label_noise") is not None:
        made.append(label_noise_figure(by_name["label_noise"].numbers, metric, out))
    if (df["loss"] == "ghm").any() or (df["loss"] == "focal").any():
        made.append(reweighted_gradient(df, hists, out))
    return [p for p in made if p is not None]
