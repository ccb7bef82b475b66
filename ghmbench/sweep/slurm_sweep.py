"""A sweep on SLURM (``hydra/launcher=slurm`` or ``slurm_gpu``): the request checked before anything is
submitted, Hydra's multirun submitting the job array, and ghmbench's own bounded wait for it
(:mod:`ghmbench.sweep.slurm_jobs`) in place of submitit's, which without accounting never ends."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ghmbench.config.compose import conf_dir, hydra_error
from ghmbench.config.overrides import parse_overrides
from ghmbench.errors import ConfigError
from ghmbench.sweep.slurm_jobs import submitted_tasks, summary, wait_for
from ghmbench.sweep.slurm_request import check_request, launcher_request, read_partitions, sbatch_error


def _hydra_config(overrides: list[str]) -> DictConfig:
    """The ``hydra`` node that the sweep's fixed (not swept) overrides compose."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        fixed = [o.input_line for o in parse_overrides(overrides) if not o.is_sweep_override()]
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return compose(config_name="config", overrides=fixed, return_hydra_config=True).hydra
    except (HydraException, OmegaConfBaseException) as e:
        raise hydra_error(e) from None
    finally:
        GlobalHydra.instance().clear()


def check_slurm(overrides: list[str]) -> bool:
    """For a SLURM sweep, check that the cluster can run one of its runs (:mod:`ghmbench.sweep.slurm_request`).

    Returns:
        Whether the sweep goes to SLURM.

    Raises:
        ConfigError: one line: the controller does not answer, no such partition, or a request no node has.
    """
    request = launcher_request(_hydra_config(overrides))
    if request is None:
        return False
    check_request(request, read_partitions())
    return True


def _folders(overrides: list[str]) -> tuple[Path, Path]:
    """(the sweep dir, resolved once so that this process knows it; submitit's folder of the job folders)."""
    hydra_cfg = _hydra_config(overrides)
    sweep_dir = Path(OmegaConf.select(hydra_cfg, "sweep.dir")).expanduser().resolve()
    pinned = _hydra_config([*overrides, f"hydra.sweep.dir={sweep_dir}"])
    pattern = Path(str(OmegaConf.select(pinned, "launcher.submitit_folder"))).expanduser().resolve()
    parts = pattern.parts
    root = Path(*parts[: next((i for i, p in enumerate(parts) if "%" in p), len(parts))])
    return sweep_dir, root


def launch_on_slurm(command: list[str], overrides: list[str], env: dict, runs: int, say: Callable[[str], None]) -> None:
    """Run the multirun ``command`` (Hydra's SLURM launcher submits the array), follow the array until
    every run has ended, say how each ended.

    Raises:
        ConfigError: sbatch refused the array (one line naming the key; the sweep dir is removed).
        SystemExit: status 1 when a run did not complete (cancelled, failed, still pending, unknown).
    """
    sweep_dir, root = _folders(overrides)
    missing = [d for d in [sweep_dir, *sweep_dir.parents] if not d.exists()]  # what this launch creates
    first_new = missing[-1] if missing else None
    with tempfile.TemporaryFile("w+") as errors:  # the launcher's own output: shown only when it fails
        child = subprocess.Popen(
            [*command, f"hydra.sweep.dir={sweep_dir}"], env=env, stdout=errors, stderr=subprocess.STDOUT
        )
        try:
            tasks = submitted_tasks(root, runs)
            while tasks is None:
                if child.poll() is not None:
                    errors.seek(0)
                    _refused(errors.read(), child.returncode, first_new)
                time.sleep(0.5)
                tasks = submitted_tasks(root, runs)
            array = tasks[0].job_id.split("_")[0]
            say(f"slurm: job {array} submitted, {runs} run(s); each run's output: {root}/{array}_I/{array}_I_0_log.out")
            wait = wait_for(tasks, say)
        finally:
            if child.poll() is None:  # it only waits for the same jobs, through sacct
                child.terminate()
                child.wait()
    for line in summary(wait):
        say(line)
    if wait.gave_up or any(t.state != "completed" for t in tasks):
        raise SystemExit(1)


def _refused(output: str, status: int, written: Path | None) -> None:
    """The launcher ended before the array was submitted: sbatch's refusal in one line (exit 2), else its
    output as it is (its exit status)."""
    if written is not None:
        shutil.rmtree(written, ignore_errors=True)  # nothing ran: leave nothing behind
    line = sbatch_error(output)
    if line:
        raise ConfigError(line)
    sys.stderr.write(output)
    raise SystemExit(status or 1)
