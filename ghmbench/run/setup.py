"""What a run trains and evaluates with: the device, the datasets, the detector, its criterion and
optimizer, and the state to start from (the checkpoint's, if any), built once before the first epoch."""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ghmbench import distributed
from ghmbench.data.augment import PhotoAugment, from_dataset_config
from ghmbench.data.builder import build_datasets
from ghmbench.data.splits import DetectionSplit
from ghmbench.detection.anchor_fit import anchor_fit_warning, detector_anchors
from ghmbench.detection.autoanchor import describe_anchors, fitted_model_config
from ghmbench.detection.criterion import DetectionCriterion
from ghmbench.detection.model import RetinaDetector, build_model
from ghmbench.errors import ConfigError
from ghmbench.run import state as train_state
from ghmbench.run.loggers import NullLogger, make_logger
from ghmbench.run.state import TrainState
from ghmbench.store.checkpoint import CHECKPOINT_FILE

log = logging.getLogger("ghmbench")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without it is a config error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available here; allowed: auto, cpu")
    return torch.device(name)


def num_threads(configured: int) -> int:
    """Torch's CPU threads for this process: ``train.num_threads`` when set, else the CPUs SLURM gave the
    task (SLURM_CPUS_PER_TASK, set under ``sbatch --cpus-per-task`` / ``srun -c``: torch's default would
    take every core of the node, shared with the other tasks there), else 0 (torch's default)."""
    if configured > 0:
        return configured
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return int(slurm) if slurm.isdigit() and int(slurm) > 0 else 0


def build_optimizer(model: nn.Module, train_cfg: DictConfig) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW; no weight decay on biases and normalisation parameters."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": train_cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if train_cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=train_cfg.lr, momentum=train_cfg.momentum)
    # fused: one kernel per step instead of ~10 per parameter tensor (results/benchmarks.md); the
    # same AdamW update, equal to the for-loop implementation within float rounding
    return torch.optim.AdamW(groups, lr=train_cfg.lr, fused=True)


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
    model_cfg: DictConfig  # cfg.model with the anchor sizes the detector has (fitted, for model.anchor_sizes=auto)
    anchors_fitted: bool
    augment: PhotoAugment | None = None  # training augmentation of a file dataset (None: the digits, or off)


def set_up(cfg: DictConfig, folder: Path) -> tuple[TrainingSetup, TrainState]:
    """Datasets, detector, criterion and optimizer of ``cfg``, and the state to start from (the
    checkpoint's, if any)."""
    train_cfg = cfg.train
    threads = num_threads(train_cfg.num_threads)
    if threads > 0:
        torch.set_num_threads(threads)
    device = distributed.local_device(resolve_device(cfg.device))
    if distributed.is_main():
        _warn_emulated_bf16(train_cfg.amp, device)
    torch.use_deterministic_algorithms(True, warn_only=True)
    with distributed.main_first():  # rank 0 fills the dataset cache, the others read it
        train_split, val_split, test_split = build_datasets(cfg)
    torch.manual_seed(cfg.seed)
    model_cfg, fitted = fitted_model_config(cfg.model, train_split.boxes)
    model = build_model(model_cfg, train_split.num_classes, train_split.images.shape[1]).to(device)
    if distributed.is_main():
        _announce_anchors(cfg, train_split, model, model_cfg, fitted)
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
        model_cfg,
        fitted,
        from_dataset_config(OmegaConf.to_container(cfg.dataset, resolve=True)),
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
            log.warning(
                "%s split: dropped items (dataset.on_invalid=skip, or a dataset's known defects): %s",
                split_name,
                split.dropped,
            )
    return setup, state


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: any CUDA device ghmbench supports, a CPU with
    AVX512-BF16 or AMX; elsewhere oneDNN emulates it, slower than float32. A torch without these
    (private) probes is taken at its word: no warning."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if device.type != "cpu" or None in probes:
        return True
    return any(probe() for probe in probes)


def _warn_emulated_bf16(amp: str, device: torch.device) -> None:
    """One warning line at run start where ``train.amp=bf16`` would be emulated: the run's numbers are
    the same kind as with native bf16, but it is likely slower than ``train.amp=none``."""
    if amp == "bf16" and not native_bf16(device):
        warning = (
            "train.amp=bf16 on a CPU without native bfloat16 (no AVX512-BF16 or AMX): emulated, likely slower "
            "than train.amp=none"
        )
        log.warning("%s", warning)
        print(f"warning: {warning}", file=sys.stderr, flush=True)


def _announce_anchors(
    cfg: DictConfig, train_split: DetectionSplit, model: RetinaDetector, model_cfg: DictConfig, fitted: bool
) -> None:
    """At the start of the run: the detector's anchors (``model_cfg``: its sizes fitted, if ``auto``;
    printed then, as no config shows them), and one warning line when they do not fit the objects."""
    line = describe_anchors(model_cfg, fitted, cfg.dataset.image_size)
    log.info("%s", line)
    if fitted:
        print(line, flush=True)
    anchors = detector_anchors(model, train_split.images.shape[1], cfg.dataset.image_size)
    warning = anchor_fit_warning(train_split, anchors, model_cfg, cfg.dataset.image_size)
    if warning:
        log.warning("%s", warning)
        print(f"warning: {warning}", file=sys.stderr, flush=True)
