"""``ghmbench sweep``: a grid (or the two-stage protocol) through Hydra's multirun."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ghmbench.cli.common import config_dir_option, err, fail, out, records_table
from ghmbench.config.compose import detector_overrides, searchpath_overrides
from ghmbench.config.overrides import override_key
from ghmbench.errors import ConfigError
from ghmbench.store.fields import COMPLETE_STATUSES

HELP = """Train every configuration of a grid through Hydra's multirun, then print their results.

Grids are written as in Hydra; presets (`experiment=...`) bring their own grid:

* `ghmbench sweep loss=focal loss.alpha=0.25,0.5,0.75 loss.gamma=0,1,2 seed=0,1,2`

* `ghmbench sweep experiment=loss_comparison` (the fair comparison: each of CE / Focal / GHM-C is tuned
  on the same lr x batch-size grid, selected on validation AP, then run with smooth L1 and GHM-R x 3
  seeds and reported on the test split; see `protocol` below)

* `ghmbench sweep loss=ce,focal seed=0,1,2 'protocol.tune=["train.lr=0.001,0.003"]' 'protocol.tune_with=["seed=0"]'`
  (any sweep with a non-empty `protocol.tune` runs in two stages: every loss x the tuning grid with
  `protocol.tune_with` fixed, then the sweep's own grid at each loss's setting with the best
  validation `protocol.select_metric`; runs shared by both stages are trained once)

* `ghmbench sweep experiment=bccd` (the same protocol on the embedded BCCD photos, with the detector fitted to
  them; `dataset=voc dataset.root=DIR` runs it on your own)

* `ghmbench sweep experiment=focal_grid` · `experiment=ghm_ablation` · `experiment=smoke loss=ce,focal,ghm`

* `ghmbench sweep --config-dir my_conf experiment=smoke loss=focal,my_loss` (your loss beside Focal: its
  YAML `my_conf/loss/my_loss.yaml` names its class with `_target_`; also in the protocol)

* `ghmbench sweep experiment=loss_comparison scale=gpu device=cuda` (a preset at GPU scale: its own regime with
  resnet18, 10x the training images, 36 epochs; `scripts/gpu_comparison.sh`. `budget=full` sizes the default run only)

* `ghmbench sweep ... hydra/launcher=joblib hydra.launcher.n_jobs=2` (parallel processes; each
  gets cores / n_jobs threads)

* `ghmbench sweep experiment=smoke hydra/launcher=slurm loss=ce,focal` (a SLURM cluster's CPUs: one task of
  1 CPU and 4 GB per run; `hydra/launcher=slurm_gpu hydra.launcher.partition=gpu device=cuda`: one GPU per run,
  `hydra.launcher.gpus_per_node=4` each run on 4 GPUs, one process per GPU). The request is checked against
  `sinfo` before anything is submitted; the sweep then follows the job array and says how each run ended and
  where its log is. A cancelled, preempted or timed-out run saves a checkpoint after its current step;
  the same sweep resumes it (a timed-out one requeues itself). See docs/sweeps.md

* `ghmbench sweep ... device=cuda hydra/launcher=joblib hydra.launcher.n_jobs=4` (4 small runs at once on one GPU)

Every run lands in its keyed folder under `paths.runs_dir`: running the same sweep again skips
finished runs and resumes interrupted ones from their last checkpoint (`--force` retrains).
Then `ghmbench report` turns the folder into tables and figures.
"""


def sweep(
    overrides: Optional[list[str]] = typer.Argument(
        None, help="Hydra overrides; comma lists are swept.", show_default=False
    ),
    force: bool = typer.Option(False, "--force", help="Retrain runs that already have a complete record."),
    config_dir: Optional[list[Path]] = config_dir_option(),
) -> None:
    from ghmbench.store.records import is_complete, read_record, run_dir, smoke_failures
    from ghmbench.sweep.grid import absolute_paths, expand_jobs, fixed_overrides, validate_jobs
    from ghmbench.sweep.launch import launch
    from ghmbench.sweep.protocol import protocol_of, run_protocol
    from ghmbench.sweep.slurm_sweep import check_slurm

    try:
        overrides = list(overrides or [])
        overrides = absolute_paths([*searchpath_overrides(config_dir or [], overrides), *overrides])
        if not any(override_key(o) == "model" for o in overrides):  # a model named (or swept) stays the user's
            overrides += detector_overrides(fixed_overrides(overrides))  # the jobs compose the detector validated here
        check_slurm(overrides)  # SLURM: the cluster can run the request (nothing submitted yet)
        proto = protocol_of(overrides)
        if proto is not None:
            cfgs = run_protocol(overrides, proto, force, lambda text: out.print(text, highlight=False, soft_wrap=True))
        else:
            jobs = expand_jobs(overrides)
            cfgs = validate_jobs(jobs)
    except ConfigError as e:
        fail(str(e))
    if proto is None:
        done = sum(is_complete(run_dir(c)) for c in cfgs)
        out.print(
            f"sweep: {len(jobs)} runs, {done} with a complete "
            f"record{' (retrained: --force)' if force and done else ''}",
            highlight=False,
        )
        try:
            launch(overrides, force, runs=len(jobs), say=lambda text: out.print(text, highlight=False, soft_wrap=True))
        except ConfigError as e:  # sbatch refused the array
            fail(str(e))
    if not cfgs:
        err.print("[bold red]the protocol selected no setting: no tuning run completed[/]", highlight=False)
        raise typer.Exit(code=1)
    records = [
        read_record(run_dir(c))
        or {"run_key": "-", "loss": c.loss.name, "regression": c.regression.name, "seed": c.seed, "status": "missing"}
        for c in cfgs
    ]
    out.print(records_table(records, "sweep results"))
    out.print(
        f"runs folder: {cfgs[0].paths.runs_dir}  (next: ghmbench report {cfgs[0].paths.runs_dir})",
        highlight=False,
        soft_wrap=True,
    )
    bad = [r for r in records if r["status"] not in COMPLETE_STATUSES]
    smoke = [r for c, r in zip(cfgs, records) if c.train.smoke_check and r["status"] != "missing" and smoke_failures(r)]
    if bad or smoke:
        err.print(f"[bold red]{len(bad)} failed or missing runs, {len(smoke)} failed smoke checks[/]", highlight=False)
        raise typer.Exit(code=1)
