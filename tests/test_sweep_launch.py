"""Sweeps through Hydra's launchers, the resumable results store, and SIGKILL safety."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ghmbench.config.compose import compose_config, validate
from ghmbench.store.records import METRICS_FILE
from tests.conftest import ghmbench_cli

GRID = ["loss=ce,ghm", "seed=0,1"]


def _records(runs: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in runs.glob(f"*/{METRICS_FILE}")}


@pytest.mark.slow
def test_basic_sweep_skips_finished_runs_and_reports(tiny, tmp_path):
    runs = tmp_path / "runs"
    first = ghmbench_cli("sweep", *GRID, *tiny)
    assert first.returncode == 0, first.stderr
    assert "sweep: 4 runs, 0 with a complete record" in first.stdout
    assert [f"run {i}/4 " in first.stdout and f"run {i}/4 [completed] " in first.stdout for i in range(1, 5)] == [
        True
    ] * 4, first.stdout
    records = _records(runs)
    assert len(records) == 4 and all(r["status"] == "completed" for r in records.values())
    assert {(r["loss"], r["seed"]) for r in records.values()} == {("ce", 0), ("ce", 1), ("ghm", 0), ("ghm", 1)}
    mtimes = {p: p.stat().st_mtime_ns for p in runs.glob(f"*/{METRICS_FILE}")}
    again = ghmbench_cli("sweep", *GRID, *tiny)
    assert again.returncode == 0 and "sweep: 4 runs, 4 with a complete record" in again.stdout
    assert again.stdout.count("[exists]") == 4
    assert sorted(re.findall(r"run (\d/4) \[exists\] .* \(skipped: a complete record\)", again.stdout)) == [
        "1/4",
        "2/4",
        "3/4",
        "4/4",
    ]
    assert mtimes == {p: p.stat().st_mtime_ns for p in runs.glob(f"*/{METRICS_FILE}")}
    report = ghmbench_cli("report", str(runs))
    assert report.returncode == 0 and "classification (rows) x regression" in report.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher",
    [
        ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
        ["hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1"],
    ],
)
def test_parallel_launchers(tiny, tmp_path, launcher):
    result = ghmbench_cli("sweep", *GRID, *tiny, *launcher)
    assert result.returncode == 0, result.stderr + result.stdout
    records = _records(tmp_path / "runs")
    assert len(records) == 4 and all(r["status"] == "completed" for r in records.values())
    if "hydra.launcher.n_jobs=2" in launcher:  # each of the 2 parallel jobs got half of the cores
        cores = len(os.sched_getaffinity(0))
        assert all(r["config"]["train"]["num_threads"] == max(1, cores // 2) for r in records.values())
    report = ghmbench_cli("report", str(tmp_path / "runs"))
    assert report.returncode == 0, report.stderr


@pytest.mark.parametrize(
    ("overrides", "jobs"),
    # as Hydra's BasicSweeper.split_arguments expanded them before the public-API version (the first key varies
    # slowest)
    [
        (
            ["loss=ce,focal", "seed=0,1,2"],
            [
                ["loss=ce", "seed=0"],
                ["loss=ce", "seed=1"],
                ["loss=ce", "seed=2"],
                ["loss=focal", "seed=0"],
                ["loss=focal", "seed=1"],
                ["loss=focal", "seed=2"],
            ],
        ),
        (
            ["experiment=loss_comparison", "seed=5", "loss=focal,ghm"],
            [
                [f"loss={loss}", f"regression={reg}", "seed=5", "experiment=loss_comparison"]
                for loss in ("focal", "ghm")
                for reg in ("smooth_l1", "ghm")
            ],
        ),
        (
            ["experiment=loss_comparison"],
            [
                [f"loss={loss}", f"regression={reg}", f"seed={seed}", "experiment=loss_comparison"]
                for loss in ("ce", "focal", "ghm", "qfl", "vfl")
                for reg in ("smooth_l1", "ghm")
                for seed in (0, 1, 2)
            ],
        ),
        (
            ["experiment=focal_grid", "seed=0,1"],
            [["seed=0", "experiment=focal_grid"], ["seed=1", "experiment=focal_grid"]],
        ),
        (
            ["experiment=label_noise"],
            [
                [f"loss={loss}", f"dataset.unannotated_rate={rate}", "seed=0", "experiment=label_noise"]
                for loss in ("ce", "focal", "ghm")
                for rate in ("0", "0.1", "0.2", "0.4")
            ],
        ),
        (
            ["seed=range(0,3)", "loss.gamma=choice(1,2)", "train.lr=0.001"],
            [[f"seed={s}", f"loss.gamma={g}", "train.lr=0.001"] for s in (0, 1, 2) for g in (1, 2)],
        ),
        (
            ["seed=0,1", "seed=3,4", "loss=ce"],
            [["seed=3", "loss=ce"], ["seed=4", "loss=ce"]],
        ),  # a later value list of a key replaces the earlier one
        (["+loss.extra=1,2", "loss=focal"], [["+loss.extra=1", "loss=focal"], ["+loss.extra=2", "loss=focal"]]),
        (
            ["experiment=smoke", "loss=ce,focal,ghm"],
            [["experiment=smoke", "loss=ce"], ["experiment=smoke", "loss=focal"], ["experiment=smoke", "loss=ghm"]],
        ),
    ],
)
def test_grid_expansion_is_hydras_basic_sweeper(overrides, jobs):
    from ghmbench.sweep.grid import expand_jobs

    assert expand_jobs(overrides) == jobs


@pytest.mark.parametrize(
    ("experiment", "cells"),
    [
        (
            "focal_grid",
            [
                [f"loss.gamma={g}", f"loss.alpha={a}", f"train.lr={lr}", f"train.batch_size={b}"]
                for g in ("0", "0.5", "1", "2", "5")
                for a in ("0.1", "0.25", "0.5", "0.75")
                for lr in ("0.001", "0.003")
                for b in (8, 16)
            ],
        ),
        (
            "ghm_ablation",
            [
                [f"loss.bins={b}", f"loss.momentum={m}"]
                for b in ("5", "10", "20", "30", "40")
                for m in ("0", "0.5", "0.75", "0.9")
            ],
        ),
    ],
)
def test_settings_presets_tune_every_cell_of_their_grid(experiment, cells):
    """Stage 1 of the settings presets: every cell, seed 0, in the comparison regime."""
    from ghmbench.sweep.grid import expand_jobs
    from ghmbench.sweep.protocol import protocol_of, tuning_overrides

    overrides = [f"experiment={experiment}"]
    jobs = expand_jobs(tuning_overrides(overrides, protocol_of(overrides)))
    assert jobs == [["seed=0", f"experiment={experiment}", *cell] for cell in cells]
    cfg = validate(compose_config(jobs[0]))
    assert (cfg.dataset.image_size, cfg.dataset.num_test, cfg.model.fpn_channels, cfg.model.levels) == (
        160,
        500,
        32,
        [3, 4, 5],
    )
    epochs = {"focal_grid": 36, "ghm_ablation": 60}[experiment]  # focal_grid is the 36-epoch tuning stage
    assert (cfg.train.epochs, cfg.protocol.seed_draws) == (epochs, True)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["loss=glob(*)"], "ConfigLoader is not set"),
        (["seed=interval(0,1)"], "BasicSweeper does not support sweep type : INTERVAL_SWEEP"),
    ],
)
def test_grid_expansion_refuses_what_hydras_basic_sweeper_refuses(overrides, message):
    from ghmbench.config.compose import ConfigError
    from ghmbench.sweep.grid import expand_jobs

    with pytest.raises(ConfigError, match=message):
        expand_jobs(overrides)


@pytest.mark.slow
def test_sweep_rejects_a_bad_job_before_starting(tiny, tmp_path):
    result = ghmbench_cli("sweep", "loss=focal", "loss.gamma=1,-2", *tiny)
    assert result.returncode == 2
    assert "loss.gamma=-2.0 is not allowed; allowed: a number >= 0 (in the sweep job" in result.stderr
    assert not list((tmp_path / "runs").glob(f"*/{METRICS_FILE}"))


def _sweep_process(args: list[str]) -> subprocess.Popen:
    from tests.conftest import ghmbench_exe

    return subprocess.Popen(
        [ghmbench_exe(), "sweep", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_report(tiny, tmp_path):
    grid = ["loss=ce,ghm", "train.epochs=4", "dataset.num_train=128"]
    killed = tmp_path / "killed"
    args = [*tiny, *grid, f"paths.runs_dir={killed}"]
    proc = _sweep_process(args)
    deadline = time.time() + 240
    # wait until the second configuration has finished an epoch but not its run
    while time.time() < deadline:
        done = list(killed.glob(f"*/{METRICS_FILE}"))
        ckpts = [p for p in killed.glob("*/checkpoint.pt") if not (p.parent / METRICS_FILE).exists()]
        if len(done) == 1 and ckpts:
            break
        assert proc.poll() is None, "the sweep ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted = [p.parent for p in killed.glob("*/checkpoint.pt") if not (p.parent / METRICS_FILE).exists()]
    assert len(interrupted) == 1  # killed in the middle of a run, after its first checkpoint
    resumed = ghmbench_cli("sweep", *args)
    assert resumed.returncode == 0, resumed.stderr
    assert "sweep: 2 runs, 1 with a complete record" in resumed.stdout
    assert (
        f"run 2/2 {interrupted[0].name}: resumes from its checkpoint" in resumed.stdout
        and "run 1/2 [exists]" in resumed.stdout
    )
    assert "resumed from" in (interrupted[0] / "train.log").read_text()
    folders = [p for p in killed.iterdir() if not p.name.startswith(".")]
    assert len(folders) == 2 and all(
        json.loads((f / METRICS_FILE).read_text())["status"] == "completed" for f in folders
    )

    clean = tmp_path / "clean"
    straight = ghmbench_cli("sweep", *tiny, *grid, f"paths.runs_dir={clean}")
    assert straight.returncode == 0, straight.stderr
    for root in (killed, clean):
        assert ghmbench_cli("report", str(root), "--out", str(root / "report")).returncode == 0
    for table in ("summary.md", "loss_comparison.md", "summary.csv"):
        assert (killed / "report" / table).read_text() == (clean / "report" / table).read_text()


@pytest.mark.slow
def test_smoke_preset_passes_and_fails_loudly(tmp_path):
    paths = [
        f"paths.runs_dir={tmp_path / 'runs'}",
        f"paths.cache_dir={tmp_path.parent / 'ghmbench-cache'}",
        "train.progress=false",
    ]
    ok = ghmbench_cli("train", "experiment=smoke", *paths)
    assert ok.returncode == 0, ok.stderr
    assert "smoke check passed" in ok.stdout
    bad = ghmbench_cli(
        "train", "experiment=smoke", "train.lr=1e30", "train.grad_clip=null", "train.warmup_iters=0", *paths
    )
    assert bad.returncode == 1 and "diverged" in bad.stdout
