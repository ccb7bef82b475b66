"""The experiment presets on any dataset: the preset brings the protocol and its grid, the data its
regime, and the detector fits the data. Every preset x dataset kind (bccd, voc, coco, yolo) composes
the fitted detector (never the digits' small or sparse one), or is refused in one line (exit 2)."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from ghmbench.config.compose import compose_config, conf_dir, detector_overrides, validate
from ghmbench.errors import ConfigError
from tests.conftest import ghmbench_cli
from tests.disk_datasets import coco_overrides, make_coco, make_voc, make_yolo, yolo_overrides

PRESETS = sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))
REFUSED = {  # the presets that study the generated data: what they sweep or set
    "imbalance": "experiment=imbalance sweeps dataset.image_size, the regime of the generated digits",
    "label_noise": "experiment=label_noise sweeps dataset.unannotated_rate, the regime of the generated digits",
    "smoke": "experiment=smoke sets dataset.num_train, dataset.num_val, keys of the generated digits only",
}
KINDS = ["bccd", "voc", "coco", "yolo"]


@pytest.fixture(scope="module")
def data_overrides(tmp_path_factory) -> dict[str, list[str]]:
    """The overrides that select each dataset kind (tiny folders on disk for voc, coco and yolo)."""
    root = tmp_path_factory.mktemp("data")
    return {
        "bccd": ["dataset=bccd"],
        "voc": ["dataset=voc", f"dataset.root={make_voc(root / 'voc', num_train=8, num_val=4)}"],
        "coco": coco_overrides(make_coco(root / "coco", num_train=8, num_val=4)),
        "yolo": yolo_overrides(make_yolo(root / "yolo", num_train=8, num_val=4)),
    }


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_a_fitted_detector_on_every_dataset_kind_or_is_refused(preset, kind, data_overrides):
    overrides = [f"experiment={preset}", *data_overrides[kind]]
    if preset in REFUSED:
        with pytest.raises(ConfigError) as info:
            validate(compose_config(overrides))
        assert str(info.value).startswith(REFUSED[preset]) and "\n" not in str(info.value)
        assert "allowed: " in str(info.value)
        return
    cfg = validate(compose_config(overrides))
    preset_only = validate(compose_config([f"experiment={preset}"]))
    assert cfg.dataset.name == kind
    assert (cfg.model.backbone, cfg.model.anchor_sizes) == ("resnet18", "auto")  # model=fitted, not sparse
    assert OmegaConf.to_container(cfg.protocol) == OmegaConf.to_container(preset_only.protocol)  # the preset's protocol
    assert OmegaConf.to_container(cfg.train) == OmegaConf.to_container(preset_only.train)
    assert "seed" not in cfg.dataset  # seed_draws: nothing to draw on fixed splits; the seeds cover the training


def test_a_model_named_on_the_command_line_is_kept_and_digits_keep_theirs(data_overrides):
    named = validate(compose_config(["experiment=loss_comparison", *data_overrides["voc"], "model=sparse"]))
    assert (named.model.backbone, list(named.model.anchor_sizes)) == ("small", [16.0, 32.0, 64.0])
    assert validate(compose_config(["experiment=loss_comparison"])).model.backbone_width == 8  # the digits' sparse
    plain = validate(compose_config(data_overrides["voc"]))  # no preset: the default small model is replaced too
    assert plain.model.anchor_sizes == "auto"
    assert detector_overrides(["experiment=focal_grid", *data_overrides["yolo"]]) == ["model=fitted"]
    assert detector_overrides(["experiment=focal_grid"]) == []
    assert detector_overrides([*data_overrides["coco"], "model=retinanet_r18"]) == []


@pytest.mark.slow
def test_cli_composes_every_preset_on_a_voc_folder_or_refuses_it_in_one_line(data_overrides):
    for preset in PRESETS:
        result = ghmbench_cli("train", "--cfg", f"experiment={preset}", *data_overrides["voc"])
        if preset in REFUSED:
            assert result.returncode == 2 and result.stdout == "", preset
            assert (
                result.stderr.strip() == f"error: {result.stderr.strip()[7:]}" and len(result.stderr.splitlines()) == 1
            )
            assert REFUSED[preset] in result.stderr and "Traceback" not in result.stderr
        else:
            assert result.returncode == 0, result.stderr
            model = OmegaConf.create(result.stdout).model
            assert (model.backbone, model.anchor_sizes) == ("resnet18", "auto"), preset


@pytest.mark.slow
def test_a_sweep_on_photos_trains_the_fitted_detector_it_validated(tmp_path, data_overrides):
    """The sweep's jobs (Hydra's multirun, a child process) compose the detector the sweep validated:
    run folders named by the validated configs' keys, with anchors fitted to the data."""
    runs = tmp_path / "runs"
    tiny = ["train.epochs=1", "train.batch_size=4", "train.warmup_iters=1", "train.progress=false", "seed=0,1"]
    result = ghmbench_cli("sweep", *data_overrides["voc"], *tiny, f"paths.runs_dir={runs}", timeout=600)
    assert result.returncode == 0, result.stderr + result.stdout
    records = [json.loads(p.read_text()) for p in runs.glob("*/metrics.json")]
    assert len(records) == 2 and all(r["status"] == "completed" for r in records)
    for record in records:
        assert record["config"]["model"]["backbone"] == "resnet18" and record["detector_anchors"]["fitted"]
        assert len(record["detector_anchors"]["anchor_sizes"]) == 3
