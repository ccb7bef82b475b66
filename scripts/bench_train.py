#!/usr/bin/env python
"""Training-step benchmark, measured side by side in one run (median of interleaved rounds).

For each setting (``--setting``):
- ``comparison``: the fair comparison's preset (``experiment=loss_comparison``: 160 px canvases,
  ~1,300 negative anchors per positive, the ``sparse`` model with one conv per subnet), batch 8
  (the batch the protocol selected for CE and GHM-C);
- ``default``: ``ghmbench train``'s default 64 px setting with torchvision's head depth (4 convs
  per subnet), batch 32, as measured in earlier rounds;

it prints
- the full ghmbench training step (forward, batched matching, losses, backward, AdamW step) with
  Focal + smooth L1 and with GHM-C + GHM-R: target GHM / Focal <= 1.05;
- the network's own forward + backward on the same batch: target step / network <= 1.10;
- torchvision.models.detection.RetinaNet built from the same backbone, FPN, anchors, head depth,
  image size and batch: target ghmbench images/s >= 1.3x torchvision's;
- the time of each non-network part of a step (matching, targets, each loss's forward + backward,
  the optimizer) and of post-processing one batch for evaluation;
- the network under other execution settings, against eager float32 with torch's default threads:
  channels-last, one thread against two (what two parallel sweep jobs with one thread each would
  give at best), and with ``--compile`` torch.compile (inductor), its compile time included.

Usage: python scripts/bench_train.py [--setting comparison|default|both] [--repeats 15] [--compile]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import torch
import torchvision
from torch import nn
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator

from ghmbench.config.compose import compose_config, validate
from ghmbench.data.builder import build_datasets
from ghmbench.data.splits import iterate_batches
from ghmbench.detection.anchors import match_anchors
from ghmbench.detection.criterion import DetectionCriterion
from ghmbench.detection.model import DetectorOutput, build_model, postprocess
from ghmbench.run.setup import build_optimizer

SETTINGS = {
    "comparison": (
        ["experiment=loss_comparison", "dataset.num_train=64", "dataset.num_val=8", "dataset.num_test=8"],
        8,
    ),
    "default": (["model.head_convs=4", "dataset.num_train=256", "dataset.num_val=8"], 32),
}


def interleaved(steps: dict[str, Callable[[], object]], repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median seconds per call of each step, measured in rounds that call each step once in turn.

    The machine is shared: one call of each variant per round makes drift and bursts of load hit
    every variant alike.
    """
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


class TvBackbone(nn.Module):
    """Our backbone + FPN behind torchvision's detection-backbone interface."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.out_channels = model.fpn.layer_blocks[0].out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict:
        return OrderedDict((str(i), f) for i, f in enumerate(self.model.features(x)))


def torchvision_retinanet(model, cfg, num_classes: int, image_size: int) -> RetinaNet:
    """torchvision's RetinaNet around our backbone + FPN, with our anchors and head depth."""
    model_cfg = cfg.model
    sizes = tuple(tuple(s * k for k in model_cfg.anchor_scales) for s in model_cfg.anchor_sizes)
    tv = RetinaNet(
        TvBackbone(model),
        num_classes=num_classes,
        min_size=image_size,
        max_size=image_size,
        image_mean=[0.0],
        image_std=[1.0],
        anchor_generator=AnchorGenerator(sizes, (tuple(model_cfg.aspect_ratios),) * len(sizes)),
    )
    for head in (tv.head.classification_head, tv.head.regression_head):  # torchvision's depth is 4
        head.conv = nn.Sequential(*list(head.conv)[: model_cfg.head_convs])
    return tv


@dataclass
class Batch:
    """One training batch of the setting, and the number of classes of its dataset."""

    images: torch.Tensor
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    num_classes: int


