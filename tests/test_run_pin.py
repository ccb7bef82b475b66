"""Restructuring must not change behaviour: fixed tiny configurations give the run keys and the
numbers recorded before the restructuring (issue 12), on the same machine and thread count.

``tests/data/behaviour_pin.json`` was written by this file's ``record`` at commit 21366ab
(``python -m tests.test_run_pin``), before any module was moved. The runs use one torch
thread, so the numbers are reproducible on one machine. Another CPU rounds differently in the last
digits (an AMD EPYC and an Intel Xeon with AVX-512 differ from the 7th significant digit of a loss
on), so run keys, statuses and counts are compared exactly and every float within a tolerance that
covers such rounding as it grows over two epochs (GHM's binning moves an entry whose gradient norm
sits on a bin edge): relative 5e-3 for the losses and learning rates, and an absolute 0.01 for the
COCO metrics, where a rounding difference can reorder two nearly tied detections.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

PIN_FILE = Path(__file__).parent / "data" / "behaviour_pin.json"
BASE = [
    "dataset.num_train=64",
    "dataset.num_val=16",
    "dataset.num_test=16",
    "train.epochs=2",
    "train.batch_size=16",
    "train.warmup_iters=4",
    "train.progress=false",
    "model.score_thresh=0.001",
    "train.num_threads=1",
    "train.eval_every=1",
]
CASES = {
    "focal-smooth_l1": ["loss=focal", "regression=smooth_l1"],
    "ghm-ghm": ["loss=ghm", "regression=ghm", "seed=1"],
    "ce-l1": ["loss=ce", "regression=l1", "loss.alpha=0.5"],
}
# everything a run records except what depends on time, paths or the library versions
PINNED_FIELDS = (
    "run_key",
    "status",
    "steps",
    "epochs_done",
    "anchors",
    "dataset",
    "history",
    "curve",
    "g_hist",
    "metrics",
    "per_class_AP",
    "val_metrics",
    "test_metrics",
    "metrics_split",
)


METRIC_FIELDS = ("curve", "metrics", "per_class_AP", "val_metrics", "test_metrics")
GRADIENT_HISTOGRAM_SLACK = 2  # entries that a rounding difference may move into a neighbouring bin


def assert_close(got, expected, field: str, rel: float = 5e-3, abs_tol: float = 1e-9) -> None:
    """``got`` equals ``expected`` exactly but for floats, which may differ within the tolerance."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys(), field
        for key in expected:
            assert_close(got[key], expected[key], f"{field}.{key}", rel, abs_tol)
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), field
        for i, (g, e) in enumerate(zip(got, expected)):
            assert_close(g, e, f"{field}[{i}]", rel, abs_tol)
    elif isinstance(expected, float) and not isinstance(got, bool) and isinstance(got, (int, float)):
        assert math.isclose(got, expected, rel_tol=rel, abs_tol=abs_tol), f"{field}: {got} != {expected}"
    else:
        assert got == expected, field


def _pinned(overrides: list[str]) -> dict:
    import ghmbench

    record = ghmbench.train(overrides, force=True)
    return json.loads(json.dumps({k: record.get(k) for k in PINNED_FIELDS}))


def record(runs: Path, cache: Path) -> None:
    pins = {
        name: _pinned([*BASE, *extra, f"paths.runs_dir={runs}", f"paths.cache_dir={cache}"])
        for name, extra in CASES.items()
    }
    PIN_FILE.parent.mkdir(exist_ok=True)
    PIN_FILE.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_fixed_config_gives_the_recorded_run_key_and_numbers(name, tmp_path):
    expected = json.loads(PIN_FILE.read_text())[name]
    got = _pinned([*BASE, *CASES[name], f"paths.runs_dir={tmp_path / 'runs'}", f"paths.cache_dir={tmp_path / 'cache'}"])
    assert got["run_key"] == expected["run_key"]
    for field in PINNED_FIELDS:
        if field in METRIC_FIELDS:
            assert_close(got[field], expected[field], field, rel=0.0, abs_tol=0.01)
        elif field == "g_hist":
            assert_close(got[field], expected[field], field, rel=1e-3, abs_tol=GRADIENT_HISTOGRAM_SLACK)
        else:
            assert_close(got[field], expected[field], field)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        record(Path(tmp) / "runs", Path(tmp) / "cache")
    print(f"wrote {PIN_FILE}", file=sys.stderr)
