#!/usr/bin/env python
"""Evaluation benchmark: COCO box metrics through ghmbench's evaluator (faster-coco-eval)
against pycocotools, on the same synthetic ground truth and detections, in one run.

Checks that both give identical statistics, then prints the times and the ratio
(target: ghmbench at least 3x faster). Needs pycocotools (`pip install -e ".[bench]"`).

Usage: python scripts/bench_eval.py [--images 5000] [--dets 100] [--classes 80] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import platform
import statistics
import time

import numpy as np

from ghmbench.detection.evaluation import coco_evaluate
from ghmbench.store.fields import METRICS


def synthetic(images: int, dets: int, classes: int, seed: int = 0) -> tuple[dict, list[dict]]:
    """Ground truth (3-10 boxes per 640x480 image) and ``dets`` detections per image: jittered
    true boxes with high scores plus random false positives with lower ones."""
    rng = np.random.default_rng(seed)
    gt = {"images": [], "annotations": [], "categories": [{"id": c + 1, "name": f"c{c}"} for c in range(classes)]}
    results = []
    for i in range(1, images + 1):
        gt["images"].append({"id": i, "width": 640, "height": 480})
        n = int(rng.integers(3, 11))
        wh = rng.uniform(8, 200, size=(n, 2))
        xy = rng.uniform(0, 1, size=(n, 2)) * (np.array([640, 480]) - wh)
        cats = rng.integers(1, classes + 1, size=n)
        for (x, y), (w, h), c in zip(xy, wh, cats):
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": i,
                    "category_id": int(c),
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        jitter = rng.normal(0, 0.08, size=(n, 4)) * np.concatenate([wh, wh], axis=1)
        true_boxes = np.concatenate([xy, wh], axis=1) + jitter
        fp = dets - n
        fwh = rng.uniform(8, 200, size=(fp, 2))
        fxy = rng.uniform(0, 1, size=(fp, 2)) * (np.array([640, 480]) - fwh)
        boxes = np.concatenate([true_boxes, np.concatenate([fxy, fwh], axis=1)])
        boxes[:, 2:] = np.maximum(boxes[:, 2:], 1.0)
        scores = np.concatenate([rng.uniform(0.3, 1.0, n), rng.uniform(0.0, 0.6, fp)])
        labels = np.concatenate([cats, rng.integers(1, classes + 1, size=fp)])
        for b, s, c in zip(boxes.round(2), scores.round(4), labels):
            results.append({"image_id": i, "category_id": int(c), "bbox": b.tolist(), "score": float(s)})
    return gt, results


def pycocotools_stats(gt: dict, results: list[dict]) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        dt = coco.loadRes(copy.deepcopy(results))
        ev = COCOeval(coco, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--dets", type=int, default=100)
    ap.add_argument("--classes", type=int, default=80)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    gt, results = synthetic(args.images, args.dets, args.classes)

    ours_times, ref_times = [], []
    for _ in range(args.repeats):  # alternate so that drift in machine speed hits both alike
        g, r = copy.deepcopy(gt), copy.deepcopy(results)
        t0 = time.perf_counter()
        ours = coco_evaluate(g, r)
        ours_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref = pycocotools_stats(gt, results)
        ref_times.append(time.perf_counter() - t0)
    ours_stats = np.array([-1.0 if ours[k] is None else ours[k] for k in METRICS])
    ref_stats = np.concatenate([ref[:6], ref[6:9]])
    identical = np.allclose(ours_stats, ref_stats, rtol=0, atol=1e-12)
    t_ours, t_ref = statistics.median(ours_times), statistics.median(ref_times)

    from importlib.metadata import version

    print(
        f"machine: {platform.machine()}; faster-coco-eval {version('faster-coco-eval')}, pycocotools "
        f"{version('pycocotools')}"
    )
    print(
        f"{args.images} images x {args.dets} detections, {args.classes} classes, {len(gt['annotations'])} boxes; "
        f"median of {args.repeats}\n"
    )
    print("| metric | ghmbench (faster-coco-eval) | pycocotools |")
    print("|---|---|---|")
    for name, a, b in zip(METRICS, ours_stats, ref_stats):
        print(f"| {name} | {a:.6f} | {b:.6f} |")
    print(f"\nidentical statistics: {'yes' if identical else 'NO'}\n")
    print("| measurement | s |")
    print("|---|---|")
    print(f"| ghmbench coco_evaluate (load + evaluate + accumulate + summarize + per-class AP) | {t_ours:.2f} |")
    print(f"| pycocotools COCOeval (load + evaluate + accumulate + summarize) | {t_ref:.2f} |")
    ratio = t_ref / t_ours
    print(
        f"\n| ratio | value | met |\n|---|---|---|\n| pycocotools / ghmbench (>= 3) | {ratio:.2f} | "
        f"{'yes' if ratio >= 3 and identical else 'NO'} |"
    )


if __name__ == "__main__":
    main()
