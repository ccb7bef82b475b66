"""GHM-C and GHM-R (Li, Liu & Wang, "Gradient Harmonized Single-stage Detector", AAAI 2019):
the gradient-density weights, vectorised over entries and bins, and the two losses."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ghmbench.losses.common import PrecomputedGrad, signed_logits, valid_rows
from ghmbench.ranges import BINS, MOMENTUM, MU, require

MAX_LEVELS = 8
"""Upper bound on FPN levels for the per-level GHM density (P2..P7 needs 6)."""


def bin_index(g: Tensor, bins: int, dtype: torch.dtype = torch.long) -> Tensor:
    """Bin of each value among the edges j / M (M = bins; the last edge anything > 1).

    Returns j such that edges[j] <= g < edges[j + 1], with edges[j] the float32 value of j / M
    as ``torch.arange(M + 1, dtype=torch.float32) / M`` computes it: floor(g * M) is cheap
    (torch.bucketize is slower on the CPU) but float rounding can put a value within an ulp of
    an edge one bin off, so the two neighbouring edges are recomputed the same way and
    compared. Values >= (M - 1) / M land in the last bin (g <= 1 for GHM-C and GHM-R).

    Args:
        g: [...] float32 values in [0, 1]; NaN lands in the last bin (the loss is then NaN anyway).
        bins: M.
        dtype: integer dtype of the result.

    Returns:
        [...] bin indices in [0, M - 1].
    """
    return _bin_floats(g, bins, torch.empty_like(g), torch.empty_like(g)).to(dtype)


def _bin_floats(g: Tensor, bins: int, out: Tensor, scratch: Tensor) -> Tensor:
    """:func:`bin_index` as float32 values written into ``out``, with ``scratch`` as work space.

    Every pass writes into the two given buffers: a fresh large CPU buffer costs a page fault
    per page, more than the pass itself.
    """
    f = torch.mul(g, bins, out=out).floor_()
    torch.div(f, bins, out=scratch)  # the lower edge, as arange / M computes it
    f.sub_(torch.lt(g, scratch, out=scratch))
    torch.add(f, 1, out=scratch).div_(bins)  # the upper edge
    f.add_(torch.ge(g, scratch, out=scratch))
    # g = 1 gives M, NaN stays NaN (every comparison is false): fmin maps both to M - 1
    return torch.fmin(f, f.new_tensor(bins - 1.0), out=f)


def ghm_weights(
    g: Tensor,
    valid: Tensor,
    bins: int,
    tot: Tensor,
    running: Tensor | None,
    momentum: float,
    level_ids: Tensor | None = None,
    num_levels: int = 1,
    sync: bool = False,
    per_tot: bool = False,
    scale: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradient-density weights of GHM, vectorised over entries and bins.

    Args:
        g: [N, K] gradient norms (detached).
        valid: bool mask of valid entries, [N, K] or broadcastable to it ([N, 1] for whole rows).
        bins: M; a value v falls in bin j when j / M <= v < (j + 1) / M (see :func:`bin_index`;
            the last bin is closed above: GHM-C raises its last edge by 1e-6, GHM-R puts it at 1e3,
            and both g's are at most 1).
        tot: [L] valid-entry totals, one per density group (level), used in ``tot / R_j``.
        running: [M] running counts S (updated in place) or None when ``momentum == 0``.
        momentum: m in [0, 1).
        level_ids: [N] density group of each row (FPN level), or None for one group.
        num_levels: L, the number of density groups.
        sync: sum bin counts and tot over the default process group before weighting.
        per_tot: return weights already divided by their group's tot (the loss's normaliser).
        scale: constant factor of every weight (the loss weight).

    Returns:
        (weights [N, K] float32, zero for invalid entries; counts [L, M]; tot [L]) where counts
        and tot are the (possibly all-reduced) statistics the weights were computed from.
    """
    groups = num_levels * bins
    g = g.float()
    out, scratch = torch.empty_like(g), torch.empty_like(g)
    f = _bin_floats(g, bins, out, scratch)
    if level_ids is not None and num_levels > 1:
        f.add_(level_ids.view(-1, 1) * bins)
    f.masked_fill_(~valid, groups)  # invalid entries go to an extra group of weight 0
    flat_idx = scratch.view(torch.int32).copy_(f).view(-1)  # int32 indices, in the scratch memory
    counts = torch.zeros(groups + 1, dtype=torch.float32, device=g.device)
    counts.index_add_(0, flat_idx, torch.ones(1, dtype=torch.float32, device=g.device).expand(flat_idx.numel()))
    counts = counts[:groups].view(num_levels, bins)
    tot = tot.to(torch.float32)
    if sync and dist.is_available() and dist.is_initialized():
        packed = torch.cat([counts.reshape(-1), tot])
        dist.all_reduce(packed)
        counts, tot = packed[:groups].view(num_levels, bins), packed[groups:]
    tot = tot.clamp(min=1.0)
    table = _group_weights(counts, tot, running, momentum, per_tot, scale)
    return torch.index_select(table, 0, flat_idx, out=out.view(-1)).view(g.shape), counts, tot


