"""A SLURM sweep's request, checked against the cluster before anything is submitted: the controller
answers, the partition exists, and one of its nodes has the CPUs, memory, GPUs and time limit that one
run asks for (else the job would stay pending forever). Each problem is a one-line ConfigError naming
the ``hydra.launcher`` key to change; sbatch's own refusals become one line too (:func:`sbatch_error`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from omegaconf import DictConfig

from ghmbench.errors import ConfigError

SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
SINFO = ["sinfo", "--noheader", "--format=%P|%a|%l|%c|%m|%G"]  # one line per partition x node configuration
SINFO_TIMEOUT_S = 60


@dataclass(frozen=True)
class NodeGroup:
    """Nodes of one partition that share a configuration (a line of ``sinfo``)."""

    partition: str
    default: bool  # the cluster's default partition
    up: bool
    time_limit_min: float  # the partition's MaxTime; inf when unlimited
    cpus: int
    mem_mb: int
    gpus: int


def launcher_request(hydra_cfg: DictConfig) -> dict | None:
    """``hydra.launcher`` resolved when it is the submitit SLURM launcher (``hydra/launcher=slurm`` or
    ``slurm_gpu``), else None."""
    from omegaconf import OmegaConf

    launcher = hydra_cfg.launcher
    if launcher.get("_target_") != SLURM_LAUNCHER:
        return None
    keys = ("partition", "nodes", "tasks_per_node", "cpus_per_task", "gpus_per_node", "mem_gb", "timeout_min")
    return {key: OmegaConf.select(launcher, key) for key in keys}


def _duration_min(text: str) -> float:
    """Minutes of a duration as sinfo prints it: ``infinite``, ``MM:SS``, ``H:MM:SS`` or ``D-HH:MM:SS``."""
    if text in ("infinite", "UNLIMITED", "n/a"):
        return float("inf")
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    h, m, s = (parts + [0, 0])[:3] if days else ([0, 0] + parts)[-3:]  # D-HH[:MM[:SS]] | [[H:]MM:]SS
    return int(days or 0) * 1440 + h * 60 + m + s / 60


def parse_sinfo(text: str) -> list[NodeGroup]:
    """The node groups of ``sinfo --format=%P|%a|%l|%c|%m|%G`` output."""
    groups = []
    for line in text.strip().splitlines():
        name, avail, limit, cpus, mem, gres = line.strip().split("|")
        gpus = sum(int(n) for n in re.findall(r"gpu(?::[\w.-]+)?:(\d+)", gres))
        groups.append(
            NodeGroup(
                name.rstrip("*"),
                name.endswith("*"),
                avail == "up",
                _duration_min(limit),
                int(cpus.rstrip("+")),
                int(mem.rstrip("+")),
                gpus,
            )
        )
    return groups


def read_partitions() -> list[NodeGroup]:
    """The cluster's node groups, from ``sinfo``.

    Raises:
        ConfigError: sinfo is missing, or the controller does not answer.
    """
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        raise ConfigError("hydra/launcher=slurm but sbatch / sinfo are not on PATH: run on a SLURM login node")
    try:
        done = subprocess.run(SINFO, capture_output=True, text=True, timeout=SINFO_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        done = subprocess.CompletedProcess(SINFO, 1, "", f"no answer in {SINFO_TIMEOUT_S} s")
    if done.returncode != 0 or not done.stdout.strip():
        why = (done.stderr.strip().splitlines() or ["no partition listed"])[-1]
        raise ConfigError(
            f"hydra/launcher=slurm: the SLURM controller does not answer (sinfo: {why}); check `scontrol ping`, "
            "or run the sweep without hydra/launcher=slurm"
        )
    return parse_sinfo(done.stdout)


def check_request(request: dict, groups: list[NodeGroup]) -> None:
    """Refuse a request that no node of its partition can run.

    Raises:
        ConfigError: one line naming the ``hydra.launcher`` key and what the cluster allows.
    """
    names = sorted({g.partition for g in groups})
    partition = request["partition"] or next((g.partition for g in groups if g.default), None)
    if partition is None:
        raise ConfigError(f"the cluster has no default partition: set hydra.launcher.partition, one of {names}")
    if partition not in names:
        raise ConfigError(f"hydra.launcher.partition={partition}: no such partition on this cluster; allowed: {names}")
    for key in ("tasks_per_node", "nodes"):
        if request[key] is not None and request[key] < 1:
            raise ConfigError(f"hydra.launcher.{key}={request[key]}: allowed: an integer >= 1")
    nodes = [g for g in groups if g.partition == partition and g.up]
    if not nodes:
        raise ConfigError(f"partition {partition} is down; pick another with hydra.launcher.partition: {names}")
    tasks, cpus = request["tasks_per_node"] or 1, request["cpus_per_task"] or 1
    needs = [
        ("cpus_per_task", cpus * tasks, max(g.cpus for g in nodes), "CPU(s) (cpus_per_task x tasks_per_node)"),
        ("mem_gb", request["mem_gb"] or 0, max(g.mem_mb for g in nodes) // 1024, "GB of memory"),
        ("gpus_per_node", request["gpus_per_node"] or 0, max(g.gpus for g in nodes), "GPU(s)"),
    ]
    for key, asked, most, what in needs:
        if asked > most:
            raise ConfigError(
                f"hydra.launcher.{key}={request[key]}: one run asks for {asked} {what}, the largest node of "
                f"partition {partition} has {most} {what.split(' (')[0]}"
                + ("; CPU runs: hydra/launcher=slurm, which asks for none" if key == "gpus_per_node" else "")
            )
    limit = max(g.time_limit_min for g in nodes)
    if (request["timeout_min"] or 0) > limit:
        raise ConfigError(
            f"hydra.launcher.timeout_min={request['timeout_min']}: partition {partition} allows at most {limit:g} min"
        )


SBATCH_HINTS = {
    "invalid partition": "hydra.launcher.partition",
    "gres": "hydra.launcher.gpus_per_node (hydra/launcher=slurm asks for no GPU)",
    "ntasks-per-node": "hydra.launcher.tasks_per_node",
    "memory": "hydra.launcher.mem_gb",
    "time limit": "hydra.launcher.timeout_min",
    "account": "hydra.launcher.account",
    "qos": "hydra.launcher.qos",
    "constraint": "hydra.launcher.constraint",
    "unrecognized option": "hydra.launcher.additional_parameters",
    "unable to contact slurm controller": "nothing in the config: check `scontrol ping`",
}


def sbatch_error(output: str) -> str | None:
    """One line from a failed submission's output (sbatch's own lines and the key to change), or None
    when sbatch said nothing."""
    said = (
        re.search(r"sbatch: (?:error: )?(?:Batch job submission failed: )?(.+)", line) for line in output.splitlines()
    )
    lines = [m.group(1).strip() for m in said if m]
    if not lines:
        return None
    message = "; ".join(dict.fromkeys(lines))
    key = next((hint for word, hint in SBATCH_HINTS.items() if word in message.lower()), "the hydra.launcher keys")
    return f"sbatch refused the sweep: {message}; change {key}"
