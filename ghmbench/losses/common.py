"""What the losses share: valid-entry masks, the signed logits of the sigmoid losses, the
normaliser, and the autograd function that returns a loss whose gradient was computed with it."""

from __future__ import annotations

import torch
from torch import Tensor


def valid_mask(label_weight: Tensor, shape: torch.Size) -> Tensor:
    """Boolean [N, K] mask of valid entries from a [N] or [N, K] weight."""
    if label_weight.dim() == 1:
        label_weight = label_weight[:, None]
    return (label_weight > 0).expand(shape)


def valid_rows(label_weight: Tensor) -> Tensor:
    """Boolean mask of valid entries, [N, 1] for a [N] weight (broadcast over classes) or [N, K]."""
    return (label_weight[:, None] if label_weight.dim() == 1 else label_weight) > 0


def signed_logits(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """(z, -BCE) for 0/1 targets: z = x (1 - 2y), so sigmoid(z) = |sigmoid(x) - y| = 1 - p_t and
    BCE(x, y) = softplus(z) = -log sigmoid(-z) (cheap passes; log1p is slow on the CPU).

    sigmoid(-z) underflows in float32 beyond z ~ 88 (a confidently wrong logit): there
    softplus(z) = z to float precision, so -BCE = min(log max(sigmoid(-z), 1e-30), -z) stays
    finite and exact, as ``binary_cross_entropy_with_logits`` is.

    Args:
        pred: [N, C] float32 logits.
        target: [N, C] float32 targets in {0, 1}.

    Returns:
        (z [N, C], log sigmoid(-z) [N, C]), both fresh tensors.
    """
    z = torch.addcmul(pred.detach(), pred.detach(), target, value=-2.0)
    neg_ce = torch.neg(z).sigmoid_().clamp_(min=1e-30).log_().neg_()
    return z, torch.maximum(neg_ce, z, out=neg_ce).neg_()


def positive_anchors(target: Tensor, valid: Tensor) -> Tensor:
    """Number of anchors with at least one valid positive entry (a 0-dim tensor, no sync)."""
    return ((target > 0) & valid).any(dim=1).sum()


def normaliser(avg_factor: float | Tensor | None, fallback: Tensor | None) -> Tensor | float:
    """``max(1, avg_factor)`` when given, else ``max(1, fallback)``."""
    if avg_factor is None:
        assert fallback is not None
        return fallback.clamp(min=1).to(torch.float32)
    if isinstance(avg_factor, Tensor):
        return avg_factor.clamp(min=1).to(torch.float32)
    return max(1.0, float(avg_factor))


class PrecomputedGrad(torch.autograd.Function):
    """Returns a loss computed without autograd; backward scales a gradient computed with it.

    GHM's weights are constants of the backward pass, so d loss / d pred has a closed form
    (w (p - y) for GHM-C, w d / sqrt(d^2 + mu^2) for GHM-R) that costs one multiply in backward
    instead of replaying a chain of elementwise ops.
    """

    @staticmethod
    # type: ignore[override]
    def forward(ctx, pred: Tensor, value: Tensor, grad: Tensor, scale: Tensor | float = 1.0) -> Tensor:
        ctx.save_for_backward(grad)
        ctx.scale = scale  # a constant factor of grad, applied to the scalar grad_out
        return value.clone()

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad * (grad_out * ctx.scale), None, None, None
