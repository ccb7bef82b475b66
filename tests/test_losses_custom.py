"""Losses by ``_target_``: a user's own loss trains, sweeps beside the built-in ones, goes through
the protocol and the report; a bad target is one line; the built-in losses keep their run keys."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch

from ghmbench import losses
from ghmbench.config.compose import compose_config, validate
from ghmbench.errors import ConfigError
from ghmbench.store.records import METRICS_FILE, run_key
from tests.conftest import OWN_LOSS_DOC, ghmbench_cli, write_user_project

CUSTOM = [
    "loss=custom",
    "loss._target_=my_pkg.losses.ScaledBCE",
    "+loss.scale=2.0",
    "loss.name=scaled_bce",
]  # docs/own-loss.md's command


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """docs/own-loss.md's user project (my_pkg/losses.py with ScaledBCE, ghmbench_conf/loss/scaled_bce.yaml)."""
    (tmp_path / "project").mkdir()
    return write_user_project(tmp_path / "project")


def _env(project: Path) -> dict:
    return os.environ | {"PYTHONPATH": os.pathsep.join([str(project), os.environ.get("PYTHONPATH", "")])}


def _records(runs: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(runs.glob(f"*/{METRICS_FILE}"))]


@pytest.mark.slow
def test_own_loss_trains_sweeps_beside_focal_and_has_its_own_report_rows(tiny, tmp_path, project, monkeypatch):
    runs, conf, env = tmp_path / "runs", project / "ghmbench_conf", _env(project)
    trained = ghmbench_cli("train", *CUSTOM, *tiny, cwd=project, env=env)
    assert trained.returncode == 0, trained.stderr
    (record,) = _records(runs)
    assert Path(record["run_dir"]).name.startswith("scaled_bce-smooth_l1-s0-") and record["status"] == "completed"
    assert record["config"]["loss"] == {"name": "scaled_bce", "_target_": "my_pkg.losses.ScaledBCE", "scale": 2.0}
    assert all(h["loss_cls"] > 0 for h in record["history"]) and record["metrics"]["AR100"] is not None

    # beside focal in one sweep, from its YAML in the user's config folder: the same run as above
    swept = ghmbench_cli("sweep", "--config-dir", str(conf), "loss=focal,scaled_bce", *tiny, cwd=project, env=env)
    assert swept.returncode == 0, swept.stderr + swept.stdout
    assert "sweep: 2 runs, 1 with a complete record" in swept.stdout
    assert re.search(r"\[exists\] scaled_bce-smooth_l1-s0-" + record["run_key"], swept.stdout)
    assert re.search(r"\[completed\] focal-smooth_l1-s0-", swept.stdout)
    assert sorted(r["loss"] for r in _records(runs)) == ["focal", "scaled_bce"]

    reported = ghmbench_cli("report", str(runs), "--bootstrap", "0")
    assert reported.returncode == 0, reported.stderr
    summary = (runs / "report" / "summary.md").read_text()
    assert re.search(r"^\| scaled_bce +\| smooth L1 ", summary, flags=re.M) and re.search(
        r"^\| Focal +\| smooth L1 ", summary, flags=re.M
    )  # its own name beside the built-in display names
    assert re.search(r"^\| scaled_bce +\|", (runs / "report" / "loss_comparison.md").read_text(), flags=re.M)

    # the Python entry points: the same config, run key and record; the same tables
    import ghmbench

    monkeypatch.syspath_prepend(str(project))
    try:
        again = ghmbench.train(["loss=scaled_bce", *tiny], config_dir=conf)
        assert again["skipped"] and again["run_key"] == record["run_key"]
        result = ghmbench.report([runs], out=tmp_path / "api_report", bootstrap=0)
        assert set(result.tables["summary"].numbers["loss"]) == {"focal", "scaled_bce"}
        assert result.path == tmp_path / "api_report" / "report.md"
        assert (tmp_path / "api_report" / "summary.md").read_text() == summary
    finally:
        for name in [m for m in sys.modules if m == "my_pkg" or m.startswith("my_pkg.")]:
            del sys.modules[name]


