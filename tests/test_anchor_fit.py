"""The anchor-fit check: `data check` and the start of a run warn in one line when more than 20% of
the training objects are matched only by the low-quality rule; the real-image preset fits."""

from __future__ import annotations

import json

from conftest import TINY, ghmbench_cli

from ghmbench.config import compose_config, validate

LARGE = ["dataset.image_size=256", "dataset.min_scale=100", "dataset.max_scale=220", "dataset.max_objects=1", "dataset.num_train=16", "dataset.num_val=4"]


def test_data_check_warns_for_large_objects_and_not_with_the_real_image_preset(tmp_path):
    cache = f"paths.cache_dir={tmp_path}"
    r = ghmbench_cli("data", "check", *LARGE, cache)
    assert r.returncode == 0, r.stderr
    (line,) = [x for x in r.stderr.splitlines() if "anchor fit" in x]
    assert "training objects" in line and "matched only by the low-quality rule" in line and "%" in line
    assert "model.anchor_sizes" in line and "model.levels" in line and "model=retinanet_r18" in line
    r = ghmbench_cli("data", "check", *LARGE, cache, "model=retinanet_r18")
    assert r.returncode == 0 and "anchor fit" not in r.stderr + r.stdout
    r = ghmbench_cli("data", "check", cache, "dataset.num_train=16", "dataset.num_val=4")  # the digits fit the default detector
    assert r.returncode == 0 and "anchor fit" not in r.stderr + r.stdout


def test_a_run_starts_with_the_warning_line(tmp_path):
    args = [*[o for o in TINY if not o.startswith("dataset.")], *LARGE, "train.epochs=1", f"paths.runs_dir={tmp_path / 'runs'}", f"paths.cache_dir={tmp_path}"]
    r = ghmbench_cli("train", *args)
    assert r.returncode == 0, r.stderr
    assert len([x for x in r.stderr.splitlines() if x.startswith("warning: anchor fit:")]) == 1
    (log,) = (tmp_path / "runs").glob("*/train.log")
    assert "anchor fit" in log.read_text()
    assert json.loads(next((tmp_path / "runs").glob("*/metrics.json")).read_text())["status"] == "completed"


def test_real_image_preset():
    m = validate(compose_config(["model=retinanet_r18"])).model
    assert m.backbone == "resnet18" and list(m.levels) == [3, 4, 5, 6, 7] and list(m.anchor_sizes) == [32, 64, 128, 256, 512]
