"""One whole run: ``run(cfg)`` trains one configuration (a config :func:`ghmbench.config.compose.validate`
returned), evaluates it and writes its record. The detector is built by
:func:`ghmbench.detection.model.build_model`, its losses by :class:`ghmbench.detection.criterion.DetectionCriterion`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ghmbench import distributed
from ghmbench.data.splits import check_shardable
from ghmbench.errors import ConfigError
from ghmbench.run.engine import train_epochs
from ghmbench.run.log_file import log_to_file
from ghmbench.run.outcome import base_record, write_record
from ghmbench.run.setup import resolve_device, set_up
from ghmbench.run.stop import stop_on_signals
from ghmbench.store.claim import claim, record_failure, reused_record
from ghmbench.store.fileio import write_text
from ghmbench.store.lock import RunLocked
from ghmbench.store.records import run_dir

log = logging.getLogger("ghmbench")


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

    Raises:
        RunStopped: SIGTERM / SIGUSR1 / SIGUSR2 stopped the training after a step, its checkpoint saved
            (no record is written: the same call resumes it).
    """
    device = resolve_device(cfg.device)
    distributed.init_from_env(device)
    _check_distributed_launch(cfg, device)
    folder = run_dir(cfg)
    if not distributed.is_main():
        return _follow_main_rank(cfg, folder)
    with claim(folder, force, decided=distributed.broadcast_object) as reused:
        if reused is not None:
            return reused
        write_text(folder / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        with log_to_file(folder):
            try:
                return _train_and_evaluate(cfg, folder)
            except Exception as e:  # recorded as failed, then re-raised for the caller to report
                record_failure(folder, base_record(cfg, folder), e)
                log.exception("run failed")
                raise


def _check_distributed_launch(cfg: DictConfig, device: torch.device) -> None:
    """Config errors that only several processes make: an unshardable batch, one GPU for all, BatchNorm
    on CPUs."""
    check_shardable(cfg.train.batch_size, distributed.world_size())
    if distributed.is_distributed() and device.type == "cuda" and device.index is not None:
        raise ConfigError(
            f"device={cfg.device} would put every process on one GPU; "
            "allowed with several processes: cuda (each takes cuda:LOCAL_RANK), cpu, auto"
        )
    if distributed.is_distributed() and device.type != "cuda" and cfg.model.backbone == "resnet18":
        raise ConfigError(
            "model.backbone=resnet18 has BatchNorm, synchronised across processes only on GPUs; "
            "allowed with several CPU processes: model=small"
        )


def _follow_main_rank(cfg: DictConfig, folder: Path) -> dict:
    """A rank other than 0 does what rank 0 decided: give up (locked), skip, or train alongside it."""
    decision = distributed.broadcast_object(None)
    if decision == "locked":
        raise RunLocked(f"{folder} is being trained by another process")
    return reused_record(folder) if decision == "skip" else _train_and_evaluate(cfg, folder)


def _train_and_evaluate(cfg: DictConfig, folder: Path) -> dict:
    """Train (stopping at a step boundary on SIGTERM / SIGUSR1 / SIGUSR2: :mod:`ghmbench.run.stop`), evaluate,
    write the record."""
    setup, state = set_up(cfg, folder)
    started = time.perf_counter() - state.elapsed_s
    with stop_on_signals():
        diverged_at, last_validation = train_epochs(setup, state, started)
    return write_record(setup, state, diverged_at, last_validation, started)
