"""``ghmbench sweep``: Hydra multirun over a grid, through any Hydra launcher.

The grid is expanded and every job's config validated before anything starts; then Hydra's
multirun (``python -m ghmbench.multirun --multirun ...``, a child process) launches the jobs
(basic launcher: one after another; ``hydra/launcher=joblib``: parallel processes;
``hydra/launcher=submitit_local`` / ``submitit_slurm``: submitit). Each job is :func:`task`: it
trains one configuration into its keyed run folder, so a repeated sweep skips finished runs and
resumes interrupted ones (``force=true``: retrains them, but for the run keys in ``force_keep``).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from ghmbench.config import compose_config, conf_dir, hydra_error, validate
from ghmbench.config import override_key as _key
from ghmbench.errors import ConfigError
from ghmbench.record_fields import FAILED


def _is_hydra(override: str) -> bool:
    """A launcher / Hydra-only override, left out when a job's config is composed and validated.

    ``hydra.searchpath`` is not one: the user's config folders (``--config-dir``) are needed to
    compose the jobs that name their presets and losses.
    """
    key = _key(override)
    return key != "hydra.searchpath" and (key == "hydra" or key.startswith(("hydra.", "hydra/")))


def fixed_overrides(overrides: list[str]) -> list[str]:
    """The overrides that compose (no launcher settings) and are not swept: what every job shares.

    Raises:
        ConfigError: an override Hydra cannot parse.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides([o for o in overrides if not _is_hydra(o)])
    except HydraException as e:
        raise hydra_error(e) from None
    return [o.input_line for o in parsed if not o.is_sweep_override()]


