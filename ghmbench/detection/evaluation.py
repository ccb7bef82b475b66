"""Prediction over a split and COCO evaluation through faster-coco-eval."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import torch
from torch import Tensor, nn

from ghmbench.data.splits import DetectionSplit, iterate_batches
from ghmbench.detection.anchors import BoxCoder
from ghmbench.detection.model import postprocess
from ghmbench.store.fields import METRICS


@torch.no_grad()
def predict(
    model: nn.Module,
    split: DetectionSplit,
    coder: BoxCoder,
    device: torch.device,
    batch_size: int = 64,
    **post: float,
) -> list[dict]:
    """Run the detector over a split and return COCO results (xywh boxes, original ids).

    Args:
        model: a :class:`~ghmbench.detection.model.RetinaDetector`.
        split: the images to detect on.
        coder: box coder used in training.
        device: where to run.
        batch_size: images per forward pass.
        **post: keyword arguments of :func:`~ghmbench.detection.model.postprocess`.

    Returns:
        list of {"image_id", "category_id", "bbox": [x, y, w, h], "score"}.
    """
    was_training = model.training
    model.eval()
    results: list[dict] = []
    image_hw = tuple(split.images.shape[-2:])
    for images, _, _, idx in iterate_batches(split, batch_size, shuffle=False):
        out = model(images.to(device))
        for i, det in zip(idx, postprocess(out, coder, image_hw, **post)):
            results += coco_results(split, i, det["boxes"].cpu(), det["scores"].cpu(), det["labels"].cpu())
    model.train(was_training)
    return results


def coco_results(split: DetectionSplit, k: int, boxes: Tensor, scores: Tensor, labels: Tensor) -> list[dict]:
    """Detections of image ``k`` (input pixels, contiguous labels) as COCO results.

    Args:
        boxes: [D, 4] xyxy in the network's input pixels.
        scores: [D].
        labels: [D] contiguous labels.

    Returns:
        COCO result dicts in the original image's pixels (xywh) with its image and category ids.
    """
    xywh = split.to_original(k, boxes).clone()
    xywh[:, 2:] -= xywh[:, :2]
    return [
        {
            "image_id": split.image_ids[k],
            "category_id": split.category_ids[label],
            "bbox": [round(v, 3) for v in box],
            "score": round(score, 5),
        }
        for box, score, label in zip(xywh.tolist(), scores.tolist(), labels.tolist())
    ]


def _clean(value: float) -> float | None:
    """COCO marks 'no ground truth in this range' with -1; report those as None."""
    value = float(value)
    return None if value < 0 or math.isnan(value) else value


def coco_evaluate(ground_truth: dict, detections: list[dict]) -> dict:
    """COCO box metrics and per-class AP of ``detections`` against ``ground_truth``.

    Args:
        ground_truth: COCO instances dict (images, annotations, categories).
        detections: COCO results list.

    Returns:
        {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100": float | None,
         "per_class_AP": {class name: float | None}}.
    """
    from faster_coco_eval import COCO, COCOeval_faster

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ground_truth)
        dt = gt.loadRes([dict(d) for d in detections])
        ev = COCOeval_faster(gt, dt, "bbox", print_function=lambda *a, **k: None)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    metrics: dict = {name: _clean(v) for name, v in zip(METRICS, ev.stats[: len(METRICS)])}
    precision = np.asarray(ev.eval["precision"])  # [T, R, K, areas, maxDets]
    names = {c["id"]: c["name"] for c in ground_truth["categories"]}
    per_class = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        per_class[names[cat_id]] = _clean(p[p > -1].mean()) if (p > -1).any() else None
    metrics["per_class_AP"] = per_class
    return metrics
