"""Anchor sizes fitted to the training boxes (``model.anchor_sizes=auto``), as autoanchor tools fit
theirs: one base size per FPN level, from k-means of the boxes' sizes at the input size.

The sizes, sqrt(width x height) of every training box, are clustered into L groups (L levels) by k-means
on their logarithms (scikit-learn, k-means++ with 10 starts and a fixed seed: deterministic), so that a
size twice another is as far from it as half of it is. Level k (finest first) gets the k-th smallest
centre, exp(mean log size) of its group, divided by the geometric mean of ``model.anchor_scales`` so
that the middle one of the level's octave scales lands on it. Sizes are rounded to 0.1 px.

Why clusters and not evenly spaced quantiles (the first rule): quantiles follow the box counts, so a
dataset dominated by one kind of object puts every level on it. On BCCD (85% red cells) the quantiles
gave 35-46 px to all three levels and left the platelets and the white cells to the low-quality
matching rule; the clusters give one level to each (docs/own-data.md gives the counts). The levels
stay as configured: the anchor-fit check (:mod:`ghmbench.detection.anchor_fit`) still warns about the
objects that no anchor reaches.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from ghmbench.errors import DatasetError

AUTO = "auto"


def fit_anchor_sizes(boxes: list[Tensor], num_levels: int, anchor_scales: list[float]) -> list[float]:
    """The base anchor size of each level, fitted to ``boxes``.

    Args:
        boxes: per image, [G, 4] float xyxy in input pixels (the training split's).
        num_levels: L, the number of FPN levels that predict.
        anchor_scales: the octave scales every level multiplies its base size by.

    Returns:
        L sizes in input pixels, non-decreasing (finest level first).

    Raises:
        DatasetError: the boxes have no area to fit to.
    """
    all_boxes = torch.cat([b.reshape(-1, 4) for b in boxes]) if boxes else torch.zeros(0, 4)
    sides = ((all_boxes[:, 2] - all_boxes[:, 0]) * (all_boxes[:, 3] - all_boxes[:, 1])).clamp(min=0).sqrt()
    sides = sides[sides > 0].double()
    if sides.numel() == 0:
        raise DatasetError(
            "model.anchor_sizes=auto: the training split has no box with an area to fit anchors to; allowed: "
            "model.anchor_sizes=[...] (one size per level)"
        )
    middle_scale = math.exp(sum(math.log(s) for s in anchor_scales) / len(anchor_scales))
    return [round(float(c) / middle_scale, 1) for c in _log_size_centres(sides.log().numpy(), num_levels)]


def _log_size_centres(log_sides: np.ndarray, num_levels: int) -> list[float]:
    """``num_levels`` sizes, non-decreasing: the centres of a k-means of the log sizes, exponentiated.
    With fewer distinct sizes than levels, the levels share them (finest first, evenly)."""
    from sklearn.cluster import KMeans

    distinct = np.unique(log_sides)
    k = min(num_levels, len(distinct))
    if k == len(distinct):
        centres = distinct
    else:
        km = KMeans(n_clusters=k, n_init=10, random_state=0).fit(log_sides.reshape(-1, 1))
        centres = np.sort(km.cluster_centers_.ravel())
    picks = [round(i * (k - 1) / max(num_levels - 1, 1)) for i in range(num_levels)]
    return [math.exp(centres[i]) for i in picks]


def fitted_model_config(model_cfg: DictConfig, boxes: list[Tensor]) -> tuple[DictConfig, bool]:
    """``model_cfg`` with numeric anchor sizes: fitted to ``boxes`` when they are ``auto``.

    Returns:
        (the model config to build the detector from, whether its sizes were fitted).
    """
    if model_cfg.anchor_sizes != AUTO:
        return model_cfg, False
    fitted = OmegaConf.to_container(model_cfg, resolve=True)
    assert isinstance(fitted, dict)
    fitted["anchor_sizes"] = fit_anchor_sizes(boxes, len(model_cfg.levels), list(model_cfg.anchor_scales))
    return OmegaConf.create(fitted), True


def describe_anchors(model_cfg: DictConfig, fitted: bool, image_size: int) -> str:
    """One line: the levels and anchor sizes a detector uses, and whether they were fitted."""
    sizes = ", ".join(f"{s:g}" for s in model_cfg.anchor_sizes)
    how = "fitted to the training boxes (model.anchor_sizes=auto)" if fitted else "as configured"
    return f"anchors: levels {list(model_cfg.levels)}, base sizes [{sizes}] px at the {image_size} px input, {how}"
