"""COCO-format and VOC datasets on disk: end to end through the CLI, original coordinates,
every invalid-input case in both `on_invalid` modes, caching, export and `data check`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY_TRAIN, ghmbench_cli
from disk_datasets import coco_overrides, make_coco, make_voc

from ghmbench.config.compose import compose_config, validate
from ghmbench.data.builder import build_datasets
from ghmbench.detection.evaluation import coco_evaluate, coco_results
from ghmbench.errors import DatasetError


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    return make_coco(tmp_path_factory.mktemp("coco"))


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory) -> Path:
    return make_voc(tmp_path_factory.mktemp("voc"))


def _load(overrides: list[str]):
    return build_datasets(validate(compose_config(overrides)))


def _perfect(split) -> list[dict]:
    """Ground-truth boxes in the network's input frame, mapped back like predictions are."""
    dets = []
    for k in range(len(split)):
        n = len(split.boxes[k])
        dets += coco_results(split, k, split.boxes[k], torch.ones(n), split.labels[k])
    return dets


def test_perfect_predictions_in_original_coordinates_score_ap_1(coco_root, tmp_path):
    train, val, _ = _load([*coco_overrides(coco_root), f"paths.cache_dir={tmp_path}"])
    assert val.images.shape[1:] == (3, 64, 64)  # letterboxed, grey and RGB files alike
    assert {tuple(s) for s in val.orig_sizes} > {(64, 64)}  # several original sizes
    assert val.category_ids == [10 * (c + 1) for c in range(10)] and val.image_ids[0] == 1000
    original = json.loads((coco_root / "annotations" / "instances_val.json").read_text())
    metrics = coco_evaluate(original, _perfect(val))
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AP75"] == pytest.approx(1.0)
    shifted = [{**d, "bbox": [d["bbox"][0] * 1.25, d["bbox"][1], d["bbox"][2], d["bbox"][3]]} for d in _perfect(val)]
    assert coco_evaluate(original, shifted)["AP"] < 0.9  # the check can fail
    # boxes inside the letterbox: longer side = 64, the padding holds no box
    for boxes, (h, w), (sx, sy) in zip(val.boxes, val.orig_sizes, val.scales.tolist()):
        assert (boxes[:, 2] <= w * sx + 1e-3).all() and (boxes[:, 3] <= h * sy + 1e-3).all()
        assert max(round(w * sx), round(h * sy)) == 64


