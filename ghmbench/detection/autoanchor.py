"""Anchor sizes fitted to the training boxes (``model.anchor_sizes=auto``), as autoanchor tools fit
theirs: one base size per FPN level, at evenly spaced quantiles of the boxes' sizes at the input size.

With L levels, level k (finest first) gets the quantile (k + 1/2) / L of sqrt(width x height) over all
training boxes, divided by the geometric mean of ``model.anchor_scales``, so that the middle one of the
level's octave scales lands on the quantile. Sizes are rounded to 0.1 px. The levels stay as
configured: the anchor-fit check (:mod:`ghmbench.detection.anchor_fit`) still warns about the objects
that no anchor reaches.
"""

from __future__ import annotations

import math

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
    probabilities = torch.tensor([(k + 0.5) / num_levels for k in range(num_levels)], dtype=torch.float64)
    middle_scale = math.exp(sum(math.log(s) for s in anchor_scales) / len(anchor_scales))
    quantiles = torch.quantile(sides, probabilities) / middle_scale
    return [round(float(q), 1) for q in quantiles]


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
