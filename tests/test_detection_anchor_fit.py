"""The anchor-fit check: `data check` and the start of a run warn in one line when more than 20% of
the training objects are matched only by the low-quality rule; the real-image preset fits."""

from __future__ import annotations

import json

import pytest
from conftest import TINY, ghmbench_cli

from ghmbench.config.compose import compose_config, validate

LARGE = [
    "dataset.image_size=256",
    "dataset.min_scale=100",
    "dataset.max_scale=220",
    "dataset.max_objects=1",
    "dataset.num_train=16",
    "dataset.num_val=4",
]


@pytest.mark.slow
def test_data_check_warns_for_large_objects_and_not_with_the_real_image_preset(tmp_path):
    cache = f"paths.cache_dir={tmp_path}"
    r = ghmbench_cli("data", "check", *LARGE, cache)
    assert r.returncode == 0, r.stderr
    (line,) = [x for x in r.stderr.splitlines() if "anchor fit" in x]
    assert "training objects" in line and "matched only by the low-quality rule" in line and "%" in line
    assert "model.anchor_sizes" in line and "model.levels" in line and "model=retinanet_r18" in line
    r = ghmbench_cli("data", "check", *LARGE, cache, "model=retinanet_r18")
    assert r.returncode == 0 and "anchor fit" not in r.stderr + r.stdout


def test_the_digits_fit_the_default_detector(tmp_path):
    from ghmbench.data.builder import build_datasets
    from ghmbench.detection.anchor_fit import anchor_fit_warning, detector_anchors
    from ghmbench.detection.model import build_model

    cfg = validate(compose_config(["dataset.num_train=32", "dataset.num_val=4", f"paths.cache_dir={tmp_path}"]))
    train = build_datasets(cfg)[0]
    assert (
        anchor_fit_warning(
            train,
            detector_anchors(build_model(cfg.model, train.num_classes, 1), 1, cfg.dataset.image_size),
            cfg.model,
            cfg.dataset.image_size,
        )
        is None
    )
    large = validate(compose_config([*LARGE, f"paths.cache_dir={tmp_path}"]))
    big = build_datasets(large)[0]
    assert "of 16 training objects" in anchor_fit_warning(
        big,
        detector_anchors(build_model(large.model, big.num_classes, 1), 1, large.dataset.image_size),
        large.model,
        256,
    )


@pytest.mark.slow
def test_a_run_starts_with_the_warning_line(tmp_path):
    args = [
        *[o for o in TINY if not o.startswith("dataset.")],
        *LARGE,
        "train.epochs=1",
        f"paths.runs_dir={tmp_path / 'runs'}",
        f"paths.cache_dir={tmp_path}",
    ]
    r = ghmbench_cli("train", *args)
    assert r.returncode == 0, r.stderr
    assert len([x for x in r.stderr.splitlines() if x.startswith("warning: anchor fit:")]) == 1
    (log,) = (tmp_path / "runs").glob("*/train.log")
    assert "anchor fit" in log.read_text()
    assert json.loads(next((tmp_path / "runs").glob("*/metrics.json")).read_text())["status"] == "completed"


def test_real_image_preset():
    m = validate(compose_config(["model=retinanet_r18"])).model
    assert (
        m.backbone == "resnet18"
        and list(m.levels) == [3, 4, 5, 6, 7]
        and list(m.anchor_sizes) == [32, 64, 128, 256, 512]
    )
