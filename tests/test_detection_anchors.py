"""Anchor generation, batched matching and box coding."""

from __future__ import annotations

import torch

from ghmbench.detection.anchors import BACKGROUND, IGNORE, BoxCoder, make_anchors, match_anchors


def matched_boxes(match) -> torch.Tensor:
    """Every anchor's matched box [B, A, 4] (zeros where unmatched), gathered for all anchors: the plain
    reference for ``MatchResult.matched_boxes_at``, which gathers at the positives only."""
    return torch.gather(match.boxes, 1, match.best_gt[..., None].expand(-1, -1, 4))


def test_make_anchors_order_and_shapes():
    anchors, levels = make_anchors([(2, 2), (1, 1)], [(8, 8), (16, 16)], (8.0, 16.0), (1.0,), (1.0, 2.0))
    assert anchors.shape == (2 * 2 * 2 + 2, 4)
    assert levels.tolist() == [0] * 8 + [1] * 2
    # first position (row 0, col 0) centred at (4, 4): a square 8x8 anchor, then ratio 2 (h = 2w)
    torch.testing.assert_close(anchors[0], torch.tensor([0.0, 0.0, 8.0, 8.0]))
    w = (64 / 2) ** 0.5
    torch.testing.assert_close(anchors[1], torch.tensor([4 - w / 2, 4 - w, 4 + w / 2, 4 + w]))
    # second anchor pair is column 1 of row 0 (centre x = 12)
    torch.testing.assert_close(anchors[2], torch.tensor([8.0, 0.0, 16.0, 8.0]))


def test_match_thresholds_ignore_and_low_quality():
    anchors = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # IoU 1 with box A -> fg
            [0.0, 0.0, 10.0, 5.5],  # IoU .55 with A -> fg
            [0.0, 0.0, 10.0, 4.5],  # IoU .45 with A -> ignored
            [0.0, 0.0, 10.0, 3.0],  # IoU .30 -> bg
            [50.0, 50.0, 60.0, 60.0],  # IoU .25 with box B (its best) -> low-quality fg
            [90.0, 90.0, 99.0, 99.0],  # nothing -> bg
        ]
    )
    boxes = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 70.0, 70.0]]), torch.zeros(0, 4)]
    labels = [torch.tensor([3, 7]), torch.zeros(0, dtype=torch.long)]
    m = match_anchors(anchors, boxes, labels, fg_iou=0.5, bg_iou=0.4, allow_low_quality=True)
    assert m.labels[0].tolist() == [3, 3, IGNORE, BACKGROUND, 7, BACKGROUND]
    assert m.labels[1].tolist() == [BACKGROUND] * 6  # an image without boxes is all background
    torch.testing.assert_close(matched_boxes(m)[0, 4], boxes[0][1])
    strict = match_anchors(anchors, boxes, labels, fg_iou=0.5, bg_iou=0.4, allow_low_quality=False)
    assert strict.labels[0, 4].item() == BACKGROUND
    assert strict.valid.sum().item() == 11 and strict.positive.sum().item() == 2


def test_box_coding_round_trip():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(100, 2, generator=g) * 50
    anchors = torch.cat([xy, xy + 5 + torch.rand(100, 2, generator=g) * 30], dim=1)
    xy2 = torch.rand(100, 2, generator=g) * 50
    boxes = torch.cat([xy2, xy2 + 5 + torch.rand(100, 2, generator=g) * 30], dim=1)
    coder = BoxCoder()
    deltas = coder.encode(boxes, anchors)
    torch.testing.assert_close(coder.decode(deltas, anchors), boxes, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(coder.encode(anchors, anchors), torch.zeros(100, 4))


def test_batched_matching_equals_torchvision_matcher_per_image():
    """The batched matching gives torchvision's Matcher's assignment image by image (boxes of
    different counts per image, so padding is exercised), and the positives' matched boxes."""
    from torchvision.models.detection._utils import Matcher
    from torchvision.ops import box_iou

    g = torch.Generator().manual_seed(3)
    anchors, _ = make_anchors([(8, 8), (4, 4)], [(8, 8), (16, 16)], (12.0, 24.0), (1.0, 1.26), (0.5, 1.0, 2.0))
    boxes, labels = [], []
    for count in [3, 1, 0, 5, 2]:
        xy = torch.rand(count, 2, generator=g) * 48
        boxes.append(torch.cat([xy, xy + 6 + torch.rand(count, 2, generator=g) * 20], dim=1))
        labels.append(torch.randint(0, 10, (count,), generator=g))
    m = match_anchors(anchors, boxes, labels, fg_iou=0.5, bg_iou=0.4, allow_low_quality=True)
    matcher = Matcher(0.5, 0.4, allow_low_quality_matches=True)
    for i, (b, lab) in enumerate(zip(boxes, labels)):
        if b.shape[0] == 0:
            assert (m.labels[i] == BACKGROUND).all()
            continue
        idx = matcher(box_iou(b, anchors))  # every box here overlaps some anchor, so no IoU-0 quirk
        expected = torch.where(
            idx >= 0, lab[idx.clamp(min=0)], torch.where(idx == Matcher.BETWEEN_THRESHOLDS, IGNORE, BACKGROUND)
        )
        assert torch.equal(m.labels[i], expected)
        pos = (idx >= 0).nonzero().squeeze(1)
        torch.testing.assert_close(matched_boxes(m)[i, pos], b[idx[pos]])
    flat = m.positive.reshape(-1).nonzero().squeeze(1)
    assert flat.numel() > 5
    torch.testing.assert_close(m.matched_boxes_at(flat), matched_boxes(m).reshape(-1, 4)[flat])