def ghmbench_step(cfg, batch: Batch) -> tuple:
    """(model, optimizer, criterion, one full training step) of ghmbench under ``cfg``."""
    torch.manual_seed(0)
    model = build_model(cfg.model, batch.num_classes, 1)
    criterion = DetectionCriterion.from_config(cfg)
    opt = build_optimizer(model, cfg.train)

    def step() -> None:
        out = model(batch.images)
        lc, lb, _ = criterion(out, batch.boxes, batch.labels)
        opt.zero_grad(set_to_none=True)
        (lc + lb).backward()
        opt.step()

    return model, opt, criterion, step


def network_step(net, opt, x) -> Callable[[], None]:
    """The network's own forward + backward on ``x``."""

    def run() -> None:
        out = net(x)
        opt.zero_grad(set_to_none=True)
        (out.cls_logits.float().mean() + out.box_deltas.float().mean()).backward()

    return run


def torchvision_step(model, cfg, batch: Batch) -> Callable[[], None]:
    """One training step of torchvision's RetinaNet built around ``model``'s backbone + FPN."""
    tv = torchvision_retinanet(model, cfg, batch.num_classes, batch.images.shape[-1])
    tv_opt = build_optimizer(tv, cfg.train)
    tv_images = list(batch.images)
    tv_targets = [{"boxes": b, "labels": lab} for b, lab in zip(batch.boxes, batch.labels)]

    def step_tv() -> None:
        losses = tv(tv_images, tv_targets)
        tv_opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        tv_opt.step()

    return step_tv


def _cls_part(loss, logits, onehot, valid, num_pos, level_ids) -> Callable[[], None]:
    """A classification loss's forward + backward on fixed logits [B, A, C]."""
    num_classes = logits.shape[-1]

    def run() -> None:
        logits.grad = None
        flat_logits, flat_onehot = logits.reshape(-1, num_classes), onehot.reshape(-1, num_classes)
        loss(flat_logits, flat_onehot, valid, avg_factor=num_pos, level_ids=level_ids).backward()

    return run


def _box_part(loss, deltas, box_targets, pos_idx, num_pos, level_ids) -> Callable[[], None]:
    """A box loss's forward + backward on fixed deltas [B, A, 4], at the positives."""

    def run() -> None:
        deltas.grad = None
        weights = box_targets.new_ones(pos_idx.numel())
        pred = deltas.reshape(-1, 4)[pos_idx]
        loss(pred, box_targets, weights, avg_factor=num_pos, level_ids=level_ids[pos_idx]).backward()

    return run


def non_network_parts(
    model, opt, cfg, batch: Batch, focal: DetectionCriterion, ghm: DetectionCriterion
) -> tuple[dict[str, Callable[[], None]], DetectorOutput, torch.Tensor]:
    """The non-network parts of a step, on fixed network outputs (leaf tensors standing in for the
    heads): (the parts by label, the network's output, the number of positives of the batch)."""
    images, boxes, labels = batch.images, batch.boxes, batch.labels
    model_cfg, coder = cfg.model, focal.coder
    with torch.no_grad():
        out = model(images)
    logits, deltas = (head.detach().clone().requires_grad_() for head in (out.cls_logits, out.box_deltas))
    match = match_anchors(out.anchors, boxes, labels, model_cfg.fg_iou, model_cfg.bg_iou, model_cfg.allow_low_quality)
    level_ids = out.level_ids.repeat(images.shape[0])
    num_pos = match.positive.sum()
    pos_idx = match.positive.reshape(-1).nonzero().squeeze(1)

    def part_match() -> None:
        match_anchors(out.anchors, boxes, labels, model_cfg.fg_iou, model_cfg.bg_iou, model_cfg.allow_low_quality)

    def part_targets() -> tuple[torch.Tensor, torch.Tensor]:
        onehot = torch.zeros_like(logits).scatter_(
            2, match.labels.clamp(min=0)[..., None], match.positive[..., None].float()
        )
        idx = match.positive.reshape(-1).nonzero().squeeze(1)
        return onehot, coder.encode(match.matched_boxes_at(idx), out.anchors[idx % out.anchors.shape[0]])

    onehot, box_targets = part_targets()
    cls_inputs = (logits, onehot, match.valid.reshape(-1).float(), num_pos, level_ids)
    box_inputs = (deltas, box_targets, pos_idx, num_pos, level_ids)

    def part_optimizer() -> None:
        for p in model.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        opt.step()

    def part_postprocess() -> None:
        postprocess(
            out,
            coder,
            tuple(images.shape[-2:]),
            model_cfg.score_thresh,
            model_cfg.topk_candidates,
            model_cfg.nms_thresh,
            model_cfg.detections_per_img,
        )

    parts = {
        "matching (batched IoU, assignment)": part_match,
        "targets (one-hot, box encoding of positives)": part_targets,
        "Focal loss, forward + backward": _cls_part(focal.cls_loss, *cls_inputs),
        "GHM-C loss, forward + backward": _cls_part(ghm.cls_loss, *cls_inputs),
        "smooth L1 (positives), forward + backward": _box_part(focal.box_loss, *box_inputs),
        "GHM-R (positives), forward + backward": _box_part(ghm.box_loss, *box_inputs),
        "AdamW step (fused)": part_optimizer,
        "post-processing for evaluation (per batch)": part_postprocess,
    }
    return parts, out, num_pos


