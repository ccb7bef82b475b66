"""One whole run: ``run(cfg)`` trains one configuration (a config :func:`ghmbench.config.compose.validate`
returned), evaluates it and writes its record. The detector is built by
:func:`ghmbench.detection.model.build_model`, its losses by :class:`ghmbench.detection.criterion.DetectionCriterion`.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from ghmbench import distributed
from ghmbench.data.builder import build_datasets
from ghmbench.data.splits import DetectionSplit, check_shardable, iterate_batches
from ghmbench.detection import noisy_weight
from ghmbench.detection.anchor_fit import anchor_fit_warning, detector_anchors
from ghmbench.detection.criterion import DetectionCriterion, anchor_stats
from ghmbench.detection.evaluation import coco_evaluate, predict
from ghmbench.detection.model import RetinaDetector, amp_forward, build_model
from ghmbench.errors import ConfigError
from ghmbench.run import state as train_state
from ghmbench.run.log_file import log_to_file
from ghmbench.run.loggers import NullLogger, make_logger
from ghmbench.run.progress import RunProgress
from ghmbench.run.state import TrainState
from ghmbench.store.checkpoint import CHECKPOINT_FILE
from ghmbench.store.fields import COMPLETED, DIVERGED, FAILED
from ghmbench.store.fileio import write_json, write_text
from ghmbench.store.lock import RunLocked, folder_lock
from ghmbench.store.records import METRICS_FILE, is_complete, library_versions, read_record, run_dir, run_key

log = logging.getLogger("ghmbench")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without it is a config error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available here; allowed: auto, cpu")
    return torch.device(name)


def build_optimizer(model: nn.Module, train_cfg: DictConfig) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW; no weight decay on biases and normalisation parameters."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": train_cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if train_cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=train_cfg.lr, momentum=train_cfg.momentum)
    # fused: one kernel per step instead of ~10 per parameter tensor (~1.4 ms of a ~100 ms step
    # on the CPU); the same AdamW update, equal to the for-loop implementation within float rounding
    return torch.optim.AdamW(groups, lr=train_cfg.lr, fused=True)


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


# ----------------------------------------------------------------------------- the run


def run(cfg: DictConfig, force: bool = False) -> dict:
    """Train, evaluate and record one configuration.

    A folder with a complete record is skipped (its record returned with ``skipped=True``)
    unless ``force``; a folder with only a checkpoint resumes from it.

    Args:
        cfg: a config returned by :func:`ghmbench.config.compose.validate`.
        force: retrain from scratch even when a record or checkpoint exists.

    Under torchrun / srun / a multi-task submitit job this is one rank of a data-parallel run
    (see :mod:`ghmbench.distributed`): rank 0 alone takes the lock and writes files, and tells
    the other ranks whether to skip, give up (locked) or train.

    Returns:
        The run record (what metrics.json holds), the same on every rank.
    """
    device = resolve_device(cfg.device)
    distributed.init_from_env(device)
    _check_distributed_launch(cfg, device)
    folder = run_dir(cfg)
    if not distributed.is_main():
        return _follow_main_rank(cfg, folder)
    if not force and is_complete(folder):
        distributed.broadcast_object("skip")
        return _skipped(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with folder_lock(folder) as acquired:
        if not acquired:
            distributed.broadcast_object("locked")
            raise RunLocked(f"{folder} is being trained by another process") from None
        if not force and is_complete(folder):  # finished while we were starting
            distributed.broadcast_object("skip")
            return _skipped(folder)
        if force:
            for name in (METRICS_FILE, CHECKPOINT_FILE, "detections.json"):
                (folder / name).unlink(missing_ok=True)
        distributed.broadcast_object("train")
        write_text(folder / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        with log_to_file(folder):
            try:
                return _train_and_evaluate(cfg, folder)
            except Exception as e:  # recorded as failed, then re-raised for the caller to report
                write_json(
                    folder / METRICS_FILE,
                    _base_record(cfg, folder) | {"status": FAILED, "error": f"{type(e).__name__}: {e}"},
                )
                log.exception("run failed")
                raise


def _check_distributed_launch(cfg: DictConfig, device: torch.device) -> None:
    """Config errors that only several processes make: an unshardable batch, one GPU for all, BatchNorm on CPUs."""
    check_shardable(cfg.train.batch_size, distributed.world_size())
    if distributed.is_distributed() and device.type == "cuda" and device.index is not None:
        raise ConfigError(
            f"device={cfg.device} would put every process on one GPU; allowed with several processes: cuda (each takes cuda:LOCAL_RANK), cpu, auto"
        )
    if distributed.is_distributed() and device.type != "cuda" and cfg.model.backbone == "resnet18":
        raise ConfigError(
            "model.backbone=resnet18 has BatchNorm, synchronised across processes only on GPUs; allowed with several CPU processes: model=small"
        )


def _follow_main_rank(cfg: DictConfig, folder: Path) -> dict:
    """A rank other than 0 does what rank 0 decided: give up (locked), skip, or train alongside it."""
    decision = distributed.broadcast_object(None)
    if decision == "locked":
        raise RunLocked(f"{folder} is being trained by another process")
    return _skipped(folder) if decision == "skip" else _train_and_evaluate(cfg, folder)


def _skipped(folder: Path) -> dict:
    record = read_record(folder)
    assert record is not None
    return {**record, "skipped": True}


def _base_record(cfg: DictConfig, folder: Path) -> dict:
    return {
        "run_key": run_key(cfg),
        "run_dir": str(folder),
        "run_name": cfg.run_name,
        "loss": cfg.loss.name,
        "regression": cfg.regression.name,
        "seed": cfg.seed,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "versions": library_versions(),
    }


@dataclass
class TrainingSetup:
    """What a run trains and evaluates with, built once before its first epoch."""

    cfg: DictConfig
    folder: Path
    device: torch.device
    train_split: DetectionSplit
    val_split: DetectionSplit
    test_split: DetectionSplit | None
    model: RetinaDetector  # the bare network: its state is what checkpoints hold
    net: nn.Module  # ``model``, wrapped in DDP under torch.distributed
    criterion: DetectionCriterion
    optimizer: torch.optim.Optimizer
    logger: NullLogger
    steps_per_epoch: int


def _train_and_evaluate(cfg: DictConfig, folder: Path) -> dict:
    setup, state = _set_up(cfg, folder)
    started = time.perf_counter() - state.elapsed_s
    diverged_at, last_validation = _train(setup, state, started)
    return _write_record(setup, state, diverged_at, last_validation, started)


def _set_up(cfg: DictConfig, folder: Path) -> tuple[TrainingSetup, TrainState]:
    """Datasets, detector, criterion and optimizer of ``cfg``, and the state to start from (the checkpoint's, if any)."""
    train_cfg = cfg.train
    if train_cfg.num_threads > 0:
        torch.set_num_threads(train_cfg.num_threads)
    device = distributed.local_device(resolve_device(cfg.device))
    torch.use_deterministic_algorithms(True, warn_only=True)
    with distributed.main_first():  # rank 0 fills the dataset cache, the others read it
        train_split, val_split, test_split = build_datasets(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, train_split.num_classes, train_split.images.shape[1]).to(device)
    if distributed.is_main():
        _warn_about_anchor_fit(cfg, train_split, model)
    if train_cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion = DetectionCriterion.from_config(cfg).to(device)
    optimizer = build_optimizer(model, train_cfg)
    steps_per_epoch = math.ceil(len(train_split) / train_cfg.batch_size)
    state = train_state.resume(folder / CHECKPOINT_FILE, model, criterion, optimizer)
    net = distributed.data_parallel(model, device)  # DDP under torch.distributed; ``model`` stays the bare network
    logger = make_logger(cfg, folder) if distributed.is_main() else NullLogger()
    setup = TrainingSetup(
        cfg,
        folder,
        device,
        train_split,
        val_split,
        test_split,
        model,
        net,
        criterion,
        optimizer,
        logger,
        steps_per_epoch,
    )
    log.info(
        "run %s on %s: %d train / %d val / %s test images, %d steps per epoch",
        folder.name,
        device,
        len(train_split),
        len(val_split),
        len(test_split) if test_split else "no",
        steps_per_epoch,
    )
    for split_name, split in (("train", train_split), ("val", val_split), ("test", test_split)):
        if split is not None and split.dropped:
            log.warning("%s split: dropped invalid items (dataset.on_invalid=skip): %s", split_name, split.dropped)
    return setup, state


def _warn_about_anchor_fit(cfg: DictConfig, train_split: DetectionSplit, model: RetinaDetector) -> None:
    """One line at the start of the run when the anchors of its detector do not fit the objects."""
    anchors = detector_anchors(model, train_split.images.shape[1], cfg.dataset.image_size)
    warning = anchor_fit_warning(train_split, anchors, cfg.model, cfg.dataset.image_size)
    if warning:
        log.warning("%s", warning)
        print(f"warning: {warning}", file=sys.stderr, flush=True)


def _train(
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
        (
            loss * distributed.backward_scale()
        ).backward()  # DDP averages over ranks: this gives the global batch's gradient
        if train_cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(setup.model.parameters(), train_cfg.grad_clip)
        optimizer.step()
        sums += values
        batches += 1
        state.step += 1
        on_step(sums / batches)
        if state.step % train_cfg.log_every == 0:
            setup.logger.log(
                {
                    "loss": values[0].item(),
                    "loss_cls": values[1].item(),
                    "loss_box": values[2].item(),
                    "lr": optimizer.param_groups[0]["lr"],
                    "num_pos": int(num_pos),
                },
                state.step,
            )
    mean = (sums / max(1, batches)).tolist()
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
    return None


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


def _write_record(
    setup: TrainingSetup,
    state: TrainState,
    diverged_at: int | None,
    last_validation: tuple[dict, list[dict]] | None,
    started: float,
) -> dict:
    """The run's record: written to metrics.json by rank 0 after the final evaluation, returned on every rank."""
    train_split, val_split, test_split = setup.train_split, setup.val_split, setup.test_split
    status = COMPLETED if diverged_at is None else DIVERGED
    record = _base_record(setup.cfg, setup.folder) | {
        "status": status,
        "epochs_done": state.epoch,
        "steps": state.step,
        "history": state.history,
    }
    record["dataset"] = {
        "train_images": len(train_split),
        "val_images": len(val_split),
        "test_images": len(test_split) if test_split is not None else 0,
        "classes": train_split.class_names,
        "dropped": {"train": train_split.dropped, "val": val_split.dropped}
        | ({"test": test_split.dropped} if test_split else {}),  # dataset.on_invalid=skip
    }
    record["g_hist"] = state.g_hist  # gradient norms of valid entries over the last epoch, on [0, 1]
    record["anchors"] = state.anchors  # anchors per image the matcher gave in the first epoch
    record["curve"] = state.curve  # validation AP during training (train.eval_every)
    if state.noisy_sums is not None:  # known label noise: the gradient weight on its anchors over training
        record["noisy_weight"] = noisy_weight.summary(state.noisy_sums)
    record["metrics_split"] = "test" if test_split is not None else "val"
    if status == DIVERGED:
        record |= {
            "diverged_at_step": diverged_at,
            "metrics": None,
            "per_class_AP": None,
            "val_metrics": None,
            "test_metrics": None,
        }
    elif distributed.is_main():  # the other ranks wait for the record below
        record |= _final_evaluation(setup, state, last_validation, record["metrics_split"])
    record |= _time_and_place(setup, state, started)
    if distributed.is_main():
        write_json(setup.folder / METRICS_FILE, record)
        setup.logger.finish(record)
    return distributed.broadcast_object(record)


def _final_evaluation(
    setup: TrainingSetup, state: TrainState, last_validation: tuple[dict, list[dict]] | None, reported_split: str
) -> dict:
    """Validation metrics (the last epoch's periodic validation when there is one), test metrics
    when there is a test split, their detections and the ground truth of ``reported_split`` on disk."""
    folder = setup.folder
    eval_start = time.perf_counter()
    fresh = last_validation is not None and state.curve and state.curve[-1]["epoch"] == state.epoch
    val_metrics, detections = last_validation if fresh else evaluate(setup, setup.val_split)
    write_json(folder / "detections.json", detections)
    val_metrics = dict(val_metrics)
    record = {"val_metrics": val_metrics, "val_per_class_AP": val_metrics.pop("per_class_AP"), "test_metrics": None}
    reported, split = val_metrics, setup.val_split
    if setup.test_split is not None:  # selection reads val_metrics; the reported numbers are the test split's
        test_metrics, test_detections = evaluate(setup, setup.test_split)
        write_json(folder / "detections_test.json", test_detections)
        test_metrics = dict(test_metrics)
        record |= {"test_metrics": test_metrics, "test_per_class_AP": test_metrics.pop("per_class_AP")}
        reported, split = test_metrics, setup.test_split
    name = reported_split
    write_json(
        folder / f"ground_truth_{name}.json", split.coco_ground_truth()
    )  # for the report's bootstrap over images
    record["eval_files"] = {
        "split": name,
        "detections": "detections_test.json" if name == "test" else "detections.json",
        "ground_truth": f"ground_truth_{name}.json",
    }
    record |= {
        "metrics": reported,
        "per_class_AP": record[f"{name}_per_class_AP"],
        "eval_time_s": time.perf_counter() - eval_start,
        "periodic_eval_time_s": state.eval_s,
    }
    log.info(
        "%s AP %.4f AP50 %.4f AP75 %.4f", name, reported["AP"] or 0.0, reported["AP50"] or 0.0, reported["AP75"] or 0.0
    )
    return record


def _time_and_place(setup: TrainingSetup, state: TrainState, started: float) -> dict:
    """Wall time, device, number of processes, training speed, GPU memory and the command of the run."""
    place = {
        "wall_time_s": time.perf_counter() - started,
        "device": str(setup.device),
        "world_size": distributed.world_size(),
    }
    train_s = state.elapsed_s - state.eval_s  # periodic validation excluded
    place["train_images_per_s"] = state.epoch * len(setup.train_split) / train_s if train_s > 0 else None
    if setup.device.type == "cuda":  # how many runs fit on one GPU
        place["cuda_max_memory_mb"] = torch.cuda.max_memory_allocated(setup.device) / 2**20
    place["command"] = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    return place


def _to_device(images: Tensor, device: torch.device, train_cfg: DictConfig) -> Tensor:
    """A batch on the device: from pinned memory (asynchronous copy to CUDA), channels-last if asked."""
    if train_cfg.pin_memory and device.type == "cuda":
        images = images.pin_memory()
    fmt = torch.channels_last if train_cfg.channels_last else torch.contiguous_format
    return images.to(device, non_blocking=True, memory_format=fmt)


__all__ = ["run", "build_optimizer", "train_one_epoch", "evaluate", "lr_factor", "resolve_device"]
