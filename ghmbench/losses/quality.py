"""IoU-aware classification losses: Quality Focal Loss (Li et al., "Generalized Focal Loss", NeurIPS
2020) and Varifocal Loss (Zhang et al., "VarifocalNet", CVPR 2021).

Both train the class score to predict localisation quality: the target of a positive anchor at its
object's class is the IoU of the box predicted there with its ground truth (a soft target in [0, 1]),
every other entry's target is 0. A loss asks the criterion for these targets with its class attribute
``iou_targets = True`` (:class:`ghmbench.detection.criterion.DetectionCriterion`); losses without it
get one-hot targets.

The modulating factors are not detached, as in Focal Loss and the papers' reference code: their
gradient is part of the loss's gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.functional import binary_cross_entropy_with_logits

from ghmbench.losses.common import normaliser, positive_anchors, valid_rows
from ghmbench.ranges import BETA, GAMMA, in_unit_interval, require


class _IoUAwareLoss(nn.Module):
    """What QFL and VFL share: soft targets, the valid-entry sum and the positives' normaliser."""

    iou_targets = True
    """Asks the criterion for IoU targets instead of one-hot ones."""

    def __init__(self, loss_weight: float) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def _elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(
        self,
        pred: Tensor,
        target: Tensor,
        label_weight: Tensor,
        avg_factor: float | Tensor | None = None,
        level_ids: Tensor | None = None,
    ) -> Tensor:
        """Loss summed over valid entries / max(1, positive anchors).

        Args:
            pred: [N, C] logits.
            target: [N, C] soft targets in [0, 1]: the IoU at a positive anchor's class, 0 elsewhere
                (one-hot targets are the case IoU = 1).
            label_weight: [N] or [N, C]; entries > 0 are valid.
            avg_factor: normaliser to use instead of the number of anchors with a target > 0.
            level_ids: unused (accepted so that all classification losses share a signature).

        Returns:
            0-dim tensor.
        """
        pred, target = pred.float(), target.float()
        valid = valid_rows(label_weight)
        loss = torch.where(valid, self._elementwise(pred, target), pred.new_zeros(()))
        fallback = positive_anchors(target, valid) if avg_factor is None else None
        return self.loss_weight * loss.sum() / normaliser(avg_factor, fallback)


class QualityFocalLoss(_IoUAwareLoss):
    """Quality Focal Loss: per entry ``|y - sigmoid(x)|^beta * BCE(sigmoid(x), y)``, y the soft target.

    With y in {0, 1} and ``beta = 0`` it is plain BCE; with y in {0, 1} and ``beta = gamma`` it is
    Focal Loss without alpha.

    Args:
        beta: focusing parameter >= 0 (the paper's 2).
        loss_weight: multiplier of the final loss.
    """

    def __init__(self, beta: float = 2.0, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        require(BETA, beta)
        self.beta = beta

    def _elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        bce = binary_cross_entropy_with_logits(pred, target, reduction="none")
        return (target - pred.sigmoid()).abs().pow(self.beta) * bce


class VarifocalLoss(_IoUAwareLoss):
    """Varifocal Loss: per entry ``y * BCE(sigmoid(x), y)`` where y > 0 and
    ``alpha * sigmoid(x)^gamma * BCE(sigmoid(x), 0)`` where y = 0.

    Positives are weighted by their target (the IoU), so well-localised positives weigh more; only
    negatives are focused. The negative term equals Focal Loss's negative term with Focal's
    ``alpha = 1 - vfl_alpha`` (negatives weigh ``1 - alpha`` in Focal: .75 at its default .25).

    Args:
        alpha: weight of the negative entries (the paper's .75).
        gamma: focusing parameter of the negatives >= 0 (the paper's 2).
        loss_weight: multiplier of the final loss.
    """

    def __init__(self, alpha: float = 0.75, gamma: float = 2.0, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        require(("alpha", in_unit_interval, "a number in [0, 1]"), alpha)
        require(GAMMA, gamma)
        self.alpha, self.gamma = alpha, gamma

    def _elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        bce = binary_cross_entropy_with_logits(pred, target, reduction="none")
        weight = torch.where(target > 0, target, self.alpha * pred.sigmoid().pow(self.gamma))
        return weight * bce