@pytest.mark.slow
def test_protocol_tunes_and_selects_an_own_loss_beside_focal(tiny, tmp_path, project):
    # a loss whose name differs from its file: stage 2 must find it by its loss= option
    conf = project / "ghmbench_conf"
    (conf / "loss" / "scaled.yaml").write_text("name: scaled_x3\n_target_: my_pkg.losses.ScaledBCE\nscale: 3.0\n")
    args = [
        "--config-dir",
        str(conf),
        "loss=focal,scaled",
        'protocol.tune=["train.lr=0.0005,0.003"]',
        'protocol.tune_with=["seed=0"]',
        *tiny,
    ]
    result = ghmbench_cli("sweep", *args, cwd=project, env=_env(project))
    assert result.returncode == 0, result.stderr + result.stdout
    assert "protocol stage 1 (tuning): 4 runs: focal, scaled_x3 x train.lr=0.0005,0.003" in result.stdout
    records = _records(tmp_path / "runs")
    assert len(records) == 4 and {r["loss"] for r in records} == {"focal", "scaled_x3"}
    tuning = {r["config"]["train"]["lr"]: r["val_metrics"]["AP"] for r in records if r["loss"] == "scaled_x3"}
    best = max(tuning, key=tuning.get)
    assert f"protocol: scaled_x3 at train.lr={best}" in result.stdout
    assert re.search(r"^protocol stage 2 \(final\): (focal, )?scaled_x3(, focal)? at ", result.stdout, flags=re.M)
    reported = ghmbench_cli("report", str(tmp_path / "runs"), "--bootstrap", "0")
    assert reported.returncode == 0, reported.stderr
    assert re.search(r"^\| scaled_x3 ", (tmp_path / "runs" / "report" / "candidates.md").read_text(), flags=re.M)


