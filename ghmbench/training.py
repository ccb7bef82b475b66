"""Building the pieces from a validated config, the training loop, and one whole run.

``run(cfg)`` trains one configuration, evaluates it and writes its record; everything it needs
comes from the config that :func:`ghmbench.config.validate` returned.
"""

from __future__ import annotations

import fcntl
import logging
import math
import platform
import sys
import time
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from ghmbench import distributed as D
from ghmbench.anchors import BoxCoder, match_anchors
from ghmbench.config import ConfigError, build_loss
from ghmbench.data import DetectionSplit, DigitsParams, Splits, check_shardable, iterate_batches, load_digits_detection
from ghmbench.evaluation import coco_evaluate, predict
from ghmbench.model import DetectorOutput, RetinaDetector
from ghmbench.fileio import write_json, write_text
from ghmbench.record_fields import COMPLETED, DIVERGED, FAILED
from ghmbench.records import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    is_complete,
    load_checkpoint,
    read_record,
    run_dir,
    run_key,
    save_checkpoint,
)

log = logging.getLogger("ghmbench")


# ----------------------------------------------------------------------------- builders


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without it is a config error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available here; allowed: auto, cpu")
    return torch.device(name)


def build_datasets(cfg: DictConfig) -> Splits:
    """(train, val, test or None) splits of the configured dataset."""
    d = OmegaConf.to_container(cfg.dataset, resolve=True)
    assert isinstance(d, dict)
    name = d.pop("name")
    cache = Path(cfg.paths.cache_dir).expanduser() if cfg.paths.cache_dir else None
    if name == "digits":
        return load_digits_detection(DigitsParams(**d), cache)
    from ghmbench import datasets

    if name == "coco":
        return datasets.load_coco_detection(d, cache)
    if name == "voc":
        return datasets.load_voc_detection(d, cache)
    if name == "yolo":
        return datasets.load_yolo_detection(d, cache)
    raise ConfigError(f"dataset.name={name!r} is not allowed; allowed: digits, coco, voc, yolo")


def build_model(cfg: DictConfig, num_classes: int, in_channels: int) -> RetinaDetector:
    """The detector of ``cfg.model``."""
    m = cfg.model
    return RetinaDetector(
        num_classes=num_classes,
        in_channels=in_channels,
        backbone=m.backbone,
        backbone_width=m.backbone_width,
        weights_path=m.weights_path,
        levels=tuple(m.levels),
        fpn_channels=m.fpn_channels,
        head_convs=m.head_convs,
        anchor_sizes=tuple(m.anchor_sizes),
        anchor_scales=tuple(m.anchor_scales),
        aspect_ratios=tuple(m.aspect_ratios),
        prior_prob=m.prior_prob,
    )


def build_losses(cfg: DictConfig) -> tuple[nn.Module, nn.Module]:
    """(classification loss, regression loss) modules: ``cfg.loss`` / ``cfg.regression``
    instantiated from their ``_target_`` (:func:`ghmbench.config.build_loss`), built-in or the user's own."""
    return build_loss("loss", cfg.loss), build_loss("regression", cfg.regression)


def build_optimizer(model: nn.Module, t: DictConfig) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW; no weight decay on biases and normalisation parameters."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if t.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum)
    # fused: one kernel per step instead of ~10 per parameter tensor (~1.4 ms of a ~100 ms step
    # on the CPU); the same AdamW update, equal to the for-loop implementation within float rounding
    return torch.optim.AdamW(groups, lr=t.lr, fused=True)


def lr_factor(step: int, steps_per_epoch: int, t: DictConfig) -> float:
    """Multiplier of the base lr at ``step``: linear warmup, then cosine or step decay."""
    total = max(1, t.epochs * steps_per_epoch)
    if t.schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    else:
        epoch = step // max(1, steps_per_epoch)
        factor = t.step_gamma ** sum(epoch >= e for e in t.step_epochs)
    if step < t.warmup_iters:
        alpha = step / t.warmup_iters
        factor *= t.warmup_factor * (1 - alpha) + alpha
    return factor


# ----------------------------------------------------------------------------- losses


