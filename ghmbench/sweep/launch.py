"""Launching a grid: Hydra's multirun in a child process (``python -m ghmbench.multirun``) and its
every job, :func:`task`, which trains one configuration into its keyed run folder."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, open_dict

from ghmbench.config.compose import validate
from ghmbench.store.fields import FAILED
from ghmbench.sweep.slurm_sweep import check_slurm, launch_on_slurm


def _threads_per_job() -> int:
    """CPU threads for one job so that parallel jobs x threads never exceed the cores."""
    from hydra.core.hydra_config import HydraConfig

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        launcher = HydraConfig.get().launcher
    except ValueError:
        return 0
    cpus = launcher.get("cpus_per_task")  # submitit: the job's own CPU allocation
    if cpus:
        return int(cpus)
    n_jobs = launcher.get("n_jobs")  # joblib
    if n_jobs is None or n_jobs == 1:
        return 0
    if n_jobs < 0:  # joblib: -1 = all cores, -2 = all but one, ...
        n_jobs = max(1, cores + 1 + n_jobs)
    return max(1, cores // n_jobs)


RUNS_ENV = "GHMBENCH_SWEEP_RUNS"  # the number of jobs of a launch, for the jobs' "run i/N" lines


def _job_number() -> str:
    """``i/N``: this job's place in its launch (Hydra's job number; N from :func:`launch`)."""
    from hydra.core.hydra_config import HydraConfig

    total = os.environ.get(RUNS_ENV)
    return f"{HydraConfig.get().job.num + 1}{'/' + total if total else ''}"


def task(cfg: DictConfig) -> dict:
    """One sweep job: validate, train into the keyed folder (or skip it; ``force``: retrain it unless
    its run key is in ``force_keep``), return a summary. Prints ``run i/N`` and what it does with
    the run (skips a complete record, resumes from a checkpoint, or starts) before, and the result after."""
    from hydra.core.hydra_config import HydraConfig

    from ghmbench.run.stop import RunStopped
    from ghmbench.run.training import run
    from ghmbench.store.checkpoint import CHECKPOINT_FILE
    from ghmbench.store.lock import RunLocked
    from ghmbench.store.records import is_complete, run_dir, run_key, smoke_failures

    cfg = validate(cfg)
    threads = _threads_per_job()
    with open_dict(cfg):
        if threads and cfg.train.num_threads == 0:
            cfg.train.num_threads = threads
        if cfg.logger.name == "wandb" and not cfg.logger.group:
            cfg.logger.group = Path(HydraConfig.get().sweep.dir).name  # one wandb group per sweep
    force, folder, number = cfg.force and run_key(cfg) not in cfg.force_keep, run_dir(cfg), _job_number()
    if force or not is_complete(folder):  # a complete record is said once, with its result below
        print(
            f"run {number} {folder.name}: "
            f"{'resumes from its checkpoint' if (folder / CHECKPOINT_FILE).exists() and not force else 'starts'}",
            flush=True,
        )
    try:
        record = run(cfg, force=force)
    except RunStopped as e:  # SIGTERM (scancel, preemption) or SIGUSR1/2: the checkpoint is saved
        print(f"run {number} {folder.name}: {e}; the same sweep resumes it", flush=True)
        raise SystemExit(128 + e.signum) from None
    except RunLocked as e:
        print(f"run {number} skipped: {e}", flush=True)
        return {"status": "locked"}
    except Exception as e:  # recorded as failed in its folder; the sweep goes on
        print(f"run {number} failed: {type(e).__name__}: {e}", flush=True)
        return {"status": FAILED}
    metrics = record.get("metrics") or {}
    word = "exists" if record.get("skipped") else record["status"]
    ap = metrics.get("AP")
    skipped = " (skipped: a complete record)" if record.get("skipped") else ""
    print(f"run {number} [{word}] {folder.name} AP={'-' if ap is None else f'{ap:.4f}'}{skipped}", flush=True)
    if cfg.train.smoke_check and smoke_failures(record):
        return {"status": "smoke_failed", "run_dir": record["run_dir"]}
    return {"status": record["status"], "run_dir": record["run_dir"]}


def launch(
    overrides: list[str],
    force: bool,
    keep: tuple[str, ...] = (),
    runs: int | None = None,
    say: Callable[[str], None] = print,
) -> None:
    """Run Hydra's multirun over ``overrides`` (already validated) in a child process, its output
    and Ctrl-C shared with this one; ``keep``: run keys ``force`` spares (config ``force_keep``);
    ``runs``: the number of its jobs, for their ``run i/N`` lines. On SLURM
    (:mod:`ghmbench.sweep.slurm_sweep`) this process follows the job array and ``say`` tells how each run ended.

    Raises:
        SystemExit: the multirun failed, with its exit status (Hydra printed why), or a SLURM run did not complete.
        ConfigError: sbatch refused the job array.
    """
    keys = ",".join(f"'{key}'" for key in keep)  # quoted: a hex key such as 1234e5 is a string
    command = [
        sys.executable,
        "-m",
        "ghmbench.multirun",
        "--multirun",
        *overrides,
        f"force={str(force).lower()}",
        f"force_keep=[{keys}]",
    ]
    sys.stdout.flush()
    sys.stderr.flush()
    env = os.environ | (
        {RUNS_ENV: str(runs)} if runs else {}
    )  # the launchers' workers inherit it (SLURM: sbatch exports it)
    if runs and check_slurm(overrides):
        launch_on_slurm(command, overrides, env, runs, say)
        return
    status = subprocess.run(command, check=False, env=env).returncode
    if status != 0:
        raise SystemExit(status)
