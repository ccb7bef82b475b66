#!/usr/bin/env python
"""Loss benchmark: GHM-C / GHM-R forward + backward, side by side with their baselines.

Prints, for one run on this machine (median of repeats):
- GHM-C vs torchvision.ops.sigmoid_focal_loss, N x C logits (default 200,000 x 80);
- GHM-C vs a straightforward per-bin loop of the same semantics (checked equal first);
- GHM-R vs smooth L1 and vs its per-bin loop, N x 4 (default 50,000 x 4).

Usage: python scripts/bench_losses.py [--n-cls 200000] [--classes 80] [--n-reg 50000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import Callable

import torch
import torchvision
from torch.nn import functional
from torchvision.ops import sigmoid_focal_loss

from ghmbench.losses import GHMC, GHMR


def loop_ghm(
    g: torch.Tensor, valid: torch.Tensor, edges: torch.Tensor, acc: torch.Tensor, momentum: float, tot: float
) -> torch.Tensor:
    """Per-bin loop (the shape of the mmdetection reference): weights of valid entries."""
    weights = torch.zeros_like(g)
    n = 0
    for i in range(len(edges) - 1):
        inds = (g >= edges[i]) & (g < edges[i + 1]) & valid
        num = inds.sum().item()
        if num > 0:
            if momentum > 0:
                acc[i] = momentum * acc[i] + (1 - momentum) * num
                weights[inds] = tot / acc[i]
            else:
                weights[inds] = tot / num
            n += 1
    return weights / max(n, 1)


def loop_ghmc(pred, target, label_weight, acc, bins=30, momentum=0.75):
    edges = torch.arange(bins + 1, dtype=torch.float32) / bins
    edges[-1] += 1e-6
    valid = (label_weight > 0)[:, None].expand_as(pred)
    g = (torch.sigmoid(pred.detach()) - target).abs()
    tot = max(valid.sum().item(), 1.0)
    w = loop_ghm(g, valid, edges, acc, momentum, tot)
    return (functional.binary_cross_entropy_with_logits(pred, target, reduction="none") * w).sum() / tot


def loop_ghmr(pred, target, label_weight, acc, mu=0.02, bins=10, momentum=0.7, loss_weight=10.0):
    edges = torch.arange(bins + 1, dtype=torch.float32) / bins
    edges[-1] = 1e3
    diff = pred - target
    loss = torch.sqrt(diff * diff + mu * mu) - mu
    g = (diff / torch.sqrt(mu * mu + diff * diff)).abs().detach()
    valid = (label_weight > 0)[:, None].expand_as(pred)
    tot = max(label_weight[:, None].expand_as(pred).float().sum().item(), 1.0)
    w = loop_ghm(g, valid, edges, acc, momentum, tot)
    return loss_weight * (loss * w).sum() / tot


def interleaved(fns: dict[str, Callable[[], torch.Tensor]], repeats: dict[str, int]) -> dict[str, float]:
    """Median seconds per call of each function, measured in rounds that call each in turn.

    The machine is shared: interleaving makes drift in its speed hit every variant alike.
    ``repeats[name]`` is how many rounds include that function (the slow loops take fewer).
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for r in range(max(repeats.values())):
        for name, fn in fns.items():
            if r < repeats[name]:
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def fwd_bwd(loss_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], torch.Tensor]:
    def step() -> torch.Tensor:
        x.grad = None
        loss = loss_fn(x)
        loss.backward()
        return loss

    return step