def network_variants(
    model, opt, cfg, batch: Batch, use_compile: bool, threads: int
) -> tuple[dict[str, Callable[[], None]], float | None]:
    """The network under other execution settings, against eager with torch's default threads:
    (the variants by label, torch.compile's compile time or None)."""
    images = batch.images
    cl_model = build_model(cfg.model, batch.num_classes, 1).to(memory_format=torch.channels_last)
    cl_images = images.contiguous(memory_format=torch.channels_last)
    variants: dict[str, Callable[[], None]] = {
        "eager": network_step(model, opt, images),
        "channels-last": network_step(cl_model, opt, cl_images),
    }
    if threads > 1:
        eager = network_step(model, opt, images)

        def one_thread() -> None:
            torch.set_num_threads(1)
            try:
                eager()
            finally:
                torch.set_num_threads(threads)

        variants["1 thread"] = one_thread
    compile_s = None
    if use_compile:
        compiled = torch.compile(model)
        t0 = time.perf_counter()
        first = network_step(compiled, opt, images)
        first()
        compile_s = time.perf_counter() - t0
        variants["torch.compile (inductor)"] = first
    return variants, compile_s


def bench_setting(name: str, args) -> None:
    overrides, batch_size = SETTINGS[name]
    batch_size = args.batch or batch_size
    overrides = [*overrides, f"train.batch_size={batch_size}"]
    cfg_focal = validate(compose_config(overrides))
    cfg_ghm = validate(compose_config([*overrides, "loss=ghm", "regression=ghm"]))
    train = build_datasets(cfg_focal).train
    images, boxes, labels, _ = next(iterate_batches(train, batch_size, shuffle=False))
    batch = Batch(images, boxes, labels, train.num_classes)

    model, opt, focal, step_focal = ghmbench_step(cfg_focal, batch)
    _, _, ghm, step_ghm = ghmbench_step(cfg_ghm, batch)
    steps = {
        "focal": step_focal,
        "ghm": step_ghm,
        "network": network_step(model, opt, images),
        "torchvision": torchvision_step(model, cfg_focal, batch),
    }
    parts, out, num_pos = non_network_parts(model, opt, cfg_focal, batch, focal, ghm)
    results = interleaved(steps, args.repeats)
    part_times = interleaved(parts, args.repeats * 4)
    threads = torch.get_num_threads()
    variants, compile_s = network_variants(model, opt, cfg_focal, batch, args.compile, threads)
    net_times = interleaved(variants, args.repeats)

    print(f"\n## setting: {name} (`{' '.join(overrides)}`)\n")
    print(
        f"batch {batch_size} x {images.shape[1]} x {images.shape[-2]} x {images.shape[-1]}, FPN levels "
        f"{list(model.levels)}, head convs {cfg_focal.model.head_convs}, "
        f"{out.anchors.shape[0]} anchors per image, {int(num_pos)} positive in the batch; median of {args.repeats} "
        "interleaved rounds\n"
    )
    print_steps(results, part_times, batch_size, args.repeats)
    print_network_variants(net_times, threads, compile_s)
    print_ratios(results)


