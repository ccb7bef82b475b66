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
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ghmbench.config.compose import compose_config, conf_dir, hydra_error, validate
from ghmbench.config.overrides import is_launcher_override, override_key, override_value, parse_overrides
from ghmbench.errors import ConfigError


def fixed_overrides(overrides: list[str]) -> list[str]:
    """The overrides that compose (no launcher settings) and are not swept: what every job shares.

    Raises:
        ConfigError: an override Hydra cannot parse.
    """
    from hydra.errors import HydraException

    try:
        parsed = parse_overrides([o for o in overrides if not is_launcher_override(o)])
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
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        parsed = parse_overrides(overrides)
        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            hcfg = compose(config_name="config", overrides=fixed, return_hydra_config=True)
        node = hcfg.hydra.sweeper.get("params")
        params = OmegaConf.to_container(node, resolve=False) if node is not None else {}
        grid = [f"{k}={v}" for k, v in params.items()] + list(overrides)
        return grid_jobs(parse_overrides(grid))
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
            cfgs.append(validate(compose_config([o for o in job if not is_launcher_override(o)])))
        except ConfigError as e:
            shown = [
                o for o in job if override_key(o) != "hydra.searchpath"
            ]  # the --config-dir folders: not the job's settings
            raise ConfigError(f"{e} (in the sweep job {' '.join(shown)})") from None
    return cfgs


def absolute_paths(overrides: list[str]) -> list[str]:
    """Pin ``paths.runs_dir`` / ``paths.cache_dir`` to absolute paths (jobs may run elsewhere)."""
    cfg = compose_config(fixed_overrides(overrides))
    out = list(overrides)
    for key in ("runs_dir", "cache_dir"):
        given = [o for o in overrides if o.startswith(f"paths.{key}=")]
        value = override_value(given[-1]) if given else str(cfg.paths[key])
        out = [o for o in out if not o.startswith(f"paths.{key}=")]
        out.append(f"paths.{key}={Path(value).expanduser().resolve()}")
    return out