@pytest.mark.slow
def test_bad_targets_are_one_line_exit_2_before_any_run(tiny, tmp_path, project):
    env, conf = _env(project), project / "ghmbench_conf"
    (conf / "loss" / "broken.yaml").write_text("name: broken\n_target_: no_such_pkg.Loss\n")
    (project / "my_pkg" / "boxes.py").write_text(
        "from torch import nn\n\nclass NoLevels(nn.Module):\n    def forward(self, pred, target, label_weight, "
        "avg_factor=None):\n        return pred.sum()\n"
    )
    (doc_error,) = re.findall(
        r"\nerror: (loss\._target_=my_pkg\.losses\.ScaledBCE does not accept .+)\n", OWN_LOSS_DOC.read_text()
    )
    cases = [
        (
            ["train", "loss=custom", "loss._target_=my_pkg.losses.ScaledBCE", "+loss.scale=2.0", "+loss.gama=1"],
            doc_error,
        ),
        (
            ["train", "loss=custom", "loss._target_=my_pkg.losses.Nope"],
            "loss._target_=my_pkg.losses.Nope cannot be imported: AttributeError: module 'my_pkg.losses' has no "
            "attribute 'Nope'",
        ),
        (
            ["train", "loss=custom"],
            "loss._target_ is not set (loss.name=custom); allowed: the dotted path of your loss class",
        ),
        (
            ["train", "regression=custom", "regression._target_=my_pkg.boxes.NoLevels"],
            "regression._target_=my_pkg.boxes.NoLevels: its forward(pred, target, label_weight, avg_factor=None) "
            "cannot be called as forward(pred, target, label_weight, avg_factor=None, level_ids=None)",
        ),
        (
            ["train", "loss=focal", "loss._target_=my_pkg.losses.ScaledBCE"],
            "loss._target_=my_pkg.losses.ScaledBCE with loss.name=focal: the built-in focal is "
            "ghmbench.losses.FocalLoss",
        ),
        (
            ["sweep", "--config-dir", str(conf), "loss=focal,broken"],
            "loss._target_=no_such_pkg.Loss cannot be imported: ModuleNotFoundError: No module named 'no_such_pkg' "
            "(is its module installed, or its folder on PYTHONPATH?) (in the sweep job loss=broken",
        ),
    ]
    for args, message in cases:
        result = ghmbench_cli(*args, *tiny, cwd=project, env=env)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith(f"error: {message}") and result.stderr.count("\n") == 1, (args, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr
        assert not (tmp_path / "runs").exists(), args  # nothing trained, not even the focal job of the sweep


# Run keys of built-in configurations computed by the code before losses had a _target_ (main at
# 75359b3); the last three are runs of results/loss_comparison (its runs.csv).
PINNED_KEYS = {
    "": "a05eb0c9dd2d",
    "loss=ce": "cc7400f0b8a4",
    "loss=ghm regression=ghm": "3c8d1875b8a6",
    "loss=focal loss.gamma=1 loss.alpha=0.5 regression=l1 seed=3": "1ea6cab3aec4",
    "loss=ce loss.alpha=null": "427851639a8c",
    "loss=ghm loss.bins=10 loss.momentum=0.5 loss.per_level=true": "8fc714e7ff65",
    "experiment=smoke": "a0ae03a57414",
    "experiment=smoke loss=ghm": "c8620f0be16f",
    "experiment=loss_comparison loss=focal regression=ghm train.lr=0.003 train.batch_size=8 seed=2": "f52beabf3aa6",
    "experiment=loss_comparison loss=ce regression=smooth_l1 seed=0 train.lr=0.003 train.batch_size=8": "3d91cf35bdcf",
    "experiment=loss_comparison loss=focal regression=ghm seed=2 train.lr=0.003 train.batch_size=16": "b7555f548acd",
    "experiment=loss_comparison loss=ghm regression=ghm seed=1 train.lr=0.003 train.batch_size=8": "b1d2604f6a2b",
}


@pytest.mark.parametrize("overrides", list(PINNED_KEYS))
def test_builtin_run_keys_are_unchanged(overrides):
    assert run_key(validate(compose_config(overrides.split()))) == PINNED_KEYS[overrides]


def test_own_loss_run_key_holds_its_target_and_parameters():
    def key(*overrides: str) -> str:
        return run_key(validate(compose_config(["loss=custom", "loss.name=mine", *overrides])))

    focal = key("loss._target_=ghmbench.losses.FocalLoss", "+loss.alpha=0.5")
    assert focal == key("loss._target_=ghmbench.losses.FocalLoss", "+loss.alpha=0.50")
    assert key("loss._target_=ghmbench.losses.FocalLoss", "+loss.gamma=1") == key(
        "loss._target_=ghmbench.losses.FocalLoss", "+loss.gamma=1.0"
    )  # untyped: 1 and 1.0 are one run
    assert focal != key("loss._target_=ghmbench.losses.CrossEntropyLoss", "+loss.alpha=0.5")
    assert focal != key("loss._target_=ghmbench.losses.FocalLoss", "+loss.alpha=0.25")
    assert focal != run_key(
        validate(compose_config(["loss=focal", "loss.alpha=0.5"]))
    )  # a custom loss is never a built-in run
    with pytest.raises(
        ConfigError, match=r"^loss\.name='a b' is not allowed; allowed: ce, focal, ghm, qfl, vfl, or a name of your own"
    ):
        key("loss.name=a b", "loss._target_=ghmbench.losses.FocalLoss")


def test_regression_custom_builds_its_target_with_its_arguments():
    from ghmbench.detection.criterion import DetectionCriterion

    cfg = validate(
        compose_config(
            [
                "regression=custom",
                "regression.name=l1_x2",
                "regression._target_=ghmbench.losses.L1Loss",
                "+regression.loss_weight=2.0",
            ]
        )
    )
    criterion = DetectionCriterion.from_config(cfg)
    cls, box = criterion.cls_loss, criterion.box_loss
    assert type(cls) is losses.FocalLoss and type(box) is losses.L1Loss and box.loss_weight == 2.0
    assert run_key(cfg) != run_key(validate(compose_config(["regression=l1", "regression.loss_weight=2.0"])))


def _losses_before_targets(cfg):
    """The losses before losses had a _target_ (the closed if/elif), the reference."""
    loss_cfg, box_cfg = cfg.loss, cfg.regression
    if loss_cfg.name == "ce":
        cls = losses.CrossEntropyLoss(alpha=loss_cfg.alpha, loss_weight=loss_cfg.loss_weight)
    elif loss_cfg.name == "focal":
        cls = losses.FocalLoss(alpha=loss_cfg.alpha, gamma=loss_cfg.gamma, loss_weight=loss_cfg.loss_weight)
    else:
        cls = losses.GHMC(
            bins=loss_cfg.bins,
            momentum=loss_cfg.momentum,
            loss_weight=loss_cfg.loss_weight,
            per_level=loss_cfg.per_level,
            sync=loss_cfg.sync,
        )
    if box_cfg.name == "smooth_l1":
        box = losses.SmoothL1Loss(beta=box_cfg.beta, loss_weight=box_cfg.loss_weight)
    elif box_cfg.name == "l1":
        box = losses.L1Loss(loss_weight=box_cfg.loss_weight)
    else:
        box = losses.GHMR(
            mu=box_cfg.mu,
            bins=box_cfg.bins,
            momentum=box_cfg.momentum,
            loss_weight=box_cfg.loss_weight,
            per_level=box_cfg.per_level,
            sync=box_cfg.sync,
        )
    return cls, box


@pytest.mark.parametrize(
    "overrides",
    [
        ["loss=ce", "loss.alpha=null", "regression=l1"],
        ["loss=focal", "loss.gamma=0.5", "regression=smooth_l1", "regression.beta=0.2"],
        ["loss=ghm", "loss.per_level=true", "loss.sync=false", "regression=ghm", "regression.mu=0.05"],
    ],
)
def test_builtin_losses_are_built_as_before(overrides):
    from ghmbench.detection.criterion import DetectionCriterion

    cfg = validate(compose_config(overrides))
    criterion = DetectionCriterion.from_config(cfg)
    for new, old in zip((criterion.cls_loss, criterion.box_loss), _losses_before_targets(cfg)):
        assert type(new) is type(old)
        plain = lambda m: {k: v for k, v in vars(m).items() if not k.startswith("_") and k != "training"}  # noqa: E731
        assert plain(new) == plain(old)
        assert new.state_dict().keys() == old.state_dict().keys()
        assert all(torch.equal(new.state_dict()[k], old.state_dict()[k]) for k in new.state_dict())


@pytest.mark.slow
def test_builtin_losses_train_to_the_same_metrics_as_before(tiny, tmp_path, monkeypatch):
    from ghmbench.detection.criterion import DetectionCriterion
    from ghmbench.run import training

    overrides = [*tiny, "loss=ghm", "regression=ghm", "train.epochs=1", "train.num_threads=1"]
    now = training.run(validate(compose_config(overrides)))

    def before_targets(cls, cfg):
        return cls(*_losses_before_targets(cfg), cfg.model.fg_iou, cfg.model.bg_iou, cfg.model.allow_low_quality)

    monkeypatch.setattr(DetectionCriterion, "from_config", classmethod(before_targets))
    before = training.run(validate(compose_config([*overrides, f"paths.runs_dir={tmp_path / 'before'}"])))
    assert now["run_key"] == before["run_key"] and now["run_dir"] != before["run_dir"]
    assert (
        now["history"] == before["history"]
        and now["metrics"] == before["metrics"]
        and now["g_hist"] == before["g_hist"]
    )