def print_steps(results: dict[str, float], part_times: dict[str, float], batch_size: int, repeats: int) -> None:
    """The tables of whole steps and of the non-network parts."""
    print(f"| {'measurement':<58} | {'ms/step':>8} | {'img/s':>7} |")
    print(f"|{'-' * 60}|{'-' * 10}|{'-' * 9}|")
    names = {
        "focal": "ghmbench step, Focal + smooth L1",
        "ghm": "ghmbench step, GHM-C + GHM-R",
        "network": "network forward + backward only",
        "torchvision": "torchvision RetinaNet step (same backbone/FPN/anchors/head)",
    }
    for key, label in names.items():
        t = results[key]
        print(f"| {label:<58} | {t * 1e3:8.2f} | {batch_size / t:7.1f} |")
    print(f"\nNon-network parts ({repeats * 4} interleaved rounds):\n")
    print(f"| {'part':<58} | {'ms/step':>8} | {'% of Focal step':>15} |")
    print(f"|{'-' * 60}|{'-' * 10}|{'-' * 17}|")
    for label, t in part_times.items():
        print(f"| {label:<58} | {t * 1e3:8.2f} | {100 * t / results['focal']:14.1f}% |")


def print_network_variants(net_times: dict[str, float], threads: int, compile_s: float | None) -> None:
    """The table of the network under other execution settings."""
    print(f"\nThe network's forward + backward under other settings (torch's default: {threads} threads):\n")
    print(f"| {'variant':<58} | {'ms/step':>8} | {'vs eager':>8} |")
    print(f"|{'-' * 60}|{'-' * 10}|{'-' * 10}|")
    for label, t in net_times.items():
        print(f"| {label:<58} | {t * 1e3:8.2f} | {net_times['eager'] / t:7.3f}x |")
    if "1 thread" in net_times:
        gain = threads * net_times["eager"] / net_times["1 thread"]
        print(
            f"\n{threads} parallel 1-thread jobs against one {threads}-thread job, at best (no contention between "
            f"processes): {gain:.2f}x images/s"
        )
    if compile_s is not None:
        print(f"torch.compile: first forward + backward (compilation) took {compile_s:.1f} s")
    print()


def print_ratios(results: dict[str, float]) -> None:
    """The ratios against their targets."""
    ratios = [
        (
            "GHM-C+GHM-R step / Focal+smooth L1 step (<= 1.05)",
            results["ghm"] / results["focal"],
            results["ghm"] / results["focal"] <= 1.05,
        ),
        (
            "ghmbench img/s / torchvision img/s (>= 1.3)",
            results["torchvision"] / results["focal"],
            results["torchvision"] / results["focal"] >= 1.3,
        ),
        (
            "Focal step / network fwd+bwd (<= 1.10)",
            results["focal"] / results["network"],
            results["focal"] / results["network"] <= 1.10,
        ),
    ]
    print(f"| {'ratio':<58} | {'value':>8} | met |")
    print(f"|{'-' * 60}|{'-' * 10}|-----|")
    for label, r, ok in ratios:
        print(f"| {label:<58} | {r:8.3f} | {'yes' if ok else 'NO':>3} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", choices=["comparison", "default", "both"], default="both")
    ap.add_argument(
        "--batch", type=int, default=0, help="batch size (0: the setting's own, 8 for comparison, 32 for default)"
    )
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument(
        "--compile", action="store_true", help="also time torch.compile of the network (compiles for a minute or more)"
    )
    args = ap.parse_args()
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads; torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}"
    )
    for name in ["comparison", "default"] if args.setting == "both" else [args.setting]:
        bench_setting(name, args)


if __name__ == "__main__":
    main()
