"""COCO-format datasets: an instances JSON and an image folder per split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ghmbench.data.formats.source import SourceSpec, build_split, options
from ghmbench.data.splits import Splits
from ghmbench.errors import DatasetError


def _read_json(path: Path, key: str) -> Any:
    if not path.is_file():
        raise DatasetError(f"{key}={path}: file does not exist; allowed: a COCO instances JSON file")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{key}={path}: not valid JSON ({e}); allowed: a COCO instances JSON file") from None


def coco_paths(dataset: dict) -> list[tuple[str, Path, Path]]:
    """(split, image folder, annotation file) of train, val and the optional test split, checked to exist.

    Paths not given explicitly follow the COCO layout under ``root``: ``<root>/<split>/`` and
    ``<root>/annotations/instances_<split>.json``.
    """
    root = Path(dataset["root"]).expanduser() if dataset["root"] else None
    if root is not None and not root.is_dir():
        raise DatasetError(
            f"dataset.root={root}: folder does not exist; allowed: the folder holding the COCO layout (<split>/ and "
            "annotations/)"
        )
    has_test = bool(dataset.get("test_split") or dataset.get("test_images") or dataset.get("test_annotations"))
    out = []
    for split in ("train", "val", "test") if has_test else ("train", "val"):
        name = dataset[f"{split}_split"]
        if root is None and not (dataset[f"{split}_images"] and dataset[f"{split}_annotations"]):
            raise DatasetError(
                f"dataset.{split}_images / dataset.{split}_annotations: both are needed without dataset.root; "
                f"allowed: two paths, or dataset.root with dataset.{split}_split"
            )
        img = Path(dataset[f"{split}_images"] or root / name).expanduser()
        ann = Path(dataset[f"{split}_annotations"] or root / "annotations" / f"instances_{name}.json").expanduser()
        if not img.is_dir():
            raise DatasetError(
                f"dataset.{split}_images={img}: folder does not exist; allowed: the folder holding the split's images"
            )
        if not ann.is_file():
            raise DatasetError(
                f"dataset.{split}_annotations={ann}: file does not exist; allowed: a COCO instances JSON file"
            )
        out.append((split, img, ann))
    return out


def load_coco_detection(dataset: dict, cache_dir: Path | None) -> Splits:
    """(train, val, test or None) of a COCO-format dataset described by the ``dataset`` config section.

    Paths not given explicitly follow the COCO layout under ``root``: ``<root>/<split>/`` and
    ``<root>/annotations/instances_<split>.json``. The test split is optional: given by
    ``test_split`` (COCO layout) or ``test_images`` + ``test_annotations``.
    """
    opts = options(dataset)
    specs = [
        SourceSpec(_read_json(ann, f"dataset.{split}_annotations"), img, str(ann))
        for split, img, ann in coco_paths(dataset)
    ]
    has_test = len(specs) == 3
    train = build_split(specs[0], opts, cache_dir)
    cats = [{"id": c, "name": n} for c, n in zip(train.category_ids, train.class_names)]
    test = build_split(specs[2], opts, cache_dir, cats) if has_test else None
    return Splits(train, build_split(specs[1], opts, cache_dir, cats), test)