def bench_classification(
    n: int, c: int, repeats: int, g: torch.Generator
) -> tuple[list[tuple[str, float]], dict[str, float], int]:
    """GHM-C against sigmoid_focal_loss and its per-bin loop on N x C logits (values checked equal
    to the loop first): (table rows, median seconds by name, rounds of the loop)."""
    pred = (torch.randn(n, c, generator=g) * 2 - 4).requires_grad_(True)
    labels = torch.randint(-1, c, (n,), generator=g)
    target = torch.zeros(n, c)
    target[labels >= 0, labels[labels >= 0]] = 1.0
    weight = (torch.rand(n, generator=g) > 0.1).float()
    num_pos = ((target.sum(1) > 0) & (weight > 0)).sum().clamp(min=1)

    ghmc = GHMC(bins=30, momentum=0.75)
    # same values first: vectorised vs loop over three successive calls (momentum state included)
    acc = torch.zeros(30)
    for _ in range(3):
        a = ghmc(pred, target, weight)
        b = loop_ghmc(pred, target, weight, acc)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)

    loops = max(3, repeats // 2)
    t = interleaved(
        {
            "focal": fwd_bwd(
                lambda x: (sigmoid_focal_loss(x, target, reduction="none") * weight[:, None]).sum() / num_pos, pred
            ),
            "ghmc": fwd_bwd(lambda x: ghmc(x, target, weight), pred),
            "loop": fwd_bwd(lambda x: loop_ghmc(x, target, weight, torch.zeros(30)), pred),
        },
        {"focal": repeats, "ghmc": repeats, "loop": loops},
    )
    rows = [
        (f"GHM-C fwd+bwd {n}x{c}", t["ghmc"]),
        (f"sigmoid_focal_loss fwd+bwd {n}x{c}", t["focal"]),
        (f"GHM-C per-bin loop fwd+bwd {n}x{c}", t["loop"]),
    ]
    return rows, t, loops


def batch(fn: Callable[[], torch.Tensor], k: int = 20) -> Callable[[], torch.Tensor]:
    """``k`` calls of ``fn`` as one: for small tensors, so that the timer's resolution and single
    scheduler hiccups matter less."""

    def run() -> torch.Tensor:
        for _ in range(k):
            out = fn()
        return out

    return run


def bench_regression(m: int, repeats: int, g: torch.Generator) -> tuple[list[tuple[str, float]], dict[str, float]]:
    """GHM-R against smooth L1 and its per-bin loop on N x 4 deltas (values checked equal to the
    loop first): (table rows, median seconds per call by name)."""
    rp = (torch.randn(m, 4, generator=g) * 0.1).requires_grad_(True)
    rt = torch.randn(m, 4, generator=g) * 0.1
    rw = (torch.rand(m, generator=g) > 0.5).float()
    ghmr = GHMR()
    acc_r = torch.zeros(10)
    for _ in range(3):
        torch.testing.assert_close(ghmr(rp, rt, rw), loop_ghmr(rp, rt, rw, acc_r), rtol=1e-4, atol=1e-6)
    npos = rw.sum().clamp(min=1)
    t = interleaved(
        {
            "sl1": batch(
                fwd_bwd(
                    lambda x: (
                        (functional.smooth_l1_loss(x, rt, beta=0.11, reduction="none") * rw[:, None]).sum() / npos
                    ),
                    rp,
                )
            ),
            "ghmr": batch(fwd_bwd(lambda x: ghmr(x, rt, rw), rp)),
            "loop": batch(fwd_bwd(lambda x: loop_ghmr(x, rt, rw, torch.zeros(10)), rp)),
        },
        dict.fromkeys(["sl1", "ghmr", "loop"], repeats),
    )
    per_call = {k: t[k] / 20 for k in ("sl1", "ghmr", "loop")}
    rows = [
        (f"GHM-R fwd+bwd {m}x4", per_call["ghmr"]),
        (f"smooth L1 fwd+bwd {m}x4", per_call["sl1"]),
        (f"GHM-R per-bin loop fwd+bwd {m}x4", per_call["loop"]),
    ]
    return rows, per_call


def print_results(
    rows: list[tuple[str, float]], cls_times: dict[str, float], reg_times: dict[str, float], repeats: int, loops: int
) -> None:
    """The table of measurements and the ratios against their targets."""
    t_focal, t_ghmc, t_loop = cls_times["focal"], cls_times["ghmc"], cls_times["loop"]
    t_sl1, t_ghmr, t_rloop = reg_times["sl1"], reg_times["ghmr"], reg_times["loop"]
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads; torch "
        f"{torch.__version__}, torchvision {torchvision.__version__}"
    )
    print(
        f"median of {repeats} interleaved rounds (GHM-C loop: {loops}; GHM-R rows: 20 calls per round); values "
        "checked equal to the loop references\n"
    )
    print(f"| {'measurement':<45} | {'ms':>9} |")
    print(f"|{'-' * 47}|{'-' * 11}|")
    for name, t in rows:
        print(f"| {name:<45} | {t * 1e3:9.2f} |")
    print()
    ratios = [
        ("GHM-C / sigmoid_focal_loss (target <= 1.5)", t_ghmc / t_focal, t_ghmc / t_focal <= 1.5),
        ("GHM-C loop / GHM-C (target >= 5)", t_loop / t_ghmc, t_loop / t_ghmc >= 5),
        ("GHM-R / smooth L1 (target <= 1.5)", t_ghmr / t_sl1, t_ghmr / t_sl1 <= 1.5),
        ("GHM-R loop / GHM-R (target >= 5)", t_rloop / t_ghmr, t_rloop / t_ghmr >= 5),
    ]
    print(f"| {'ratio':<45} | {'value':>9} | met |")
    print(f"|{'-' * 47}|{'-' * 11}|-----|")
    for name, r, ok in ratios:
        print(f"| {name:<45} | {r:9.2f} | {'yes' if ok else 'NO':>3} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-cls", type=int, default=200_000)
    ap.add_argument("--classes", type=int, default=80)
    ap.add_argument("--n-reg", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()

    g = torch.Generator().manual_seed(0)
    cls_rows, cls_times, loops = bench_classification(args.n_cls, args.classes, args.repeats, g)
    reg_rows, reg_times = bench_regression(args.n_reg, args.repeats, g)
    print_results(cls_rows + reg_rows, cls_times, reg_times, args.repeats, loops)


if __name__ == "__main__":
    main()
