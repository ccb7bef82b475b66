"""wandb for real, offline: the local run files hold the config, step losses and final metrics."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import ghmbench_cli


@pytest.mark.slow
def test_wandb_defaults_to_offline_and_writes_local_run(tiny, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}  # no WANDB_MODE: offline by default
    env["WANDB_SILENT"] = "true"
    result = ghmbench_cli(
        "train", *tiny, "logger=wandb", "logger.project=ghmbench-test", "train.log_every=1", env=env, timeout=240
    )
    assert result.returncode == 0, result.stderr
    runs = tmp_path / "runs"
    (offline,) = list((runs / ".wandb" / "wandb").glob("offline-run-*"))
    (data,) = list(offline.glob("run-*.wandb"))
    blob = data.read_bytes()
    for key in (b"train/loss_cls", b"train/loss_box", b"val/AP", b"ghmbench-test", b"focal"):
        assert key in blob, key
    (record_file,) = list(runs.glob("*/metrics.json"))
    record = json.loads(record_file.read_text())
    (table,) = list(offline.glob("files/media/table/run_table_*.table.json"))
    row = json.loads(table.read_text())
    assert row["columns"][:4] == ["loss", "regression", "seed", "status"]
    assert row["data"][0][4] == record["metrics"]["AP"]