def grid_jobs(overrides: list) -> list[list[str]]:
    """The jobs of parsed overrides (Hydra ``Override`` objects), as Hydra's basic sweeper makes them:
    one axis per key (a later override of a key replaces its values, in the key's first place),
    every combination, the first axis varying slowest.

    Raises:
        HydraException: a sweep that cannot be enumerated (``interval``) or a ``glob``.
    """
    from hydra.errors import HydraException

    axes: dict[str, list[str]] = {}
    for override in overrides:
        key = override.get_key_element()
        if not override.is_sweep_override():
            axes[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            axes[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            raise HydraException(f"BasicSweeper does not support sweep type : {override.value_type.name}")
    return [list(job) for job in itertools.product(*axes.values())]


def expand_jobs(overrides: list[str]) -> list[list[str]]:
    """The override list of every job of the sweep, as Hydra's basic sweeper expands it.

    The grid is the experiment's ``hydra.sweeper.params`` (if any) updated by the command line.

    Raises:
        ConfigError: a malformed override or a grid Hydra cannot expand.
    """
    from hydra import compose, initialize_config_dir
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
        return grid_jobs(parser.parse_overrides(grid))
    except (HydraException, OmegaConfBaseException) as e:
        raise hydra_error(e) from None
    finally:
        GlobalHydra.instance().clear()


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
            shown = [o for o in job if _key(o) != "hydra.searchpath"]  # the --config-dir folders: not the job's settings
            raise ConfigError(f"{e} (in the sweep job {' '.join(shown)})") from None
    return cfgs


def absolute_paths(overrides: list[str]) -> list[str]:
    """Pin ``paths.runs_dir`` / ``paths.cache_dir`` to absolute paths (jobs may run elsewhere)."""
    cfg = compose_config(fixed_overrides(overrides))
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

    from ghmbench.records import CHECKPOINT_FILE, is_complete, run_dir, run_key, smoke_failures
    from ghmbench.run_environment import RunLocked
    from ghmbench.training import run

    cfg = validate(cfg)
    threads = _threads_per_job()
    with open_dict(cfg):
        if threads and cfg.train.num_threads == 0:
            cfg.train.num_threads = threads
        if cfg.logger.name == "wandb" and not cfg.logger.group:
            cfg.logger.group = Path(HydraConfig.get().sweep.dir).name  # one wandb group per sweep
    force, folder, number = cfg.force and run_key(cfg) not in cfg.force_keep, run_dir(cfg), _job_number()
    if force or not is_complete(folder):  # a complete record is said once, with its result below
        print(f"run {number} {folder.name}: {'resumes from its checkpoint' if (folder / CHECKPOINT_FILE).exists() and not force else 'starts'}", flush=True)
    try:
        record = run(cfg, force=force)
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


def launch(overrides: list[str], force: bool, keep: tuple[str, ...] = (), runs: int | None = None) -> None:
    """Run Hydra's multirun over ``overrides`` (already validated) in a child process, its output
    and Ctrl-C shared with this one; ``keep``: run keys ``force`` spares (config ``force_keep``);
    ``runs``: the number of its jobs, for their ``run i/N`` lines.

    Raises:
        SystemExit: the multirun failed, with its exit status (Hydra printed why).
    """
    keys = ",".join(f"'{key}'" for key in keep)  # quoted: a hex key such as 1234e5 is a string
    command = [sys.executable, "-m", "ghmbench.multirun", "--multirun", *overrides, f"force={str(force).lower()}", f"force_keep=[{keys}]"]
    sys.stdout.flush()
    sys.stderr.flush()
    env = os.environ | ({RUNS_ENV: str(runs)} if runs else {})  # the launchers' workers inherit it (SLURM: sbatch exports it)
    status = subprocess.run(command, check=False, env=env).returncode
    if status != 0:
        raise SystemExit(status)


# ----------------------------------------------------------------------------- the protocol


def protocol_of(overrides: list[str]) -> DictConfig | None:
    """The ``protocol`` section the sweep's fixed overrides compose to; None when ``tune`` is empty."""
    cfg = compose_config(fixed_overrides(overrides))
    if len(cfg.get("protocol", {}).get("tune") or []):
        validate(cfg)  # a malformed protocol is one line naming protocol.*, before Hydra parses its items
    proto = cfg.get("protocol")
    return proto if proto is not None and len(proto.get("tune") or []) else None


def tuning_overrides(overrides: list[str], proto: DictConfig) -> list[str]:
    """Stage 1: the sweep's overrides with the tuning grid and the tuning stage's fixed values."""
    own = [*proto.tune, *proto.tune_with]
    keys = {_key(o) for o in own}
    return [o for o in overrides if _key(o) not in keys] + list(own)


def final_overrides(overrides: list[str], proto: DictConfig, option: str | None, settings: list[str]) -> list[str]:
    """Stage 2 for one or more losses: the preset's grid (seeds, regressions) at their selected setting.

    ``option``: the ``loss=`` config option(s) of the losses, comma-separated (None: the config's
    default loss).
    """
    keys = {_key(o) for o in proto.tune} | {"loss"}
    return [o for o in overrides if _key(o) not in keys] + ([f"loss={option}"] if option is not None else []) + list(settings)


def loss_options(jobs: list[list[str]], cfgs: list[DictConfig]) -> dict[str, str | None]:
    """Each classification loss of the jobs (by ``loss.name``) -> the ``loss=`` option that gave it
    (None when a job has none: the default loss). A user's ``loss/my_loss.yaml`` may name its loss
    differently from its file.

    Raises:
        ConfigError: two options give the same name (the protocol selects, and the report shows,
            each loss by its name).
    """
    options: dict[str, str | None] = {}
    for job, cfg in zip(jobs, cfgs):
        option = next((o.split("=", 1)[1] for o in reversed(job) if _key(o) == "loss" and "=" in o), None)
        name = str(cfg.loss.name)
        if options.setdefault(name, option) != option:
            raise ConfigError(f"loss.name={name} is given by both loss={options[name]} and loss={option}; allowed: one name per loss (it selects the loss's setting and names its rows)")
    return options


def run_protocol(overrides: list[str], proto: DictConfig, force: bool, say) -> list[DictConfig]:
    """Tune every classification loss on the same grid, select on validation, run the final grid.

    Stage 1 trains the grid ``protocol.tune`` for every loss of the sweep with ``protocol.tune_with``
    fixed; each loss's setting with the best mean validation ``protocol.select_metric`` is
    selected (:func:`ghmbench.protocol.select_settings`); stage 2 trains the sweep's own grid
    (seeds, regression losses) at each loss's selected setting. Runs shared by both stages (same
    run key) are trained once. Every stage-1 job and the stage-2 grid at the first candidate are
    validated before anything starts.

    Returns:
        The configs of the final runs (stage 2), in grid order within each launch (losses that
        selected the same setting are launched together).
    """
    from ghmbench.protocol import Protocol, ProtocolError, select_settings
    from ghmbench.records import read_record, run_dir, run_key

    stage1 = tuning_overrides(overrides, proto)
    tune_jobs = expand_jobs(stage1)
    tune_cfgs = validate_jobs(tune_jobs)
    options = loss_options(tune_jobs, tune_cfgs)
    losses = list(options)
    first = [o.split(",")[0] for o in proto.tune]
    for loss in losses:  # the final grid is valid at any candidate if it is at one (the candidates were validated above)
        validate_jobs(expand_jobs(final_overrides(overrides, proto, options[loss], first)))
    say(f"protocol stage 1 (tuning): {len(tune_cfgs)} runs: {', '.join(losses)} x {' x '.join(proto.tune)} with {' '.join(proto.tune_with) or 'nothing fixed'}")
    launch(stage1, force, runs=len(tune_cfgs))
    trained = tuple(run_key(c) for c in tune_cfgs)
    records = [r for r in (read_record(run_dir(c)) for c in tune_cfgs) if r is not None]
    try:
        selections = select_settings(records, Protocol.from_config(OmegaConf.to_container(proto)))  # this sweep's protocol, whatever the runs recorded
    except ProtocolError as e:
        raise ConfigError(str(e)) from None
    # losses that selected the same setting share one launch (``loss=a,b``): one multirun keeps
    # every worker of a parallel launcher busy where per-loss launches leave a core idle at the end
    # of each (and on SLURM it is one job array to wait for instead of one per loss)
    groups: dict[tuple[tuple[str, ...], bool], list[str]] = {}
    for loss in losses:
        if loss not in selections:
            say(f"protocol: no completed tuning run for {loss}; its final runs are skipped")
            continue
        sel = selections[loss]
        say(f"protocol: {loss} at {sel.describe()} (best validation {sel.metric})")
        groups.setdefault((tuple(sel.overrides()), options[loss] is None), []).append(loss)
    final_cfgs: list[DictConfig] = []
    for (settings, default_loss), group in groups.items():
        option = None if default_loss else ",".join(str(options[loss]) for loss in group)
        stage2 = final_overrides(overrides, proto, option, list(settings))
        cfgs = validate_jobs(expand_jobs(stage2))
        say(f"protocol stage 2 (final): {', '.join(group)} at {', '.join(settings)}: {len(cfgs)} runs")
        launch(stage2, force, keep=trained, runs=len(cfgs))
        final_cfgs += cfgs
    return final_cfgs
