"""The two-stage protocol of ``ghmbench sweep``: tune every loss on validation over the protocol's
grid (stage 1), select each loss's setting, then train the selected settings at the final seeds
(stage 2)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from ghmbench.config.compose import compose_config, validate
from ghmbench.config.overrides import override_key, override_value
from ghmbench.errors import ConfigError
from ghmbench.sweep.grid import expand_jobs, fixed_overrides, validate_jobs
from ghmbench.sweep.launch import launch


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
    keys = {override_key(o) for o in own}
    return [o for o in overrides if override_key(o) not in keys] + list(own)


def final_overrides(overrides: list[str], proto: DictConfig, option: str | None, settings: list[str]) -> list[str]:
    """Stage 2 for one or more losses: the preset's grid (seeds, regressions) at their selected setting.

    ``option``: the ``loss=`` config option(s) of the losses, comma-separated (None: the config's
    default loss).
    """
    keys = {override_key(o) for o in proto.tune} | {"loss"}
    return (
        [o for o in overrides if override_key(o) not in keys]
        + ([f"loss={option}"] if option is not None else [])
        + list(settings)
    )


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
        option = next((override_value(o) for o in reversed(job) if override_key(o) == "loss" and "=" in o), None)
        name = str(cfg.loss.name)
        if options.setdefault(name, option) != option:
            raise ConfigError(
                f"loss.name={name} is given by both loss={options[name]} and loss={option}; allowed: one name per "
                "loss (it selects the loss's setting and names its rows)"
            )
    return options


def run_protocol(overrides: list[str], proto: DictConfig, force: bool, say) -> list[DictConfig]:
    """Tune every classification loss on the same grid, select on validation, run the final grid.

    Stage 1 trains the grid ``protocol.tune`` for every loss of the sweep with ``protocol.tune_with``
    fixed; each loss's setting with the best mean validation ``protocol.select_metric`` is
    selected (:func:`ghmbench.sweep.selection.select_settings`); stage 2 trains the sweep's own grid
    (seeds, regression losses) at each loss's selected setting. Runs shared by both stages (same
    run key) are trained once. Every stage-1 job and the stage-2 grid at the first candidate are
    validated before anything starts.

    Returns:
        The configs of the final runs (stage 2), in grid order within each launch (losses that
        selected the same setting are launched together).
    """
    from ghmbench.store.records import read_record, run_dir, run_key
    from ghmbench.sweep.selection import Protocol, ProtocolError, select_settings

    stage1 = tuning_overrides(overrides, proto)
    tune_jobs = expand_jobs(stage1)
    tune_cfgs = validate_jobs(tune_jobs)
    options = loss_options(tune_jobs, tune_cfgs)
    losses = list(options)
    first = [o.split(",")[0] for o in proto.tune]
    for (
        loss
    ) in losses:  # the final grid is valid at any candidate if it is at one (the candidates were validated above)
        validate_jobs(expand_jobs(final_overrides(overrides, proto, options[loss], first)))
    say(
        f"protocol stage 1 (tuning): {len(tune_cfgs)} runs: {', '.join(losses)} x {' x '.join(proto.tune)} with "
        f"{' '.join(proto.tune_with) or 'nothing fixed'}"
    )
    launch(stage1, force, runs=len(tune_cfgs), say=say)
    trained = tuple(run_key(c) for c in tune_cfgs)
    records = [r for r in (read_record(run_dir(c)) for c in tune_cfgs) if r is not None]
    try:
        selections = select_settings(
            records, Protocol.from_config(OmegaConf.to_container(proto))
        )  # this sweep's protocol, whatever the runs recorded
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
        launch(stage2, force, keep=trained, runs=len(cfgs), say=say)
        final_cfgs += cfgs
    return final_cfgs
