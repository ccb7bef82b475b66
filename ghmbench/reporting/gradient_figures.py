"""The GHM paper's two figures from this project's own training: the distribution of the gradient norm
g = |p - p*| at the end of training, and each loss's reweighted gradient norm against the original one,
scaled so that the curves compare in shape rather than in their raw (very different) magnitudes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ghmbench.reporting.figures import COLORS, Figure, loss_label, plural, pyplot, save
from ghmbench.store.fields import COMPLETED


def mean_hist(df: pd.DataFrame, hists: dict[str, dict], loss: str) -> tuple[np.ndarray, dict, int] | None:
    """Average last-epoch g histogram (fractions) of one loss's completed runs, preferring smooth L1:
    (fractions, the first run's config, the number of runs averaged)."""
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
    return frac, hists[part["run_key"].iloc[0]]["config"], len(arrays)


def gradient_norm_distribution(df: pd.DataFrame, hists: dict[str, dict], out: Path) -> Figure | None:
    """Fraction of valid anchor x class entries against g = |p - y| at the end of training."""
    curves = {loss: h for loss in ("ce", "focal", "ghm") if (h := mean_hist(df, hists, loss)) is not None}
    if not curves:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for loss, (frac, _, runs) in curves.items():
        centers = (np.arange(len(frac)) + 0.5) / len(frac)
        label = f"{loss_label(loss)} (mean of {plural(runs, 'run')})"
        ax.semilogy(centers, np.where(frac > 0, frac, np.nan), marker=".", color=COLORS[loss], label=label)
    ax.set_xlabel("gradient norm g = |p − p*|")
    ax.set_ylabel("fraction of anchor x class entries (log)")
    ax.set_title("Gradient norm distribution, last training epoch (training images)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    caption = (
        "The share of anchor x class entries at each gradient norm g = |p − p*| over the last training epoch, "
        "averaged over each loss's completed runs (smooth L1 runs where there are some). The mass at small g is the "
        "flood of easy background anchors that Focal Loss and GHM-C down-weight."
    )
    return save(plt, fig, out / "gradient_norm_distribution.png", caption)


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


def scaled(curve: np.ndarray, g: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """``curve`` scaled so that its total over the entries distributed as ``frac`` equals CE's (sum of g).

    Raw, GHM-C's weights reach orders of magnitude above CE's, because they divide by a density; at
    equal total gradient the curves show what each loss does: which g gets more or less of it.
    """
    weights = np.interp(g, (np.arange(len(frac)) + 0.5) / len(frac), frac)
    total = np.nansum(weights * curve)
    return curve * (np.nansum(weights * g) / total) if total > 0 else curve


def reweighted_gradient(df: pd.DataFrame, hists: dict[str, dict], out: Path) -> Figure | None:
    """Reweighted against original gradient norm: CE (identity), Focal, GHM-C (suppression), each scaled
    to CE's total gradient over the CE run's distribution of g (the GHM run's, or uniform, without one)."""
    g = (np.arange(1000) + 0.5) / 1000
    ce, ghm = mean_hist(df, hists, "ce"), mean_hist(df, hists, "ghm")
    reference = ce or ghm
    frac = reference[0] if reference else np.ones(100) / 100
    where = "the CE run's" if ce else "the GHM-C run's" if ghm else "a uniform"
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(g, g, color=COLORS["ce"], label="CE (no reweighting)")
    focal = df[df["loss"] == "focal"]
    gamma = float(focal["loss.gamma"].iloc[0]) if not focal.empty and "loss.gamma" in focal else 2.0
    ax.loglog(g, scaled(focal_reweighted(g, gamma), g, frac), color=COLORS["focal"], label=f"Focal (γ = {gamma:g})")
    if ghm is not None:
        bins = int(ghm[1]["loss"]["bins"])
        if ce is not None:  # the paper's view: GHM-C's weights on the gradient distribution of a CE model
            label = f"GHM-C (M = {bins}) on the CE run's density"
            ax.loglog(g, scaled(ghm_reweighted(g, ce[0], bins), g, frac), color=COLORS["ghm"], label=label)
        label = f"GHM-C (M = {bins}) on its own final density"
        ax.loglog(g, scaled(ghm_reweighted(g, ghm[0], bins), g, frac), color=COLORS["ghm"], ls="--", label=label)
    ax.set_xlabel("original gradient norm g")
    ax.set_ylabel("reweighted gradient norm (equal totals)")
    ax.set_title(f"Gradient norm after reweighting, scaled to equal totals over {where} g", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    caption = (
        "Each loss's gradient norm after its reweighting against the original norm g (log-log), each curve scaled so "
        f"that its total over {where} distribution of g (last epoch) equals CE's: above the CE line a loss gives "
        "entries at that g a larger share of the gradient than CE does, below it a smaller one."
    )
    return save(plt, fig, out / "reweighted_gradient_norm.png", caption)
