"""Datasets as people have them: VOC-format exports with their own class names, with and without
ImageSets (LabelImg), trained through the CLI; dataset paths checked before any run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_TRAIN, ghmbench_cli
from disk_datasets import make_voc

from ghmbench.config.compose import compose_config, validate
from ghmbench.data.builder import build_datasets
from ghmbench.data.formats.voc import VOC_CLASSES
from ghmbench.errors import ConfigError, DatasetError
from ghmbench.store.records import run_key

NAMES = ["zebra", "apple", "kiwi", "mango", "lemon", "fig", "plum", "pear", "lime", "date"]  # digit -> class name


@pytest.fixture(scope="module")
def own_voc(tmp_path_factory) -> Path:
    return make_voc(tmp_path_factory.mktemp("own_voc"), names=NAMES)


def _cfg(overrides: list[str]):
    return validate(compose_config(overrides))


def _train_args(tmp_path: Path, overrides: list[str]) -> list[str]:
    return [
        *TINY_TRAIN,
        *overrides,
        "dataset.image_size=64",
        f"paths.runs_dir={tmp_path / 'runs'}",
        f"paths.cache_dir={tmp_path / 'c'}",
    ]


def _train(tmp_path: Path, overrides: list[str]) -> tuple[dict, list[dict], Path]:
    r = ghmbench_cli("train", *_train_args(tmp_path, overrides))
    assert r.returncode == 0, r.stderr
    (folder,) = [p.parent for p in (tmp_path / "runs").glob("*/metrics.json")]
    return (
        json.loads((folder / "metrics.json").read_text()),
        json.loads((folder / "detections.json").read_text()),
        folder,
    )


@pytest.mark.slow
def test_voc_export_with_its_own_class_names_trains(own_voc, tmp_path):
    cfg = _cfg(["dataset=voc", f"dataset.root={own_voc}"])
    assert list(cfg.dataset.classes) == sorted(NAMES)  # sorted union over the training split, in the config and key
    assert run_key(cfg) != run_key(
        _cfg(
            [
                "dataset=voc",
                f"dataset.root={own_voc}",
                "dataset.classes=[zebra,apple,kiwi,mango,lemon,fig,plum,pear,lime,date]",
            ]
        )
    )
    record, dets, folder = _train(tmp_path, ["dataset=voc", f"dataset.root={own_voc}"])
    assert record["status"] == "completed" and record["dataset"]["classes"] == sorted(NAMES)
    assert record["config"]["dataset"]["classes"] == sorted(NAMES) and record["run_key"] == run_key(
        _cfg(_train_args(tmp_path, ["dataset=voc", f"dataset.root={own_voc}"]))
    )
    assert dets and {d["category_id"] for d in dets} <= set(range(1, 11))
    assert record["dataset"]["train_images"] == 40 and record["dataset"]["val_images"] == 12


def test_pascal_voc_keeps_its_20_names_and_run_key(tmp_path):
    root = make_voc(tmp_path / "pascal", num_train=8, num_val=4)
    cfg = _cfg(["dataset=voc", f"dataset.root={root}"])
    assert cfg.dataset.classes is None  # PASCAL detected: the key is the one recorded before classes existed
    train = build_datasets(
        _cfg(["dataset=voc", f"dataset.root={root}", "dataset.image_size=64", f"paths.cache_dir={tmp_path}"])
    )[0]
    assert train.class_names == VOC_CLASSES
    shorthand = build_datasets(
        _cfg(
            [
                "dataset=voc",
                f"dataset.root={make_voc(tmp_path / 'own', 8, 4, names=[*VOC_CLASSES[:9], 'zebra'])}",
                "dataset.classes=pascal",
                "dataset.on_invalid=skip",
                "dataset.image_size=64",
                f"paths.cache_dir={tmp_path}",
            ]
        )
    )[0]
    assert shorthand.class_names == VOC_CLASSES and shorthand.dropped["unknown_category"] > 0


@pytest.mark.slow
def test_classes_fix_the_order_and_other_classes_are_an_error_or_dropped(own_voc, tmp_path):
    base = [
        "dataset=voc",
        f"dataset.root={own_voc}",
        "dataset.image_size=64",
        f"paths.cache_dir={tmp_path}",
        "dataset.classes=[zebra,apple]",
    ]
    with pytest.raises(
        DatasetError,
        match=(
            r"\.xml: object \d+ \('\w+'\): class '\w+' is not one of the dataset's classes; allowed: one of zebra, "
            r"apple \(dataset.classes\)"
        ),
    ):
        build_datasets(_cfg(base))
    r = ghmbench_cli("data", "check", *base)
    assert (
        r.returncode == 2
        and "Traceback" not in r.stderr
        and len(r.stderr.strip().splitlines()) == 1
        and "allowed: one of zebra, apple" in r.stderr
    )
    train, val, _ = build_datasets(_cfg([*base, "dataset.on_invalid=skip"]))
    assert train.class_names == ["zebra", "apple"] and train.dropped["unknown_category"] > 0
    assert {int(x) for lab in train.labels for x in lab} == {0, 1}


@pytest.mark.parametrize("layout", ["labelimg", "flat", "cvat"])
def test_folder_without_imagesets_is_split_by_seed(tmp_path, layout):
    root = make_voc(
        tmp_path / layout,
        num_train=16,
        num_val=4,
        names=["even", "odd"] * 5,
        layout="devkit" if layout == "cvat" else layout,
    )  # every class in every split
    if layout == "cvat":  # CVAT's export: ImageSets/Main/default.txt only, under another year
        main = root / "VOCdevkit/VOC2007/ImageSets/Main"
        (main / "default.txt").write_text((main / "trainval.txt").read_text() + (main / "test.txt").read_text())
        (main / "trainval.txt").unlink()
        (main / "test.txt").unlink()
        (root / "VOCdevkit/VOC2007").rename(root / "VOCdevkit/VOC2012")
    (
        root
        / ("Annotations" if layout == "labelimg" else "VOCdevkit/VOC2012/Annotations" if layout == "cvat" else ".")
        / "orphan.xml"
    ).write_text("<annotation><filename>orphan.jpg</filename></annotation>")
    base = [
        "dataset=voc",
        f"dataset.root={root}",
        "dataset.image_size=64",
        f"paths.cache_dir={tmp_path}",
        "dataset.val_fraction=0.25",
        "dataset.test_fraction=0.1",
    ]
    train, val, test = build_datasets(_cfg(base))
    assert (len(train), len(val), len(test)) == (13, 5, 2)  # 20 annotated images (the orphan has none)
    files = lambda s: sorted(Path(r["file_name"]).name for r in s.ground_truth["images"])  # noqa: E731
    assert not set(files(train)) & set(files(val)) and not set(files(val)) & set(files(test))
    assert files(build_datasets(_cfg(base))[1]) == files(val)  # seeded
    assert files(build_datasets(_cfg([*base, "dataset.split_seed=1"]))[1]) != files(val)
    assert any(a["iscrowd"] for s in (train, val, test) for a in s.ground_truth["annotations"])  # the difficult object


@pytest.mark.slow
def test_labelimg_export_trains_through_the_cli(tmp_path):
    root = make_voc(tmp_path / "li", num_train=40, num_val=12, names=NAMES, layout="labelimg")
    record, dets, _ = _train(tmp_path, ["dataset=voc", f"dataset.root={root}", "dataset.test_fraction=0.1"])
    assert record["status"] == "completed" and record["metrics_split"] == "test" and dets
    assert record["dataset"]["classes"] == sorted(NAMES)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["coco", "voc", "yolo"])
def test_missing_dataset_path_is_one_line_and_writes_nothing(tmp_path, dataset):
    runs = tmp_path / "runs"
    r = ghmbench_cli(
        "train",
        *TINY_TRAIN,
        f"dataset={dataset}",
        f"dataset.root={tmp_path / 'nowhere'}",
        f"paths.runs_dir={runs}",
        f"paths.cache_dir={tmp_path / 'c'}",
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "nowhere" in r.stderr and not runs.exists()
    with pytest.raises(ConfigError, match="nowhere"):
        _cfg([f"dataset={dataset}", f"dataset.root={tmp_path / 'nowhere'}"])


def test_own_data_doc_commands_validate_on_such_folders(tmp_path):
    """docs/own-data.md's one command per format (VOC export, YOLO, COCO), pointed at tiny folders of that format."""
    import re
    import shlex

    from conftest import OWN_DATA_DOC
    from disk_datasets import make_coco, make_yolo

    section = OWN_DATA_DOC.read_text().split("# Your own data")[1].split("**COCO and anything")[0]
    commands = [shlex.split(c)[2:] for c in re.findall(r"^(ghmbench train dataset=.+)$", section, flags=re.M)]
    assert [c[0] for c in commands] == ["dataset=bccd", "dataset=voc", "dataset=yolo", "dataset=coco"]
    coco = make_coco(tmp_path / "coco", num_train=4, num_val=2)
    for split in ("train", "val"):  # the COCO 2017 layout the command relies on
        (coco / split).rename(coco / f"{split}2017")
        (coco / "annotations" / f"instances_{split}.json").rename(coco / "annotations" / f"instances_{split}2017.json")
    roots = {
        "/data/my_voc_export": make_voc(tmp_path / "voc", 4, 2, names=NAMES, layout="labelimg"),
        "/data/my_yolo/data.yaml": make_yolo(tmp_path / "yolo", 4, 2) / "data.yaml",
        "/data/my_coco": coco,
    }
    for command in commands:
        cfg = _cfg([o.split("=")[0] + "=" + str(roots.get(o.split("=", 1)[1], o.split("=", 1)[1])) for o in command])
        # model=fitted: the digits' default detector is replaced on photos, its anchors fitted at run start
        assert (cfg.model.backbone, cfg.model.anchor_sizes) == ("resnet18", "auto")
        assert cfg.dataset.image_size == (320 if cfg.dataset.name == "bccd" else 512)


def test_pascal_sets_of_a_missing_year_are_one_line(tmp_path):
    root = make_voc(tmp_path / "pascal", num_train=4, num_val=2)
    with pytest.raises(
        ConfigError,
        match=r"no VOCdevkit/VOC2012 .*allowed: dataset.train_sets / val_sets of the year there is, VOC2007",
    ):
        _cfg(
            ["dataset=voc", f"dataset.root={root}", "dataset.train_sets=[2012-trainval]", "dataset.val_sets=[2012-val]"]
        )
    with pytest.raises(ConfigError, match=r"dataset.val_sets: 2012-val: no VOCdevkit/VOC2012"):
        _cfg(["dataset=voc", f"dataset.root={root}", "dataset.val_sets=[2012-val]"])
