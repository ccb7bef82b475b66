"""The detection criterion: anchor matching, targets and the two losses of one batch.

:class:`DetectionCriterion` turns the detector's raw outputs and the ground truth into
(classification loss, box loss, number of positive anchors), like torchvision's
``RetinaNetHead.compute_loss`` or effdet's ``DetectionLoss``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from ghmbench import distributed
from ghmbench.detection import noisy_weight
from ghmbench.detection.anchors import BoxCoder, MatchResult, match_anchors, paired_iou
from ghmbench.detection.model import DetectorOutput
from ghmbench.losses import build_loss


def is_globally_normalised(loss: nn.Module) -> bool:
    """Whether ``loss`` normalises by global quantities under torch.distributed.

    A loss says so with its ``sync`` attribute (GHM-C / GHM-R: ``sync=False`` is the per-GPU
    density of the reference). A loss without the attribute, such as a user's own, is normalised
    by the global number of positives it is given (``avg_factor``) and so counts as ``sync=True``.
    """
    return getattr(loss, "sync", True)


class _Positives(NamedTuple):
    """The positive anchors of a batch: ``index`` [K] into the flattened [B * A] anchors, their ``anchors``
    [K, 4] and matched ground-truth ``boxes`` [K, 4], xyxy."""

    index: Tensor
    anchors: Tensor
    boxes: Tensor


class DetectionCriterion(nn.Module):
    """Anchor matching, classification and box targets, and the two losses of a batch.

    Args:
        cls_loss: classification loss module (``cfg.loss``).
        box_loss: box regression loss module (``cfg.regression``).
        fg_iou: IoU from which an anchor is positive.
        bg_iou: IoU below which an anchor is background (between the two: ignored).
        allow_low_quality: every object also gets its anchors of highest IoU as positives.
        coder: the box coder of the regression targets.
    """

    def __init__(
        self,
        cls_loss: nn.Module,
        box_loss: nn.Module,
        fg_iou: float,
        bg_iou: float,
        allow_low_quality: bool,
        coder: BoxCoder | None = None,
    ) -> None:
        super().__init__()
        self.cls_loss = cls_loss
        self.box_loss = box_loss
        self.fg_iou = fg_iou
        self.bg_iou = bg_iou
        self.allow_low_quality = allow_low_quality
        self.coder = coder if coder is not None else BoxCoder()

    @property
    def matcher(self) -> tuple[float, float, bool]:
        """(fg_iou, bg_iou, allow_low_quality): the matcher's settings, as
        :func:`~ghmbench.detection.anchors.match_anchors` takes them."""
        return self.fg_iou, self.bg_iou, self.allow_low_quality

    @classmethod
    def from_config(cls, cfg: DictConfig) -> DetectionCriterion:
        """The criterion of a validated config: ``cfg.loss`` / ``cfg.regression`` instantiated from
        their ``_target_`` (:func:`ghmbench.losses.build_loss`), built-in or the user's own, and
        the matcher thresholds of ``cfg.model``."""
        model_cfg = cfg.model
        return cls(
            build_loss("loss", cfg.loss),
            build_loss("regression", cfg.regression),
            model_cfg.fg_iou,
            model_cfg.bg_iou,
            model_cfg.allow_low_quality,
        )

    def forward(
        self,
        out: DetectorOutput,
        gt_boxes: list[Tensor],
        gt_labels: list[Tensor],
        g_hist: Tensor | None = None,
        anchor_counts: Tensor | None = None,
        noisy_boxes: list[Tensor] | None = None,
        noisy_sums: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Match anchors for the whole batch and apply both losses.

        Args:
            g_hist: optional [K] float64 histogram on [0, 1]; gets the gradient norms g = |sigmoid(x) - y| of the valid
            entries.
            anchor_counts: optional [4] float64; gets this batch's (images, positive, negative, ignored anchors).
            noisy_boxes, noisy_sums: optional, see :func:`ghmbench.detection.noisy_weight.watch` (the gradient weight on
            mislabelled objects).

        Under torch.distributed the batch is this rank's shard of the global batch: the losses are
        normalised by the global number of positives (GHM by its global tot), and what is returned
        is this rank's share of the global-batch loss (the shares summed over ranks give its value).

        Returns:
            (classification loss, regression loss, number of positive anchors of the global batch), 0-dim tensors.
        """
        batch, num_anchors, num_classes = out.cls_logits.shape
        match = match_anchors(out.anchors, gt_boxes, gt_labels, *self.matcher)
        positive = match.positive
        # Box losses and IoU targets need the positive anchors alone (~2% of the rows); the index costs
        # one device sync, which the training loop's per-step read of the losses makes anyway.
        pos_idx = positive.reshape(-1).nonzero().squeeze(1)
        pos = _Positives(pos_idx, out.anchors[pos_idx % num_anchors], match.matched_boxes_at(pos_idx))
        pos_deltas = out.box_deltas.reshape(-1, 4)[pos_idx]
        cls_target = self._cls_target(out, match, pos, pos_deltas)
        num_pos = distributed.all_reduce_sum(positive.sum())
        level_ids = out.level_ids.repeat(batch)
        loss_cls = self.cls_loss(
            out.cls_logits.reshape(-1, num_classes),
            cls_target.reshape(-1, num_classes),
            match.valid.reshape(-1).float(),
            avg_factor=num_pos,
            level_ids=level_ids,
        )
        self._observe(out, cls_target, match, g_hist, anchor_counts, (noisy_boxes, noisy_sums))
        loss_box = self._box_loss(pos, pos_deltas, num_pos, level_ids[pos_idx])
        return (
            distributed.share_of_global(loss_cls, is_globally_normalised(self.cls_loss)),
            distributed.share_of_global(loss_box, is_globally_normalised(self.box_loss)),
            num_pos,
        )

    def _box_loss(self, pos: _Positives, pos_deltas: Tensor, num_pos: Tensor, level_ids: Tensor) -> Tensor:
        """The box loss of the positives: on their deltas against the encoded targets, or for a loss that asks
        for them (``decoded_boxes``) on the decoded boxes against the matched boxes."""
        if getattr(self.box_loss, "decoded_boxes", False):
            pred, target = self.coder.decode(pos_deltas.float(), pos.anchors), pos.boxes
        else:
            pred, target = pos_deltas, self.coder.encode(pos.boxes, pos.anchors)
        return self.box_loss(pred, target, target.new_ones(pos.index.numel()), avg_factor=num_pos, level_ids=level_ids)

    def _cls_target(self, out: DetectorOutput, match: MatchResult, pos: _Positives, pos_deltas: Tensor) -> Tensor:
        """[B, A, C] classification targets: one-hot, or for a loss that asks for them (``iou_targets``) the
        IoU of the box predicted at each positive anchor (decoded, detached) with its matched box, in float32."""
        batch, num_anchors, num_classes = out.cls_logits.shape
        labels = match.labels.clamp(min=0)
        if not getattr(self.cls_loss, "iou_targets", False):
            onehot = out.cls_logits.new_zeros(batch, num_anchors, num_classes)
            return onehot.scatter_(2, labels[..., None], match.positive[..., None].to(onehot.dtype))
        with torch.no_grad():
            iou = paired_iou(self.coder.decode(pos_deltas.detach().float(), pos.anchors), pos.boxes)
        soft = torch.zeros(batch * num_anchors, num_classes, dtype=torch.float32, device=out.cls_logits.device)
        soft[pos.index, labels.reshape(-1)[pos.index]] = iou
        return soft.view(batch, num_anchors, num_classes)

    def _observe(
        self,
        out: DetectorOutput,
        cls_target: Tensor,
        match: MatchResult,
        g_hist: Tensor | None,
        anchor_counts: Tensor | None,
        noisy: tuple,
    ) -> None:
        """The diagnostics :meth:`forward` was asked for (its arguments of the same names; ``cls_target``: the
        classification targets; ``noisy``: (noisy_boxes, noisy_sums))."""
        if anchor_counts is not None:
            _add_anchor_counts(anchor_counts, match.positive, match.valid)
        if g_hist is not None:
            _add_gradient_norms(g_hist, out.cls_logits, cls_target, match.valid)
        if noisy[0] is not None and noisy[1] is not None:
            noisy_weight.watch(
                out.cls_logits, out.anchors, noisy[0], match.positive, match.valid, self.matcher, noisy[1]
            )


