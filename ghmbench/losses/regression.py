"""Smooth L1 and L1 for the box-regression head, summed over valid entries / positives."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.functional import smooth_l1_loss

from ghmbench.losses.common import normaliser, valid_mask


class SmoothL1Loss(nn.Module):
    """Smooth L1 (Huber with transition ``beta``), summed over valid entries / positives.

    Args:
        beta: transition point >= 0 (0 makes it L1).
        loss_weight: multiplier of the final loss.
    """

    def __init__(self, beta: float = 0.11, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.beta = beta
        self.loss_weight = loss_weight

    def _elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return smooth_l1_loss(pred, target, reduction="none", beta=self.beta)

    def forward(
        self,
        pred: Tensor,
        target: Tensor,
        label_weight: Tensor,
        avg_factor: float | Tensor | None = None,
        level_ids: Tensor | None = None,
    ) -> Tensor:
        """Loss summed over valid entries / max(1, valid anchors).

        Args:
            pred: [N, 4] predicted deltas.
            target: [N, 4] target deltas.
            label_weight: [N] or [N, 4]; entries > 0 are valid.
            avg_factor: normaliser to use instead of the number of valid anchors.
            level_ids: unused.

        Returns:
            0-dim tensor.
        """
        valid = valid_mask(label_weight, pred.shape)
        loss = self._elementwise(pred.float(), target.float())
        total = torch.where(valid, loss, torch.zeros_like(loss)).sum()
        return self.loss_weight * total / normaliser(avg_factor, valid.any(dim=1).sum())


class L1Loss(SmoothL1Loss):
    """L1 loss, summed over valid entries / positives.

    Args:
        loss_weight: multiplier of the final loss.
    """

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__(beta=0.0, loss_weight=loss_weight)

    def _elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return (pred - target).abs()
