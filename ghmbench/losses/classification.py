"""Sigmoid cross-entropy and focal loss (Lin et al., 2017) for the classification head."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ghmbench.losses.common import PrecomputedGrad, normaliser, positive_anchors, signed_logits, valid_rows


class CrossEntropyLoss(nn.Module):
    """Sigmoid binary cross-entropy, optionally alpha-balanced.

    With ``alpha`` set, positive entries (target 1) are weighted by ``alpha`` and negative ones
    by ``1 - alpha`` (the convention of ``torchvision.ops.sigmoid_focal_loss``).

    Args:
        alpha: balance weight of positive entries in [0, 1], or None for plain BCE.
        loss_weight: multiplier of the final loss.
    """

    gamma = 0.0  # the focusing parameter of FocalLoss; CE is its gamma = 0 case

    def __init__(self, alpha: float | None = None, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha
        self.loss_weight = loss_weight

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
            target: [N, C] one-hot floats.
            label_weight: [N] or [N, C]; entries > 0 are valid.
            avg_factor: normaliser to use instead of the number of positive anchors.
            level_ids: unused (accepted so that all classification losses share a signature).

        Returns:
            0-dim tensor.

        Targets are 0 or 1. The value and its gradient are computed together without autograd:
        with q = 1 - p_t = sigmoid(x (1 - 2y)) and ce = BCE(x, y), the entry's loss is
        alpha_t q^gamma ce and its derivative (1 - 2y) alpha_t q^gamma (gamma (1 - q) ce + q),
        finite for every gamma >= 0 (no q^(gamma - 1) appears).
        """
        pred = pred.float()
        target = target.float()
        valid = valid_rows(label_weight)
        scale = self.loss_weight / normaliser(
            avg_factor, positive_anchors(target, valid) if avg_factor is None else None
        )
        gamma = self.gamma
        with torch.no_grad():
            z, a = signed_logits(pred, target)  # a = -ce for now
            q = z.sigmoid_()
            w = valid.to(torch.float32)
            if self.alpha is not None:
                w = torch.mul(target, 2.0 * self.alpha - 1.0).add_(1.0 - self.alpha).mul_(w)  # alpha_t, 0 where ignored
            if gamma != 0:
                w = q.pow(gamma).mul_(w)  # alpha_t q^gamma
            a.mul_(w)  # -alpha_t q^gamma ce
            value = -a.sum() * scale
            if not pred.requires_grad:
                return value
            grad = a
            if gamma != 0:
                grad.addcmul_(grad, q, value=-1.0).mul_(-gamma)  # gamma (1 - q) alpha_t q^gamma ce
                grad.addcmul_(q, w)
            else:
                torch.mul(q, w, out=grad)
            grad.addcmul_(grad, target, value=-2.0)  # the sign 1 - 2y
        return PrecomputedGrad.apply(pred, value, grad, scale)


class FocalLoss(CrossEntropyLoss):
    """Focal loss FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t) (Lin et al., 2017).

    Numerically equal to ``torchvision.ops.sigmoid_focal_loss`` (``alpha < 0`` there is
    ``alpha=None`` here). With ``gamma=0`` it is the alpha-balanced :class:`CrossEntropyLoss`.

    Args:
        alpha: balance weight of positive entries in [0, 1], or None for no balancing.
        gamma: focusing parameter >= 0.
        loss_weight: multiplier of the final loss.
    """

    def __init__(self, alpha: float | None = 0.25, gamma: float = 2.0, loss_weight: float = 1.0) -> None:
        super().__init__(alpha=alpha, loss_weight=loss_weight)
        self.gamma = gamma
