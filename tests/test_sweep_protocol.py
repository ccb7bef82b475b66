"""The fair-comparison protocol through the CLI: tune every loss alike, select on val, report test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ghmbench.store.records import METRICS_FILE
from tests.conftest import ghmbench_cli

PROTOCOL = [
    "loss=ce,focal",
    "seed=0,1",
    'protocol.tune=["train.lr=0.0005,0.003"]',
    'protocol.tune_with=["seed=0"]',
    "dataset.num_test=16",
    "train.eval_every=1",
]


@pytest.mark.slow
def test_protocol_tunes_selects_on_val_and_reports_test(tiny, tmp_path):
    runs = tmp_path / "runs"
    result = ghmbench_cli("sweep", *PROTOCOL, *tiny)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "protocol stage 1 (tuning): 4 runs" in result.stdout
    records = [json.loads(p.read_text()) for p in runs.glob(f"*/{METRICS_FILE}")]
    assert len(records) == 6  # 2 losses x 2 lr at seed 0, then seed 1 at each loss's selected lr
    selected = {}
    for loss in ("ce", "focal"):
        tuning = {r["config"]["train"]["lr"]: r for r in records if r["loss"] == loss and r["seed"] == 0}
        assert set(tuning) == {0.0005, 0.003}
        best = selected[loss] = max(tuning, key=lambda lr: tuning[lr]["val_metrics"]["AP"])
        finals = [r for r in records if r["loss"] == loss and r["seed"] == 1]
        assert len(finals) == 1 and finals[0]["config"]["train"]["lr"] == best
        assert f"protocol: {loss} at train.lr={best}" in result.stdout
    # losses that selected the same setting are launched together: one stage-2 launch per setting
    assert result.stdout.count("protocol stage 2 (final):") == len(set(selected.values()))
    for r in records:  # test split reported, val kept for selection, learning curve recorded
        assert r["metrics_split"] == "test" and r["metrics"] == r["test_metrics"] and r["val_metrics"]["AP"] is not None
        assert [p["epoch"] for p in r["curve"]] == [1, 2] and r["curve"][-1]["AP"] == r["val_metrics"]["AP"]
        assert r["anchors"]["neg_per_pos"] > 10 and (Path(r["run_dir"]) / "ground_truth_test.json").is_file()
    report = ghmbench_cli("report", str(runs), "--bootstrap", "50")
    assert report.returncode == 0, report.stderr
    text = (runs / "report" / "report.md").read_text()
    assert "candidates" in text.lower() and "test split" in text.lower()
    again = ghmbench_cli(
        "sweep", *PROTOCOL, *tiny
    )  # every run is found again (4 tuning + 2 x 2 final visits): nothing retrained
    assert again.returncode == 0 and again.stdout.count("[exists]") == 8 and "[completed]" not in again.stdout
    # --force retrains each of the 6 runs once, also with joblib, whose workers serve both stages
    forced = ghmbench_cli("sweep", "--force", *PROTOCOL, *tiny, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert forced.returncode == 0, forced.stderr + forced.stdout
    assert forced.stdout.count("[completed]") == 6 and forced.stdout.count("[exists]") == 2


@pytest.mark.slow
def test_protocol_bad_override_is_one_line_exit_2(tiny):
    result = ghmbench_cli("sweep", "loss=ce,focal", "protocol.tune=[train.lr]", *tiny)
    assert result.returncode == 2 and "protocol.tune" in result.stderr and "Traceback" not in result.stderr
