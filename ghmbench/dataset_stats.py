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

from ghmbench.anchors import BACKGROUND, IGNORE, match_anchors
from ghmbench.data import DetectionSplit


def class_counts(split: DetectionSplit) -> list[int]:
    """Objects (training targets) per contiguous label."""
    labels = torch.cat([lab for lab in split.labels]) if split.labels else torch.zeros(0, dtype=torch.long)
    return torch.bincount(labels, minlength=split.num_classes).tolist()


def box_sizes(split: DetectionSplit) -> dict:
    """Distribution of sqrt(box area) in original pixels, and COCO's small / medium / large counts."""
    gt = split.coco_ground_truth()
    sides = torch.tensor([math.sqrt(max(a["area"], 0.0)) for a in gt["annotations"] if not a.get("iscrowd", 0)], dtype=torch.float64)
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
def anchor_imbalance(split: DetectionSplit, anchors: torch.Tensor, num_classes: int, m: DictConfig, batch: int = 64) -> dict:
    """Positive / negative / ignored anchors per image for the configured matcher.

    Args:
        anchors: [A, 4] the detector's anchors at the input size.
        m: the model config (fg_iou, bg_iou, allow_low_quality).

    Returns:
        Means per image, the negative : positive ratio, the easy-entry ratio the classification
        loss faces (valid anchor x class entries per positive entry), and the share of objects
        that get a positive anchor only through the low-quality rule.
    """
    totals = torch.zeros(3, dtype=torch.float64)
    objects = low_quality_only = 0
    for start in range(0, len(split), batch):
        idx = list(range(start, min(len(split), start + batch)))
        boxes, labels = [split.boxes[i] for i in idx], [split.labels[i] for i in idx]
        match = match_anchors(anchors, boxes, labels, m.fg_iou, m.bg_iou, m.allow_low_quality)
        totals += torch.tensor(
            [float(match.positive.sum()), float((match.labels == BACKGROUND).sum()), float((match.labels == IGNORE).sum())], dtype=torch.float64
        )
        for b in boxes:
            if len(b):
                best = box_iou(b, anchors).max(dim=1).values
                objects += len(b)
                low_quality_only += int((best < m.fg_iou).sum())
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


def detector_anchors(cfg: DictConfig, num_classes: int, channels: int) -> torch.Tensor:
    """The configured detector's anchors at the dataset's input size (one forward of a blank image)."""
    from ghmbench.training import build_model

    model = build_model(cfg, num_classes, channels).eval()
    size = cfg.dataset.image_size
    with torch.no_grad():
        return model(torch.zeros(1, channels, size, size)).anchors
