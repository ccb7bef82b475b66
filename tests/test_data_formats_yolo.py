"""dataset=yolo (ultralytics data.yaml + images/ + labels/*.txt): names as list or mapping, folders
or list files, every bad-label case in both on_invalid modes, training through the CLI, and the
`data export --format yolo` round trip."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import TINY_TRAIN, ghmbench_cli
from disk_datasets import make_yolo, yolo_overrides

from ghmbench.config.compose import compose_config, validate
from ghmbench.data.builder import build_datasets
from ghmbench.data.digits import DigitsParams, load_digits_detection
from ghmbench.errors import ConfigError, DatasetError


@pytest.fixture(scope="module")
def yolo_root(tmp_path_factory) -> Path:
    return make_yolo(tmp_path_factory.mktemp("yolo"))


def _load(overrides: list[str]):
    return build_datasets(validate(compose_config(overrides)))


@pytest.mark.parametrize("names_as_dict, list_files", [(False, False), (True, True)])
def test_names_as_list_or_mapping_folders_or_list_files(tmp_path, names_as_dict, list_files):
    root = make_yolo(tmp_path / "y", num_train=8, num_val=4, names_as_dict=names_as_dict, list_files=list_files)
    train, val, test = _load([*yolo_overrides(root), f"paths.cache_dir={tmp_path}"])
    assert train.class_names == [f"digit{c}" for c in range(10)] and test is None
    assert (len(train), len(val)) == (8, 4) and len(train.boxes[-1]) == 0  # the image without a label file
    assert all(len(b) for b in train.boxes[:-1]) and train.dropped == {} and val.dropped == {}
    with pytest.raises(ConfigError, match=r"dataset.classes=\['a'\] differs from the names of .*data.yaml"):
        validate(compose_config([*yolo_overrides(root), "dataset.classes=[a]"]))


@pytest.mark.slow
def test_yolo_trains_through_the_cli(yolo_root, tmp_path):
    r = ghmbench_cli(
        "train",
        *TINY_TRAIN,
        *yolo_overrides(yolo_root),
        f"paths.runs_dir={tmp_path / 'runs'}",
        f"paths.cache_dir={tmp_path / 'c'}",
    )
    assert r.returncode == 0, r.stderr
    (folder,) = [p.parent for p in (tmp_path / "runs").glob("*/metrics.json")]
    record = json.loads((folder / "metrics.json").read_text())
    assert record["status"] == "completed" and record["dataset"]["classes"] == [f"digit{c}" for c in range(10)]
    assert record["config"]["dataset"]["classes"] == record["dataset"]["classes"]  # the names are in the run key
    dets = json.loads((folder / "detections.json").read_text())
    assert dets and {d["category_id"] for d in dets} <= set(range(1, 11))


BAD = {
    "fields": ("0 0.5 0.5 0.2\n", "line 1: 4 fields; allowed: 5 fields: class cx cy w h", "bad_label_line"),
    "class": (
        "10 0.5 0.5 0.2 0.2\n",
        "line 1: class id 10 is out of range; allowed: 0..9 (digit0, digit1,",
        "class_out_of_range",
    ),
    "coords": (
        "1 0.5 0.5 1.2 0.2\n",
        "line 1: cx cy w h 0.5 0.5 1.2 0.2 leave [0, 1]; allowed: normalised coordinates in [0, 1]",
        "coordinates_outside_image",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", [*BAD, "orphan"])
def test_bad_labels_are_one_line_or_dropped(tmp_path, case):
    root = make_yolo(tmp_path / "y", num_train=8, num_val=4)
    base = [*yolo_overrides(root), f"paths.cache_dir={tmp_path}"]
    clean_objects = sum(map(len, _load(base)[0].boxes))
    if case == "orphan":
        (root / "labels" / "train" / "9999.txt").write_text("1 0.5 0.5 0.2 0.2\n")
        expected, reason = "9999.txt: has no image; allowed: an image of the same name in", "label_without_image"
    else:
        line, expected, reason = BAD[case]
        label = root / "labels" / "train" / "0002.txt"
        label.write_text(line + label.read_text())
        expected = "0002.txt: " + expected
    with pytest.raises(DatasetError, match="data.yaml \\(train\\): .*" + re.escape(expected)):
        _load(base)
    train = _load([*base, "dataset.on_invalid=skip"])[0]
    assert train.dropped == {reason: 1} and sum(map(len, train.boxes)) == clean_objects  # the bad line alone is dropped
    if case == "class":
        r = ghmbench_cli("data", "check", *base)
        assert (
            r.returncode == 2
            and "Traceback" not in r.stderr
            and len(r.stderr.strip().splitlines()) == 1
            and expected in r.stderr
        )


@pytest.mark.slow
def test_export_yolo_round_trip_reproduces_the_digits(tmp_path):
    out = tmp_path / "export"
    size = ["dataset.num_train=24", "dataset.num_val=8", "dataset.num_test=4"]
    r = ghmbench_cli(
        "data", "export", "digits", "--format", "yolo", str(out), *size, f"paths.cache_dir={tmp_path / 'c'}"
    )
    assert r.returncode == 0, r.stderr
    assert f"ghmbench train dataset=yolo dataset.root={out} dataset.image_size=64 dataset.channels=1" in r.stdout
    original = load_digits_detection(DigitsParams(num_train=24, num_val=8, num_test=4), None)
    loaded = _load(
        [
            "dataset=yolo",
            f"dataset.root={out}",
            "dataset.image_size=64",
            "dataset.channels=1",
            f"paths.cache_dir={tmp_path / 'c'}",
        ]
    )
    for a, b in zip(original, loaded):
        assert len(a) == len(b) and b.class_names == a.class_names
        assert torch.equal(a.images, b.images)
        for k in range(len(a)):
            assert torch.equal(a.labels[k], b.labels[k])
            torch.testing.assert_close(
                a.boxes[k], b.boxes[k], atol=1e-3, rtol=0
            )  # 6 decimals of the normalised coordinates
