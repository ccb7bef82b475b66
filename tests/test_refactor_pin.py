"""Restructuring must not change behaviour: fixed tiny configurations give the run keys and the
numbers recorded before the restructuring (issue 12), on the same machine and thread count.

``tests/data/behaviour_pin.json`` was written by this file's ``record`` at commit 21366ab
(``python -m tests.test_refactor_pin``), before any module was moved. The runs use one torch
thread, so the numbers are reproducible on one machine; another CPU type may round differently
(then re-record on main before a restructuring, never after it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

PIN_FILE = Path(__file__).parent / "data" / "behaviour_pin.json"
BASE = [
    "dataset.num_train=64", "dataset.num_val=16", "dataset.num_test=16",
    "train.epochs=2", "train.batch_size=16", "train.warmup_iters=4", "train.progress=false",
    "model.score_thresh=0.001", "train.num_threads=1", "train.eval_every=1",
]
CASES = {
    "focal-smooth_l1": ["loss=focal", "regression=smooth_l1"],
    "ghm-ghm": ["loss=ghm", "regression=ghm", "seed=1"],
    "ce-l1": ["loss=ce", "regression=l1", "loss.alpha=0.5"],
}
# everything a run records except what depends on time, paths or the library versions
PINNED_FIELDS = ("run_key", "status", "steps", "epochs_done", "anchors", "dataset", "history", "curve", "g_hist",
                 "metrics", "per_class_AP", "val_metrics", "test_metrics", "metrics_split")


def _pinned(overrides: list[str]) -> dict:
    import ghmbench

    record = ghmbench.train(overrides, force=True)
    return json.loads(json.dumps({k: record.get(k) for k in PINNED_FIELDS}))


def record(runs: Path, cache: Path) -> None:
    pins = {name: _pinned([*BASE, *extra, f"paths.runs_dir={runs}", f"paths.cache_dir={cache}"]) for name, extra in CASES.items()}
    PIN_FILE.parent.mkdir(exist_ok=True)
    PIN_FILE.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")


@pytest.mark.parametrize("name", list(CASES))
def test_fixed_config_gives_the_recorded_run_key_and_numbers(name, tmp_path):
    expected = json.loads(PIN_FILE.read_text())[name]
    got = _pinned([*BASE, *CASES[name], f"paths.runs_dir={tmp_path / 'runs'}", f"paths.cache_dir={tmp_path / 'cache'}"])
    assert got["run_key"] == expected["run_key"]
    for field in PINNED_FIELDS:
        assert got[field] == expected[field], field


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        record(Path(tmp) / "runs", Path(tmp) / "cache")
    print(f"wrote {PIN_FILE}", file=sys.stderr)
