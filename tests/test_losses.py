"""Loss values and gradients against independent references and hand-computed GHM weights."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional
from torchvision.ops import sigmoid_focal_loss

from ghmbench.losses import GHMC, GHMR, CrossEntropyLoss, FocalLoss, L1Loss, SmoothL1Loss


def _cls_inputs(n: int = 64, c: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(n, c, generator=g) * 3
    labels = torch.randint(-1, c, (n,), generator=g)  # -1 = background
    target = torch.zeros(n, c)
    target[labels >= 0, labels[labels >= 0]] = 1.0
    weight = (torch.rand(n, generator=g) > 0.2).float()  # ~20% ignored anchors
    return pred, target, weight


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (0.5, 1.0), (0.75, 0.0), (None, 2.0), (0.25, 0.5)])
def test_focal_equals_torchvision(alpha, gamma):
    pred, target, weight = _cls_inputs()
    pred.requires_grad_(True)
    ours = FocalLoss(alpha=alpha, gamma=gamma)(pred, target, weight)
    ref_pred = pred.detach().clone().requires_grad_(True)
    per_entry = sigmoid_focal_loss(
        ref_pred, target, alpha=-1 if alpha is None else alpha, gamma=gamma, reduction="none"
    )
    num_pos = ((target.sum(1) > 0) & (weight > 0)).sum().clamp(min=1)
    ref = (per_entry * weight[:, None]).sum() / num_pos
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(pred.grad, ref_pred.grad, rtol=1e-4, atol=1e-7)


def test_focal_gamma0_is_alpha_balanced_ce_and_avg_factor():
    pred, target, weight = _cls_inputs(seed=1)
    focal = FocalLoss(alpha=0.75, gamma=0.0)(pred, target, weight, avg_factor=7)
    ce = CrossEntropyLoss(alpha=0.75)(pred, target, weight, avg_factor=7)
    torch.testing.assert_close(focal, ce)
    # avg_factor replaces the number of positives
    ref = (
        functional.binary_cross_entropy_with_logits(pred, target, reduction="none")
        * (0.75 * target + 0.25 * (1 - target))
        * weight[:, None]
    ).sum() / 7
    torch.testing.assert_close(ce, ref)


def test_ce_equals_bce_with_per_entry_weights():
    pred, target, _ = _cls_inputs(seed=2)
    weight = (torch.rand(pred.shape, generator=torch.Generator().manual_seed(3)) > 0.3).float()
    pred.requires_grad_(True)
    loss = CrossEntropyLoss(loss_weight=2.0)(pred, target, weight)
    num_pos = ((target > 0) & (weight > 0)).any(1).sum().clamp(min=1)
    ref = 2.0 * functional.binary_cross_entropy_with_logits(pred, target, weight=weight, reduction="sum") / num_pos
    torch.testing.assert_close(loss, ref)
    (grad,) = torch.autograd.grad(loss, pred)
    expected = 2.0 * (torch.sigmoid(pred) - target) * weight / num_pos
    torch.testing.assert_close(grad, expected)


def test_focal_saturated_logits_have_finite_gradients():
    pred = torch.tensor([[40.0, -40.0]], requires_grad=True)
    target = torch.tensor([[1.0, 0.0]])
    loss = FocalLoss(alpha=0.25, gamma=0.1)(pred, target, torch.ones(1))
    loss.backward()
    assert torch.isfinite(pred.grad).all()


@pytest.mark.parametrize(
    "make", [lambda: FocalLoss(alpha=0.25, gamma=2.0), lambda: CrossEntropyLoss(alpha=None), lambda: GHMC(momentum=0.0)]
)
def test_confidently_wrong_logits_give_finite_exact_losses(make):
    # beyond |x| ~ 88 sigmoid underflows in float32; BCE there is |x| and must stay finite
    pred = torch.tensor([[-120.0, 95.0, -30.0, 0.5]], requires_grad=True)
    target = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    loss = make()(pred, target, torch.ones(1), avg_factor=1)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
    if isinstance(make(), FocalLoss):
        torch.testing.assert_close(
            loss, sigmoid_focal_loss(pred.detach().double(), target.double(), 0.25, 2.0, "sum").float()
        )
    elif isinstance(make(), CrossEntropyLoss):
        torch.testing.assert_close(
            loss, functional.binary_cross_entropy_with_logits(pred.detach(), target, reduction="sum")
        )


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("alpha", [0.25, None])
def test_focal_closed_form_gradient_equals_autograd_of_the_formula(alpha, gamma):
    # logits from saturated to zero on both targets, per-entry label weights, a loss weight and
    # avg_factor; the reference is torchvision's formula under autograd in float64
    logits = torch.tensor([-40.0, -17.0, -9.0, -3.0, -0.5, 0.0, 0.5, 3.0, 9.0, 17.0, 40.0])
    pred = torch.cat([logits, logits]).reshape(2, -1).T.contiguous().requires_grad_(True)  # [11, 2]
    target = torch.zeros_like(pred)
    target[:, 0] = 1.0
    weight = torch.ones_like(pred)
    weight[3, 1] = 0.0
    loss = FocalLoss(alpha=alpha, gamma=gamma, loss_weight=3.0)(pred, target, weight, avg_factor=4)
    (grad,) = torch.autograd.grad(loss, pred)
    ref_pred = pred.detach().double().requires_grad_(True)
    per_entry = sigmoid_focal_loss(
        ref_pred, target.double(), alpha=-1 if alpha is None else alpha, gamma=gamma, reduction="none"
    )
    ref = 3.0 * (per_entry * weight).sum() / 4
    (ref_grad,) = torch.autograd.grad(ref, ref_pred)
    torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=1e-7)
    if gamma >= 1:  # below 1, autograd's q^(gamma - 1) is inf at a saturated q = 0 (torchvision gives NaN there)
        torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-4, atol=1e-7)
    else:
        finite = torch.isfinite(ref_grad)
        torch.testing.assert_close(grad.double()[finite], ref_grad[finite], rtol=1e-4, atol=1e-7)
    assert torch.isfinite(grad).all()
    assert grad[3, 1] == 0


# ----------------------------------------------------------------------------- GHM-C by hand


def _ghmc_inputs(gs: list[list[float]], ys: list[list[float]]):
    """Logits giving gradient norms g = |p - y| exactly as listed (BCE = -log(1 - g))."""
    pred = torch.tensor(
        [[_logit(1 - g) if y == 1 else _logit(g) for g, y in zip(gr, yr)] for gr, yr in zip(gs, ys)],
        dtype=torch.float64,
    )
    return pred.float().requires_grad_(True), torch.tensor(ys)


def _bce(g: float) -> float:
    return -math.log(1 - g)


def test_ghmc_without_momentum_hand_computed():
    # 3 anchors x 2 classes; the third anchor is ignored. bins = 4: edges 0, .25, .5, .75, 1+1e-6.
    gs = [[0.10, 0.20], [0.60, 0.90], [0.30, 0.35]]
    ys = [[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]
    pred, target = _ghmc_inputs(gs, ys)
    loss_fn = GHMC(bins=4, momentum=0.0)
    loss = loss_fn(pred, target, torch.tensor([1.0, 1.0, 0.0]))
    # valid g: .1 .2 (bin 0), .6 (bin 2), .9 (bin 3); bin 1 empty. tot = 4, n = 3 non-empty bins.
    # weights: bin0 4/2/3 = 2/3, bin2 4/1/3 = 4/3, bin3 4/1/3 = 4/3
    w = [2 / 3, 2 / 3, 4 / 3, 4 / 3]
    expected = (w[0] * _bce(0.1) + w[1] * _bce(0.2) + w[2] * _bce(0.6) + w[3] * _bce(0.9)) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    # d/dx of w * BCE / tot with detached w is w * (p - y) / tot; ignored entries get 0.
    p = torch.sigmoid(pred.detach())
    expected_grad = torch.tensor([[2 / 3, 2 / 3], [4 / 3, 4 / 3], [0.0, 0.0]]) * (p - target) / 4
    torch.testing.assert_close(pred.grad, expected_grad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(loss_fn.last_counts, torch.tensor([2.0, 0.0, 1.0, 1.0]))


def test_ghmc_momentum_over_successive_calls_hand_computed():
    loss_fn = GHMC(bins=4, momentum=0.75)
    # call 1: valid g .1 .2 | .6 | .9 -> R = [2, 0, 1, 1], tot 4
    pred, target = _ghmc_inputs([[0.10, 0.20], [0.60, 0.90]], [[0.0, 1.0], [1.0, 0.0]])
    loss1 = loss_fn(pred, target, torch.ones(2))
    # S = 0.25 * R (S starts at 0) = [.5, 0, .25, .25]; n = 3
    # weights tot/S/n: bin0 4/.5/3 = 8/3, bin2 4/.25/3 = 16/3, bin3 16/3
    expected1 = (8 / 3 * (_bce(0.1) + _bce(0.2)) + 16 / 3 * (_bce(0.6) + _bce(0.9))) / 4
    assert loss1.item() == pytest.approx(expected1, rel=1e-5)
    torch.testing.assert_close(loss_fn.acc_sum, torch.tensor([0.5, 0.0, 0.25, 0.25]))
    # call 2: valid g .3 .4 .45 (bin 1) and .05 (bin 0); one ignored anchor. R = [1, 3, 0, 0], tot 4
    pred, target = _ghmc_inputs([[0.30, 0.40], [0.45, 0.05], [0.95, 0.95]], [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    loss2 = loss_fn(pred, target, torch.tensor([1.0, 1.0, 0.0]))
    # S0 = .75*.5 + .25*1 = .625; S1 = .75*0 + .25*3 = .75; S2, S3 keep .25 (empty now); n = 2
    # weights: bin0 4/.625/2 = 3.2, bin1 4/.75/2 = 8/3
    expected2 = (3.2 * _bce(0.05) + 8 / 3 * (_bce(0.3) + _bce(0.4) + _bce(0.45))) / 4
    assert loss2.item() == pytest.approx(expected2, rel=1e-5)
    torch.testing.assert_close(loss_fn.acc_sum, torch.tensor([0.625, 0.75, 0.25, 0.25]))
    # call 3: all in bin 3 -> R = [0,0,0,2]; S3 = .75*.25 + .25*2 = .6875; n = 1; w = 2/.6875
    pred, target = _ghmc_inputs([[0.80, 0.85]], [[0.0, 0.0]])
    loss3 = loss_fn(pred, target, torch.ones(1))
    assert loss3.item() == pytest.approx((2 / 0.6875) * (_bce(0.8) + _bce(0.85)) / 2, rel=1e-5)
    # running counts are a buffer: they travel with state_dict (and so with checkpoints)
    torch.testing.assert_close(loss_fn.state_dict()["acc_sum"], torch.tensor([0.625, 0.75, 0.25, 0.6875]))


def test_ghmc_g_equal_one_falls_in_last_bin_and_all_ignored_is_zero():
    loss_fn = GHMC(bins=3, momentum=0.0)
    pred = torch.tensor([[-200.0, 200.0]])  # p = 0 with y = 1 and p = 1 with y = 0: g = 1 both
    target = torch.tensor([[1.0, 0.0]])
    loss_fn(pred, target, torch.ones(1))
    torch.testing.assert_close(loss_fn.last_counts, torch.tensor([0.0, 0.0, 2.0]))
    zero = loss_fn(torch.randn(4, 3, requires_grad=True), torch.zeros(4, 3), torch.zeros(4))
    assert zero.item() == 0.0


def test_ghmc_per_level_density_hand_computed():
    # two levels, one anchor each with two classes; bins = 2 (edges 0, .5, 1+1e-6); no momentum
    pred, target = _ghmc_inputs([[0.1, 0.2], [0.3, 0.7]], [[0.0, 0.0], [0.0, 1.0]])
    levels = torch.tensor([0, 1])
    whole = GHMC(bins=2, momentum=0.0)(pred, target, torch.ones(2), level_ids=levels)
    # whole batch: R = [3, 1], tot 4, n 2: w0 = 4/3/2 = 2/3, w1 = 4/1/2 = 2
    assert whole.item() == pytest.approx((2 / 3 * (_bce(0.1) + _bce(0.2) + _bce(0.3)) + 2 * _bce(0.7)) / 4, rel=1e-5)
    per_level = GHMC(bins=2, momentum=0.0, per_level=True)(pred, target, torch.ones(2), level_ids=levels)
    # level 0: R = [2, 0], tot 2, n 1: w = 1, loss0 = (bce.1 + bce.2) / 2
    # level 1: R = [1, 1], tot 2, n 2: w = 2/1/2 = 1, loss1 = (bce.3 + bce.7) / 2; total = sum
    expected = (_bce(0.1) + _bce(0.2)) / 2 + (_bce(0.3) + _bce(0.7)) / 2
    assert per_level.item() == pytest.approx(expected, rel=1e-5)


def _bench_losses():
    """scripts/bench_losses.py: its per-bin loops are the benchmark's baselines and these tests' references."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "bench_losses.py"
    spec = importlib.util.spec_from_file_location("bench_losses", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("momentum", [0.0, 0.75])
def test_ghmc_matches_loop_reference_over_calls(momentum):
    loop_ghmc = _bench_losses().loop_ghmc  # a straightforward per-bin loop, as the mmdetection reference
    loss_fn = GHMC(bins=30, momentum=momentum)
    acc = torch.zeros(30)
    for seed in range(4):
        pred, target, weight = _cls_inputs(n=500, c=8, seed=seed)
        ref = loop_ghmc(pred, target, weight, acc, bins=30, momentum=momentum)
        torch.testing.assert_close(loss_fn(pred, target, weight), ref.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss_fn.acc_sum, acc)


# ----------------------------------------------------------------------------- regression


def test_smooth_l1_and_l1_against_torch():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(40, 4, generator=g), torch.randn(40, 4, generator=g)
    weight = (torch.rand(40, generator=g) > 0.5).float()
    npos = weight.sum().clamp(min=1)
    ref = (functional.smooth_l1_loss(pred, target, beta=0.11, reduction="none") * weight[:, None]).sum() / npos
    torch.testing.assert_close(SmoothL1Loss(beta=0.11)(pred, target, weight), ref)
    ref_l1 = ((pred - target).abs() * weight[:, None]).sum() / npos
    torch.testing.assert_close(L1Loss()(pred, target, weight), ref_l1)


def _asl1(d: float, mu: float = 0.02) -> float:
    return math.sqrt(d * d + mu * mu) - mu


def test_ghmr_hand_computed_with_momentum_and_ignored_rows():
    mu = 0.02
    loss_fn = GHMR(mu=mu, bins=10, momentum=0.0, loss_weight=1.0)
    # g = |d| / sqrt(d^2 + mu^2): d=.01 -> .447 (bin 4); d=.1 -> .981 (bin 9); d=.03 -> .832 (bin 8);
    # d=-.005 -> .243 (bin 2); d=.2 -> .995 (bin 9)
    d = torch.tensor([[0.01, 0.1, 0.03, -0.005], [0.2, 0.2, 0.2, 0.2], [5.0, 5.0, 5.0, 5.0]])
    pred = d.clone().requires_grad_(True)
    weight = torch.tensor([1.0, 1.0, 0.0])  # the third row is ignored
    loss = loss_fn(pred, torch.zeros(3, 4), weight)
    # tot = 8 entries; R: bin2 1, bin4 1, bin8 1, bin9 5; n = 4
    # w = tot/R/n: bin2 2, bin4 2, bin8 2, bin9 8/5/4 = .4
    expected = (2 * (_asl1(0.01) + _asl1(0.03) + _asl1(-0.005)) + 0.4 * (_asl1(0.1) + 4 * _asl1(0.2))) / 8
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    # d ASL1 / d d = d / sqrt(d^2 + mu^2) = sign(d) * g
    gnorm = d / torch.sqrt(d * d + mu * mu)
    w = torch.tensor([[2.0, 0.4, 2.0, 2.0], [0.4] * 4, [0.0] * 4])
    torch.testing.assert_close(pred.grad, w * gnorm / 8, rtol=1e-5, atol=1e-7)

    mom = GHMR(mu=mu, bins=10, momentum=0.7, loss_weight=10.0)
    mom(d, torch.zeros(3, 4), weight)
    # S = 0.3 * R for the non-empty bins
    expected_acc = torch.zeros(10)
    expected_acc[[2, 4, 8, 9]] = torch.tensor([0.3, 0.3, 0.3, 1.5])
    torch.testing.assert_close(mom.acc_sum, expected_acc)
    loss2 = mom(torch.tensor([[0.01, 0.01, 0.01, 0.01]]), torch.zeros(1, 4), torch.ones(1))
    # all four in bin 4: S4 = .7 * .3 + .3 * 4 = 1.41; tot 4, n 1; w = 4 / 1.41; x10 loss weight
    assert loss2.item() == pytest.approx(10 * (4 / 1.41) * 4 * _asl1(0.01) / 4, rel=1e-5)


def test_ghmr_tot_is_sum_of_weights():
    # non-binary weights change tot (sum of weights), not the per-entry weighting
    d = torch.tensor([[0.01, 0.01, 0.01, 0.01]])
    a = GHMR(bins=10, momentum=0.0, loss_weight=1.0)(d, torch.zeros(1, 4), torch.full((1,), 1.0))
    b = GHMR(bins=10, momentum=0.0, loss_weight=1.0)(d, torch.zeros(1, 4), torch.full((1,), 2.0))
    # tot 4 vs 8, R = 4 both: w = tot/4; loss = sum(w * asl1) / tot = sum(asl1) / 4 in both cases
    torch.testing.assert_close(a, b)
    assert a.item() == pytest.approx(_asl1(0.01), rel=1e-5)


@pytest.mark.parametrize("bins,last", [(30, 1.0 + 1e-6), (10, 1e3), (7, 1.0 + 1e-6), (40, 1.0 + 1e-6)])
def test_bin_index_equals_edge_comparisons_at_the_edges(bins, last):
    from ghmbench.losses import bin_index

    edges = torch.arange(bins + 1, dtype=torch.float32) / bins
    edges[-1] = last
    at = edges[:-1]
    up, down = torch.nextafter(at, torch.tensor(2.0)), torch.nextafter(at, torch.tensor(-1.0)).clamp(min=0)
    near = torch.cat([at, up, down, torch.tensor([1.0, 0.0])])
    # the edge values at many positions of a long tensor: vectorised loops and their tails alike
    values = torch.cat([torch.rand(3_000_017), near.repeat(1001), torch.rand(77)])
    values = values[torch.randperm(values.numel(), generator=torch.Generator().manual_seed(bins))]
    expected = torch.bucketize(values, edges[1:-1].contiguous(), right=True)
    assert torch.equal(bin_index(values, bins), expected)
    assert torch.equal(bin_index(near, bins), torch.bucketize(near, edges[1:-1].contiguous(), right=True))
    assert bin_index(torch.tensor([float("nan")]), bins).item() in range(bins)
