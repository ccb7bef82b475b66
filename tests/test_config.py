"""Config composition and validation: bad values are refused with one clear line, exit code 2."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from ghmbench.config.compose import compose_config, conf_dir, validate
from ghmbench.errors import ConfigError
from tests.conftest import ghmbench_cli


def _validate(*overrides: str):
    return validate(compose_config(list(overrides)))


def test_defaults_are_valid_and_groups_compose():
    cfg = _validate()
    assert cfg.loss.name == "focal" and cfg.loss.gamma == 2.0 and cfg.loss.alpha == 0.25
    cfg = _validate("loss=ghm", "regression=ghm", "loss.bins=10", "model=resnet18")
    assert cfg.loss.bins == 10 and cfg.regression.mu == 0.02 and cfg.regression.loss_weight == 10.0
    assert cfg.model.backbone == "resnet18"
    assert _validate("loss=ce", "loss.alpha=null").loss.alpha is None


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["loss.alpha=1.5"], "loss.alpha=1.5 is not allowed; allowed: null or a number in [0, 1]"),
        (["loss.gamma=-1"], "loss.gamma=-1.0 is not allowed; allowed: a number >= 0"),
        (["loss=ghm", "loss.bins=0"], "loss.bins=0 is not allowed; allowed: an integer >= 1"),
        (["loss=ghm", "loss.momentum=1"], "loss.momentum=1.0 is not allowed; allowed: a number in [0, 1)"),
        (["regression=ghm", "regression.mu=0"], "regression.mu=0.0 is not allowed; allowed: a number > 0"),
        (
            ["regression=ghm", "regression.momentum=-0.1"],
            "regression.momentum=-0.1 is not allowed; allowed: a number in [0, 1)",
        ),
        (["train.lr=0"], "train.lr=0.0 is not allowed; allowed: a number > 0"),
        (["train.batch_size=0"], "train.batch_size=0 is not allowed; allowed: an integer >= 1"),
        (
            ["model.fg_iou=0.4", "model.bg_iou=0.5"],
            "model.bg_iou=0.5 must be <= model.fg_iou=0.4 (IoU thresholds ordered)",
        ),
        (["+loss.foo=1"], "unknown key loss.foo; allowed keys: name, alpha, gamma, loss_weight"),
        (["+foo=1"], "unknown key foo; allowed keys:"),
        (["loss.gamma=abc"], "loss.gamma: Value 'abc' of type 'str' could not be converted to Float"),
        (["loss=nope"], "Could not find 'loss/nope' Available options in 'loss': ce custom focal ghm"),
        (["device=tpu"], "device='tpu' is not allowed; allowed: one of auto, cpu, cuda, cuda:N"),
        (["model.levels=[2,3]"], "model.anchor_sizes has 3 entries; allowed: one per entry of model.levels (2)"),
        (["train.optimizer=lbfgs"], "train.optimizer='lbfgs' is not allowed; allowed: one of adamw, sgd"),
        (["force=3"], "force=3: allowed: true or false"),
        (["force_keep=5"], "force_keep=5: allowed: a list"),
    ],
)
def test_bad_values_are_rejected_with_the_key_named(overrides, message):
    with pytest.raises(ConfigError) as info:
        _validate(*overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_cli_bad_value_exits_2_with_one_line_and_writes_nothing(tmp_path):
    result = ghmbench_cli("train", "loss=ghm", "loss.momentum=1.5", f"paths.runs_dir={tmp_path / 'runs'}")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: loss.momentum=1.5 is not allowed; allowed: a number in [0, 1)"
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "runs").exists()


COMPOSED_SNAPSHOT = Path(__file__).parent / "data" / "composed_configs.txt"


def composed_configs() -> dict[str, str]:
    """Every built-in option of every config group, the budgets with each model variant and every
    experiment at scale=gpu, composed (no validation) as YAML: the variants build on their bases
    (model/resnet18 on model/small, dataset/digits_sparse on dataset/digits, ...) and must compose
    to exactly the configs they always did. Regenerate the snapshot after a deliberate change with
    ``python -c "from tests.test_config import write_composed_snapshot; write_composed_snapshot()"``."""
    groups = sorted(
        p for p in conf_dir().iterdir() if p.is_dir() and p.name not in ("hydra", "scale")
    )  # scale=gpu: beside an experiment only
    overrides = [[f"{group.name}={option.stem}"] for group in groups for option in sorted(group.glob("*.yaml"))]
    overrides += [
        [f"budget={budget}", variant]
        for budget in ("quick", "short", "full")
        for variant in ("model=sparse", "model=retinanet_r18")
    ]
    overrides += [[f"experiment={name}", "scale=gpu"] for name in EXPERIMENTS if name != "smoke"]
    return {" ".join(o): OmegaConf.to_yaml(compose_config(o)) for o in overrides}


def write_composed_snapshot() -> None:
    COMPOSED_SNAPSHOT.write_text("".join(f"### {name}\n{text}" for name, text in composed_configs().items()))


def test_every_option_composes_to_its_snapshot():
    _, *blocks = COMPOSED_SNAPSHOT.read_text().split("### ")
    expected = dict(block.split("\n", 1) for block in blocks)
    composed = composed_configs()
    assert list(composed) == list(expected)
    for name, text in composed.items():
        assert text == expected[name], name


def test_a_key_a_config_leaves_out_gets_the_builtin_yaml_value():
    """The YAML configs are the one place defaults are written: a section without a key (a config
    of the user's own in --config-dir) gets the built-in option's value."""
    cfg = _validate(
        "~train.lr",
        "loss=ghm",
        "~loss.bins",
        "regression=ghm",
        "~regression.mu",
        "~dataset.noise",
        "~model.fpn_channels",
    )
    assert (cfg.train.lr, cfg.loss.bins, cfg.regression.mu, cfg.dataset.noise, cfg.model.fpn_channels) == (
        0.001,
        30,
        0.02,
        0.05,
        64,
    )
    assert (
        _validate("model=resnet18", "~model.fpn_channels").model.fpn_channels == 64
    )  # model/small.yaml, the default option


def test_digits_generator_defaults_equal_the_dataset_yaml():
    """DigitsParams keeps keyword defaults so that tests and scripts can make a small dataset in one
    line; they must be conf/dataset/digits.yaml's values (the source of truth for runs)."""
    from dataclasses import asdict

    from ghmbench.data.digits import DigitsParams

    yaml = OmegaConf.to_container(OmegaConf.load(conf_dir() / "dataset" / "digits.yaml"))
    yaml.pop("name")
    assert asdict(DigitsParams()) == yaml


# experiment: (dataset.image_size, model.levels, model.anchor_sizes, train.epochs) at CPU scale
EXPERIMENTS = {
    "focal_grid": (160, [3, 4, 5], [16, 32, 64], 36),
    "ghm_ablation": (160, [3, 4, 5], [16, 32, 64], 60),
    "imbalance": (160, [3, 4, 5], [16, 32, 64], 12),
    "label_noise": (160, [3, 4, 5], [16, 32, 64], 36),
    "loss_comparison": (160, [3, 4, 5], [16, 32, 64], 12),
    "smoke": (64, [2, 3, 4], [12, 24, 48], 4),
}
# the presets made for photos: (dataset, dataset.image_size, model.levels, model.anchor_sizes, train.epochs)
PHOTO_EXPERIMENTS = {"bccd": ("bccd", 256, [3, 4, 5], "auto", 24)}
GPU_SCALE = {
    "model.backbone": "resnet18",
    "model.fpn_channels": 128,
    "model.head_convs": 2,
    "dataset.num_train": 8000,
    "dataset.num_val": 1000,
    "dataset.num_test": 2000,
    "train.epochs": 36,
    "train.eval_every": 9,
}


def _flat(cfg) -> dict:
    return pd.json_normalize(OmegaConf.to_container(cfg, resolve=True), sep=".").iloc[0].to_dict()


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_every_experiment_composes_what_each_budget_and_scale_says(experiment):
    """Each preset at CPU scale is its own regime; scale=gpu is that regime (dataset geometry,
    levels, anchors: the imbalance) with resnet18, more images and 36 epochs, and nothing else
    changed; a budget beside a preset, or scale=gpu beside the smoke check, is refused in one line."""
    assert sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml")) == sorted(
        [*EXPERIMENTS, *PHOTO_EXPERIMENTS]
    )
    size, levels, anchors, epochs = EXPERIMENTS[experiment]
    cpu = _validate(f"experiment={experiment}")
    assert (
        cpu.dataset.image_size,
        list(cpu.model.levels),
        list(cpu.model.anchor_sizes),
        cpu.train.epochs,
        cpu.model.backbone,
    ) == (size, levels, anchors, epochs, "small")
    assert _flat(_validate(f"experiment={experiment}", "scale=cpu")) == _flat(cpu)
    if experiment == "smoke":
        with pytest.raises(ConfigError, match=r"^scale=gpu with experiment=smoke: .*; allowed: scale=cpu"):
            _validate(f"experiment={experiment}", "scale=gpu")
    else:
        gpu, flat_cpu = _flat(_validate(f"experiment={experiment}", "scale=gpu")), _flat(cpu)
        assert {k: v for k, v in gpu.items() if flat_cpu[k] != v} == {
            k: v for k, v in GPU_SCALE.items() if flat_cpu[k] != v
        }
    for budget in ("none", "quick", "short", "full"):
        for scale in ("cpu", "gpu"):
            if budget == "none":
                continue
            with pytest.raises(
                ConfigError,
                match=(
                    rf"^budget={budget} with experiment={experiment}: .*; allowed: experiment={experiment} alone "
                    r"\(CPU scale\) or with scale=gpu"
                ),
            ):
                _validate(f"experiment={experiment}", f"budget={budget}", f"scale={scale}")


