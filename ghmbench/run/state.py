"""What survives an epoch boundary (or a stop inside an epoch) of a run: :class:`TrainState`, saved
with the modules' states in the run's checkpoint and resumed from it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ghmbench import distributed
from ghmbench.detection.criterion import DetectionCriterion
from ghmbench.store.checkpoint import load_checkpoint, save_checkpoint

log = logging.getLogger("ghmbench")


@dataclass
class TrainState:
    """What survives an epoch boundary (and so a checkpoint); ``partial``: the epoch in progress when the
    run stopped on a signal (see :mod:`ghmbench.run.stop`), None at an epoch boundary."""

    epoch: int = 0
    step: int = 0
    elapsed_s: float = 0.0
    history: list[dict] = field(default_factory=list)
    g_hist: list[float] | None = None
    curve: list[dict] = field(default_factory=list)
    anchors: dict | None = None
    eval_s: float = 0.0
    noisy_sums: list[float] | None = None  # ghmbench.detection.noisy_weight.SUMS over the epochs so far
    # {"batches": steps done in the epoch, "sums": [3], "g_hist", "counts", "noisy_sums": lists or None}
    partial: dict | None = None


def resume(path: Path, model: nn.Module, criterion: DetectionCriterion, optimizer: torch.optim.Optimizer) -> TrainState:
    """The checkpoint's state, its modules' states loaded into ``model``, ``criterion`` and
    ``optimizer``; a fresh state when there is no checkpoint. Rank 0's view decides: every rank
    resumes from the same file."""
    if not distributed.broadcast_object(path.exists()):
        return TrainState()
    ckpt = load_checkpoint(path)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    criterion.cls_loss.load_state_dict(ckpt["cls_loss"])
    criterion.box_loss.load_state_dict(ckpt["box_loss"])
    state = TrainState(
        ckpt["epoch"],
        ckpt["step"],
        ckpt["elapsed_s"],
        list(ckpt["history"]),
        ckpt.get("g_hist"),
        list(ckpt.get("curve", [])),
        ckpt.get("anchors"),
        ckpt.get("eval_s", 0.0),
        ckpt.get("noisy_sums"),
        ckpt.get("partial"),
    )
    log.info("resumed from %s at epoch %d, step %d", path, state.epoch, state.step)
    return state


def save(
    path: Path, model: nn.Module, criterion: DetectionCriterion, optimizer: torch.optim.Optimizer, state: TrainState
) -> None:
    """The checkpoint :func:`resume` reads: the modules' states and ``state``."""
    save_checkpoint(
        path,
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "cls_loss": criterion.cls_loss.state_dict(),
            "box_loss": criterion.box_loss.state_dict(),
            "epoch": state.epoch,
            "step": state.step,
            "elapsed_s": state.elapsed_s,
            "history": state.history,
            "g_hist": state.g_hist,
            "curve": state.curve,
            "anchors": state.anchors,
            "eval_s": state.eval_s,
            "noisy_sums": state.noisy_sums,
            "partial": state.partial,
        },
    )


__all__ = ["TrainState", "resume", "save"]
