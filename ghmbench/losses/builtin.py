"""The built-in losses by name: the class each ``loss.name`` / ``regression.name`` stands for and
its ``_target_`` (run keys leave these out)."""

from __future__ import annotations

from ghmbench.losses import (
    GHMC,
    GHMR,
    CrossEntropyLoss,
    FocalLoss,
    GIoULoss,
    L1Loss,
    QualityFocalLoss,
    SmoothL1Loss,
    VarifocalLoss,
)

BUILTIN_LOSSES: dict[str, dict[str, type]] = {
    "loss": {"ce": CrossEntropyLoss, "focal": FocalLoss, "ghm": GHMC, "qfl": QualityFocalLoss, "vfl": VarifocalLoss},
    "regression": {"smooth_l1": SmoothL1Loss, "l1": L1Loss, "ghm": GHMR, "giou": GIoULoss},
}
"""The class each built-in loss name stands for, by section (a built-in name keeps its class)."""

BUILTIN_TARGETS: dict[str, dict[str, str]] = {
    section: {name: f"ghmbench.losses.{loss_class.__name__}" for name, loss_class in losses.items()}
    for section, losses in BUILTIN_LOSSES.items()
}
"""The ``_target_`` of each built-in loss name (run keys leave these out)."""