@pytest.mark.parametrize("experiment", sorted(PHOTO_EXPERIMENTS))
def test_a_photo_preset_composes_its_data_and_the_fitted_detector_at_cpu_scale_only(experiment):
    name, size, levels, anchors, epochs = PHOTO_EXPERIMENTS[experiment]
    cfg = _validate(f"experiment={experiment}")
    assert (cfg.dataset.name, cfg.dataset.image_size, list(cfg.model.levels), cfg.model.anchor_sizes) == (
        name,
        size,
        levels,
        anchors,
    )
    assert (cfg.train.epochs, cfg.model.backbone) == (epochs, "resnet18")
    with pytest.raises(ConfigError, match=rf"^scale=gpu with dataset={name}: it sizes the embedded digits data"):
        _validate(f"experiment={experiment}", "scale=gpu")
    with pytest.raises(ConfigError, match=rf"allowed: experiment={experiment} alone \(CPU scale\)$"):
        _validate(f"experiment={experiment}", "budget=quick")


def test_budgets_size_the_default_run_and_scale_needs_a_preset():
    full = _validate("budget=full")
    assert (full.model.backbone, full.train.epochs, full.dataset.image_size, full.dataset.num_train) == (
        "resnet18",
        36,
        128,
        20000,
    )
    assert _validate("budget=quick", "model=sparse").model.backbone_width == 8  # a model variant stays allowed
    for overrides, message in [
        (
            ["budget=full", "dataset=digits_sparse"],
            "budget=full with dataset=digits_sparse: a budget sizes dataset=digits; allowed: dataset=digits, or "
            "budget=none",
        ),
        (
            ["scale=gpu"],
            "scale=gpu without an experiment: it sizes an experiment preset; allowed: with experiment=NAME",
        ),
        (
            ["experiment=loss_comparison", "scale=gpu", "dataset=coco"],
            "scale=gpu with dataset=coco: it sizes the embedded digits data; allowed:",
        ),
    ]:
        with pytest.raises(ConfigError, match="^" + re.escape(message)):
            _validate(*overrides)


@pytest.mark.slow
def test_cli_prints_the_gpu_scale_and_refuses_a_mix_in_one_line():
    gpu = ghmbench_cli("train", "--cfg", "experiment=loss_comparison", "scale=gpu")
    assert gpu.returncode == 0, gpu.stderr
    cfg = OmegaConf.create(gpu.stdout)
    assert (
        cfg.model.backbone,
        cfg.train.epochs,
        cfg.dataset.image_size,
        list(cfg.model.anchor_sizes),
        cfg.dataset.num_train,
    ) == ("resnet18", 36, 160, [16, 32, 64], 8000)
    mix = ghmbench_cli("train", "--cfg", "experiment=loss_comparison", "budget=full")
    assert mix.returncode == 2 and mix.stdout == "" and len(mix.stderr.strip().splitlines()) == 1
    assert (
        mix.stderr.startswith("error: budget=full with experiment=loss_comparison: ") and "Traceback" not in mix.stderr
    )
