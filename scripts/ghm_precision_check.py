#!/usr/bin/env python
"""GHM in bfloat16 against float32, on one device, with stated tolerances; exits 1 on a miss.

Under ``train.amp=bf16`` the network's forward runs in bfloat16 autocast and its outputs are
cast to float32 before the losses, so GHM sees bf16-rounded logits / deltas but computes its
histogram, weights and reductions in float32. Checked here:

1. dtypes: inside a bf16 autocast region, given bf16 inputs, GHM-C / GHM-R return float32
   losses and keep float32 running counts;
2. losses: GHM-C on N x C random logits (default 200,000 x 80) and GHM-R on N x 4 deltas, their
   inputs rounded to bf16, against float32 on the unrounded inputs: relative difference of the
   loss <= LOSS_RTOL and the mean absolute weight difference <= WEIGHT_RTOL x the mean weight
   (rounding moves a few entries into a neighbouring bin, which changes their weight);
3. the detector: one digits batch through the small model, forward in float32 and in bf16
   autocast (as training runs it), GHM-C + GHM-R losses: relative difference <= MODEL_RTOL.

Usage: python scripts/ghm_precision_check.py [--device cuda] [--n 200000] [--classes 80]
"""

from __future__ import annotations

import argparse
import sys

import torch

from ghmbench.losses import GHMC, GHMR, ghm_weights

LOSS_RTOL = 2e-3
WEIGHT_RTOL = 2e-2
MODEL_RTOL = 1e-2


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs() / b.abs().clamp(min=1e-12))


def _weights(g: torch.Tensor, valid: torch.Tensor, bins: int) -> torch.Tensor:
    return ghm_weights(g, valid, bins, valid.sum().float().reshape(1), None, 0.0)[0]


def _random_inputs(device: torch.device, n: int, classes: int) -> tuple[torch.Tensor, ...]:
    """(logits [N, C], one-hot target [N, C], label weight [N], deltas [N, 4], box target [N, 4]), seeded."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    logits = (torch.randn(n, classes, generator=gen) * 3 - 4).to(device)
    labels = torch.randint(-1, classes, (n,), generator=gen).to(device)
    target = torch.zeros(n, classes, device=device)
    pos = labels >= 0
    target[pos.nonzero().squeeze(1), labels[pos]] = 1.0
    weight = (torch.rand(n, generator=gen) > 0.1).float().to(device)
    deltas = (torch.randn(n, 4, generator=gen) * 0.1).to(device)
    box_target = (torch.randn(n, 4, generator=gen) * 0.1).to(device)
    return logits, target, weight, deltas, box_target


def check_losses(device: torch.device, n: int, classes: int) -> list[str]:
    """Checks 1 and 2; returns the failures."""
    logits, target, weight, deltas, box_target = _random_inputs(device, n, classes)
    failures = []
    with torch.autocast(device.type, dtype=torch.bfloat16):
        ghmc, ghmr = GHMC().to(device), GHMR().to(device)
        lc, lr = (
            ghmc(logits.bfloat16(), target, weight),
            ghmr(deltas.bfloat16(), box_target, weight),
        )
    for name, value, module in (("GHM-C", lc, ghmc), ("GHM-R", lr, ghmr)):
        ok = value.dtype == torch.float32 and module.acc_sum.dtype == torch.float32
        print(
            f"{name} under bf16 autocast: loss {value.dtype}, running counts {module.acc_sum.dtype}: "
            f"{'ok' if ok else 'FAIL'}"
        )
        if not ok:
            failures.append(f"{name} is not float32 under autocast")
    cases = {
        "GHM-C": (GHMC, logits, target, lambda x: (torch.sigmoid(x) - target).abs(), 30),
        "GHM-R": (
            GHMR,
            deltas,
            box_target,
            lambda x: (x - box_target).abs() / torch.sqrt((x - box_target) ** 2 + 0.02**2),
            10,
        ),
    }
    for name, (cls, x, y, g_of, bins) in cases.items():
        if not _bf16_matches_float32(device, name, cls, x, y, weight, g_of, bins):
            failures.append(f"{name} bf16 differs from float32 beyond tolerance")
    return failures


def _bf16_matches_float32(
    device: torch.device, name: str, cls, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, g_of, bins: int
) -> bool:
    """Check 2 for one loss: its value and GHM weights on bf16-rounded inputs against float32; prints the result."""
    valid = (weight > 0)[:, None]
    x16 = x.bfloat16().float()  # what the losses see after a bf16 forward
    loss32, loss16 = (
        cls().to(device)(x, y, weight),
        cls().to(device)(x16, y, weight),
    )
    w32, w16 = (
        _weights(g_of(x), valid.expand_as(x), bins),
        _weights(g_of(x16), valid.expand_as(x), bins),
    )
    rel_loss = _rel(loss16, loss32)
    rel_w = float((w16 - w32).abs().mean() / w32.abs().mean())
    ok = rel_loss <= LOSS_RTOL and rel_w <= WEIGHT_RTOL
    print(
        f"{name} bf16 vs float32 ({x.shape[0]} x {x.shape[1]}): loss {loss16.item():.6f} vs {loss32.item():.6f}, "
        f"relative difference {rel_loss:.2e} (<= {LOSS_RTOL:g}); mean |weight difference| / mean weight {rel_w:.2e} "
        f"(<= {WEIGHT_RTOL:g}): {'ok' if ok else 'FAIL'}"
    )
    return ok


def check_model(device: torch.device) -> list[str]:
    """Check 3 on the small detector and a digits batch."""
    from omegaconf import OmegaConf

    from ghmbench.config.compose import compose_config, validate
    from ghmbench.data.digits import DigitsParams, load_digits_detection
    from ghmbench.data.splits import iterate_batches
    from ghmbench.detection.criterion import DetectionCriterion
    from ghmbench.detection.model import amp_forward, build_model

    cfg = validate(compose_config(["loss=ghm", "regression=ghm"]))
    split = load_digits_detection(DigitsParams(num_train=32, num_val=1), None).train
    torch.manual_seed(0)
    model = build_model(cfg.model, split.num_classes, 1).to(device)
    images, boxes, labels, _ = next(iterate_batches(split, 32, shuffle=False))
    boxes, labels = [b.to(device) for b in boxes], [lab.to(device) for lab in labels]
    losses = {}
    for amp in ("none", "bf16"):
        criterion = DetectionCriterion.from_config(cfg).to(device)
        with torch.no_grad():
            out = amp_forward(model, images.to(device), amp)
            losses[amp] = torch.stack(criterion(out, boxes, labels)[:2])
    rel = [_rel(losses["bf16"][i], losses["none"][i]) for i in range(2)]
    ok = max(rel) <= MODEL_RTOL and out.cls_logits.dtype == torch.float32
    print(
        f"detector ({OmegaConf.select(cfg, 'model.backbone')}, batch 32) GHM-C / GHM-R with the forward in bf16 vs "
        f"float32: {losses['bf16'].tolist()} vs {losses['none'].tolist()}, relative differences {rel[0]:.2e} / "
        f"{rel[1]:.2e} (<= {MODEL_RTOL:g}): {'ok' if ok else 'FAIL'}"
    )
    return [] if ok else ["the detector's GHM losses with a bf16 forward differ from float32 beyond tolerance"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--classes", type=int, default=80)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "ghm_precision_check: FAILED: --device cuda but torch sees no CUDA GPU",
            file=sys.stderr,
        )
        return 1
    failures = check_losses(device, args.n, args.classes) + check_model(device)
    print("GHM bf16 check: " + ("passed" if not failures else "FAILED: " + "; ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
