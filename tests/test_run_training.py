"""Real training on tiny data, real COCO evaluation, the CLI run as a user runs it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from ghmbench.config.compose import compose_config, validate
from ghmbench.data.builder import build_datasets
from ghmbench.detection.evaluation import coco_evaluate
from ghmbench.run.training import run
from ghmbench.store.checkpoint import CHECKPOINT_FILE, load_checkpoint
from ghmbench.store.fileio import write_text
from ghmbench.store.records import METRICS_FILE
from tests.conftest import ghmbench_cli, ghmbench_exe


def _cfg(*overrides: str):
    return validate(compose_config(list(overrides)))


@pytest.mark.slow
def test_cli_train_end_to_end(tiny, tmp_path):
    result = ghmbench_cli("train", "loss=focal", "regression=ghm", "seed=3", *tiny)
    assert result.returncode == 0, result.stderr
    folders = list((tmp_path / "runs").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("focal-ghm-s3-")
    folder = folders[0]
    assert {"config.yaml", METRICS_FILE, "detections.json", "train.log", CHECKPOINT_FILE} <= {
        p.name for p in folder.iterdir()
    }
    record = json.loads((folder / METRICS_FILE).read_text())
    assert record["status"] == "completed" and record["seed"] == 3 and record["epochs_done"] == 2
    assert set(record["metrics"]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"}
    assert set(record["per_class_AP"]) == {str(i) for i in range(10)}
    assert record["versions"]["torch"] and record["wall_time_s"] > 0
    assert "AP50" in result.stdout and str(folder) in result.stdout.replace("\n", "")
    # detections.json re-evaluates to the recorded metrics
    detections = json.loads((folder / "detections.json").read_text())
    assert detections and {"image_id", "category_id", "bbox", "score"} <= set(detections[0])
    val = build_datasets(_cfg(*tiny)).val
    again = coco_evaluate(val.coco_ground_truth(), detections)
    assert again["AP"] == pytest.approx(record["metrics"]["AP"], abs=1e-12)
    # the checkpoint loads with weights_only=True and holds the GHM running counts
    ckpt = load_checkpoint(folder / CHECKPOINT_FILE)
    assert ckpt["epoch"] == 2 and ckpt["box_loss"]["acc_sum"].sum() > 0
    # the same command again reuses the finished record instead of retraining
    again_cli = ghmbench_cli("train", "loss=focal", "regression=ghm", "seed=3", *tiny)
    assert again_cli.returncode == 0 and "existing record" in again_cli.stdout


@pytest.mark.slow
def test_same_seed_gives_identical_metrics(tiny, tmp_path):
    first = run(_cfg(*tiny, "loss=ghm"))
    second = run(_cfg(*tiny[:-2], f"paths.runs_dir={tmp_path / 'other'}", tiny[-1], "loss=ghm"))
    assert first["run_dir"] != second["run_dir"]
    assert first["history"] == second["history"]
    assert first["metrics"] == second["metrics"] and first["per_class_AP"] == second["per_class_AP"]


@pytest.mark.slow
def test_training_learns_and_resumes_from_checkpoint(tiny):
    cfg = _cfg(*tiny, "loss=ce", "dataset.num_train=128", "train.epochs=3")
    record = run(cfg)
    losses = [h["loss"] for h in record["history"]]
    assert losses[-1] < losses[0]
    assert record["metrics"]["AR100"] > 0
    # a run killed after its last checkpoint (no metrics.json yet) resumes instead of retraining
    folder = Path(record["run_dir"])
    (folder / METRICS_FILE).unlink()
    resumed = run(cfg)
    assert resumed["history"] == record["history"] and resumed["metrics"] == record["metrics"]
    assert "resumed from" in (folder / "train.log").read_text()


@pytest.mark.slow
def test_diverging_run_is_recorded_as_diverged(tiny, tmp_path):
    result = ghmbench_cli("train", *tiny, "loss=ce", "train.lr=1e30", "train.grad_clip=null", "train.warmup_iters=0")
    assert result.returncode == 1
    assert "diverged" in result.stdout and "Traceback" not in result.stderr
    (folder,) = (tmp_path / "runs").iterdir()
    record = json.loads((folder / METRICS_FILE).read_text())
    assert record["status"] == "diverged" and record["metrics"] is None
    assert record["diverged_at_step"] >= 1
    assert "non-finite loss" in (folder / "train.log").read_text()


@pytest.mark.slow
def test_a_run_being_trained_elsewhere_is_not_touched(tiny):
    import fcntl

    from ghmbench.store.lock import RunLocked
    from ghmbench.store.records import run_dir

    cfg = _cfg(*tiny)
    folder = run_dir(cfg)
    folder.mkdir(parents=True)
    (folder / CHECKPOINT_FILE).write_bytes(b"another process's checkpoint")
    with open(folder / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(RunLocked):
            run(cfg, force=True)
    assert (folder / CHECKPOINT_FILE).read_bytes() == b"another process's checkpoint"


@pytest.mark.slow
def test_resnet18_backbone_trains_and_loads_local_weights(tiny, tmp_path):
    import torch
    import torchvision

    weights = tmp_path / "resnet18.pth"
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), weights)
    record = run(_cfg(*tiny, "model=resnet18", f"model.weights_path={weights}", "train.epochs=1"))
    assert record["status"] == "completed" and record["metrics"]["AR100"] is not None
    from ghmbench.detection.model import ResNet18Backbone

    backbone = ResNet18Backbone(in_channels=1, weights_path=str(weights))
    # grey input: the first convolution is the RGB filters summed (a grey image replicated to RGB
    # gives the same response), the rest loaded as saved
    torch.testing.assert_close(backbone.stem[0].weight, reference.conv1.weight.sum(dim=1, keepdim=True))
    torch.testing.assert_close(backbone.layers[3][1].conv2.weight, reference.layer4[1].conv2.weight)


@contextlib.contextmanager
def _umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.slow
def test_records_are_readable_under_the_users_umask(tiny, tmp_path):
    """A colleague's report on a shared file system reads the records: their mode is what open()
    gives under the umask (mkstemp's 0o600 would hide them), and a private umask keeps them private."""
    with _umask(0o022):
        record = run(_cfg(*tiny, "train.epochs=1"))
    folder = Path(record["run_dir"])
    modes = {
        name: stat.S_IMODE((folder / name).stat().st_mode)
        for name in (METRICS_FILE, "config.yaml", CHECKPOINT_FILE, "detections.json")
    }
    assert modes == dict.fromkeys(modes, 0o644)
    with _umask(0o027):
        write_text(tmp_path / "group_only.txt", "x")
    assert stat.S_IMODE((tmp_path / "group_only.txt").stat().st_mode) == 0o640
    assert not list(folder.glob(".*.tmp")) and not list(tmp_path.glob(".*.tmp"))  # every temporary file renamed


@pytest.mark.slow
def test_a_run_logged_to_a_file_prints_a_line_per_epoch_and_validation(tiny, tmp_path):
    """Where stdout is not a terminal (CI logs, files, pipes) a rich bar would be drawn once, at the
    end: the run prints lines instead, one per epoch (loss, images/s, ETA) and one per validation."""
    log = tmp_path / "stdout.log"
    with open(log, "w") as stdout:
        result = subprocess.run(
            [ghmbench_exe(), "train", *tiny, "train.epochs=3", "train.eval_every=2", "train.progress=true"],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    assert result.returncode == 0, result.stderr
    lines = log.read_text().splitlines()
    epochs = [
        line
        for line in lines
        if re.search(r" epoch \d/3: loss \d\.\d{4} \(cls \d\.\d{4}, box \d\.\d{4}\), [\d.]+ images/s, ETA \d+s$", line)
    ]
    validations = [line for line in lines if re.search(r" epoch \d/3: validation AP \d\.\d{4}$", line)]
    assert [line.split(":")[0].split()[-1] for line in epochs] == ["1/3", "2/3", "3/3"], lines
    assert [line.split(":")[0].split()[-1] for line in validations] == ["2/3", "3/3"], lines
    assert epochs[-1].endswith("ETA 0s") and not any(
        re.search(r"\d+/\d+ +loss \d", line) for line in lines
    )  # and no bar drawn at the end