@pytest.mark.slow
def test_coco_trains_end_to_end_and_detections_use_original_ids(coco_root, tmp_path):
    r = ghmbench_cli(
        "train",
        *TINY_TRAIN,
        *coco_overrides(coco_root),
        f"paths.runs_dir={tmp_path}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    )
    assert r.returncode == 0, r.stderr
    (folder,) = [p for p in tmp_path.iterdir() if (p / "metrics.json").exists()]
    record = json.loads((folder / "metrics.json").read_text())
    assert record["status"] == "completed" and record["dataset"]["train_images"] == 48
    assert record["dataset"]["dropped"] == {"train": {}, "val": {}}
    dets = json.loads((folder / "detections.json").read_text())
    assert dets and {d["category_id"] for d in dets} <= {10 * (c + 1) for c in range(10)}
    assert {d["image_id"] for d in dets} <= {1000 + 7 * k for k in range(12)}
    original = json.loads((coco_root / "annotations" / "instances_val.json").read_text())
    widths = {im["id"]: im["width"] for im in original["images"]}
    assert any(d["bbox"][0] + d["bbox"][2] > 64 for d in dets if widths[d["image_id"]] > 64)  # not in the 64 px frame
    assert coco_evaluate(original, dets)["AP"] == pytest.approx(record["metrics"]["AP"])


@pytest.mark.slow
def test_export_digits_round_trip_trains_identically(tmp_path):
    out = tmp_path / "export"
    size = ["dataset.num_train=64", "dataset.num_val=16"]
    r = ghmbench_cli(
        "data", "export", "digits", "--format", "coco", str(out), *size, f"paths.cache_dir={tmp_path / 'c'}"
    )
    assert r.returncode == 0, r.stderr
    assert "dataset.channels=1" in r.stdout and len(list((out / "train").glob("*.png"))) == 64
    common = [*TINY_TRAIN, f"paths.cache_dir={tmp_path / 'c'}", "train.epochs=1"]
    a = ghmbench_cli("train", *common, *size, f"paths.runs_dir={tmp_path / 'a'}")
    # the digits' detector and no augmentation, as the digits train (photos get model=fitted and flips, zooms)
    same = ["dataset.channels=1", "model=small", "dataset.hflip=0", "dataset.scale_jitter=[1,1]"]
    b = ghmbench_cli("train", *common, *coco_overrides(out), *same, f"paths.runs_dir={tmp_path / 'b'}")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    ra, rb = (json.loads(next((tmp_path / x).glob("*/metrics.json")).read_text()) for x in "ab")
    assert ra["metrics"] == rb["metrics"] and ra["history"] == rb["history"]


@pytest.mark.slow
def test_voc_end_to_end_and_difficult_objects_ignored(voc_root, tmp_path):
    overrides = ["dataset=voc", f"dataset.root={voc_root}", "dataset.image_size=64"]
    train, val, _ = _load([*overrides, f"paths.cache_dir={tmp_path}"])
    assert train.class_names[0] == "aeroplane" and len(train) == 40 and len(val) == 12
    gt = val.coco_ground_truth()
    difficult = [a for a in gt["annotations"] if a["iscrowd"]]
    assert (
        len(difficult) == 1
        and len(val.boxes[0]) == sum(a["image_id"] == val.image_ids[0] for a in gt["annotations"]) - 1
    )
    assert coco_evaluate(gt, _perfect(val))["AP"] == pytest.approx(1.0)  # difficult not detected: no miss
    d = difficult[0]
    extra = {"image_id": d["image_id"], "category_id": d["category_id"], "bbox": d["bbox"], "score": 0.5}
    assert coco_evaluate(gt, [*_perfect(val), extra])["AP"] == pytest.approx(1.0)  # detected: no false positive
    r = ghmbench_cli(
        "train", *TINY_TRAIN, *overrides, f"paths.runs_dir={tmp_path / 'runs'}", f"paths.cache_dir={tmp_path}"
    )
    assert r.returncode == 0, r.stderr
    record = json.loads(next((tmp_path / "runs").glob("*/metrics.json")).read_text())
    assert record["status"] == "completed" and record["metrics"]["AP"] is not None


@pytest.mark.slow
def test_voc_missing_and_download_is_opt_in(tmp_path):
    r = ghmbench_cli("data", "check", "dataset=voc", f"dataset.root={tmp_path}")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "VOC2007" in r.stderr and "dataset.download=true" in r.stderr


# ----------------------------------------------------------------------------- invalid input


def _broken_coco(root: Path, case: str) -> tuple[Path, str]:
    """Copy of a fresh COCO dataset with one defect in the val split; (root, expected message part)."""
    make_coco(root, num_train=8, num_val=6, crowd=False)
    ann_file = root / "annotations" / "instances_val.json"
    gt = json.loads(ann_file.read_text())
    img, ann = gt["images"][2], gt["annotations"][3]
    expected = {
        "missing_image": f"image id {img['id']}: file {root / 'val' / img['file_name']} does not exist",
        "unreadable_image": f"image id {img['id']}: file {root / 'val' / img['file_name']} cannot be read",
        "image_size_mismatch": f"image id {img['id']}: file {root / 'val' / img['file_name']} is "
        f"{img['width']}x{img['height']} but its record says {img['width'] + 5}x{img['height']}",
        "unknown_image": f"annotation id {ann['id']}: image_id 999 is not in 'images'",
        "unknown_category": f"annotation id {ann['id']}: category_id 77 is not a known category",
        "non_positive_size": f"annotation id {ann['id']}: bbox width -3 and height",
        "non_finite_box": f"annotation id {ann['id']}: bbox [",
        "box_outside_image": f"annotation id {ann['id']}: bbox [",
        "empty": "empty dataset",
    }[case]
    if case == "missing_image":
        (root / "val" / img["file_name"]).unlink()
    elif case == "unreadable_image":
        (root / "val" / img["file_name"]).write_bytes(b"not an image at all")
    elif case == "image_size_mismatch":
        img["width"] += 5
    elif case == "unknown_image":
        ann["image_id"] = 999
    elif case == "unknown_category":
        ann["category_id"] = 77
    elif case == "non_positive_size":
        ann["bbox"][2] = -3
    elif case == "non_finite_box":
        ann["bbox"][1] = float("nan") if ann["id"] % 2 else float("inf")
    elif case == "box_outside_image":
        owner = next(i for i in gt["images"] if i["id"] == ann["image_id"])
        ann["bbox"][0] = owner["width"] - ann["bbox"][2] / 2  # half of it beyond the right edge
    elif case == "empty":
        gt["images"], gt["annotations"] = [], []
    ann_file.write_text(json.dumps(gt))  # NaN / Infinity are what Python's json writes
    return root, expected


CASES = [
    "missing_image",
    "unreadable_image",
    "image_size_mismatch",
    "unknown_image",
    "unknown_category",
    "non_positive_size",
    "non_finite_box",
    "box_outside_image",
    "empty",
]


@pytest.mark.parametrize("case", CASES)
def test_invalid_input_error_and_skip(case, tmp_path):
    root, expected = _broken_coco(tmp_path / "d", case)
    base = [*coco_overrides(root), f"paths.cache_dir={tmp_path / 'c'}"]
    with pytest.raises(DatasetError) as err:
        _load(base)
    message = str(err.value)
    assert (
        "\n" not in message and str(root / "annotations" / "instances_val.json") in message and expected in message
    ), message
    if case == "non_finite_box":
        assert "NaN or infinite" in message
    if case == "empty":
        with pytest.raises(DatasetError, match="empty dataset"):
            _load([*base, "dataset.on_invalid=skip"])  # nothing to skip to
        return
    assert "dataset.on_invalid=skip drops it" in message
    reference_val = _load(
        [
            *coco_overrides(make_coco(tmp_path / "ok", num_train=8, num_val=6, crowd=False)),
            f"paths.cache_dir={tmp_path / 'c'}",
        ]
    )[1]
    train, val, _ = _load([*base, "dataset.on_invalid=skip"])
    assert val.dropped == {case: 1} and train.dropped == {}
    kept_boxes = sum(map(len, val.boxes))
    if case in ("missing_image", "unreadable_image", "image_size_mismatch"):
        assert len(val) == len(reference_val) - 1 and kept_boxes == sum(map(len, reference_val.boxes)) - len(
            reference_val.boxes[2]
        )
    else:
        assert len(val) == len(reference_val) and kept_boxes == sum(map(len, reference_val.boxes)) - 1


@pytest.mark.slow
def test_invalid_input_through_the_cli_keeps_what_exists(tmp_path):
    root, expected = _broken_coco(tmp_path / "d", "unknown_category")
    runs = tmp_path / "runs"
    args = [*TINY_TRAIN, *coco_overrides(root), f"paths.runs_dir={runs}", f"paths.cache_dir={tmp_path / 'c'}"]
    r = ghmbench_cli("train", *args)
    assert r.returncode == 2 and "Traceback" not in r.stderr and expected in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = ghmbench_cli("train", *args, "dataset.on_invalid=skip")
    assert r.returncode == 0, r.stderr
    records = [json.loads(p.read_text()) for p in runs.glob("*/metrics.json")]
    skipped = [x for x in records if x["status"] == "completed"]
    assert len(skipped) == 1 and skipped[0]["dataset"]["dropped"] == {"train": {}, "val": {"unknown_category": 1}}


def test_voc_unknown_class_names_the_xml_object(voc_root, tmp_path):
    import shutil

    root = tmp_path / "voc"
    shutil.copytree(voc_root, root)
    xml = root / "VOCdevkit/VOC2007/Annotations/005003.xml"
    xml.write_text(xml.read_text().replace("<name>", "<name>x", 1))
    base = ["dataset=voc", f"dataset.root={root}", "dataset.image_size=64", f"paths.cache_dir={tmp_path}"]
    with pytest.raises(
        DatasetError,
        match=(
            r"005003\.xml: object 1 \('x\w+'\): class 'x\w+' is not one of the dataset's classes; allowed: one of "
            r"aeroplane, bicycle, .*tvmonitor \(dataset.classes\)"
        ),
    ):
        _load(base)
    assert _load([*base, "dataset.on_invalid=skip"])[1].dropped == {"unknown_category": 1}


# ----------------------------------------------------------------------------- loading


def test_lazy_loading_with_workers_matches_the_cache(coco_root, tmp_path):
    from ghmbench.data.splits import iterate_batches

    base = [*coco_overrides(coco_root), f"paths.cache_dir={tmp_path}"]
    cached = _load(base)[0]
    assert len(list(tmp_path.glob("images-*.npy"))) == 2  # one per split, reused next time
    again = _load(base)[0]
    assert torch.equal(cached.images, again.images)
    lazy = _load([*base, "dataset.cache_images=false", "dataset.num_workers=2"])[0]
    assert not isinstance(lazy.images, torch.Tensor)
    gen = [torch.Generator().manual_seed(5) for _ in range(2)]
    pairs = zip(iterate_batches(cached, 16, True, gen[0]), iterate_batches(lazy, 16, True, gen[1]))
    for (xa, ba, la, ia), (xb, bb, lb, ib) in pairs:
        assert ia == ib and torch.equal(xa, xb) and all(torch.equal(u, v) for u, v in zip(ba, bb))


@pytest.mark.slow
def test_data_check_prints_anchor_imbalance(tmp_path):
    r = ghmbench_cli("data", "check", "dataset.num_train=64", "dataset.num_val=16", f"paths.cache_dir={tmp_path}")
    assert r.returncode == 0, r.stderr
    for row in [
        "positive per image",
        "negative per image",
        "ignored per image",
        "negative : positive",
        "objects per class",
    ]:
        assert row in r.stdout
    line = next(x for x in r.stdout.splitlines() if "negative : positive" in x)
    ratio = int(line.split("│")[2].split(":")[0])
    assert ratio > 10  # background anchors outnumber positives by far: the imbalance these losses treat


@pytest.mark.slow
def test_comparison_preset_is_in_the_papers_imbalance_regime(tmp_path):
    """The fair comparison's data gives >= 1,000 negative anchors per positive, on every split."""
    r = ghmbench_cli(
        "data",
        "check",
        "experiment=loss_comparison",
        "dataset.num_train=200",
        "dataset.num_val=100",
        "dataset.num_test=100",
        f"paths.cache_dir={tmp_path}",
    )
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if "negative : positive" in x)
    ratios = [int(cell.split(":")[0]) for cell in line.split("│")[2:5]]
    assert len(ratios) == 3 and min(ratios) >= 1000, line  # train, val and test
    assert "test" in r.stdout


