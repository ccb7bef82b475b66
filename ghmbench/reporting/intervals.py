"""Uncertainty of the reported numbers: t intervals over seeds, paired differences and an image
bootstrap for single runs.

The bootstrap resamples test images with replacement. COCO matching is per image, so each run is
matched once (faster-coco-eval's C++ ``evaluate``) and every replicate only re-accumulates the
per-image results of the drawn images, a drawn-twice image counting as two images, exactly as a
re-evaluation of the resampled COCO dicts with new image ids would (the tests check the two
agree against such a plain re-evaluation).
"""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from scipy import stats as sst

# metric -> (precision or recall, IoU threshold index or None = mean, area index, maxDets index)
_SLICES = {
    "AP": ("precision", None, 0, -1),
    "AP50": ("precision", 0, 0, -1),
    "AP75": ("precision", 5, 0, -1),
    "APs": ("precision", None, 1, -1),
    "APm": ("precision", None, 2, -1),
    "APl": ("precision", None, 3, -1),
    "AR1": ("recall", None, 0, 0),
    "AR10": ("recall", None, 0, 1),
    "AR100": ("recall", None, 0, 2),
}


@dataclass
class Interval:
    """A mean (or point estimate) with a confidence interval (NaN bounds when there is none)."""

    mean: float
    lo: float
    hi: float
    n: int
    method: str = "t"

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0."""
        return bool(self.lo > 0 or self.hi < 0)

    def verdict(self, a: str, b: str) -> str:
        """``"a > b"``, ``"a < b"`` or ``"no clear difference"`` for a difference a - b."""
        if self.lo > 0:
            return f"{a} > {b}"
        if self.hi < 0:
            return f"{a} < {b}"
        return "no clear difference"


def t_interval(values: Iterable[float], conf: float = 0.95) -> Interval:
    """Mean and Student-t interval of the mean (NaN bounds for fewer than 2 values).

    Args:
        values: one value per seed (NaN values are dropped).
        conf: confidence level.
    """
    x = np.asarray([v for v in values if v is not None], dtype=float)
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return Interval(np.nan, np.nan, np.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, np.nan, np.nan, n)
    sem = float(sst.sem(x))
    if sem == 0:
        return Interval(mean, mean, mean, n)
    lo, hi = sst.t.interval(conf, n - 1, loc=mean, scale=sem)
    return Interval(mean, float(lo), float(hi), n)


def paired_difference(a: dict, b: dict, conf: float = 0.95) -> Interval:
    """Mean difference a - b over the seeds both have, with its t interval (a paired t test's).

    Args:
        a, b: {seed: value} of two configurations; seeds missing (or NaN) in either are dropped.
    """
    seeds = sorted(s for s in set(a) & set(b) if not (np.isnan(a[s]) or np.isnan(b[s])))
    out = t_interval([a[s] - b[s] for s in seeds], conf)
    out.method = "seeds"
    return out


# ----------------------------------------------------------------------------- image bootstrap


class ImageEval:
    """One run's per-image COCO matching, re-accumulated over any multiset of its images.

    Args:
        ground_truth: COCO instances dict (images, annotations with iscrowd, categories).
        detections: COCO results list.
    """

    def __init__(self, ground_truth: dict, detections: list[dict]):
        from faster_coco_eval import COCO, COCOeval_faster

        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(copy.deepcopy(ground_truth))
            dt = gt.loadRes([dict(d) for d in detections])
            ev = COCOeval_faster(gt, dt, "bbox", print_function=lambda *a, **k: None, separate_eval=True)
            ev.evaluate()
        p = ev._paramsEval
        self.image_ids = np.asarray(p.imgIds)
        evals = np.empty(len(ev._evalImgs_cpp), dtype=object)
        evals[:] = ev._evalImgs_cpp
        self._evals = evals.reshape(len(p.catIds), len(p.areaRng), len(self.image_ids))  # [K, A, N]
        self._params = p

    def metric(self, sample: np.ndarray | None = None, metric: str = "AP") -> float:
        """The metric over the images at positions ``sample`` (all images when None); NaN if undefined."""
        from faster_coco_eval.faster_eval_api_cpp import COCOevalAccumulate

        kind, iou, area, maxdet = _SLICES[metric]
        sample = np.arange(len(self.image_ids)) if sample is None else np.asarray(sample)
        p = copy.copy(self._params)
        p.areaRng, p.areaRngLbl = [p.areaRng[area]], [p.areaRngLbl[area]]
        p.maxDets = [p.maxDets[maxdet]]  # accumulate only what the metric reads
        p.imgIds = list(range(len(sample)))
        out = COCOevalAccumulate(p, self._evals[:, area : area + 1, sample].ravel().tolist())
        x = np.asarray(out[kind])  # precision [T, R, K, 1, M], recall [T, K, 1, M]
        x = x[..., 0, 0]
        x = x if iou is None else x[iou : iou + 1]
        valid = x[x > -1]
        return float(valid.mean()) if valid.size else np.nan


def bootstrap_values(ev: ImageEval, n_boot: int = 1000, seed: int = 0, metric: str = "AP") -> np.ndarray:
    """The metric on ``n_boot`` resamples of the run's images (same seed + image count = same resamples).

    The resamples depend only on ``seed`` and the number of images, so the values of two runs on
    the same images are paired replicate by replicate.
    """
    rng = np.random.default_rng(seed)
    n = len(ev.image_ids)
    return np.array([ev.metric(rng.integers(0, n, n), metric) for _ in range(n_boot)])


def se_interval(
    point: float, values: np.ndarray, conf: float = 0.95, bounds: tuple[float, float] | None = None
) -> Interval:
    """``point`` +- z x the standard deviation of its bootstrap replicates ``values`` (normal interval).

    The replicates' spread, not their percentiles: COCO AP on images resampled with replacement
    comes out higher than on the images themselves (the duplicated images' detections tie; the
    measured shift is in results/benchmarks.md), so percentile intervals sat shifted upwards,
    nearly off their own point, and the reverse-percentile ("basic") interval, which would treat
    that shift as the estimate's own bias, shifted them as far down.
    """
    values = values[~np.isnan(values)]
    if len(values) < 2:
        return Interval(point, np.nan, np.nan, 1, "bootstrap")
    half = float(sst.norm.ppf((1 + conf) / 2) * values.std(ddof=1))
    lo, hi = point - half, point + half
    if bounds is not None:  # a metric's own range, e.g. [0, 1] for AP
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return Interval(point, float(lo), float(hi), 1, "bootstrap")
