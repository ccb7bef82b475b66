"""Waiting for a SLURM sweep's job array: every task's end, read from squeue while it is queued and from
submitit's result file (or scontrol / sacct) after, with bounds so that the wait ends even when a task
stays pending or SLURM stops answering; then one line per run with its outcome and its log."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

POLL_S = 2.0
MAX_PENDING_S = float(os.environ.get("GHMBENCH_SLURM_MAX_PENDING_S", 1800))
"""A wait in which every unfinished task has been pending this long, and none started or ended, ends."""
MAX_UNREADABLE_S = float(os.environ.get("GHMBENCH_SLURM_MAX_UNREADABLE_S", 120))
"""A wait in which squeue has failed this long ends (the controller is down or unreachable)."""
HOPELESS = ("PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit", "BadConstraints", "InvalidAccount")
"""squeue's pending reasons of a task that no wait will start."""
FAILED_STATES = ("FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "TIMEOUT", "BOOT_FAIL", "DEADLINE", "PREEMPTED")


@dataclass
class Task:
    """One task of the array: a run of the sweep."""

    job_id: str  # ARRAY_INDEX
    number: str  # "i/N", the run's place in the launch
    folder: Path  # submitit's folder of the task: its logs and result
    state: str = "PENDING"  # squeue's state while queued, then completed | cancelled | failed | unknown
    reason: str = ""
    detail: str = ""

    @property
    def log(self) -> Path:
        return self.folder / f"{self.job_id}_0_log.out"

    @property
    def err_log(self) -> Path:
        return self.folder / f"{self.job_id}_0_log.err"


@dataclass
class Wait:
    """What the wait saw: the tasks, and why it ended early (empty when every task ended)."""

    tasks: list[Task]
    gave_up: str = ""
    changed: float = field(default_factory=time.monotonic)


def submitted_tasks(root: Path, runs: int) -> list[Task] | None:
    """The array's tasks once submitit has placed all ``runs`` of them under ``root`` (its folder
    ``<sweep dir>/.submitit``, one sub-folder ``ARRAY_INDEX`` per task), else None."""
    found = sorted(  # ARRAY_INDEX, or a plain job id when the launch has one run
        (p for p in root.glob("*") if re.fullmatch(r"\d+(_\d+)?", p.name) and (p / f"{p.name}_submitted.pkl").exists()),
        key=lambda p: int(p.name.partition("_")[2] or 0),
    )
    if len(found) < runs:
        return None
    return [Task(p.name, f"{i + 1}/{len(found)}", p) for i, p in enumerate(found)]


def _squeue() -> dict[str, tuple[str, str]] | None:
    """{job id: (state, reason)} of this user's queued tasks (arrays expanded), or None when squeue fails."""
    try:
        done = subprocess.run(
            ["squeue", "--me", "--noheader", "--array", "--format=%i|%T|%r"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        return None
    rows = (line.split("|") for line in done.stdout.strip().splitlines() if line.count("|") == 2)
    return {job: (state, reason) for job, state, reason in rows}


def _ended_state(job_id: str) -> str:
    """How a task that left the queue ended, from scontrol (for a few minutes after) or sacct (with
    accounting); "" when neither knows."""
    commands = (
        ["scontrol", "show", "job", "--oneliner", job_id],
        ["sacct", "--noheader", "--parsable2", "--allocations", "--format=State", "--jobs", job_id],
    )
    for command in commands:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        except (subprocess.TimeoutExpired, FileNotFoundError):
            continue
        found = re.search(r"JobState=(\w+)", done.stdout) or re.match(r"\s*([A-Z_]+)", done.stdout)
        if done.returncode == 0 and found:
            return found.group(1)
    return ""


def _finish(task: Task) -> None:
    """Set the outcome of a task that left the queue: submitit's result file first (the job's own word)."""
    import submitit

    job = submitit.SlurmJob(folder=task.folder, job_id=task.job_id)
    if job.paths.result_pickle.exists():
        try:
            job.results()
            task.state = "completed"
        except Exception as e:  # the job raised: submitit keeps its traceback
            task.state, task.detail = "failed", str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        return
    state = _ended_state(task.job_id)
    if state.startswith("CANCELLED"):
        task.state = "cancelled"
    elif state in FAILED_STATES or state == "COMPLETED":  # COMPLETED without a result: the process died
        task.state, task.detail = "failed", f"SLURM state {state}"
    else:
        task.state = "unknown"
        task.detail = "ended without a result; no accounting to say how (check `sacct -j` or the log)"


def poll(wait: Wait, now: float, unreadable_since: float | None) -> float | None:
    """One look at the queue: update the tasks, set ``wait.gave_up`` when a bound is passed. Returns
    the time squeue started failing (None while it answers)."""
    queued = _squeue()
    if queued is None:
        unreadable_since = unreadable_since or now
        if now - unreadable_since > MAX_UNREADABLE_S:
            wait.gave_up = (
                f"SLURM has not answered squeue for {MAX_UNREADABLE_S:.0f} s: check `scontrol ping`; the jobs may "
                "still run, and the same sweep collects their records later"
            )
        return unreadable_since
    for task in (t for t in wait.tasks if t.state.isupper()):  # SLURM's states are upper case, outcomes not
        before = (task.state, task.reason)
        if task.job_id in queued:
            task.state, task.reason = queued[task.job_id]
        else:
            _finish(task)
        if (task.state, task.reason) != before:
            wait.changed = now
        if task.state == "PENDING" and task.reason in HOPELESS:
            wait.gave_up = f"task {task.job_id} cannot start (squeue reason {task.reason}): check `scontrol show job`"
    live = [t for t in wait.tasks if t.state.isupper()]
    if live and all(t.state == "PENDING" for t in live) and now - wait.changed > MAX_PENDING_S:
        wait.gave_up = (
            f"{len(live)} task(s) pending for {MAX_PENDING_S:.0f} s ({live[0].reason}): they stay queued "
            "(`squeue --me` shows why, `scancel` drops them); the same sweep collects their records later"
        )
    return None


def wait_for(tasks: list[Task], say: Callable[[str], None]) -> Wait:
    """Follow the tasks until every one has ended or a bound is passed (see :data:`MAX_PENDING_S`,
    :data:`MAX_UNREADABLE_S`), saying when each starts and ends."""
    wait, unreadable_since, seen = Wait(tasks), None, {t.job_id: "" for t in tasks}
    while any(t.state.isupper() for t in tasks) and not wait.gave_up:
        now = time.monotonic()
        unreadable_since = poll(wait, now, unreadable_since)
        for task in tasks:
            if task.state != seen[task.job_id] and task.state != "PENDING":
                say(f"slurm: run {task.number} (job {task.job_id}) {task.state.lower()}")
                seen[task.job_id] = task.state
        if any(t.state.isupper() for t in tasks) and not wait.gave_up:
            time.sleep(POLL_S)
    return wait


def summary(wait: Wait, tail: int = 5) -> list[str]:
    """One line per run (its outcome and log), the last ``tail`` lines of a failed run's log, and why
    the wait ended early, if it did."""
    lines = []
    for task in wait.tasks:
        state = task.state.lower() + (f" ({task.reason})" if task.state == "PENDING" and task.reason else "")
        lines.append(f"run {task.number} job {task.job_id}: {state}{' - ' + task.detail if task.detail else ''}")
        lines.append(f"  log: {task.log}")
        if task.state == "failed":
            for log in (task.err_log, task.log):
                last = log.read_text(errors="replace").splitlines()[-tail:] if log.exists() else []
                lines.extend(f"  | {line}" for line in last if line.strip())
    if wait.gave_up:
        lines.append(f"stopped waiting: {wait.gave_up}")
    return lines
