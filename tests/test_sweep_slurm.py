"""SLURM sweeps without a cluster: the shipped launcher configs, the request checked against (stand-in)
sinfo output, sbatch's refusals and a dead controller as one line with exit code 2 and nothing written,
and the bounded wait for the job array. scripts/slurm_ci.sh runs the same against a real SLURM."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ghmbench.errors import ConfigError
from ghmbench.sweep import slurm_jobs
from ghmbench.sweep.slurm_jobs import Task, Wait, summary, wait_for
from ghmbench.sweep.slurm_request import check_request, launcher_request, parse_sinfo, sbatch_error
from ghmbench.sweep.slurm_sweep import _hydra_config
from tests.conftest import ghmbench_cli

SINFO = "debug*|up|1:00:00|2|19284|(null)\ngpu|up|2-00:00:00|64|515000|gpu:a100:4(S:0-1)\n"


def _stand_ins(folder: Path, **scripts: str) -> dict:
    """An environment whose PATH starts with shell scripts standing in for SLURM's commands."""
    folder.mkdir(exist_ok=True)
    for name, body in scripts.items():
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    return {**os.environ, "PATH": f"{folder}:{os.environ['PATH']}"}


def test_the_cpu_default_asks_for_one_cpu_task_and_the_gpu_form_for_a_process_per_gpu():
    cpu = launcher_request(_hydra_config(["hydra/launcher=slurm"]))
    assert cpu == {
        "partition": None,
        "nodes": 1,
        "tasks_per_node": 1,
        "cpus_per_task": 1,
        "gpus_per_node": None,
        "mem_gb": 4,
        "timeout_min": 60,
    }
    gpu = launcher_request(_hydra_config(["hydra/launcher=slurm_gpu", "hydra.launcher.gpus_per_node=4"]))
    assert (gpu["gpus_per_node"], gpu["tasks_per_node"], gpu["cpus_per_task"], gpu["mem_gb"]) == (4, 4, 8, 32)
    assert launcher_request(_hydra_config(["hydra/launcher=joblib"])) is None
    groups = parse_sinfo(SINFO)
    check_request(cpu, groups)  # fits the default partition's 2-CPU node
    check_request(gpu | {"partition": "gpu"}, groups)
    check_request(cpu | {"gpus_per_node": 0}, groups)  # 0 GPUs: the CPU default


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            {"partition": "gpus"},
            "hydra.launcher.partition=gpus: no such partition on this cluster; allowed: ['debug', 'gpu']",
        ),
        ({"cpus_per_task": 8}, "hydra.launcher.cpus_per_task=8: one run asks for 8 CPU(s)"),
        ({"tasks_per_node": 2, "cpus_per_task": 2}, "asks for 4 CPU(s) (cpus_per_task x tasks_per_node)"),
        (
            {"mem_gb": 32},
            "hydra.launcher.mem_gb=32: one run asks for 32 GB of memory, the largest node of partition debug has 18 GB",
        ),
        ({"gpus_per_node": 1}, "hydra.launcher.gpus_per_node=1: one run asks for 1 GPU(s)"),
        ({"partition": "gpu", "gpus_per_node": 8}, "partition gpu has 4 GPU(s)"),
        ({"timeout_min": 61}, "hydra.launcher.timeout_min=61: partition debug allows at most 60 min"),
        ({"tasks_per_node": 0}, "hydra.launcher.tasks_per_node=0: allowed: an integer >= 1"),
    ],
)
def test_a_request_no_node_can_run_is_refused_naming_the_key(change, named):
    request = launcher_request(_hydra_config(["hydra/launcher=slurm"])) | change
    with pytest.raises(ConfigError, match=None) as refused:
        check_request(request, parse_sinfo(SINFO))
    assert named in str(refused.value) and "\n" not in str(refused.value)


