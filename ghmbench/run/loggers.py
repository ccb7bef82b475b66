"""Optional experiment loggers. wandb is imported lazily and only when ``logger=wandb``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


class NullLogger:
    """Logs nothing (the run folder already holds the log and the metrics)."""

    def log(self, values: dict[str, Any], step: int) -> None:
        """Per-step scalars."""

    def finish(self, record: dict) -> None:
        """Final record."""


class WandbLogger(NullLogger):
    """Weights & Biases: config, per-step losses, final metrics and the run's table.

    Offline unless ``WANDB_MODE`` or ``logger.mode`` says otherwise, so nothing waits on a
    network. Runs are grouped by ``logger.group``, else by the sweep folder they belong to.
    """

    def __init__(self, cfg: DictConfig, folder: Path) -> None:
        import wandb

        lcfg = cfg.logger
        mode = lcfg.mode or os.environ.get("WANDB_MODE") or "offline"
        group = lcfg.group or None
        wandb_dir = Path(lcfg.dir or Path(cfg.paths.runs_dir) / ".wandb").expanduser()
        wandb_dir.mkdir(parents=True, exist_ok=True)
        self._wandb = wandb
        self._run = wandb.init(
            project=lcfg.project,
            entity=lcfg.entity,
            group=group,
            name=folder.name,
            tags=list(lcfg.tags),
            mode=mode,
            dir=str(wandb_dir),
            config=OmegaConf.to_container(cfg, resolve=True),
            reinit="finish_previous",
            settings=wandb.Settings(silent=True, init_timeout=60),
        )

    def log(self, values: dict[str, Any], step: int) -> None:
        self._run.log({f"train/{k}": v for k, v in values.items()}, step=step)

    def finish(self, record: dict) -> None:
        metrics = record.get("metrics") or {}
        summary = {f"val/{k}": v for k, v in metrics.items() if v is not None}
        summary["status"] = record["status"]
        summary["wall_time_s"] = record.get("wall_time_s")
        self._run.summary.update(summary)
        row = {
            "loss": record["loss"],
            "regression": record["regression"],
            "seed": record["seed"],
            "status": record["status"],
            **metrics,
        }
        self._run.log({"run_table": self._wandb.Table(columns=list(row), data=[list(row.values())])})
        per_class = record.get("per_class_AP") or {}
        if per_class:
            self._run.log(
                {
                    "per_class_AP": self._wandb.Table(
                        columns=["class", "AP"], data=[[k, v] for k, v in per_class.items()]
                    )
                }
            )
        self._run.finish()


def make_logger(cfg: DictConfig, folder: Path) -> NullLogger:
    """The logger that ``cfg.logger.name`` asks for."""
    if cfg.logger.name == "wandb":
        return WandbLogger(cfg, folder)
    return NullLogger()
