"""Anchors per FPN level, anchor-to-box matching over a whole batch, box coding, and the IoU of box pairs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torchvision.models.detection._utils import BoxCoder as _TvBoxCoder
from torchvision.ops import box_area, box_iou

IGNORE = -2
BACKGROUND = -1


def make_anchors(
    shapes: list[tuple[int, int]],
    strides: list[tuple[float, float]],
    sizes: tuple[float, ...],
    scales: tuple[float, ...],
    aspect_ratios: tuple[float, ...],
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """Anchors for all levels, in the order the heads flatten their outputs.

    Order: level, then row y, column x, then anchor (scale-major, ratio-minor). Anchors are
    centred on the cell centres ((x + 0.5) * stride).

    Args:
        shapes: (H_l, W_l) of each level's feature map.
        strides: (stride_y, stride_x) of each level.
        sizes: base size per level.
        scales: octave scales.
        aspect_ratios: height / width.

    Returns:
        (anchors [A, 4] xyxy float32, level_ids [A] long with the index of each anchor's level).
    """
    all_anchors, all_levels = [], []
    for lvl, ((h, w), (sy, sx), size) in enumerate(zip(shapes, strides, sizes)):
        whs = []
        for s in scales:
            area = (size * s) ** 2
            for r in aspect_ratios:
                aw = math.sqrt(area / r)
                whs.append((aw, aw * r))
        wh = torch.tensor(whs, dtype=torch.float32, device=device)  # [K, 2]
        cy = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) * sy
        cx = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) * sx
        cyy, cxx = torch.meshgrid(cy, cx, indexing="ij")
        centers = torch.stack([cxx, cyy], dim=-1).reshape(-1, 1, 2)  # [HW, 1, 2]
        half = (wh / 2).reshape(1, -1, 2)
        anchors = torch.cat([centers - half, centers + half], dim=-1).reshape(-1, 4)
        all_anchors.append(anchors)
        all_levels.append(torch.full((anchors.shape[0],), lvl, dtype=torch.long, device=device))
    return torch.cat(all_anchors), torch.cat(all_levels)


class BoxCoder:
    """(dx, dy, dw, dh) box coding with unit weights, through torchvision's BoxCoder.

    Args:
        weights: (wx, wy, ww, wh) target scaling.
        clip: maximum dw, dh before exp when decoding.
    """

    def __init__(
        self, weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0), clip: float = math.log(1000.0 / 16)
    ) -> None:
        self._coder = _TvBoxCoder(weights, bbox_xform_clip=clip)

    def encode(self, boxes: Tensor, anchors: Tensor) -> Tensor:
        """Boxes [..., 4] and anchors [..., 4] (xyxy) -> deltas [..., 4]."""
        shape = boxes.shape
        return self._coder.encode_single(boxes.reshape(-1, 4), anchors.expand_as(boxes).reshape(-1, 4)).reshape(shape)

    def decode(self, deltas: Tensor, anchors: Tensor) -> Tensor:
        """Deltas [N, 4] applied to anchors [N, 4] -> boxes [N, 4] xyxy."""
        return self._coder.decode_single(deltas, anchors)


def paired_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of each box with the box at the same row (the diagonal of ``torchvision.ops.box_iou``, in
    O(N) memory rather than its N x N matrix: the IoU targets pair thousands of positives a batch).

    Args:
        boxes1, boxes2: [N, 4] xyxy.

    Returns:
        [N] IoU in [0, 1].
    """
    low = torch.maximum(boxes1[:, :2], boxes2[:, :2])
    high = torch.minimum(boxes1[:, 2:], boxes2[:, 2:])
    inter = (high - low).clamp(min=0).prod(dim=1)
    return inter / (box_area(boxes1) + box_area(boxes2) - inter)


@dataclass
class MatchResult:
    """labels [B, A]: class index, BACKGROUND (-1) or IGNORE (-2) of every anchor; boxes [B, G, 4]:
    the images' boxes (padded); best_gt [B, A]: the box of highest IoU of every anchor."""

    labels: Tensor
    boxes: Tensor
    best_gt: Tensor

    @property
    def positive(self) -> Tensor:
        return self.labels >= 0

    @property
    def valid(self) -> Tensor:
        return self.labels != IGNORE

    def matched_boxes_at(self, flat_idx: Tensor) -> Tensor:
        """[K, 4]: the matched boxes of the anchors at ``flat_idx`` into the flattened [B * A]."""
        image = torch.div(flat_idx, self.best_gt.shape[1], rounding_mode="floor")
        return self.boxes[image, self.best_gt.reshape(-1)[flat_idx]]


def _padded_boxes(
    anchors: Tensor, gt_boxes: list[Tensor], gt_labels: list[Tensor]
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Boxes [B, G, 4] and labels [B, G] of a batch, G the most boxes of an image, and which slots hold
    a box [B, G] (None when no image is padded)."""
    device, batch = anchors.device, len(gt_boxes)
    counts = [b.shape[0] for b in gt_boxes]
    gmax = max(counts + [1])
    if all(c == gmax for c in counts):  # every image has G boxes (one digit per canvas): no padding
        boxes = torch.stack([b.to(device, torch.float32) for b in gt_boxes])
        return boxes, torch.stack([lab.to(device) for lab in gt_labels]), None
    # padded to [B, G] in two C++ calls rather than a Python loop of copies per image
    boxes = pad_sequence(
        [b.to(device, torch.float32) for b in gt_boxes] + [anchors.new_zeros(gmax, 4)], batch_first=True
    )[:batch]
    labels = pad_sequence(
        [lab.to(device) for lab in gt_labels] + [torch.zeros(gmax, dtype=torch.long, device=device)],
        batch_first=True,
        padding_value=BACKGROUND,
    )[:batch]
    present = torch.arange(gmax, device=device) < torch.tensor(counts, device=device)[:, None]  # [B, G]
    return boxes, labels, present


def match_anchors(
    anchors: Tensor,
    gt_boxes: list[Tensor],
    gt_labels: list[Tensor],
    fg_iou: float = 0.5,
    bg_iou: float = 0.4,
    allow_low_quality: bool = True,
) -> MatchResult:
    """Assign every anchor of every image in one batched computation.

    An anchor is foreground when its best IoU with a box is >= ``fg_iou``, background when it
    is < ``bg_iou``, ignored in between. With ``allow_low_quality`` each box also claims the
    anchors whose IoU with it equals its highest IoU (> 0), as in torchvision's Matcher.

    The IoU is computed as [B, G, A] (boxes by anchors), so every reduction runs over a
    contiguous axis and yields [B, A] without a transpose; matched boxes are not gathered for all
    B x A anchors (training needs them at the positives only, :meth:`MatchResult.matched_boxes_at`).

    Args:
        anchors: [A, 4] xyxy.
        gt_boxes: per image [G_i, 4] xyxy.
        gt_labels: per image [G_i] long.

    Returns:
        :class:`MatchResult`.
    """
    device = anchors.device
    batch, num_anchors = len(gt_boxes), anchors.shape[0]
    boxes, labels, present = _padded_boxes(anchors, gt_boxes, gt_labels)
    gmax = boxes.shape[1]
    iou = box_iou(boxes.reshape(-1, 4), anchors).view(batch, gmax, num_anchors)
    if present is not None:
        iou.masked_fill_(~present[..., None], -1.0)
    if gmax == 1:
        best_iou = iou[:, 0]
        best_gt = torch.zeros(batch, num_anchors, dtype=torch.long, device=device)
        best_label = labels.expand(batch, num_anchors)
    else:
        best_iou, best_gt = iou.max(dim=1)  # [B, A]
        best_label = torch.gather(labels, 1, best_gt)
    assigned = torch.where(best_iou >= fg_iou, best_label, BACKGROUND)
    assigned.masked_fill_((best_iou >= bg_iou) & (best_iou < fg_iou), IGNORE)
    if allow_low_quality:
        best_per_gt = iou.amax(dim=2, keepdim=True)  # [B, G, 1]
        # a box with no positive IoU, or a padding slot (-1), claims nothing: compare with +inf there
        best_per_gt.masked_fill_(best_per_gt <= 0, float("inf"))
        low_quality = (iou == best_per_gt).any(dim=1)  # [B, A]
        assigned = torch.where(low_quality, best_label, assigned)
    return MatchResult(assigned, boxes, best_gt)
