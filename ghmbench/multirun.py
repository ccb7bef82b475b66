"""``python -m ghmbench.multirun --multirun OVERRIDES``: the Hydra application of ``ghmbench sweep``,
whose every job is :func:`ghmbench.sweep.launch.task`.

``ghmbench sweep`` expands and validates the grid, then starts this (one child process per
launch) with Hydra's own command line; Hydra's launcher runs the jobs.
"""

from __future__ import annotations

import hydra

from ghmbench.config.compose import conf_dir
from ghmbench.sweep.launch import task


def main() -> None:
    """Hydra's entry point over ``sys.argv``."""
    hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(task)()


if __name__ == "__main__":
    main()
