"""Published numbers (COCO box AP, %, ResNet-50-FPN RetinaNet) that reports show beside ours, converted
to the reports' 0-1 scale (:func:`ap`).

Documented in docs/reference_numbers.md. Sources: Lin et al., "Focal Loss for Dense Object Detection"
(ICCV 2017) Table 1a/1b; Li, Liu & Wang, "Gradient Harmonized Single-stage Detector" (AAAI 2019);
for QFL and VFL, the VarifocalNet authors' README and mmdetection's model zoo (other detectors).
"""

from __future__ import annotations

# Table 1a: alpha-balanced CE (gamma = 0). alpha -> (AP, AP50, AP75)
FOCAL_TABLE_1A: dict[float, tuple[float, float, float]] = {
    0.10: (0.0, 0.0, 0.0),
    0.25: (10.8, 16.0, 11.7),
    0.50: (30.2, 46.7, 32.8),
    0.75: (31.1, 49.4, 33.0),
    0.90: (30.8, 49.7, 32.3),
    0.99: (28.7, 47.4, 29.9),
    0.999: (25.1, 41.7, 26.1),
}

# Table 1b: focal loss, each gamma with its best alpha. gamma -> (alpha, AP, AP50, AP75)
FOCAL_TABLE_1B: dict[float, tuple[float, float, float, float]] = {
    0.0: (0.75, 31.1, 49.4, 33.0),
    0.1: (0.75, 31.4, 49.9, 33.1),
    0.2: (0.75, 31.9, 50.7, 33.4),
    0.5: (0.50, 32.9, 51.7, 35.2),
    1.0: (0.25, 33.7, 52.0, 36.2),
    2.0: (0.25, 34.0, 52.5, 36.5),
    5.0: (0.25, 32.2, 49.6, 34.8),
}

# GHM paper (Res50-FPN, COCO minival): (classification, regression) -> AP. The CE value is from a
# secondary summary of the paper's tables (not checked against the paper itself).
GHM_COMPARISON: dict[tuple[str, str], float] = {
    ("focal", "smooth_l1"): 35.6,
    ("ghm", "smooth_l1"): 35.8,
    ("ghm", "ghm"): 37.0,
    ("ce", "smooth_l1"): 28.6,
}

# GHM-C unit regions M -> AP (secondary summary, M = bins).
GHM_BINS: dict[int, float] = {5: 33.4, 10: 34.6, 20: 35.2, 30: 35.8, 40: 35.4}


# IoU-aware classification losses against Focal Loss on the same detector, R-50 1x on COCO val (no seeds
# or intervals reported): (detector, source, Focal's AP, the IoU-aware loss's AP).
IOU_AWARE_GAINS: dict[str, tuple[str, str, float, float]] = {
    "vfl": ("RetinaNet", "VarifocalNet authors' README", 36.5, 37.4),
    "qfl": ("ATSS", "mmdetection model zoo, GFL = QFL + DFL", 39.4, 40.2),
}

FOCAL_SCALE = "Focal Loss paper Table {}, ResNet-50 on COCO, 0-1"  # the table: 1a or 1b
GHM_SCALE = "GHM paper, ResNet-50 on COCO, 0-1"
GHM_COMPARISON_COLUMN = f"paper AP ({GHM_SCALE}; smooth L1 / GHM-R)"


def ap(percent: float) -> str:
    """A published AP (%) on the report's 0-1 scale: 35.8 -> "0.358"."""
    return f"{percent / 100:.3f}"


def ghm_comparison_cell(loss: str) -> str:
    """The GHM paper's AP of classification loss ``loss`` with smooth L1 / with GHM-R (``-`` where
    it reports none): the paper column of the loss-comparison tables."""
    return " / ".join(
        ap(GHM_COMPARISON[(loss, reg)]) if (loss, reg) in GHM_COMPARISON else "-" for reg in ("smooth_l1", "ghm")
    )


def iou_aware_note(losses: list[str]) -> str:
    """The published gains of the IoU-aware ``losses`` over Focal, as one sentence on the 0-1 scale."""
    parts = [
        f"{name.upper()}: {detector} R-50 1x, Focal {ap(focal)} -> {ap(theirs)} ({source})"
        for name in losses
        if name in IOU_AWARE_GAINS
        for detector, source, focal, theirs in [IOU_AWARE_GAINS[name]]
    ]
    return "Published, COCO val, no seeds or intervals: " + "; ".join(parts) + "." if parts else ""


def ghm_comparison_column(loss: str) -> dict[str, str]:
    """The paper column of a loss-comparison table's row: ``{GHM_COMPARISON_COLUMN: cell}``."""
    return {GHM_COMPARISON_COLUMN: ghm_comparison_cell(loss)}
