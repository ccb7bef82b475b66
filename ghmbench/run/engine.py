"""The training engine: the epochs (:func:`train_epochs`), one epoch over the training split
(:func:`train_one_epoch`), the learning-rate schedule, and evaluation on a split. A stop signal
(:mod:`ghmbench.run.stop`) ends the epoch after the step in progress, with a checkpoint that resumes it
at its next batch."""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

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
from ghmbench.run import stop
from ghmbench.run.progress import RunProgress
from ghmbench.run.setup import TrainingSetup
from ghmbench.run.state import TrainState
from ghmbench.run.stop import RunStopped
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
    (the step of a non-finite loss or None; the last periodic validation's (metrics, detections) on rank 0 or None).

    Raises:
        RunStopped: a stop signal arrived (:mod:`ghmbench.run.stop`): the checkpoint of the last finished
            step (or epoch) is saved.
    """
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
            try:
                diverged_at = train_one_epoch(setup, state, progress.step)
            except RunStopped as stopped:
                _save(setup, state, started)  # state.partial: the epoch so far
                log.warning("%s", stopped)
                raise
            if diverged_at is not None:
                return diverged_at, last_validation
            progress.epoch_done(state.epoch, state.history[-1])
            if train_cfg.eval_every and (state.epoch % train_cfg.eval_every == 0 or state.epoch == train_cfg.epochs):
                last_validation = _validate_during_training(setup, state)
                progress.validated(state.epoch, last_validation[0]["AP"] if last_validation else None)
            _save(setup, state, started)
            if _stop_requested(torch.device("cpu")):  # arrived during the validation or the last epoch
                stopped = RunStopped(stop.requested() or signal.SIGTERM, state.step)
                log.warning("%s", stopped)
                raise stopped
    return None, last_validation


def _save(setup: TrainingSetup, state: TrainState, started: float) -> None:
    """The checkpoint (rank 0, when ``train.checkpoint``); every rank waits for it."""
    state.elapsed_s = time.perf_counter() - started
    if setup.cfg.train.checkpoint and distributed.is_main():
        train_state.save(setup.folder / CHECKPOINT_FILE, setup.model, setup.criterion, setup.optimizer, state)
    distributed.barrier()


def _stop_requested(device: torch.device) -> bool:
    """Whether any rank received a stop signal (one all-reduce, so that every rank stops at the same step)."""
    flag = torch.tensor([float(stop.requested() is not None)], dtype=torch.float64, device=device)
    return bool(distributed.all_reduce_sum(flag).item() > 0)


@dataclass
class _EpochSums:
    """What an epoch accumulates over its steps: the losses' sums [3] over ``batches`` steps, the
    gradient-norm histogram (last epoch), the anchor counts [4] (first epoch), the label-noise sums."""

    sums: Tensor
    batches: int
    g_hist: Tensor | None
    counts: Tensor | None
    noisy_sums: Tensor | None

    @classmethod
    def start(cls, setup: TrainingSetup, state: TrainState) -> _EpochSums:
        """Zeros, or the stopped epoch's sums from ``state.partial`` (cleared). Its histogram and counts
        are the sums over the ranks: rank 0 starts from them, the others from zeros."""
        train_cfg, partial = setup.cfg.train, state.partial or {}
        state.partial = None

        def tensor(key: str, wanted: bool, size: int, device: torch.device | None = None) -> Tensor | None:
            if not wanted:
                return None
            value = partial.get(key) if key == "sums" or distributed.is_main() else None
            return (
                torch.tensor(value, dtype=torch.float64, device=device)
                if value is not None
                else torch.zeros(size, dtype=torch.float64, device=device)
            )

        return cls(
            tensor("sums", True, 3),
            partial.get("batches", 0),
            tensor("g_hist", state.epoch == train_cfg.epochs - 1, train_cfg.g_hist_bins),
            tensor("counts", state.anchors is None, 4),  # first epoch: the imbalance
            # known label noise: the gradient weight its anchors get
            tensor("noisy_sums", setup.train_split.noisy_boxes is not None, len(noisy_weight.SUMS), setup.device),
        )

    def as_partial(self) -> dict:
        """The sums as plain lists, for ``state.partial`` (the checkpoint rank 0 writes): the losses' sums
        are global-batch values already, the rest is summed over the ranks here (every rank calls this)."""
        per_rank = {"g_hist": self.g_hist, "counts": self.counts, "noisy_sums": self.noisy_sums}
        lists = {k: None if v is None else distributed.all_reduce_sum(v).tolist() for k, v in per_rank.items()}
        return lists | {"sums": self.sums.tolist(), "batches": self.batches}


def train_one_epoch(setup: TrainingSetup, state: TrainState, on_step: Callable[[Tensor], object]) -> int | None:
    """One epoch over the (this rank's shard of the) training split; its mean losses go to ``state.history``.
    An epoch stopped on a signal (``state.partial``) goes on from its next batch.

    Args:
        on_step: called after every step with the epoch's running mean (loss, cls, box) [3].

    Returns:
        The step at which the loss became non-finite (the run diverged, the epoch is not counted), else None.

    Raises:
        RunStopped: a stop signal arrived; the step in progress finished and ``state.partial`` holds the epoch so far.
    """
    train_cfg, optimizer = setup.cfg.train, setup.optimizer
    gen = torch.Generator().manual_seed(setup.cfg.seed * 100_003 + state.epoch)
    acc = _EpochSums.start(setup, state)
    noisy = setup.train_split.noisy_boxes  # known label noise: measure the gradient weight its anchors get
    shard = {"rank": distributed.rank(), "world_size": distributed.world_size()}  # pinning happens once, in _to_device
    for images, boxes, labels, idx in iterate_batches(
        setup.train_split, train_cfg.batch_size, shuffle=True, generator=gen, skip=acc.batches, **shard
    ):
        images, boxes, labels = _augmented(setup, state, images, boxes, labels, idx)
        for group in optimizer.param_groups:
            group["lr"] = train_cfg.lr * lr_factor(state.step, setup.steps_per_epoch, train_cfg)
        out = amp_forward(setup.net, _to_device(images, setup.device, train_cfg), train_cfg.amp)
        noisy_boxes = [noisy[i] for i in idx] if noisy is not None else None
        loss_cls, loss_box, num_pos = setup.criterion(
            out, boxes, labels, acc.g_hist, acc.counts, noisy_boxes, acc.noisy_sums
        )
        loss = loss_cls + loss_box
        stop_flag = torch.tensor(float(stop.requested() is not None), device=loss.device)
        reduced = distributed.all_reduce_sum(
            torch.stack([loss.detach(), loss_cls.detach(), loss_box.detach(), stop_flag]).double()
        ).cpu()  # global batch; the 4th: how many ranks were asked to stop
        values, stopping = reduced[:3], bool(reduced[3] > 0)
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
        acc.sums += values
        acc.batches += 1
        state.step += 1
        on_step(acc.sums / acc.batches)
        if state.step % train_cfg.log_every == 0:
            _log_step(setup, state.step, values, num_pos)
        if stopping:
            state.partial = acc.as_partial()
            raise RunStopped(stop.requested() or signal.SIGTERM, state.step)
    _close_epoch(setup, state, acc)
    return None


def _augmented(setup: TrainingSetup, state: TrainState, images, boxes, labels, idx) -> tuple:
    """The batch after the training augmentation (photos), each image seeded by (run seed, epoch, image index)
    so that batches repeat across resumes, batch sizes and processes; unchanged without augmentation."""
    if setup.augment is None:
        return images, boxes, labels
    seeds = [image_seed(setup.cfg.seed, state.epoch, i) for i in idx]
    return setup.augment(images, boxes, labels, seeds)


def _close_epoch(setup: TrainingSetup, state: TrainState, acc: _EpochSums) -> None:
    """Count the epoch: its mean losses [3] in ``state.history``; the gradient-norm histogram (last
    epoch), the anchor imbalance (first epoch) and the label-noise sums summed over the ranks."""
    train_cfg, optimizer = setup.cfg.train, setup.optimizer
    g_hist, counts, noisy_sums = acc.g_hist, acc.counts, acc.noisy_sums
    mean = (acc.sums / max(1, acc.batches)).tolist()
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
