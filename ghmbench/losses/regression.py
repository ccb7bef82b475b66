"""Smooth L1 and L1 on the box deltas, and GIoU on the decoded boxes, for the box-regression head,
summed over valid entries / positives."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.functional import smooth_l1_loss
from torchvision.ops import generalized_box_iou_loss

from ghmbench.losses.common import normaliser, valid_mask, valid_rows


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


class GIoULoss(nn.Module):
    """Generalized IoU loss ``1 - GIoU`` (Rezatofighi et al., CVPR 2019) on decoded boxes, summed over
    valid boxes / positives; the box loss GFL and VarifocalNet pair with their classification losses.

    It asks the criterion for boxes instead of deltas with its class attribute ``decoded_boxes = True``:
    ``pred`` is then the boxes decoded from the predicted deltas at the positive anchors, ``target``
    their matched ground-truth boxes.

    Args:
        loss_weight: multiplier of the final loss (GFL's 2).
    """

    decoded_boxes = True

    def __init__(self, loss_weight: float = 2.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(
        self,
        pred: Tensor,
        target: Tensor,
        label_weight: Tensor,
        avg_factor: float | Tensor | None = None,
        level_ids: Tensor | None = None,
    ) -> Tensor:
        """Loss summed over valid boxes / max(1, valid boxes).

        Args:
            pred: [N, 4] predicted boxes, xyxy.
            target: [N, 4] ground-truth boxes, xyxy.
            label_weight: [N] (or [N, 4], valid where any entry is > 0).
            avg_factor: normaliser to use instead of the number of valid boxes.
            level_ids: unused.

        Returns:
            0-dim tensor.
        """
        valid = valid_rows(label_weight).any(dim=1)
        loss = generalized_box_iou_loss(pred.float(), target.float(), reduction="none")
        total = torch.where(valid, loss, torch.zeros_like(loss)).sum()
        return self.loss_weight * total / normaliser(avg_factor, valid.sum())
