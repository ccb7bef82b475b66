"""``ghmbench sweep``: Hydra multirun over a grid, through any Hydra launcher.

The grid is expanded and every job's config validated before anything starts; then Hydra's
multirun launches the jobs (basic launcher: one after another; ``hydra/launcher=joblib``:
parallel processes; ``hydra/launcher=submitit_local`` / ``submitit_slurm``: submitit). Each
job is :func:`task`: it trains one configuration into its keyed run folder, so a repeated sweep
skips finished runs and resumes interrupted ones.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from ghmbench.config import ConfigError, compose_config, conf_dir, hydra_error, validate

FORCE_ENV = "GHMBENCH_FORCE"


def _is_hydra(override: str) -> bool:
    key = override.lstrip("+~").split("=", 1)[0]
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def expand_jobs(overrides: list[str]) -> list[list[str]]:
    """The override list of every job of the sweep, as Hydra's basic sweeper expands it.

    The grid is the experiment's ``hydra.sweeper.params`` (if any) updated by the command line.

    Raises:
        ConfigError: a malformed override or a grid Hydra cannot expand.
    """
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            hcfg = compose(config_name="config", overrides=fixed, return_hydra_config=True)
        node = hcfg.hydra.sweeper.get("params")
        params = OmegaConf.to_container(node, resolve=False) if node is not None else {}
        grid = [f"{k}={v}" for k, v in params.items()] + list(overrides)
        (jobs,) = BasicSweeper.split_arguments(parser.parse_overrides(grid), None)
    except (HydraException, OmegaConfBaseException) as e:
        raise hydra_error(e) from None
    finally:
        GlobalHydra.instance().clear()
    return [list(job) for job in jobs]


def validate_jobs(jobs: list[list[str]]) -> list[DictConfig]:
    """Compose and validate each job's config (launcher settings aside).

    Raises:
        ConfigError: naming the job whose config is bad.
    """
    cfgs = []
    for job in jobs:
        try:
            cfgs.append(validate(compose_config([o for o in job if not _is_hydra(o)])))
        except ConfigError as e:
            raise ConfigError(f"{e} (in the sweep job {' '.join(job)})") from None
    return cfgs


def absolute_paths(overrides: list[str]) -> list[str]:
    """Pin ``paths.runs_dir`` / ``paths.cache_dir`` to absolute paths (jobs may run elsewhere)."""
    cfg = compose_config([o for o in overrides if not _is_hydra(o) and "," not in o])
    out = list(overrides)
    for key in ("runs_dir", "cache_dir"):
        given = [o for o in overrides if o.startswith(f"paths.{key}=")]
        value = given[-1].split("=", 1)[1] if given else str(cfg.paths[key])
        out = [o for o in out if not o.startswith(f"paths.{key}=")]
        out.append(f"paths.{key}={Path(value).expanduser().resolve()}")
    return out


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


def task(cfg: DictConfig) -> dict:
    """One sweep job: validate, train into the keyed folder (or skip it), return a summary."""
    from ghmbench.results import smoke_failures
    from ghmbench.training import RunLocked, run

    from hydra.core.hydra_config import HydraConfig

    cfg = validate(cfg)
    threads = _threads_per_job()
    with open_dict(cfg):
        if threads and cfg.train.num_threads == 0:
            cfg.train.num_threads = threads
        if cfg.logger.name == "wandb" and not cfg.logger.group:
            cfg.logger.group = Path(HydraConfig.get().sweep.dir).name  # one wandb group per sweep
    try:
        record = run(cfg, force=os.environ.get(FORCE_ENV) == "1")
    except RunLocked as e:
        print(f"skipped: {e}", flush=True)
        return {"status": "locked"}
    except Exception as e:  # recorded as failed in its folder; the sweep goes on
        print(f"failed: {type(e).__name__}: {e}", flush=True)
        return {"status": "failed"}
    metrics = record.get("metrics") or {}
    word = "exists" if record.get("skipped") else record["status"]
    ap = metrics.get("AP")
    print(f"[{word}] {Path(record['run_dir']).name} AP={'-' if ap is None else f'{ap:.4f}'}", flush=True)
    if cfg.train.smoke_check and smoke_failures(record):
        return {"status": "smoke_failed", "run_dir": record["run_dir"]}
    return {"status": record["status"], "run_dir": record["run_dir"]}


def launch(overrides: list[str], force: bool) -> None:
    """Run Hydra's multirun over ``overrides`` (already validated)."""
    import hydra

    os.environ[FORCE_ENV] = "1" if force else "0"
    argv = sys.argv
    sys.argv = [argv[0], "--multirun", *overrides]
    try:
        hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(task)()
    finally:
        sys.argv = argv
