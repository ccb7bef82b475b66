"""``ghmbench train``: one configuration, its run folder and its record."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ghmbench.cli.common import config_dir_option, err, fail, out, records_table
from ghmbench.errors import ConfigError
from ghmbench.store.fields import COMPLETED

HELP = """Train one configuration, evaluate it with COCO metrics, and write its run folder.

OVERRIDES are Hydra overrides, e.g.:

* `ghmbench train` (focal loss + smooth L1 on the embedded digits dataset)

* `ghmbench train loss=focal loss.gamma=1 loss.alpha=0.5 regression=ghm seed=3`

* `ghmbench train loss=ce loss.alpha=0.75`

* `ghmbench train loss=ghm loss.bins=10 loss.momentum=0.5 train.epochs=6`

* `ghmbench train model=resnet18 device=cuda paths.runs_dir=/data/runs`

* `ghmbench train device=cuda train.amp=bf16 train.channels_last=true` (bfloat16 forward; losses and GHM
weights stay float32)

* `ghmbench train loss=custom loss._target_=my_pkg.MyLoss +loss.my_param=3 loss.name=my_loss` (a loss of
  your own: a torch.nn.Module with `forward(pred, target, label_weight, avg_factor=None, level_ids=None)`, importable;
  every key but `name` is passed to it; `regression=custom` likewise)

* `ghmbench train --config-dir my_conf experiment=my_ci loss=my_loss` (your own presets and losses as
  `my_conf/experiment/my_ci.yaml`, `my_conf/loss/my_loss.yaml`, beside the built-in ones)

* `torchrun --nproc_per_node=4 -m ghmbench train device=cuda loss=ghm` (one run on 4 GPUs: the global batch
  `train.batch_size` is split over the processes, GHM counts its density over the global batch; also under
  `srun` with one task per GPU)

Exit codes: 0 done (and, with `experiment=smoke`, the smoke check passed); 1 the run diverged or
failed, or the smoke check failed; 2 a bad override, config or loss target (one line, nothing trained), or the run
folder is being trained by another process; 128 + N a signal N (SIGTERM, SIGUSR1, SIGUSR2: scancel, preemption, a
time limit) stopped the run after its current step, with a checkpoint that the same command resumes.

The run folder `<paths.runs_dir>/<loss>-<regression>-s<seed>-<key>` holds config.yaml,
metrics.json, detections.json (COCO results), train.log and checkpoint.pt. The key is derived
from the config, so repeating a finished command reuses its record (use --force to retrain),
and an interrupted one resumes from its last checkpoint.
"""


def train(
    overrides: Optional[list[str]] = typer.Argument(
        None, help="Hydra overrides, KEY=VALUE or GROUP=OPTION.", show_default=False
    ),
    force: bool = typer.Option(False, "--force", help="Retrain even when a complete record exists."),
    print_config: bool = typer.Option(False, "--cfg", help="Print the resolved config and exit."),
    config_dir: Optional[list[Path]] = config_dir_option(),
) -> None:
    from omegaconf import OmegaConf

    import ghmbench
    from ghmbench import distributed

    if not distributed.is_main():  # under torchrun / srun only rank 0 prints
        out.quiet = err.quiet = True
    try:
        cfg = ghmbench.load_config(overrides or [], config_dir=config_dir or [])
    except ConfigError as e:
        fail(str(e))
    if print_config:
        out.print(OmegaConf.to_yaml(cfg), highlight=False)
        return
    from ghmbench.run.stop import RunStopped
    from ghmbench.store.lock import RunLocked

    try:
        record = ghmbench.train(cfg, force=force)
    except (ConfigError, RunLocked) as e:
        fail(str(e))
    except RunStopped as e:  # scancel, preemption, a time limit: the checkpoint of the last step is saved
        err.print(f"{e}; the same command resumes it", highlight=False, soft_wrap=True)
        raise typer.Exit(code=128 + e.signum) from None
    out.print(records_table([record], "existing record (use --force to retrain)" if record.get("skipped") else "run"))
    out.print(f"run folder: {record['run_dir']}", highlight=False, soft_wrap=True)
    if record["status"] != COMPLETED:
        raise typer.Exit(code=1)
    if cfg.train.smoke_check:
        from ghmbench.store.records import smoke_failures

        problems = smoke_failures(record)
        if problems:
            err.print(f"[bold red]smoke check failed:[/] {'; '.join(problems)}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=1)
        out.print("smoke check passed: finite, decreasing loss and AP > 0", highlight=False)
