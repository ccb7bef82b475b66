"""ghmbench: benchmark CE, Focal Loss and GHM on a RetinaNet-style detector.

The Python entry points run the same code as the ``ghmbench`` command (README "Use it from
another project"):

    import ghmbench

    record = ghmbench.train(["experiment=smoke", "loss=custom", "loss._target_=my_pkg.MyLoss"])
    result = ghmbench.report(["runs"])       # writes runs/report like `ghmbench report runs`
    result.tables["summary"].numbers         # every table as a pandas DataFrame

Importing ``ghmbench`` itself is cheap: torch, Hydra and pandas load on the first call.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Union

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from ghmbench.reporting.report import Report

__version__ = "0.1.0"

ConfigDirs = Union[str, Path, Iterable[Union[str, Path]]]


def load_config(overrides: Iterable[str] = (), *, config_dir: ConfigDirs = ()) -> DictConfig:
    """The validated config of ``ghmbench train [--config-dir DIR ...] OVERRIDES`` (``ghmbench.config.compose``
    is the config module).

    Args:
        overrides: Hydra overrides, e.g. ``["loss=ghm", "seed=3"]``.
        config_dir: your own config folder(s), searched after the built-in configs.

    Raises:
        ghmbench.errors.ConfigError: a bad value, with the one-line message the command prints.
    """
    from ghmbench.config.compose import compose_config, searchpath_overrides, validate

    overrides = list(overrides)
    dirs = [config_dir] if isinstance(config_dir, (str, Path)) else list(config_dir)
    return validate(compose_config([*searchpath_overrides(dirs, overrides), *overrides]))


def train(
    overrides: Union[Iterable[str], DictConfig] = (), *, force: bool = False, config_dir: ConfigDirs = ()
) -> dict[str, Any]:
    """Train, evaluate and record one configuration, as ``ghmbench train`` does.

    Args:
        overrides: Hydra overrides, or a config from :func:`load_config`.
        force: retrain even when the run folder holds a complete record (as the config key ``force=true``).
        config_dir: your own config folder(s) (with overrides only).

    Returns:
        The run record (what the run folder's metrics.json holds): ``status``, ``metrics``,
        ``history``, ``run_dir``, ...; ``skipped=True`` when an existing record was reused.
        ``ghmbench.store.records.smoke_failures(record)`` is the smoke check of ``experiment=smoke``.

    Raises:
        ghmbench.errors.ConfigError: a bad value or loss target (nothing was trained).
        ghmbench.store.lock.RunLocked: another process is training the same run folder.
    """
    from omegaconf import DictConfig

    from ghmbench import distributed
    from ghmbench.run.training import run

    cfg = overrides if isinstance(overrides, DictConfig) else load_config(overrides, config_dir=config_dir)
    try:
        return run(cfg, force=force or bool(cfg.get("force", False)))
    finally:
        distributed.shutdown()


def report(
    paths: Union[str, Path, list[Union[str, Path]]] = ("runs",),
    out: Union[str, Path, None] = None,
    metric: str = "AP",
    group_by: Union[str, list[str], None] = None,
    bootstrap: int = 500,
    note: Union[str, None] = None,
) -> Report:
    """Read the run records under ``paths`` and write the tables, figures and report.md to ``out``
    (default: ``<first path>/report``), as ``ghmbench report`` does. The arguments and errors are
    those of :func:`ghmbench.reporting.report.make_report`.

    Returns:
        :class:`ghmbench.reporting.report.Report`: ``runs`` (one row per run), ``tables`` by name (each
        with ``numbers``, a DataFrame), ``figures`` and ``path`` (report.md).
    """
    from ghmbench.reporting.report import make_report

    return make_report(paths, out, metric, group_by, bootstrap, note)
