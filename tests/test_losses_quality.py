"""The IoU-aware losses (QFL, VFL) and GIoU against hand computations, their one-hot special cases,
and the criterion's IoU targets against torchvision's box_iou of the decoded positives."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional
from torchvision.ops import box_iou, generalized_box_iou_loss

from ghmbench.detection.anchors import BoxCoder, make_anchors, match_anchors
from ghmbench.detection.criterion import DetectionCriterion
from ghmbench.detection.model import DetectorOutput
from ghmbench.losses import CrossEntropyLoss, FocalLoss, GIoULoss, QualityFocalLoss, SmoothL1Loss, VarifocalLoss


def _soft_inputs(n: int = 48, c: int = 4, seed: int = 0):
    """Logits [N, C], soft targets (an IoU in (0, 1) at a positive's class), and ~20% ignored rows."""
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(n, c, generator=g) * 3
    labels = torch.randint(-1, c, (n,), generator=g)
    target = torch.zeros(n, c)
    pos = labels >= 0
    target[pos, labels[pos]] = torch.rand(int(pos.sum()), generator=g) * 0.9 + 0.05
    weight = (torch.rand(n, generator=g) > 0.2).float()
    return pred, target, weight


def _by_hand(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, per_entry) -> tuple:
    """(value, d value / d pred) with ``per_entry(p, y, bce) -> (loss, d loss / d x)`` written out by hand."""
    p = pred.sigmoid()
    bce = -(target * p.log() + (1 - target) * (1 - p).log())
    loss, grad = per_entry(p, target, bce)
    valid = weight[:, None] > 0
    norm = 7.0
    return (loss * valid).sum() / norm, grad * valid / norm


def _qfl_by_hand(beta: float):
    def per_entry(p, y, bce):
        d = (y - p).abs()
        # d/dx |y - p|^beta = beta |y - p|^(beta - 1) sign(p - y) p (1 - p); d BCE / dx = p - y
        grad = beta * d.pow(beta - 1) * torch.sign(p - y) * p * (1 - p) * bce + d.pow(beta) * (p - y)
        return d.pow(beta) * bce, grad

    return per_entry


def _vfl_by_hand(alpha: float, gamma: float):
    def per_entry(p, y, bce):
        neg_loss = alpha * p.pow(gamma) * bce
        # d/dx alpha p^gamma BCE(p, 0) = alpha p^gamma (gamma (1 - p) BCE + p)
        neg_grad = alpha * p.pow(gamma) * (gamma * (1 - p) * bce + p)
        return torch.where(y > 0, y * bce, neg_loss), torch.where(y > 0, y * (p - y), neg_grad)

    return per_entry


@pytest.mark.parametrize(
    "loss,per_entry",
    [
        (QualityFocalLoss(beta=2.0), _qfl_by_hand(2.0)),
        (QualityFocalLoss(beta=1.5), _qfl_by_hand(1.5)),
        (VarifocalLoss(alpha=0.75, gamma=2.0), _vfl_by_hand(0.75, 2.0)),
        (VarifocalLoss(alpha=0.5, gamma=1.0), _vfl_by_hand(0.5, 1.0)),
    ],
)
def test_iou_aware_losses_equal_a_hand_computation(loss, per_entry):
    pred, target, weight = _soft_inputs()
    pred = pred.double().requires_grad_(True)  # float64 for the reference; the losses compute in float32
    value = loss(pred, target, weight, avg_factor=7)
    value.backward()
    want, want_grad = _by_hand(pred.detach(), target.double(), weight, per_entry)
    torch.testing.assert_close(value.double(), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pred.grad, want_grad, rtol=1e-4, atol=1e-6)


def test_qfl_at_beta_0_with_onehot_targets_is_bce():
    pred, target, weight = _soft_inputs(seed=1)
    onehot = (target > 0).float()
    qfl = QualityFocalLoss(beta=0.0)(pred, onehot, weight)
    torch.testing.assert_close(qfl, CrossEntropyLoss(alpha=None)(pred, onehot, weight))


def test_qfl_with_onehot_targets_is_focal_without_alpha():
    pred, target, weight = _soft_inputs(seed=2)
    onehot = (target > 0).float()
    qfl = QualityFocalLoss(beta=2.0)(pred, onehot, weight, avg_factor=5)
    torch.testing.assert_close(qfl, FocalLoss(alpha=None, gamma=2.0)(pred, onehot, weight, avg_factor=5))


def test_vfl_negative_term_is_focals_at_alpha_025():
    """On background alone (every target 0) VFL (alpha .75) is Focal (alpha .25: negatives weigh .75)."""
    pred, _, weight = _soft_inputs(seed=3)
    zeros = torch.zeros_like(pred)
    vfl = VarifocalLoss(alpha=0.75, gamma=2.0)(pred, zeros, weight, avg_factor=3)
    torch.testing.assert_close(vfl, FocalLoss(alpha=0.25, gamma=2.0)(pred, zeros, weight, avg_factor=3))


def test_vfl_weighs_positives_by_their_iou():
    pred = torch.zeros(1, 1)
    for iou in (0.2, 0.9):
        got = VarifocalLoss()(pred, torch.full((1, 1), iou), torch.ones(1), avg_factor=1)
        want = iou * functional.binary_cross_entropy_with_logits(pred, torch.full((1, 1), iou))
        torch.testing.assert_close(got, want)


def test_ignored_entries_add_nothing():
    pred, target, weight = _soft_inputs(seed=4)
    for loss in (QualityFocalLoss(), VarifocalLoss()):
        changed = pred.clone()
        changed[weight == 0] = 100.0  # confidently wrong, but ignored
        torch.testing.assert_close(loss(changed, target, weight, 4), loss(pred, target, weight, 4))


def test_giou_loss_is_torchvisions_over_valid_boxes():
    g = torch.Generator().manual_seed(5)
    xy = torch.rand(20, 2, generator=g) * 50
    pred = torch.cat([xy, xy + torch.rand(20, 2, generator=g) * 30 + 1], 1)
    target = pred + torch.randn(20, 4, generator=g) * 3
    target[:, 2:] = torch.maximum(target[:, 2:], target[:, :2] + 1)
    weight = (torch.rand(20, generator=g) > 0.3).float()
    got = GIoULoss(loss_weight=2.0)(pred, target, weight, avg_factor=9)
    want = 2.0 * (generalized_box_iou_loss(pred, target, reduction="none") * weight).sum() / 9
    torch.testing.assert_close(got, want)


class _Recorder(QualityFocalLoss):
    """QFL that keeps the targets and weights the criterion gave it."""

    def forward(self, pred, target, label_weight, avg_factor=None, level_ids=None):
        self.seen = (target.detach().clone(), label_weight.detach().clone())
        return super().forward(pred, target, label_weight, avg_factor, level_ids)


def _batch(seed: int = 6):
    g = torch.Generator().manual_seed(seed)
    anchors, level_ids = make_anchors([(8, 8), (4, 4)], [(8, 8), (16, 16)], (16.0, 32.0), (1.0,), (0.5, 1.0, 2.0))
    batch, classes = 3, 4
    logits = torch.randn(batch, anchors.shape[0], classes, generator=g)
    deltas = (torch.randn(batch, anchors.shape[0], 4, generator=g) * 0.3).requires_grad_(True)
    boxes = [torch.tensor([[4.0, 6.0, 30.0, 28.0], [30.0, 30.0, 60.0, 62.0]]), torch.tensor([[10.0, 10.0, 40.0, 50.0]])]
    boxes.append(torch.zeros(0, 4))  # an image without objects
    labels = [torch.tensor([1, 3]), torch.tensor([2]), torch.zeros(0, dtype=torch.long)]
    return DetectorOutput(logits, deltas, anchors, level_ids), boxes, labels


def test_iou_targets_are_the_iou_of_the_decoded_positives():
    out, boxes, labels = _batch()
    recorder = _Recorder()
    criterion = DetectionCriterion(recorder, SmoothL1Loss(), 0.5, 0.4, True)
    criterion(out, boxes, labels)
    target, weight = recorder.seen
    match = match_anchors(out.anchors, boxes, labels, 0.5, 0.4, True)
    pos = match.positive.reshape(-1).nonzero().squeeze(1)
    assert pos.numel() > 3
    num_anchors = out.anchors.shape[0]
    decoded = BoxCoder().decode(out.box_deltas.detach().reshape(-1, 4)[pos], out.anchors[pos % num_anchors])
    want = box_iou(decoded, match.matched_boxes_at(pos)).diagonal()
    pos_labels = match.labels.reshape(-1)[pos]
    torch.testing.assert_close(target[pos, pos_labels], want)
    assert (want > 0).all() and (want < 1).all()
    rest = torch.ones_like(target, dtype=torch.bool)
    rest[pos, pos_labels] = False
    assert (target[rest] == 0).all()  # every other entry, background and other classes, is 0
    torch.testing.assert_close(weight, match.valid.reshape(-1).float())  # ignored anchors stay ignored
    assert (weight == 0).any()


def test_onehot_losses_still_get_onehot_targets():
    out, boxes, labels = _batch()

    class OneHotRecorder(FocalLoss):
        def forward(self, pred, target, label_weight, avg_factor=None, level_ids=None):
            self.seen = target.detach().clone()
            return super().forward(pred, target, label_weight, avg_factor, level_ids)

    recorder = OneHotRecorder()
    DetectionCriterion(recorder, SmoothL1Loss(), 0.5, 0.4, True)(out, boxes, labels)
    assert set(recorder.seen.unique().tolist()) == {0.0, 1.0}


def test_giou_gets_the_decoded_boxes_and_their_gradient_reaches_the_deltas():
    out, boxes, labels = _batch()
    criterion = DetectionCriterion(FocalLoss(), GIoULoss(loss_weight=1.0), 0.5, 0.4, True)
    _, loss_box, num_pos = criterion(out, boxes, labels)
    match = match_anchors(out.anchors, boxes, labels, 0.5, 0.4, True)
    pos = match.positive.reshape(-1).nonzero().squeeze(1)
    decoded = BoxCoder().decode(out.box_deltas.reshape(-1, 4)[pos], out.anchors[pos % out.anchors.shape[0]])
    want = generalized_box_iou_loss(decoded, match.matched_boxes_at(pos), reduction="sum") / num_pos
    torch.testing.assert_close(loss_box, want)
    loss_box.backward()
    assert out.box_deltas.grad.abs().sum() > 0