def _group_weights(
    counts: Tensor, tot: Tensor, running: Tensor | None, momentum: float, per_tot: bool, scale: float
) -> Tensor:
    """The weight of each (level, bin) group, [L * M + 1], the last entry a 0 for the invalid
    entries' group; updates ``running`` in place (see :func:`ghm_weights`).

    Args:
        counts: [L, M] entries per group.
        tot: [L] valid-entry totals, already clamped to >= 1.
    """
    num_levels, bins = counts.shape
    groups = num_levels * bins
    nonempty = counts > 0
    n = nonempty.sum(dim=1, keepdim=True, dtype=torch.float32).clamp_(min=1)  # [L, 1]
    # the weight of each group, then a 0 for the invalid entries' group (few small ops: on
    # small inputs each op's fixed cost is what the loss's time is made of)
    table = counts.new_zeros(groups + 1)
    rows, zero = table[:groups].view(num_levels, bins), table[groups]
    if momentum > 0 and running is not None:
        for lvl in range(num_levels):  # levels share the running counts, updated in turn
            updated = momentum * running + (1.0 - momentum) * counts[lvl]
            torch.where(nonempty[lvl], updated, running, out=running)
            torch.where(nonempty[lvl], tot[lvl] / running.clamp(min=1e-12), zero, out=rows[lvl])
    else:
        torch.where(nonempty, tot[:, None] / counts.clamp(min=1.0), zero, out=rows)
    rows.mul_(scale / (n * tot[:, None]) if per_tot else scale / n)
    return table


class _GHMBase(nn.Module):
    """Shared state of GHM-C and GHM-R: bins, running counts and the last g histogram."""

    def __init__(self, bins: int, momentum: float, per_level: bool, sync: bool) -> None:
        super().__init__()
        require(BINS, bins)
        require(MOMENTUM, momentum)
        self.bins = bins
        self.momentum = momentum
        self.per_level = per_level
        self.sync = sync
        self.register_buffer("acc_sum", torch.zeros(bins, dtype=torch.float32))
        # Histogram of g over valid entries in the last call (summed over levels), for reports.
        self.register_buffer("last_counts", torch.zeros(bins, dtype=torch.float32), persistent=False)

    def _weights(self, g: Tensor, valid: Tensor, tot_rows: Tensor, level_ids: Tensor | None) -> Tensor:
        """GHM weights times the loss weight, divided by their tot, [N, K] (zero on invalid entries).

        Args:
            g: [N, K] detached gradient norms.
            valid: [N, K] or [N, 1] bool.
            tot_rows: [N] each row's contribution to tot.
            level_ids: [N] long level of each row, or None.
        """
        if self.per_level and level_ids is not None:
            # A fixed number of density groups avoids reading level_ids.max() on the host;
            # empty groups have no entries and leave the running counts untouched.
            tot = torch.zeros(MAX_LEVELS, dtype=torch.float32, device=g.device)
            tot.scatter_add_(0, level_ids, tot_rows)
            ids, num_levels = level_ids, MAX_LEVELS
        else:
            tot, ids, num_levels = tot_rows.sum().reshape(1), None, 1
        running = self.acc_sum if self.momentum > 0 else None
        weights, counts, _ = ghm_weights(
            g,
            valid,
            self.bins,
            tot,
            running,
            self.momentum,
            ids,
            num_levels,
            self.sync,
            per_tot=True,
            scale=self.loss_weight,
        )
        self.last_counts.copy_(counts.sum(dim=0))
        return weights


