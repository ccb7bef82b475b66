"""Classification and box-regression losses: CE, Focal, GHM-C, QFL, VFL; smooth L1, L1, GHM-R, GIoU.

Every loss here is a ``torch.nn.Module`` that can be dropped into another detector.

Classification losses take
    ``pred`` [N, C] logits, ``target`` [N, C] one-hot floats (background rows are all zero; the
    IoU-aware QFL and VFL, whose ``iou_targets`` is True, get the IoU of the predicted box instead
    of the 1), ``label_weight`` [N] or [N, C]; entries whose weight is > 0 are valid, the rest are ignored.
Regression losses take
    ``pred`` [N, 4] box deltas, ``target`` [N, 4] encoded targets (GIoU, whose ``decoded_boxes`` is
    True: decoded and ground-truth boxes, xyxy), ``label_weight`` [N] or [N, 4].

Each returns a scalar: the summed loss, normalised (CE / focal / L1 / smooth L1 by
``max(1, positive anchors)`` or the ``avg_factor`` the caller passes; GHM-C and GHM-R by ``tot``,
as in Li, Liu & Wang, "Gradient Harmonized Single-stage Detector", AAAI 2019), times
``loss_weight``.

GHM semantics (docs/losses.md): the gradient norm ``g`` of each valid entry is binned into
``bins`` unit regions; a bin's weight is ``tot / R_j`` (or ``tot / S_j`` with the running count
``S_j <- m S_j + (1 - m) R_j`` when ``momentum > 0``), divided by the number of non-empty bins.
The computation is vectorised (one scatter-add per call, no loop over bins, no host sync) and
the running counts are module buffers, so they travel with ``state_dict`` and checkpoints.

Modules: ``classification`` (CE, focal), ``quality`` (QFL, VFL), ``regression`` (smooth L1, L1,
GIoU), ``ghm`` (GHM-C, GHM-R and their weights), ``common`` (what they share), ``builder`` (a loss
from its config section).
"""

from ghmbench.losses.builder import LOSS_INTERFACE, build_loss
from ghmbench.losses.classification import CrossEntropyLoss, FocalLoss
from ghmbench.losses.ghm import GHMC, GHMR, MAX_LEVELS, bin_index, ghm_weights
from ghmbench.losses.quality import QualityFocalLoss, VarifocalLoss
from ghmbench.losses.regression import GIoULoss, L1Loss, SmoothL1Loss

__all__ = [
    "CrossEntropyLoss",
    "FocalLoss",
    "GHMC",
    "QualityFocalLoss",
    "VarifocalLoss",
    "SmoothL1Loss",
    "L1Loss",
    "GHMR",
    "GIoULoss",
    "ghm_weights",
    "bin_index",
    "MAX_LEVELS",
    "build_loss",
    "LOSS_INTERFACE",
]
