#!/usr/bin/env python
"""Training-step benchmark, measured side by side in one run (median of repeats).

Prints:
- the full ghmbench training step (forward, batched matching, losses, backward, AdamW step)
  with Focal + smooth L1 and with GHM-C + GHM-R: target GHM / Focal <= 1.05;
- the network's own forward + backward on the same batch: target step / network <= 1.10;
- torchvision.models.detection.RetinaNet built from the same backbone, FPN, anchors, head
  depth, image size and batch: target ghmbench images/s >= 1.3x torchvision's.

Usage: python scripts/bench_train.py [--batch 32] [--repeats 15] [--head-convs 4]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections import OrderedDict

import torch
import torchvision
from torch import nn
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator

from ghmbench.anchors import BoxCoder
from ghmbench.config import compose_config, validate
from ghmbench.data import iterate_batches
from ghmbench.training import build_datasets, build_losses, build_model, build_optimizer, detection_losses


def interleaved(steps: dict, repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median seconds per call of each step, measured in rounds that call each step once in turn.

    The machine is shared: one step of each variant per round makes drift and bursts of load
    hit every variant alike.
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
        feats = self.model.backbone(x)
        pyramid = self.model.fpn(OrderedDict((str(lvl), feats[lvl]) for lvl in self.model.base_levels))
        return OrderedDict((str(i), pyramid[str(lvl)]) for i, lvl in enumerate(self.model.levels))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--head-convs", type=int, default=4, help="4 = torchvision's RetinaNet head depth")
    args = ap.parse_args()

    overrides = [f"model.head_convs={args.head_convs}", f"train.batch_size={args.batch}", "dataset.num_train=256", "dataset.num_val=8"]
    cfg_focal = validate(compose_config(overrides))
    cfg_ghm = validate(compose_config([*overrides, "loss=ghm", "regression=ghm"]))
    train = build_datasets(cfg_focal).train
    images, boxes, labels, _ = next(iterate_batches(train, args.batch, shuffle=False))
    coder = BoxCoder()
    results = {}

    def ours(cfg) -> tuple:
        torch.manual_seed(0)
        model = build_model(cfg, train.num_classes, 1)
        cls_loss, box_loss = build_losses(cfg)
        opt = build_optimizer(model, cfg.train)

        def step() -> None:
            out = model(images)
            lc, lb, _ = detection_losses(out, boxes, labels, cls_loss, box_loss, coder, cfg.model)
            opt.zero_grad(set_to_none=True)
            (lc + lb).backward()
            opt.step()

        def network_only() -> None:
            out = model(images)
            opt.zero_grad(set_to_none=True)
            (out.cls_logits.float().mean() + out.box_deltas.float().mean()).backward()

        return model, step, network_only

    model, step_focal, network_only = ours(cfg_focal)
    _, step_ghm, _ = ours(cfg_ghm)

    # torchvision RetinaNet around the same backbone + FPN and the same anchors
    m = cfg_focal.model
    sizes = tuple(tuple(s * k for k in m.anchor_scales) for s in m.anchor_sizes)
    anchor_gen = AnchorGenerator(sizes, (tuple(m.aspect_ratios),) * len(sizes))
    tv = RetinaNet(
        TvBackbone(model),
        num_classes=train.num_classes,
        min_size=images.shape[-1],
        max_size=images.shape[-1],
        image_mean=[0.0],
        image_std=[1.0],
        anchor_generator=anchor_gen,
    )
    tv_opt = build_optimizer(tv, cfg_focal.train)
    tv_images = list(images)
    tv_targets = [{"boxes": b, "labels": lab} for b, lab in zip(boxes, labels)]

    def step_tv() -> None:
        losses = tv(tv_images, tv_targets)
        tv_opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        tv_opt.step()

    results = interleaved({"focal": step_focal, "ghm": step_ghm, "network": network_only, "torchvision": step_tv}, args.repeats)

    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads; torch {torch.__version__}, torchvision {torchvision.__version__}")
    print(f"batch {args.batch} x 1 x {images.shape[-2]} x {images.shape[-1]}, head convs {args.head_convs}, {model.levels} FPN levels; median of {args.repeats} interleaved rounds\n")
    print(f"| {'measurement':<52} | {'ms/step':>8} | {'img/s':>7} |")
    print(f"|{'-' * 54}|{'-' * 10}|{'-' * 9}|")
    names = {
        "focal": "ghmbench step, Focal + smooth L1",
        "ghm": "ghmbench step, GHM-C + GHM-R",
        "network": "network forward + backward only",
        "torchvision": "torchvision RetinaNet step (same backbone/FPN/anchors)",
    }
    for key, label in names.items():
        t = results[key]
        print(f"| {label:<52} | {t * 1e3:8.1f} | {args.batch / t:7.1f} |")
    print()
    ratios = [
        ("GHM-C+GHM-R step / Focal+smooth L1 step (<= 1.05)", results["ghm"] / results["focal"], results["ghm"] / results["focal"] <= 1.05),
        ("ghmbench img/s / torchvision img/s (>= 1.3)", results["torchvision"] / results["focal"], results["torchvision"] / results["focal"] >= 1.3),
        ("Focal step / network fwd+bwd (<= 1.10)", results["focal"] / results["network"], results["focal"] / results["network"] <= 1.10),
    ]
    print(f"| {'ratio':<52} | {'value':>8} | met |")
    print(f"|{'-' * 54}|{'-' * 10}|-----|")
    for label, r, ok in ratios:
        print(f"| {label:<52} | {r:8.3f} | {'yes' if ok else 'NO':>3} |")


if __name__ == "__main__":
    main()