def test_digits_sized_presets_point_to_budget_none(coco_root):
    from ghmbench.errors import ConfigError

    with pytest.raises(
        ConfigError,
        match=(
            r"^budget=short with dataset=coco: a budget sizes dataset=digits; allowed: dataset=digits, or "
            r"budget=none$"
        ),
    ):
        validate(compose_config(["budget=short", *coco_overrides(coco_root)]))
    # the settings presets draw each seed's data anew; data read from disk has one draw, so there the
    # seeds vary the training only (issue 27: the fallback instead of a refusal)
    grid = validate(compose_config(["experiment=focal_grid", *coco_overrides(coco_root)]))
    assert grid.dataset.name == "coco" and grid.protocol.seed_draws and "seed" not in grid.dataset
    # the fair comparison's preset sets no digits-only key: it runs on one's own data as it is
    cfg = validate(compose_config(["experiment=loss_comparison", *coco_overrides(coco_root)]))
    assert cfg.dataset.name == "coco" and cfg.protocol.tune


def test_relative_dataset_paths_become_absolute(coco_root, monkeypatch):
    monkeypatch.chdir(coco_root.parent)
    cfg = validate(
        compose_config(
            ["dataset=coco", f"dataset.root={coco_root.name}", "dataset.train_split=train", "dataset.val_split=val"]
        )
    )
    assert cfg.dataset.root == str(coco_root.resolve())  # sweep jobs may start elsewhere


def test_broken_file_found_while_decoding_in_a_worker_is_one_line(coco_root, tmp_path):
    import shutil

    from ghmbench.data.splits import iterate_batches

    root = tmp_path / "coco"
    shutil.copytree(coco_root, root)
    train = _load(
        [*coco_overrides(root), "dataset.cache_images=false", "dataset.num_workers=1", f"paths.cache_dir={tmp_path}"]
    )[0]
    broken = root / "train" / "0005.png"
    broken.write_bytes(broken.read_bytes()[:60])  # header intact, pixels cut: found only when decoded
    with pytest.raises(DatasetError) as err:
        for _ in iterate_batches(train, 16, shuffle=False):
            pass
    assert "\n" not in str(err.value) and str(broken) in str(err.value) and "cannot decode image" in str(err.value)