class GHMC(_GHMBase):
    """GHM-C: binary cross-entropy reweighted by the inverse gradient density.

    g = |sigmoid(x) - y|, M bins with edges j/M on [0, 1] (the last raised by 1e-6).

    Args:
        bins: number of unit regions M >= 1.
        momentum: running-count momentum m in [0, 1); 0 uses this batch's counts alone.
        loss_weight: multiplier of the final loss.
        per_level: compute the density per FPN level (as the mmdetection reference does,
            which calls the loss once per level); needs ``level_ids`` in ``forward``.
        sync: under torch.distributed, sum bin counts and tot over ranks (global density).
    """

    def __init__(
        self,
        bins: int = 30,
        momentum: float = 0.75,
        loss_weight: float = 1.0,
        per_level: bool = False,
        sync: bool = True,
    ) -> None:
        super().__init__(bins, momentum, per_level, sync)
        self.loss_weight = loss_weight

    def forward(
        self,
        pred: Tensor,
        target: Tensor,
        label_weight: Tensor,
        avg_factor: float | Tensor | None = None,
        level_ids: Tensor | None = None,
    ) -> Tensor:
        """Sum of w * BCE over valid entries / tot.

        Args:
            pred: [N, C] logits.
            target: [N, C] one-hot floats.
            label_weight: [N] or [N, C]; entries > 0 are valid.
            avg_factor: unused (GHM-C normalises by tot).
            level_ids: [N] long FPN level of each anchor, used when ``per_level``.

        Returns:
            0-dim tensor.
        """
        pred = pred.float()
        target = target.float()
        valid = valid_rows(label_weight)
        with torch.no_grad():
            z, neg_ce = signed_logits(pred, target)
            g = z.sigmoid_()  # |sigmoid(x) - y|
            tot_rows = valid.sum(dim=1, dtype=torch.float32) * (pred.shape[1] // valid.shape[1])
            w = self._weights(g, valid, tot_rows, level_ids)
            value = -neg_ce.mul_(w).sum()  # not torch.dot: it sums in float32 one by one (results/benchmarks.md)
            if not pred.requires_grad:
                return value
            grad = g.mul_(w)
            grad.addcmul_(grad, target, value=-2.0)  # d BCE / d x = (1 - 2y) g, weighted
        return PrecomputedGrad.apply(pred, value, grad)


class GHMR(_GHMBase):
    """GHM-R: authentic smooth L1 reweighted by the inverse gradient density.

    ASL1(d) = sqrt(d^2 + mu^2) - mu, g = |d| / sqrt(d^2 + mu^2); M bins with edges j/M, the
    last at 1e3; tot = sum of the valid entries' weights.

    Args:
        mu: ASL1 smoothing parameter > 0.
        bins: number of unit regions M >= 1.
        momentum: running-count momentum m in [0, 1).
        loss_weight: multiplier of the final loss (10 in the reference setup).
        per_level: compute the density per FPN level; needs ``level_ids`` in ``forward``.
        sync: under torch.distributed, sum bin counts and tot over ranks.
    """

    def __init__(
        self,
        mu: float = 0.02,
        bins: int = 10,
        momentum: float = 0.7,
        loss_weight: float = 10.0,
        per_level: bool = False,
        sync: bool = True,
    ) -> None:
        super().__init__(bins, momentum, per_level, sync)
        require(MU, mu)
        self.mu = mu
        self.loss_weight = loss_weight

    def forward(
        self,
        pred: Tensor,
        target: Tensor,
        label_weight: Tensor,
        avg_factor: float | Tensor | None = None,
        level_ids: Tensor | None = None,
    ) -> Tensor:
        """Sum of w * ASL1 over valid entries / tot.

        Args:
            pred: [N, 4] predicted deltas.
            target: [N, 4] target deltas.
            label_weight: [N] or [N, 4]; entries > 0 are valid.
            avg_factor: unused (GHM-R normalises by tot).
            level_ids: [N] long FPN level of each anchor, used when ``per_level``.

        Returns:
            0-dim tensor.
        """
        pred = pred.float()
        target = target.float()
        valid = valid_rows(label_weight)
        lw = label_weight.float().clamp(min=0)  # tot: the valid entries' weights
        tot_rows = lw * pred.shape[1] if lw.dim() == 1 else lw.sum(dim=1)
        with torch.no_grad():
            diff = pred.detach() - target
            root = torch.hypot(diff, diff.new_tensor(self.mu))  # sqrt(d^2 + mu^2)
            slope = diff.div_(root)  # d ASL1 / d d; its magnitude is g
            w = self._weights(slope.abs(), valid, tot_rows, level_ids)
            value = root.sub_(self.mu).mul_(w).sum()
        if not pred.requires_grad:
            return value
        return PrecomputedGrad.apply(pred, value, slope.mul_(w))
