"""Statistics of a dataset as the configured detector sees it (``ghmbench data check``).

Besides images, objects per class and box sizes, it counts what the losses in this project
exist for: how many anchors each image gives as positive, negative (background) and ignored
for the configured detector, anchor sizes and IoU thresholds.
"""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig
from torchvision.ops import box_iou

from ghmbench.data.splits import DetectionSplit
from ghmbench.detection.anchors import BACKGROUND, IGNORE, match_anchors


def class_counts(split: DetectionSplit) -> list[int]:
    """Objects (training targets) per contiguous label."""
    labels = torch.cat([lab for lab in split.labels]) if split.labels else torch.zeros(0, dtype=torch.long)
    return torch.bincount(labels, minlength=split.num_classes).tolist()


def box_sizes(split: DetectionSplit) -> dict:
    """Distribution of sqrt(box area) in original pixels, and COCO's small / medium / large counts."""
    gt = split.coco_ground_truth()
    sides = torch.tensor(
        [math.sqrt(max(a["area"], 0.0)) for a in gt["annotations"] if not a.get("iscrowd", 0)], dtype=torch.float64
    )
    if sides.numel() == 0:
        return {"objects": 0}
    q = torch.quantile(sides, torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)).tolist()
    return {
        "objects": int(sides.numel()),
        "ignored (crowd / difficult)": sum(1 for a in gt["annotations"] if a.get("iscrowd", 0)),
        "sqrt(area) min / p10 / median / p90 / max": " / ".join(f"{v:.1f}" for v in q),
        "small (< 32²)": int((sides < 32).sum()),
        "medium": int(((sides >= 32) & (sides < 96)).sum()),
        "large (>= 96²)": int((sides >= 96).sum()),
    }


@torch.no_grad()
def anchor_imbalance(
    split: DetectionSplit, anchors: torch.Tensor, num_classes: int, model_cfg: DictConfig, batch: int = 64
) -> dict:
    """Positive / negative / ignored anchors per image for the configured matcher.

    Args:
        anchors: [A, 4] the detector's anchors at the input size.
        model_cfg: the model config (fg_iou, bg_iou, allow_low_quality).

    Returns:
        Means per image, the negative : positive ratio, the easy-entry ratio the classification
        loss faces (valid anchor x class entries per positive entry), and the share of objects
        that get a positive anchor only through the low-quality rule.
    """
    totals = torch.zeros(3, dtype=torch.float64)
    for start in range(0, len(split), batch):
        idx = list(range(start, min(len(split), start + batch)))
        boxes, labels = [split.boxes[i] for i in idx], [split.labels[i] for i in idx]
        match = match_anchors(anchors, boxes, labels, model_cfg.fg_iou, model_cfg.bg_iou, model_cfg.allow_low_quality)
        totals += torch.tensor(
            [
                float(match.positive.sum()),
                float((match.labels == BACKGROUND).sum()),
                float((match.labels == IGNORE).sum()),
            ],
            dtype=torch.float64,
        )
    objects, poorly_fit = low_quality_sides(split, anchors, model_cfg.fg_iou)
    low_quality_only = len(poorly_fit)
    n = max(1, len(split))
    pos, neg, ign = (totals / n).tolist()
    entries = (pos + neg) * num_classes
    return {
        "anchors per image": anchors.shape[0],
        "positive per image": round(pos, 2),
        "negative per image": round(neg, 2),
        "ignored per image": round(ign, 2),
        "negative : positive": f"{neg / pos:.0f} : 1" if pos else "no positives",
        "valid anchor x class entries per positive": f"{entries / pos:.0f}" if pos else "-",
        "objects matched only by the low-quality rule": f"{low_quality_only} of {objects}",
    }


@torch.no_grad()
def low_quality_sides(split: DetectionSplit, anchors: torch.Tensor, fg_iou: float) -> tuple[int, list[float]]:
    """(objects, sqrt(area) in input pixels of those whose best anchor IoU is below ``fg_iou``):
    the objects that get a positive anchor only through the low-quality rule."""
    objects, sides = 0, []
    for b in split.boxes:
        if len(b):
            best = box_iou(b, anchors).max(dim=1).values
            objects += len(b)
            poor = b[best < fg_iou]
            sides += ((poor[:, 2] - poor[:, 0]).clamp(min=0) * (poor[:, 3] - poor[:, 1]).clamp(min=0)).sqrt().tolist()
    return objects, sides


ANCHOR_FIT_SHARE = 0.2  # above this share of training objects matched only by the low-quality rule, warn


def anchor_fit_warning(
    split: DetectionSplit, anchors: torch.Tensor, model_cfg: DictConfig, image_size: int
) -> str | None:
    """One line when more than 20% of the (training) objects are matched only by the low-quality
    rule: the share, those objects' size range and the model keys to change; None otherwise."""
    objects, sides = low_quality_sides(split, anchors, model_cfg.fg_iou)
    if not objects or len(sides) <= ANCHOR_FIT_SHARE * objects:
        return None
    low, high = min(model_cfg.anchor_sizes), max(model_cfg.anchor_sizes) * max(model_cfg.anchor_scales)
    median = sorted(sides)[len(sides) // 2]
    hint = (
        "larger anchors on coarser levels, e.g. model=retinanet_r18 for real-size images"
        if median > high
        else "smaller anchors on finer levels"
        if median < low
        else "denser anchor_scales / aspect_ratios"
    )
    return (
        f"anchor fit: {len(sides)} of {objects} training objects ({len(sides) / objects:.0%}) are matched only by the "
        "low-quality rule; "
        f"their sizes (sqrt(area) at the {image_size} px input) span {min(sides):.0f}-{max(sides):.0f} px, the "
        f"anchors {low:.0f}-{high:.0f} px; "
        f"change model.anchor_sizes and model.levels (one size per level): {hint}"
    )


def detector_anchors(model: torch.nn.Module, channels: int, size: int) -> torch.Tensor:
    """The anchors of ``model`` at a ``size`` px square input, on the CPU: one forward of a blank
    image in eval mode without gradients (no parameter, statistic or random state changes; the
    model's mode is restored), so a run checks the detector it trains instead of building another."""
    was_training = model.training
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            return model.eval()(torch.zeros(1, channels, size, size, device=device)).anchors.cpu()
    finally:
        model.train(was_training)
