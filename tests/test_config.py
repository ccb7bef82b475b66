"""Config composition and validation: bad values are refused with one clear line, exit code 2."""

from __future__ import annotations

import pytest

from ghmbench.config import compose_config, validate
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
        (["regression=ghm", "regression.momentum=-0.1"], "regression.momentum=-0.1 is not allowed; allowed: a number in [0, 1)"),
        (["train.lr=0"], "train.lr=0.0 is not allowed; allowed: a number > 0"),
        (["train.batch_size=0"], "train.batch_size=0 is not allowed; allowed: an integer >= 1"),
        (["model.fg_iou=0.4", "model.bg_iou=0.5"], "model.bg_iou=0.5 must be <= model.fg_iou=0.4 (IoU thresholds ordered)"),
        (["+loss.foo=1"], "unknown key loss.foo; allowed keys: name, alpha, gamma, loss_weight"),
        (["+foo=1"], "unknown key foo; allowed keys:"),
        (["loss.gamma=abc"], "loss.gamma: Value 'abc' of type 'str' could not be converted to Float"),
        (["loss=nope"], "Could not find 'loss/nope' Available options in 'loss': ce custom focal ghm"),
        (["device=tpu"], "device='tpu' is not allowed; allowed: one of auto, cpu, cuda, cuda:N"),
        (["model.levels=[2,3]"], "model.anchor_sizes has 3 entries; allowed: one per entry of model.levels (2)"),
        (["train.optimizer=lbfgs"], "train.optimizer='lbfgs' is not allowed; allowed: one of adamw, sgd"),
    ],
)
def test_bad_values_are_rejected_with_the_key_named(overrides, message):
    with pytest.raises(ConfigError) as info:
        _validate(*overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_cli_bad_value_exits_2_with_one_line_and_writes_nothing(tmp_path):
    result = ghmbench_cli("train", "loss=ghm", "loss.momentum=1.5", f"paths.runs_dir={tmp_path / 'runs'}")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: loss.momentum=1.5 is not allowed; allowed: a number in [0, 1)"
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "runs").exists()