def test_sbatch_refusals_become_one_line_naming_the_key():
    gres = "sbatch: error: Invalid generic resource (gres) specification\n"
    assert sbatch_error("Traceback ...\n" + gres) == (
        "sbatch refused the sweep: Invalid generic resource (gres) specification; change hydra.launcher.gpus_per_node "
        "(hydra/launcher=slurm asks for no GPU)"
    )
    assert "change hydra.launcher.additional_parameters" in sbatch_error("sbatch: unrecognized option '--bogus=1'\n")
    assert sbatch_error("KeyError: 'x'\n") is None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sinfo", "sbatch", "said"),
    [
        (
            "echo 'slurm_load_partitions: Unable to contact slurm controller (connect failure)' >&2; exit 1",
            "exit 1",
            "error: hydra/launcher=slurm: the SLURM controller does not answer (sinfo: slurm_load_partitions: "
            "Unable to contact slurm controller (connect failure)); check `scontrol ping`",
        ),
        (f"printf '{SINFO}'", "exit 1", "error: hydra.launcher.cpus_per_task=4: one run asks for 4 CPU(s)"),
        (
            f"printf '{SINFO}'",
            "echo 'sbatch: error: Batch job submission failed: Invalid qos specification' >&2; exit 1",
            "error: sbatch refused the sweep: Invalid qos specification; change hydra.launcher.qos",
        ),
    ],
    ids=["controller down", "oversized", "sbatch refuses"],
)
def test_the_sweep_refuses_in_one_line_and_writes_nothing(tiny, tmp_path, sinfo, sbatch, said):
    env = _stand_ins(tmp_path / "bin", sinfo=sinfo, sbatch=sbatch, srun="exit 1")
    oversized = ["hydra.launcher.cpus_per_task=4"] if "cpus_per_task=4" in said else []
    result = ghmbench_cli("sweep", *tiny, "loss=ce,focal", "hydra/launcher=slurm", *oversized, env=env)
    assert result.returncode == 2, result.stderr + result.stdout
    assert result.stderr.strip().startswith(said) and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "runs").exists()  # nothing submitted, nothing written


def _tasks(tmp_path: Path, n: int = 2) -> list[Task]:
    return [Task(f"7_{i}", f"{i + 1}/{n}", tmp_path / f"7_{i}") for i in range(n)]


def test_the_wait_reads_the_end_of_each_task_and_reports_its_log(tmp_path, monkeypatch):
    tasks = _tasks(tmp_path)
    for task in tasks:
        task.folder.mkdir()
    tasks[1].err_log.write_text("Traceback (most recent call last):\nRuntimeError: out of luck\n")
    queue = iter([{"7_0": ("RUNNING", "None"), "7_1": ("PENDING", "Resources")}, {"7_0": ("RUNNING", "None")}, {}])
    monkeypatch.setattr(slurm_jobs, "_squeue", lambda: next(queue))
    monkeypatch.setattr(slurm_jobs, "_ended_state", {"7_0": "CANCELLED", "7_1": "FAILED"}.get)
    monkeypatch.setattr(slurm_jobs, "POLL_S", 0)
    heard = []
    wait = wait_for(tasks, heard.append)
    assert [t.state for t in tasks] == ["cancelled", "failed"] and not wait.gave_up
    assert heard == [
        "slurm: run 1/2 (job 7_0) running",
        "slurm: run 2/2 (job 7_1) failed",
        "slurm: run 1/2 (job 7_0) cancelled",
    ]
    lines = summary(wait)
    assert lines[:2] == ["run 1/2 job 7_0: cancelled", f"  log: {tasks[0].log}"]
    assert "run 2/2 job 7_1: failed - SLURM state FAILED" in lines and "  | RuntimeError: out of luck" in lines


@pytest.mark.parametrize(
    ("queue", "bounds", "gave_up"),
    [
        (None, {"MAX_UNREADABLE_S": 0.0}, "SLURM has not answered squeue for 0 s: check `scontrol ping`"),
        ({"7_0": ("PENDING", "PartitionConfig")}, {}, "task 7_0 cannot start (squeue reason PartitionConfig)"),
        (
            {"7_0": ("PENDING", "Priority")},
            {"MAX_PENDING_S": 0.0},
            "1 task(s) pending for 0 s (Priority): they stay queued",
        ),
    ],
    ids=["controller gone", "never runs", "pending too long"],
)
def test_the_wait_ends_when_slurm_stops_answering_or_a_task_stays_pending(
    tmp_path, monkeypatch, queue, bounds, gave_up
):
    monkeypatch.setattr(slurm_jobs, "_squeue", lambda: queue)
    monkeypatch.setattr(slurm_jobs, "POLL_S", 0.01)
    for name, value in bounds.items():
        monkeypatch.setattr(slurm_jobs, name, value)
    (task,) = _tasks(tmp_path, 1)
    wait = wait_for([task], lambda text: None)
    assert wait.gave_up.startswith(gave_up), wait.gave_up
    assert summary(wait)[-1] == f"stopped waiting: {wait.gave_up}"


def test_an_ended_task_without_result_nor_accounting_is_unknown(tmp_path, monkeypatch):
    (task,) = _tasks(tmp_path, 1)
    monkeypatch.setattr(slurm_jobs, "_squeue", lambda: {})
    monkeypatch.setattr(slurm_jobs, "_ended_state", lambda job_id: "")
    wait = wait_for([task], lambda text: None)
    assert task.state == "unknown" and "no accounting" in task.detail and isinstance(wait, Wait)
