"""How much of a classification loss's gradient reaches the anchors of mislabelled objects.

GHM's claim over Focal Loss (Li, Liu & Wang, AAAI 2019, section 3.2): Focal Loss keeps up-weighting
the *very hard* examples, which are often outliers such as wrong or missing labels, while GHM-C's
density weighting gives them less weight. With generated label noise the mislabelled objects are
known (:attr:`ghmbench.data.splits.DetectionSplit.noisy_boxes`), so the claim can be measured instead of
argued: during backward, the gradient of the classification loss with respect to every anchor x
class logit, |dL/dx|, is summed over

- the *noisy* anchors: those the matcher assigns to a mislabelled object (a positive of the wrong
  class, or a background anchor on an unannotated object), and
- the *clean positive* anchors: the positives of correctly labelled objects,

beside the sum over all anchors. The loss's own normalisation (by the positives, or GHM's tot)
cancels in the shares. Because it is the autograd gradient, the measure holds for any loss, a
user's own included.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ghmbench.detection.anchors import match_anchors

SUMS = ("noisy_grad", "clean_grad", "total_grad", "noisy_anchors", "clean_anchors")
"""What :func:`watch` adds to, in this order (a float64 tensor [5])."""


def watch(
    cls_logits: Tensor,
    anchors: Tensor,
    noisy_boxes: list[Tensor],
    positive: Tensor,
    valid: Tensor,
    matcher: tuple[float, float, bool],
    sums: Tensor,
) -> None:
    """Add this batch's anchor counts to ``sums`` now and its gradient weights when backward reaches the logits.

    Args:
        cls_logits: [B, A, C] the classification logits of the batch (part of the autograd graph).
        anchors: [A, 4] xyxy.
        noisy_boxes: per image [K_i, 4] xyxy boxes of the mislabelled objects.
        positive: [B, A] the anchors the training target calls positive.
        valid: [B, A] the anchors that are not ignored.
        matcher: (fg_iou, bg_iou, allow_low_quality) of the detector's matcher.
        sums: [5] float64 on the logits' device, see :data:`SUMS`.
    """
    boxes = [b.to(anchors.device) for b in noisy_boxes]
    labels = [torch.zeros(b.shape[0], dtype=torch.long, device=anchors.device) for b in boxes]
    noisy = match_anchors(anchors, boxes, labels, *matcher).positive & valid
    clean = positive & ~noisy
    sums[3] += noisy.sum()
    sums[4] += clean.sum()
    if cls_logits.requires_grad:
        cls_logits.register_hook(lambda grad: _add_gradient_weight(grad, noisy, clean, valid, sums))


def _add_gradient_weight(grad: Tensor, noisy: Tensor, clean: Tensor, valid: Tensor, sums: Tensor) -> None:
    """Add the per-anchor gradient weights |dL/dx| summed over classes ([B, A] from ``grad`` [B, A, C])."""
    weight = grad.detach().float().abs().sum(-1).double()
    sums[0] += weight[noisy].sum()
    sums[1] += weight[clean].sum()
    sums[2] += weight[valid].sum()


def summary(sums: list[float] | Tensor) -> dict:
    """The shares of :data:`SUMS`.

    Returns:
        ``noisy_grad_share``: the noisy anchors' share of the loss's gradient weight;
        ``noisy_relative_weight``: a noisy anchor's mean gradient weight over a clean positive
        anchor's (1 = treated alike; below 1 = down-weighted); None where undefined; and the sums.
    """
    noisy_grad, clean_grad, total_grad, noisy_anchors, clean_anchors = [float(x) for x in sums]
    share = noisy_grad / total_grad if total_grad > 0 else None
    per_noisy = noisy_grad / noisy_anchors if noisy_anchors else None
    per_clean = clean_grad / clean_anchors if clean_anchors else None
    relative = per_noisy / per_clean if per_noisy is not None and per_clean else None
    return {
        "noisy_grad_share": share,
        "noisy_relative_weight": relative,
        **dict(zip(SUMS, [noisy_grad, clean_grad, total_grad, noisy_anchors, clean_anchors])),
    }


def add_epoch(total: list[float] | None, epoch_sums: Tensor) -> tuple[list[float], dict]:
    """The run's sums with an epoch's added, and that epoch's two shares (for its history entry)."""
    epoch = epoch_sums.tolist()
    shares = summary(epoch)
    return (epoch if total is None else [a + b for a, b in zip(total, epoch)]), {
        k: shares[k] for k in ("noisy_grad_share", "noisy_relative_weight")
    }


__all__ = ["SUMS", "add_epoch", "summary", "watch"]
