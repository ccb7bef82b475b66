"""Label noise: the knobs touch the training split only, deterministically; the gradient weight on the
mislabelled objects' anchors is measured right; a run records it; seeds get their own data draws."""

from __future__ import annotations

import json

import pytest
import torch
from torch import Tensor

from ghmbench.config.compose import compose_config, validate
from ghmbench.data.digits import DigitsParams, load_digits_detection
from ghmbench.detection.noisy_weight import summary, watch
from ghmbench.losses import GHMC, FocalLoss
from ghmbench.reporting.report import make_report
from ghmbench.run.training import run
from ghmbench.store.records import run_key

BASE = dict(num_train=60, num_val=12, num_test=12, image_size=64, clutter=1)


def _annotations(split) -> list:
    return [(b.tolist(), lab.tolist()) for b, lab in zip(split.boxes, split.labels)]


def test_noise_knobs_change_only_the_training_annotations():
    clean = load_digits_detection(DigitsParams(**BASE), None)
    noisy = load_digits_detection(DigitsParams(**BASE, unannotated_rate=0.3, class_noise=0.3), None)
    for split in ("val", "test"):  # byte-identical images and annotations
        a, b = getattr(clean, split), getattr(noisy, split)
        assert torch.equal(a.images, b.images)
        assert json.dumps(a.coco_ground_truth()) == json.dumps(b.coco_ground_truth())
    assert torch.equal(clean.train.images, noisy.train.images)  # the same pictures, other labels
    assert clean.train.noisy_boxes is None and clean.val.noisy_boxes is None
    kept = sum(map(len, noisy.train.boxes))
    total = sum(map(len, clean.train.boxes))
    missing = total - kept
    assert 0.15 * total < missing < 0.45 * total
    assert sum(map(len, noisy.train.noisy_boxes)) > missing  # the unannotated objects and the flipped ones


def test_class_noise_flips_to_another_class_deterministically(tmp_path):
    params = DigitsParams(**BASE, class_noise=0.4)
    first = load_digits_detection(params, tmp_path)
    again = load_digits_detection(params, tmp_path)  # from the cache
    fresh = load_digits_detection(params, None)
    clean = load_digits_detection(DigitsParams(**BASE), None)
    assert _annotations(first.train) == _annotations(again.train) == _annotations(fresh.train)
    assert [b.tolist() for b in first.train.noisy_boxes] == [b.tolist() for b in again.train.noisy_boxes]
    assert [b.tolist() for b in first.train.boxes] == [b.tolist() for b in clean.train.boxes]  # no box is lost
    changed = [
        (int((a != b).sum()), len(n))
        for a, b, n in zip(clean.train.labels, first.train.labels, first.train.noisy_boxes)
    ]
    assert all(c == n for c, n in changed)  # exactly the relabelled objects are flagged
    rate = sum(c for c, _ in changed) / sum(map(len, clean.train.labels))
    assert 0.25 < rate < 0.55
    other_seed = load_digits_detection(DigitsParams(**{**BASE, "seed": 1}, class_noise=0.4), None)
    assert _annotations(other_seed.train) != _annotations(first.train)