def detection_losses(
    out: DetectorOutput,
    gt_boxes: list[Tensor],
    gt_labels: list[Tensor],
    cls_loss: nn.Module,
    box_loss: nn.Module,
    coder: BoxCoder,
    m: DictConfig,
    g_hist: Tensor | None = None,
    anchor_counts: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Match anchors for the whole batch and apply both losses.

    Args:
        g_hist: optional [K] float64 histogram on [0, 1] to which the gradient norms
            g = |sigmoid(x) - y| of this batch's valid anchor x class entries are added.
        anchor_counts: optional [4] float64 to which (images, positive, negative, ignored
            anchors) of this batch are added: the imbalance the classification loss faces.

    Under torch.distributed the batch is this rank's shard of the global batch: the losses are
    normalised by the global number of positives (GHM by its global tot), and what is returned
    is this rank's share of the global-batch loss (the shares summed over ranks give its value).

    Returns:
        (classification loss, regression loss, number of positive anchors of the global batch), 0-dim tensors.
    """
    batch, num_anchors, num_classes = out.cls_logits.shape
    match = match_anchors(out.anchors, gt_boxes, gt_labels, m.fg_iou, m.bg_iou, m.allow_low_quality)
    positive = match.positive
    onehot = out.cls_logits.new_zeros(batch, num_anchors, num_classes)
    onehot.scatter_(2, match.labels.clamp(min=0)[..., None], positive[..., None].to(onehot.dtype))
    num_pos = D.all_reduce_sum(positive.sum())
    if anchor_counts is not None:
        with torch.no_grad():
            pos, valid = int(positive.sum()), int(match.valid.sum())  # this rank's shard
            anchor_counts += torch.tensor([batch, pos, valid - pos, batch * num_anchors - valid], dtype=torch.float64)
    level_ids = out.level_ids.repeat(batch)
    loss_cls = cls_loss(
        out.cls_logits.reshape(-1, num_classes),
        onehot.reshape(-1, num_classes),
        match.valid.reshape(-1).float(),
        avg_factor=num_pos,
        level_ids=level_ids,
    )
    if g_hist is not None:
        with torch.no_grad():
            g = (torch.sigmoid(out.cls_logits.detach().float()) - onehot).abs()
            idx = (g * g_hist.numel()).long().clamp_(max=g_hist.numel() - 1)
            valid = match.valid[..., None].expand_as(g)
            g_hist.scatter_add_(0, idx.reshape(-1).cpu(), valid.reshape(-1).double().cpu())
    # Only positive anchors are valid for the box losses, so they get the positive rows alone (the
    # same sums and GHM-R statistics, over ~2% of the rows); the index costs one device sync,
    # which the training loop's per-step read of the losses makes anyway.
    pos_idx = positive.reshape(-1).nonzero().squeeze(1)
    targets = coder.encode(match.matched_boxes_at(pos_idx), out.anchors[pos_idx % num_anchors])
    loss_box = box_loss(
        out.box_deltas.reshape(-1, 4)[pos_idx],
        targets,
        targets.new_ones(pos_idx.numel()),
        avg_factor=num_pos,
        level_ids=level_ids[pos_idx],
    )
    return D.share_of_global(loss_cls, getattr(cls_loss, "sync", True)), D.share_of_global(loss_box, getattr(box_loss, "sync", True)), num_pos


# ----------------------------------------------------------------------------- the run


@dataclass
class TrainState:
    """What survives an epoch boundary (and so a checkpoint)."""

    epoch: int = 0
    step: int = 0
    elapsed_s: float = 0.0
    history: list[dict] = field(default_factory=list)
    g_hist: list[float] | None = None
    curve: list[dict] = field(default_factory=list)
    anchors: dict | None = None
    eval_s: float = 0.0


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that determine the numbers."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ["torch", "torchvision", "numpy", "faster-coco-eval", "hydra-core", "scikit-learn", "ghmbench"]:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _setup_logging(folder: Path) -> logging.Handler:
    handler = logging.FileHandler(folder / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[losses]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


class RunLocked(RuntimeError):
    """Another process is training the same configuration in the same folder."""


def run(cfg: DictConfig, force: bool = False) -> dict:
    """Train, evaluate and record one configuration.

    A folder with a complete record is skipped (its record returned with ``skipped=True``)
    unless ``force``; a folder with only a checkpoint resumes from it.

    Args:
        cfg: a config returned by :func:`ghmbench.config.validate`.
        force: retrain from scratch even when a record or checkpoint exists.

    Under torchrun / srun / a multi-task submitit job this is one rank of a data-parallel run
    (see :mod:`ghmbench.distributed`): rank 0 alone takes the lock and writes files, and tells
    the other ranks whether to skip, give up (locked) or train.

    Returns:
        The run record (what metrics.json holds), the same on every rank.
    """
    device = resolve_device(cfg.device)
    D.init_from_env(device)
    check_shardable(cfg.train.batch_size, D.world_size())
    if D.is_distributed() and device.type == "cuda" and device.index is not None:
        raise ConfigError(f"device={cfg.device} would put every process on one GPU; allowed with several processes: cuda (each takes cuda:LOCAL_RANK), cpu, auto")
    if D.is_distributed() and device.type != "cuda" and cfg.model.backbone == "resnet18":
        raise ConfigError("model.backbone=resnet18 has BatchNorm, synchronised across processes only on GPUs; allowed with several CPU processes: model=small")
    folder = run_dir(cfg)
    if not D.is_main():
        decision = D.broadcast_object(None)
        if decision == "locked":
            raise RunLocked(f"{folder} is being trained by another process")
        return _skipped(folder) if decision == "skip" else _train_and_evaluate(cfg, folder)
    if not force and is_complete(folder):
        D.broadcast_object("skip")
        return _skipped(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the file closes (or the process dies)
        except OSError:
            D.broadcast_object("locked")
            raise RunLocked(f"{folder} is being trained by another process") from None
        if not force and is_complete(folder):  # finished while we were starting
            D.broadcast_object("skip")
            return _skipped(folder)
        if force:
            for name in (METRICS_FILE, CHECKPOINT_FILE, "detections.json"):
                (folder / name).unlink(missing_ok=True)
        D.broadcast_object("train")
        write_text(folder / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        handler = _setup_logging(folder)
        try:
            record = _train_and_evaluate(cfg, folder)
        except Exception as e:  # recorded as failed, then re-raised for the caller to report
            record = _base_record(cfg, folder) | {"status": FAILED, "error": f"{type(e).__name__}: {e}"}
            write_json(folder / METRICS_FILE, record)
            log.exception("run failed")
            raise
        finally:
            log.removeHandler(handler)
            handler.close()
    return record


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


def _train_and_evaluate(cfg: DictConfig, folder: Path) -> dict:
    t = cfg.train
    if t.num_threads > 0:
        torch.set_num_threads(t.num_threads)
    device = D.local_device(resolve_device(cfg.device))
    torch.use_deterministic_algorithms(True, warn_only=True)
    with D.main_first():  # rank 0 fills the dataset cache, the others read it
        train_split, val_split, test_split = build_datasets(cfg)
    if D.is_main():  # one line at the start of the run when the anchors do not fit the objects
        from ghmbench.dataset_stats import anchor_fit_warning, detector_anchors

        warning = anchor_fit_warning(train_split, detector_anchors(cfg, train_split.num_classes, train_split.images.shape[1]), cfg.model, cfg.dataset.image_size)
        if warning:
            log.warning("%s", warning)
            print(f"warning: {warning}", file=sys.stderr, flush=True)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, train_split.num_classes, train_split.images.shape[1]).to(device)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    cls_loss, box_loss = build_losses(cfg)
    cls_loss.to(device)
    box_loss.to(device)
    optimizer = build_optimizer(model, t)
    coder = BoxCoder()
    steps_per_epoch = math.ceil(len(train_split) / t.batch_size)
    state = TrainState()
    ckpt_path = folder / CHECKPOINT_FILE
    if D.broadcast_object(ckpt_path.exists()):  # rank 0's view: every rank resumes from the same file
        ckpt = load_checkpoint(ckpt_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        cls_loss.load_state_dict(ckpt["cls_loss"])
        box_loss.load_state_dict(ckpt["box_loss"])
        state = TrainState(
            ckpt["epoch"], ckpt["step"], ckpt["elapsed_s"], list(ckpt["history"]), ckpt.get("g_hist"), list(ckpt.get("curve", [])), ckpt.get("anchors"), ckpt.get("eval_s", 0.0)
        )
        log.info("resumed from %s at epoch %d", ckpt_path, state.epoch)
    from ghmbench.loggers import NullLogger, make_logger

    net = D.data_parallel(model, device)  # DDP under torch.distributed; ``model`` stays the bare network
    logger = make_logger(cfg, folder) if D.is_main() else NullLogger()
    log.info(
        "run %s on %s: %d train / %d val / %s test images, %d steps per epoch",
        folder.name, device, len(train_split), len(val_split), len(test_split) if test_split else "no", steps_per_epoch,
    )
    post = {k: cfg.model[k] for k in ("score_thresh", "topk_candidates", "nms_thresh", "detections_per_img")}

    def evaluate(split: DetectionSplit) -> tuple[dict, list[dict]]:
        detections = predict(model, split, coder, device, t.eval_batch_size, **post)
        return coco_evaluate(split.coco_ground_truth(), detections), detections

    val_eval: tuple[dict, list[dict]] | None = None  # the last epoch's, reused as the final validation
    for split_name, split in (("train", train_split), ("val", val_split), ("test", test_split)):
        if split is None:
            continue
        if split.dropped:
            log.warning("%s split: dropped invalid items (dataset.on_invalid=skip): %s", split_name, split.dropped)

    started = time.perf_counter() - state.elapsed_s
    status, diverged_at = COMPLETED, None
    with _progress(t.progress and D.is_main()) as progress:
        task = progress.add_task(folder.name, total=t.epochs * steps_per_epoch, completed=state.step, losses="")
        model.train()
        while state.epoch < t.epochs and status == COMPLETED:
            gen = torch.Generator().manual_seed(cfg.seed * 100_003 + state.epoch)
            sums = torch.zeros(3, dtype=torch.float64)
            batches = 0
            g_hist = torch.zeros(t.g_hist_bins, dtype=torch.float64) if state.epoch == t.epochs - 1 else None
            counts = torch.zeros(4, dtype=torch.float64) if state.anchors is None else None  # first epoch: the imbalance
            shard = {"rank": D.rank(), "world_size": D.world_size()}  # pinning happens once, in _to_device
            for images, boxes, labels, _ in iterate_batches(train_split, t.batch_size, shuffle=True, generator=gen, **shard):
                for group in optimizer.param_groups:
                    group["lr"] = t.lr * lr_factor(state.step, steps_per_epoch, t)
                out = amp_forward(net, _to_device(images, device, t), t.amp)
                loss_cls, loss_box, num_pos = detection_losses(out, boxes, labels, cls_loss, box_loss, coder, cfg.model, g_hist, counts)
                loss = loss_cls + loss_box
                values = D.all_reduce_sum(torch.stack([loss.detach(), loss_cls.detach(), loss_box.detach()]).double()).cpu()  # global batch
                if not torch.isfinite(values).all():
                    status, diverged_at = DIVERGED, state.step
                    log.warning("non-finite loss at step %d (cls %s, box %s): run recorded as diverged", state.step, values[1].item(), values[2].item())
                    break
                optimizer.zero_grad(set_to_none=True)
                (loss * D.backward_scale()).backward()  # DDP averages over ranks: this gives the global batch's gradient
                if t.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
                optimizer.step()
                sums += values
                batches += 1
                state.step += 1
                mean = sums / batches
                progress.update(task, advance=1, losses=f"loss {mean[0]:.3f} cls {mean[1]:.3f} box {mean[2]:.3f}")
                if state.step % t.log_every == 0:
                    logger.log({"loss": values[0].item(), "loss_cls": values[1].item(), "loss_box": values[2].item(), "lr": optimizer.param_groups[0]["lr"], "num_pos": int(num_pos)}, state.step)
            if status != COMPLETED:
                break
            mean = (sums / max(1, batches)).tolist()
            state.epoch += 1
            state.history.append({"epoch": state.epoch, "loss": mean[0], "loss_cls": mean[1], "loss_box": mean[2], "lr": optimizer.param_groups[0]["lr"]})
            if g_hist is not None:
                state.g_hist = D.all_reduce_sum(g_hist).tolist()
            if counts is not None:
                state.anchors = anchor_stats(D.all_reduce_sum(counts))
            log.info("epoch %d/%d: loss %.4f (cls %.4f, box %.4f)", state.epoch, t.epochs, *mean)
            if t.eval_every and (state.epoch % t.eval_every == 0 or state.epoch == t.epochs):
                if D.is_main():  # the learning curve: validation AP during training
                    eval_start = time.perf_counter()
                    val_eval = evaluate(val_split)
                    state.eval_s += time.perf_counter() - eval_start
                    state.curve.append({"epoch": state.epoch, "step": state.step, "AP": val_eval[0]["AP"], "AP50": val_eval[0]["AP50"]})
                    log.info("epoch %d: validation AP %.4f", state.epoch, val_eval[0]["AP"] or 0.0)
                D.barrier()
            state.elapsed_s = time.perf_counter() - started
            if t.checkpoint and D.is_main():
                save_checkpoint(
                    ckpt_path,
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "cls_loss": cls_loss.state_dict(),
                        "box_loss": box_loss.state_dict(),
                        "epoch": state.epoch,
                        "step": state.step,
                        "elapsed_s": state.elapsed_s,
                        "history": state.history,
                        "g_hist": state.g_hist,
                        "curve": state.curve,
                        "anchors": state.anchors,
                        "eval_s": state.eval_s,
                    },
                )

    record = _base_record(cfg, folder) | {"status": status, "epochs_done": state.epoch, "steps": state.step, "history": state.history}
    record["dataset"] = {
        "train_images": len(train_split),
        "val_images": len(val_split),
        "test_images": len(test_split) if test_split is not None else 0,
        "classes": train_split.class_names,
        "dropped": {"train": train_split.dropped, "val": val_split.dropped} | ({"test": test_split.dropped} if test_split else {}),  # dataset.on_invalid=skip
    }
    record["g_hist"] = state.g_hist  # gradient norms of valid entries over the last epoch, on [0, 1]
    record["anchors"] = state.anchors  # anchors per image the matcher gave in the first epoch
    record["curve"] = state.curve  # validation AP during training (train.eval_every)
    record["metrics_split"] = "test" if test_split is not None else "val"
    if status == DIVERGED:
        record |= {"diverged_at_step": diverged_at, "metrics": None, "per_class_AP": None, "val_metrics": None, "test_metrics": None}
    elif D.is_main():  # the other ranks wait for the record below
        eval_start = time.perf_counter()
        val_metrics, detections = val_eval if val_eval is not None and state.curve and state.curve[-1]["epoch"] == state.epoch else evaluate(val_split)
        write_json(folder / "detections.json", detections)
        val_metrics = dict(val_metrics)
        record |= {"val_metrics": val_metrics, "val_per_class_AP": val_metrics.pop("per_class_AP"), "test_metrics": None}
        reported, split = val_metrics, val_split
        if test_split is not None:  # selection reads val_metrics; the reported numbers are the test split's
            test_metrics, test_detections = evaluate(test_split)
            write_json(folder / "detections_test.json", test_detections)
            test_metrics = dict(test_metrics)
            record |= {"test_metrics": test_metrics, "test_per_class_AP": test_metrics.pop("per_class_AP")}
            reported, split = test_metrics, test_split
        name = record["metrics_split"]
        write_json(folder / f"ground_truth_{name}.json", split.coco_ground_truth())  # for the report's bootstrap over images
        record["eval_files"] = {"split": name, "detections": "detections_test.json" if name == "test" else "detections.json", "ground_truth": f"ground_truth_{name}.json"}
        record |= {"metrics": reported, "per_class_AP": record[f"{name}_per_class_AP"], "eval_time_s": time.perf_counter() - eval_start, "periodic_eval_time_s": state.eval_s}
        log.info("%s AP %.4f AP50 %.4f AP75 %.4f", name, reported["AP"] or 0.0, reported["AP50"] or 0.0, reported["AP75"] or 0.0)
    record["wall_time_s"] = time.perf_counter() - started
    record["device"] = str(device)
    record["world_size"] = D.world_size()
    train_s = state.elapsed_s - state.eval_s  # periodic validation excluded
    record["train_images_per_s"] = state.epoch * len(train_split) / train_s if train_s > 0 else None
    if device.type == "cuda":  # how many runs fit on one GPU
        record["cuda_max_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    record["command"] = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    if D.is_main():
        write_json(folder / METRICS_FILE, record)
        logger.finish(record)
    return D.broadcast_object(record)


def anchor_stats(counts: Tensor) -> dict:
    """(images, positive, negative, ignored) anchor counts [4] -> per-image means and neg : pos."""
    images, pos, neg, ign = counts.tolist()
    n = max(images, 1.0)
    return {"positive_per_image": pos / n, "negative_per_image": neg / n, "ignored_per_image": ign / n, "neg_per_pos": neg / pos if pos else None}


def _to_device(images: Tensor, device: torch.device, t: DictConfig) -> Tensor:
    """A batch on the device: from pinned memory (asynchronous copy to CUDA), channels-last if asked."""
    if t.pin_memory and device.type == "cuda":
        images = images.pin_memory()
    fmt = torch.channels_last if t.channels_last else torch.contiguous_format
    return images.to(device, non_blocking=True, memory_format=fmt)


def amp_forward(net: nn.Module, images: Tensor, amp: str) -> DetectorOutput:
    """The network's forward, in bfloat16 autocast when ``amp == "bf16"``; its outputs come back
    in float32, so that the losses, their reductions and the GHM weights are float32."""
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
        out = net(images)
    return replace(out, cls_logits=out.cls_logits.float(), box_deltas=out.box_deltas.float())


__all__ = ["run", "build_model", "build_losses", "build_datasets", "detection_losses", "amp_forward", "lr_factor", "resolve_device"]
