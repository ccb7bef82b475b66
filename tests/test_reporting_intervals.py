"""Intervals, paired differences and the image bootstrap, on known numbers and tiny COCO dicts (no
training)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pytest
from scipy import stats as sst

from ghmbench.detection.evaluation import coco_evaluate
from ghmbench.reporting.intervals import (
    ImageEval,
    Interval,
    bootstrap_values,
    paired_difference,
    se_interval,
    t_interval,
)


def test_t_interval_is_scipys():
    x = [0.31, 0.35, 0.42, 0.38]
    expected = sst.ttest_1samp(x, 0.0).confidence_interval(0.95)
    iv = t_interval(x)
    assert iv.mean == pytest.approx(np.mean(x)) and iv.n == 4
    assert (iv.lo, iv.hi) == pytest.approx((expected.low, expected.high))
    assert t_interval([0.5, np.nan]).n == 1 and np.isnan(t_interval([0.5]).lo)
    assert (t_interval([0.2, 0.2]).lo, t_interval([0.2, 0.2]).hi) == (0.2, 0.2)


def test_paired_difference_is_a_paired_t_test():
    a = {0: 0.40, 1: 0.45, 2: 0.43, 3: 0.50}
    b = {2: 0.41, 0: 0.37, 1: 0.425, 7: 0.99}  # seed 3 and 7 unpaired: dropped
    seeds = [0, 1, 2]
    expected = sst.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).confidence_interval(0.95)
    d = paired_difference(a, b)
    assert d.n == 3 and d.mean == pytest.approx(np.mean([0.03, 0.025, 0.02]))
    assert (d.lo, d.hi) == pytest.approx((expected.low, expected.high))
    assert d.excludes_zero and d.verdict("A", "B") == "A > B"
    noisy = paired_difference({0: 0.4, 1: 0.5, 2: 0.3}, {0: 0.45, 1: 0.35, 2: 0.4})
    assert not noisy.excludes_zero and noisy.verdict("A", "B") == "no clear difference"
    assert paired_difference(b, a).verdict("B", "A") == "B < A"


def tiny_coco(n_images: int = 12, seed: int = 0):
    """A COCO instances dict of 2 classes and detections: perfect ones and degraded ones."""
    rng = np.random.default_rng(seed)
    images, anns, perfect, noisy = [], [], [], []
    for i in range(n_images):
        images.append({"id": 100 + 3 * i, "width": 64, "height": 64, "file_name": f"{i}.png"})
        for _ in range(int(rng.integers(1, 4))):
            x, y, w, h = *rng.uniform(0, 30, 2), *rng.uniform(8, 30, 2)
            c = int(rng.integers(1, 3))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": 100 + 3 * i,
                    "category_id": c,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
            perfect.append(
                {"image_id": 100 + 3 * i, "category_id": c, "bbox": [x, y, w, h], "score": float(rng.uniform(0.5, 1))}
            )
            shift = rng.normal(0, 3, 4)
            noisy.append(
                {
                    "image_id": 100 + 3 * i,
                    "category_id": c if rng.random() < 0.8 else 3 - c,
                    "bbox": [x + shift[0], y + shift[1], w, h],
                    "score": float(rng.random()),
                }
            )
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    return gt, perfect, noisy


def test_image_eval_matches_faster_coco_eval_on_resampled_dicts():
    gt, _, noisy = tiny_coco(20)
    ev = ImageEval(gt, noisy)
    full = coco_evaluate(gt, noisy)
    for m in ("AP", "AP50", "AP75", "APs", "AR1", "AR10", "AR100"):
        assert ev.metric(None, m) == pytest.approx(full[m])
    rng = np.random.default_rng(1)
    for _ in range(3):  # duplicated images re-evaluated under new ids give the same numbers
        sample = rng.integers(0, 20, 20)
        assert len(set(sample)) < 20
        direct = coco_evaluate(*resample_coco(gt, noisy, sample))
        assert ev.metric(sample, "AP") == pytest.approx(direct["AP"], abs=1e-12)
        assert ev.metric(sample, "AP50") == pytest.approx(direct["AP50"], abs=1e-12)


def test_se_interval_stays_centred_on_biased_replicates():
    """Replicates centred 0.01 above the point (as resampled AP is) must not shift the interval."""
    rng = np.random.default_rng(0)
    values = 0.31 + 0.012 * rng.standard_normal(2000)
    iv = se_interval(0.30, values)
    half = sst.norm.ppf(0.975) * values.std(ddof=1)
    assert (iv.lo, iv.hi) == (pytest.approx(0.30 - half), pytest.approx(0.30 + half))
    assert se_interval(0.99, values + 0.68, bounds=(0.0, 1.0)).hi == 1.0


def test_bootstrap_perfect_detections_and_determinism():
    gt, perfect, noisy = tiny_coco()
    iv = bootstrap_interval(ImageEval(gt, perfect), n_boot=50, seed=0)
    assert (iv.mean, iv.lo, iv.hi, iv.method) == (
        pytest.approx(1.0),
        pytest.approx(1.0),
        pytest.approx(1.0),
        "bootstrap",
    )
    ev = ImageEval(gt, noisy)
    a, b = bootstrap_values(ev, 40, seed=3), bootstrap_values(ev, 40, seed=3)
    assert np.array_equal(a, b) and not np.array_equal(a, bootstrap_values(ev, 40, seed=4))
    assert a.std() > 0
    noisy_iv = bootstrap_interval(ev, 200, seed=0)
    assert noisy_iv.lo < noisy_iv.mean < noisy_iv.hi < 1
    diff = paired_bootstrap(ImageEval(gt, perfect), ev, 200, seed=0)
    assert diff.mean == pytest.approx(1 - noisy_iv.mean) and diff.verdict("perfect", "noisy") == "perfect > noisy"
    self_diff = paired_bootstrap(ev, ImageEval(gt, noisy), 50)
    assert (self_diff.lo, self_diff.hi) == (0.0, 0.0)  # same resamples: a run minus itself is exactly 0
    with pytest.raises(ValueError, match="different images"):
        last = gt["images"][-1]["id"]
        paired_bootstrap(
            ev, ImageEval({**gt, "images": gt["images"][:-1]}, [d for d in noisy if d["image_id"] != last]), 5
        )


# ----------------------------------------------------------------------------- protocol


def resample_coco(ground_truth: dict, detections: list[dict], sample: Sequence[int]) -> tuple[dict, list[dict]]:
    """The COCO dicts of a bootstrap replicate: images drawn by index (sorted-id order), new ids.

    A slow but plain reference for :class:`ImageEval`.
    """
    images = sorted(ground_truth["images"], key=lambda im: im["id"])
    anns: dict = {}
    dets: dict = {}
    for a in ground_truth["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    for d in detections:
        dets.setdefault(d["image_id"], []).append(d)
    new_images, new_anns, new_dets = [], [], []
    for new_id, k in enumerate(sample, start=1):
        old = images[k]["id"]
        new_images.append({**images[k], "id": new_id})
        new_anns += [{**a, "id": len(new_anns) + 1 + j, "image_id": new_id} for j, a in enumerate(anns.get(old, []))]
        new_dets += [{**d, "image_id": new_id} for d in dets.get(old, [])]
    return {**ground_truth, "images": new_images, "annotations": new_anns}, new_dets


def bootstrap_interval(
    ev: ImageEval, n_boot: int = 1000, seed: int = 0, metric: str = "AP", conf: float = 0.95
) -> Interval:
    """A single run's metric with its bootstrap (normal, standard-error) interval over test images."""
    return se_interval(ev.metric(None, metric), bootstrap_values(ev, n_boot, seed, metric), conf, bounds=(0.0, 1.0))


def paired_bootstrap(
    a: ImageEval, b: ImageEval, n_boot: int = 1000, seed: int = 0, metric: str = "AP", conf: float = 0.95
) -> Interval:
    """Metric of run a minus run b, with a bootstrap interval (normal, standard error) over the same resampled image
    sets.

    Raises:
        ValueError: the two runs were not evaluated on the same images.
    """
    if not np.array_equal(a.image_ids, b.image_ids):
        raise ValueError("paired bootstrap: the two runs were evaluated on different images")
    diff = bootstrap_values(a, n_boot, seed, metric) - bootstrap_values(b, n_boot, seed, metric)
    return se_interval(a.metric(None, metric) - b.metric(None, metric), diff, conf)