def _hand_made_batch() -> tuple[Tensor, Tensor, list[Tensor], Tensor, Tensor]:
    """Two anchors on a clean object (positive), two on a mislabelled one, and four background anchors."""
    anchors = torch.tensor(
        [[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [51, 50, 61, 60]]
        + [[100 + 20 * k, 0, 110 + 20 * k, 10] for k in range(4)],
        dtype=torch.float32,
    )
    noisy_boxes = [torch.tensor([[50.0, 50.0, 60.0, 60.0]])]
    positive = torch.tensor([[True, True, False, False, False, False, False, False]])
    valid = torch.ones(1, 8, dtype=torch.bool)
    logits = torch.tensor(
        [[[2.0, -1.0], [1.0, -2.0], [3.0, -3.0], [2.5, -1.0], [-4.0, -4.0], [-3.0, -5.0], [-2.0, -2.0], [-6.0, -1.0]]],
        requires_grad=True,
    )
    return logits, anchors, noisy_boxes, positive, valid


@pytest.mark.parametrize("loss", [FocalLoss(alpha=0.25, gamma=2.0), GHMC(bins=10, momentum=0.0)])
def test_noisy_weight_on_a_hand_made_batch(loss):
    logits, anchors, noisy_boxes, positive, valid = _hand_made_batch()
    target = torch.zeros(1, 8, 2)
    target[0, :2, 0] = 1.0  # the clean object's class
    target[0, 2:4, 1] = 1.0  # the mislabelled object, annotated with the wrong class
    sums = torch.zeros(5, dtype=torch.float64)
    watch(
        logits,
        anchors,
        noisy_boxes,
        positive | torch.tensor([[False, False, True, True] + [False] * 4]),
        valid,
        (0.5, 0.4, True),
        sums,
    )
    value = loss(logits.reshape(-1, 2), target.reshape(-1, 2), valid.reshape(-1).float(), avg_factor=torch.tensor(4.0))
    value.backward()
    expected = logits.grad.abs().sum(-1)[0].double()  # what autograd gives, anchor by anchor
    assert sums[3].item() == 2 and sums[4].item() == 2
    assert sums[0].item() == pytest.approx(expected[2:4].sum().item(), rel=1e-6)
    assert sums[1].item() == pytest.approx(expected[:2].sum().item(), rel=1e-6)
    assert sums[2].item() == pytest.approx(expected.sum().item(), rel=1e-6)
    shares = summary(sums)
    assert shares["noisy_grad_share"] == pytest.approx((expected[2:4].sum() / expected.sum()).item(), rel=1e-6)
    assert shares["noisy_relative_weight"] == pytest.approx((expected[2:4].sum() / expected[:2].sum()).item(), rel=1e-6)


def test_focal_gradient_on_a_confidently_wrong_label_by_hand():
    """FL's gradient wrt x for one entry is alpha_t * (d/dx) of (1-p_t)^gamma * -log p_t; check one number by hand."""
    logits, anchors, noisy_boxes, positive, valid = _hand_made_batch()
    sums = torch.zeros(5, dtype=torch.float64)
    watch(
        logits, anchors, noisy_boxes, positive, valid, (0.5, 0.4, True), sums
    )  # missing label: the noisy anchors are background
    target = torch.zeros(1, 8, 2)
    target[0, :2, 0] = 1.0
    FocalLoss(alpha=0.25, gamma=2.0)(
        logits.reshape(-1, 2), target.reshape(-1, 2), valid.reshape(-1).float(), avg_factor=torch.tensor(1.0)
    ).backward()
    p = torch.sigmoid(torch.tensor(3.0, dtype=torch.float64))  # anchor 2, class 0: background target, score 0.95
    by_hand = 0.75 * (p**2 * (1 - p) * (-2 * torch.log(1 - p)) + p**2 * p)  # alpha_t (1-p_t)^g: d/dx of -p^2 log(1-p)
    got = logits.grad[0, 2, 0].item()
    assert got == pytest.approx(by_hand.item(), rel=1e-5)


@pytest.mark.slow
def test_a_noisy_run_records_the_weight_on_its_mislabelled_objects_and_the_report_shows_it(tiny, tmp_path):
    record = run(validate(compose_config([*tiny, "dataset.class_noise=0.3", "loss=ghm", "dataset.num_test=16"])))
    weight = record["noisy_weight"]
    assert weight["noisy_anchors"] > 0 and weight["clean_anchors"] > 0
    assert 0 < weight["noisy_grad_share"] < 1 and weight["noisy_relative_weight"] > 0
    assert all("noisy_grad_share" in epoch for epoch in record["history"])
    clean = run(validate(compose_config([*tiny, "loss=ghm", "dataset.num_test=16"])))
    assert "noisy_weight" not in clean
    report = make_report([tmp_path / "runs"], tmp_path / "report", bootstrap=20)
    rows = report.tables["label_noise"].numbers
    assert rows["level"].tolist() == [0.0, 0.3] and rows["noisy_relative_weight"].iloc[1] == pytest.approx(
        weight["noisy_relative_weight"]
    )
    assert rows["lo"].notna().all() and (tmp_path / "report" / "label_noise.png").is_file()


def test_seed_draws_give_each_seed_its_own_data():
    plain = [
        validate(compose_config(["experiment=focal_grid", f"seed={s}", "protocol.seed_draws=false"])) for s in (0, 1)
    ]
    drawn = [
        validate(compose_config(["experiment=focal_grid", f"seed={s}"])) for s in (0, 1)
    ]  # the preset draws per seed
    assert [c.dataset.seed for c in plain] == [0, 0] and [c.dataset.seed for c in drawn] == [0, 1]
    assert run_key(drawn[0]) == run_key(plain[0])  # seed 0 is the embedded draw: the same run
    assert run_key(drawn[1]) != run_key(plain[1])
    # data read from disk has one draw: the seeds there vary the training only (no dataset.seed to follow)
    fixed = [validate(compose_config(["dataset=bccd", f"seed={s}", "protocol.seed_draws=true"])) for s in (0, 1)]
    assert ["seed" in c.dataset for c in fixed] == [False, False] and run_key(fixed[0]) != run_key(fixed[1])