@torch.no_grad()
def _add_anchor_counts(anchor_counts: Tensor, positive: Tensor, valid: Tensor) -> None:
    """Adds (images, positive, negative, ignored anchors) of this rank's shard [B, A] to ``anchor_counts`` [4]."""
    batch, num_anchors = positive.shape
    pos, num_valid = int(positive.sum()), int(valid.sum())
    anchor_counts += torch.tensor([batch, pos, num_valid - pos, batch * num_anchors - num_valid], dtype=torch.float64)


@torch.no_grad()
def _add_gradient_norms(g_hist: Tensor, cls_logits: Tensor, target: Tensor, valid: Tensor) -> None:
    """Adds the gradient norms g = |sigmoid(x) - y| of the valid anchor x class entries to the
    histogram ``g_hist`` [K] on [0, 1] (y: the classification targets, one-hot or IoU-aware)."""
    g = (torch.sigmoid(cls_logits.detach().float()) - target).abs()
    idx = (g * g_hist.numel()).long().clamp_(max=g_hist.numel() - 1)
    valid = valid[..., None].expand_as(g)
    g_hist.scatter_add_(0, idx.reshape(-1).cpu(), valid.reshape(-1).double().cpu())


def anchor_stats(counts: Tensor) -> dict:
    """(images, positive, negative, ignored) anchor counts [4] (the criterion's ``anchor_counts``)
    -> per-image means and neg : pos."""
    images, pos, neg, ign = counts.tolist()
    n = max(images, 1.0)
    return {
        "positive_per_image": pos / n,
        "negative_per_image": neg / n,
        "ignored_per_image": ign / n,
        "neg_per_pos": neg / pos if pos else None,
    }


__all__ = ["DetectionCriterion", "anchor_stats", "is_globally_normalised"]
