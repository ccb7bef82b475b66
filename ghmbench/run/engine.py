"""The training engine: the epochs (:func:`train_epochs`), one epoch over the training split
(:func:`train_one_epoch`), the learning-rate schedule, and evaluation on a split."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from ghmbench import distributed
from ghmbench.data.augment import image_seed
from ghmbench.data.splits import DetectionSplit, iterate_batches
from ghmbench.detection import noisy_weight
from ghmbench.detection.criterion import anchor_stats
from ghmbench.detection.evaluation import coco_evaluate, predict
from ghmbench.detection.model import amp_forward
from ghmbench.run import state as train_state
from ghmbench.run.progress import RunProgress
from ghmbench.run.setup import TrainingSetup
from ghmbench.run.state import TrainState
from ghmbench.store.checkpoint import CHECKPOINT_FILE

log = logging.getLogger("ghmbench")


def lr_factor(step: int, steps_per_epoch: int, train_cfg: DictConfig) -> float:
    """Multiplier of the base lr at ``step``: linear warmup, then cosine or step decay."""
    total = max(1, train_cfg.epochs * steps_per_epoch)
    if train_cfg.schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    else:
        epoch = step // max(1, steps_per_epoch)
        factor = train_cfg.step_gamma ** sum(epoch >= e for e in train_cfg.step_epochs)
    if step < train_cfg.warmup_iters:
        alpha = step / train_cfg.warmup_iters
        factor *= train_cfg.warmup_factor * (1 - alpha) + alpha
    return factor


def train_epochs(
    setup: TrainingSetup, state: TrainState, started: float
) -> tuple[int | None, tuple[dict, list[dict]] | None]:
    """The epochs from ``state.epoch`` on, each followed by the periodic validation and a checkpoint. Returns
    (the step of a non-finite loss or None; the last periodic validation's (metrics, detections) on rank 0 or None)."""
    train_cfg = setup.cfg.train
    last_validation: tuple[dict, list[dict]] | None = None
    progress = RunProgress(
        setup.folder.name,
        train_cfg.epochs,
        setup.steps_per_epoch,
        len(setup.train_split),
        enabled=train_cfg.progress and distributed.is_main(),
    )
    with progress.running(state.epoch, state.step):
        setup.model.train()
        while state.epoch < train_cfg.epochs:
            progress.epoch_started()
            diverged_at = train_one_epoch(setup, state, progress.step)
            if diverged_at is not None:
                return diverged_at, last_validation
            progress.epoch_done(state.epoch, state.history[-1])
            if train_cfg.eval_every and (state.epoch % train_cfg.eval_every == 0 or state.epoch == train_cfg.epochs):
                last_validation = _validate_during_training(setup, state)
                progress.validated(state.epoch, last_validation[0]["AP"] if last_validation else None)
            state.elapsed_s = time.perf_counter() - started
            if train_cfg.checkpoint and distributed.is_main():
                train_state.save(setup.folder / CHECKPOINT_FILE, setup.model, setup.criterion, setup.optimizer, state)
    return None, last_validation


def train_one_epoch(setup: TrainingSetup, state: TrainState, on_step: Callable[[Tensor], object]) -> int | None:
    """One epoch over the (this rank's shard of the) training split; its mean losses go to ``state.history``.

    Args:
        on_step: called after every step with the epoch's running mean (loss, cls, box) [3].

    Returns:
        The step at which the loss became non-finite (the run diverged, the epoch is not counted), else None.
    """
    train_cfg, optimizer = setup.cfg.train, setup.optimizer
    gen = torch.Generator().manual_seed(setup.cfg.seed * 100_003 + state.epoch)
    sums = torch.zeros(3, dtype=torch.float64)
    batches = 0
    g_hist = torch.zeros(train_cfg.g_hist_bins, dtype=torch.float64) if state.epoch == train_cfg.epochs - 1 else None
    counts = torch.zeros(4, dtype=torch.float64) if state.anchors is None else None  # first epoch: the imbalance
    noisy = setup.train_split.noisy_boxes  # known label noise: measure the gradient weight its anchors get
    noisy_sums = (
        torch.zeros(len(noisy_weight.SUMS), dtype=torch.float64, device=setup.device) if noisy is not None else None
    )
    shard = {"rank": distributed.rank(), "world_size": distributed.world_size()}  # pinning happens once, in _to_device
    for images, boxes, labels, idx in iterate_batches(
        setup.train_split, train_cfg.batch_size, shuffle=True, generator=gen, **shard
    ):
        if setup.augment is not None:
            seeds = [image_seed(setup.cfg.seed, state.epoch, i) for i in idx]
            images, boxes, labels = setup.augment(images, boxes, labels, seeds)
        for group in optimizer.param_groups:
            group["lr"] = train_cfg.lr * lr_factor(state.step, setup.steps_per_epoch, train_cfg)
        out = amp_forward(setup.net, _to_device(images, setup.device, train_cfg), train_cfg.amp)
        noisy_boxes = [noisy[i] for i in idx] if noisy is not None else None
        loss_cls, loss_box, num_pos = setup.criterion(out, boxes, labels, g_hist, counts, noisy_boxes, noisy_sums)
        loss = loss_cls + loss_box
        values = distributed.all_reduce_sum(
            torch.stack([loss.detach(), loss_cls.detach(), loss_box.detach()]).double()
        ).cpu()  # global batch
        if not torch.isfinite(values).all():
            log.warning(
                "non-finite loss at step %d (cls %s, box %s): run recorded as diverged",
                state.step,
                values[1].item(),
                values[2].item(),
            )
            return state.step
        optimizer.zero_grad(set_to_none=True)
        # DDP averages over ranks: this gives the global batch's gradient
        (loss * distributed.backward_scale()).backward()
        if train_cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(setup.model.parameters(), train_cfg.grad_clip)
        optimizer.step()
        sums += values
        batches += 1
        state.step += 1
        on_step(sums / batches)
        if state.step % train_cfg.log_every == 0:
            _log_step(setup, state.step, values, num_pos)
    _close_epoch(setup, state, sums / max(1, batches), g_hist, counts, noisy_sums)
    return None


def _close_epoch(
    setup: TrainingSetup,
    state: TrainState,
    mean_losses: Tensor,
    g_hist: Tensor | None,
    counts: Tensor | None,
    noisy_sums: Tensor | None,
) -> None:
    """Count the epoch: its mean losses [3] in ``state.history``; the gradient-norm histogram (last
    epoch), the anchor imbalance (first epoch) and the label-noise sums summed over the ranks."""
    train_cfg, optimizer = setup.cfg.train, setup.optimizer
    mean = mean_losses.tolist()
    state.epoch += 1
    state.history.append(
        {
            "epoch": state.epoch,
            "loss": mean[0],
            "loss_cls": mean[1],
            "loss_box": mean[2],
            "lr": optimizer.param_groups[0]["lr"],
        }
    )
    if g_hist is not None:
        state.g_hist = distributed.all_reduce_sum(g_hist).tolist()
    if counts is not None:
        state.anchors = anchor_stats(distributed.all_reduce_sum(counts))
    if noisy_sums is not None:
        state.noisy_sums, shares = noisy_weight.add_epoch(
            state.noisy_sums, distributed.all_reduce_sum(noisy_sums).cpu()
        )
        state.history[-1] |= shares
    log.info("epoch %d/%d: loss %.4f (cls %.4f, box %.4f)", state.epoch, train_cfg.epochs, *mean)


def _log_step(setup: TrainingSetup, step: int, values: Tensor, num_pos: Tensor) -> None:
    """The step's losses (loss, cls, box) [3], learning rate and positive anchors to the logger."""
    names = ("loss", "loss_cls", "loss_box")
    metrics = {name: value.item() for name, value in zip(names, values)}
    setup.logger.log(metrics | {"lr": setup.optimizer.param_groups[0]["lr"], "num_pos": int(num_pos)}, step)


def evaluate(setup: TrainingSetup, split: DetectionSplit) -> tuple[dict, list[dict]]:
    """(COCO metrics, detections) of the detector on ``split``, post-processed as ``cfg.model`` says."""
    post = {k: setup.cfg.model[k] for k in ("score_thresh", "topk_candidates", "nms_thresh", "detections_per_img")}
    detections = predict(
        setup.model, split, setup.criterion.coder, setup.device, setup.cfg.train.eval_batch_size, **post
    )
    return coco_evaluate(split.coco_ground_truth(), detections), detections


def _validate_during_training(setup: TrainingSetup, state: TrainState) -> tuple[dict, list[dict]] | None:
    """The learning curve: validation AP during training, on rank 0 (the others wait; None there)."""
    validation = None
    if distributed.is_main():
        eval_start = time.perf_counter()
        validation = evaluate(setup, setup.val_split)
        state.eval_s += time.perf_counter() - eval_start
        state.curve.append(
            {"epoch": state.epoch, "step": state.step, "AP": validation[0]["AP"], "AP50": validation[0]["AP50"]}
        )
        log.info("epoch %d: validation AP %.4f", state.epoch, validation[0]["AP"] or 0.0)
    distributed.barrier()
    return validation


def _to_device(images: Tensor, device: torch.device, train_cfg: DictConfig) -> Tensor:
    """A batch on the device: from pinned memory (asynchronous copy to CUDA), channels-last if asked."""
    if train_cfg.pin_memory and device.type == "cuda":
        images = images.pin_memory()
    fmt = torch.channels_last if train_cfg.channels_last else torch.contiguous_format
    return images.to(device, non_blocking=True, memory_format=fmt)
