"""Pascal VOC and VOC-format exports (LabelImg, CVAT, Roboflow): the splits' annotation files,
the label space, and the XML annotations as a COCO dict."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ghmbench.data.formats.source import SourceSpec, build_split, options
from ghmbench.data.splits import Splits
from ghmbench.errors import DatasetError

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip
VOC_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")


def _parse_voc_xml(xml: Path) -> dict:
    import xml.etree.ElementTree as ET

    from torchvision.datasets import VOCDetection

    try:
        return VOCDetection.parse_voc_xml(ET.parse(xml).getroot()).get("annotation") or {}
    except (OSError, ET.ParseError) as e:
        raise DatasetError(f"{xml}: cannot parse VOC annotation ({e}); allowed: a VOC XML file") from None


def _voc_objects(node: dict) -> list[dict]:
    objects = node.get("object", []) or []
    return objects if isinstance(objects, list) else [objects]


def _voc_base(root: Path, year: str, exact: bool = False) -> Path | None:
    """The VOC folder: <root>/VOCdevkit/VOC<year> or <root>/VOC<year>; unless ``exact``, also the only
    <root>/VOCdevkit/VOC* folder, or root itself (Annotations/ or *.xml files)."""
    for base in (root / "VOCdevkit" / f"VOC{year}", root / f"VOC{year}"):
        if base.is_dir():
            return base
    if exact:
        return None
    others = sorted(p for p in (root / "VOCdevkit").glob("VOC*") if p.is_dir())
    if len(others) == 1:  # an export under another year's name
        return others[0]
    if (root / "Annotations").is_dir() or any(root.glob("*.xml")):
        return root
    return None


def _voc_image(base: Path, xml: Path, node: dict) -> Path | None:
    """The image of an annotation: its <filename>, else its stem, in JPEGImages/ or beside the XML."""
    names = [str(node["filename"])] if node.get("filename") else []
    names += [xml.stem + ext for ext in VOC_IMAGE_EXTS]
    for folder in (base / "JPEGImages", xml.parent):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


@dataclass
class VocItem:
    xml: Path
    image: Path | None


def voc_split_items(dataset: dict) -> tuple[list[tuple[str, list[VocItem]]], bool]:
    """The (origin, items) of each split (train, val[, test]) of a VOC-format folder, and whether
    it is the listed (ImageSets) layout.

    Listed (``ImageSets/Main/<first train set>.txt`` exists): ``train_sets`` / ``val_sets`` /
    ``test_sets`` name ``ImageSets/Main/<set>.txt`` files. Unlisted (LabelImg exports without
    ImageSets, CVAT's with only ``default.txt``): every annotation file with a matching image,
    split at random (``split_seed``) by ``val_fraction`` and ``test_fraction``.
    """
    root = Path(dataset["root"]).expanduser()
    year = str(dataset["train_sets"][0]).partition("-")[0]
    if dataset.get("download"):
        _download(dataset, root)
    base = _voc_base(root, year)
    if base is None:
        raise DatasetError(
            f"dataset.root={root}: no VOC folder (VOCdevkit/VOC{year}, Annotations/ or *.xml files) "
            "(dataset.download=true fetches PASCAL VOC, with network); "
            f"allowed: a folder holding VOCdevkit/VOC{year}, or a VOC-format export (Annotations/ + JPEGImages/, or "
            "images beside their XML files)"
        )
    ann_dir = base / "Annotations" if (base / "Annotations").is_dir() else base
    first = str(dataset["train_sets"][0]).partition("-")[2]
    if (
        base / "ImageSets" / "Main" / f"{first}.txt"
    ).is_file():  # else (no ImageSets, or CVAT's default.txt only): every annotation
        if base not in (root, _voc_base(root, year, exact=True)):  # PASCAL VOC of another year
            raise DatasetError(
                f"dataset.root={root}: no VOCdevkit/VOC{year} (dataset.download=true fetches PASCAL VOC{year}, with "
                f"network); allowed: dataset.train_sets / val_sets of the year there is, {base.name}"
            )
        return _listed_splits(dataset, root, year, base), True
    return _unlisted_splits(dataset, root, base, ann_dir), False


def _download(dataset: dict, root: Path) -> None:
    """Fetch the PASCAL VOC archives of every set named in the config (``dataset.download=true``)."""
    from torchvision.datasets import VOCDetection

    for key in ("train_sets", "val_sets", "test_sets"):
        for item in dataset.get(key) or []:
            y, _, image_set = str(item).partition("-")
            try:
                VOCDetection(str(root), year=y, image_set=image_set, download=True)
            except (RuntimeError, FileNotFoundError, ValueError) as e:
                raise DatasetError(
                    f"dataset.root={root}: VOC{y} {image_set}: {str(e).splitlines()[0]}; allowed: a folder holding "
                    f"VOCdevkit/VOC{y}"
                ) from None


def _listed_splits(dataset: dict, root: Path, year: str, base: Path) -> list[tuple[str, list[VocItem]]]:
    """The listed layout: each split's ``ImageSets/Main/<set>.txt`` files (of their years)."""
    keys = ("train_sets", "val_sets", "test_sets") if dataset.get("test_sets") else ("train_sets", "val_sets")
    out = []
    for key in keys:
        items, origins = [], []
        for entry in dataset[key]:
            y, _, image_set = str(entry).partition("-")
            b = _voc_base(root, y, exact=True) or (base if y == year else None)
            if b is None:
                raise DatasetError(
                    f"dataset.{key}: {entry}: no VOCdevkit/VOC{y} under dataset.root={root} (dataset.download=true "
                    f"fetches PASCAL VOC{y}, with network); allowed: sets of the VOC years there are"
                )
            listing = b / "ImageSets" / "Main" / f"{image_set}.txt"
            if not listing.is_file():
                raise DatasetError(
                    f"dataset.{key}: {listing} does not exist; allowed: YEAR-SET with an ImageSets/Main/SET.txt file "
                    f"(dataset.download=true fetches PASCAL VOC{y})"
                )
            origins.append(str(listing))
            a = b / "Annotations" if (b / "Annotations").is_dir() else b
            for line in listing.read_text().split("\n"):
                if line.strip():
                    xml = a / f"{line.split()[0]}.xml"
                    items.append(VocItem(xml, None))
        out.append((" + ".join(origins), items))
    return out


def _unlisted_splits(dataset: dict, root: Path, base: Path, ann_dir: Path) -> list[tuple[str, list[VocItem]]]:
    """No ImageSets: every annotation file with its image, split at random (``split_seed``)."""
    xmls = sorted(ann_dir.glob("*.xml"))
    items = [VocItem(x, None) for x in xmls]
    if not items:
        raise DatasetError(
            f"dataset.root={root}: no annotation files in {ann_dir}; allowed: VOC XML files (Annotations/*.xml or "
            "beside the images)"
        )
    for it in items:
        it.image = _voc_image(base, it.xml, _parse_voc_xml(it.xml))
    items = [it for it in items if it.image is not None]  # an annotation without its image is not part of the dataset
    if not items:
        raise DatasetError(
            f"dataset.root={root}: no annotation file in {ann_dir} has a matching image; allowed: images named as the "
            "XML's <filename> or stem, in JPEGImages/ or beside it"
        )
    order = np.random.default_rng(int(dataset.get("split_seed") or 0)).permutation(len(items)).tolist()
    n = len(items)
    n_val = max(1, round(n * float(dataset.get("val_fraction", 0.2))))
    n_test = round(n * float(dataset.get("test_fraction") or 0.0))
    if dataset.get("test_fraction"):
        n_test = max(1, n_test)
    if n - n_val - n_test < 1:
        raise DatasetError(
            f"dataset.root={root}: {n} annotated images cannot be split by dataset.val_fraction / "
            "dataset.test_fraction; allowed: fractions leaving a training image"
        )
    parts = [sorted(order[n_val + n_test :]), sorted(order[:n_val])] + (
        [sorted(order[n_val : n_val + n_test])] if n_test else []
    )
    names = ["train", "val", "test"]
    return [
        (
            f"{ann_dir} ({names[k]} part of a dataset.split_seed={dataset.get('split_seed') or 0} split)",
            [items[i] for i in part],
        )
        for k, part in enumerate(parts)
    ]


@functools.lru_cache(maxsize=32)
def _voc_found_names(key: str, stamp: int) -> tuple[str, ...]:
    """Sorted object names of the training split of the VOC config ``key`` (JSON); ``stamp``
    (the annotation folder's mtime) renews the cache when files are added or removed."""
    (_, train), *_ = voc_split_items(json.loads(key))[0]
    names: set[str] = set()
    for it in train:
        if it.xml.is_file():
            names.update(str(o.get("name")) for o in _voc_objects(_parse_voc_xml(it.xml)))
    return tuple(sorted(names))


def voc_class_names(dataset: dict) -> list[str] | None:
    """The label space of a VOC-format dataset: ``dataset.classes`` as given, PASCAL's 20 names
    (``pascal``, or when every object of the training split has a PASCAL name; returned as None),
    else the sorted union of the training split's object names."""
    classes = dataset.get("classes")
    if isinstance(classes, list):
        return [str(c) for c in classes]
    if classes == "pascal":
        return None
    keys = ("root", "train_sets", "val_sets", "test_sets", "val_fraction", "test_fraction", "split_seed")
    root = Path(dataset["root"]).expanduser()
    base = _voc_base(root, str(dataset["train_sets"][0]).partition("-")[0]) or root
    stamp = max((p.stat().st_mtime_ns for p in (base, base / "Annotations") if p.is_dir()), default=0)
    names = _voc_found_names(json.dumps({k: dataset.get(k) for k in keys} | {"download": False}, sort_keys=True), stamp)
    if not names or set(names) <= set(VOC_CLASSES):
        return None
    return list(names)


def voc_source(origin: str, items: list[VocItem], base_root: Path, classes: list[str]) -> SourceSpec:
    """One VOC split as a COCO dict (category ids 1..K in ``classes`` order).

    Boxes: VOC's 1-based inclusive pixel corners become [xmin - 1, ymin - 1, xmax, ymax).
    ``difficult`` objects become ``iscrowd=1``: not trained on, and ignored by the COCO
    evaluation (detections matching them count neither as true nor as false positives).
    Objects of other classes keep their name as category id: invalid (error or dropped).
    """
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(classes)]
    cat_id = {n: k + 1 for k, n in enumerate(classes)}
    images, anns, describe = [], [], {}
    for iid, item in enumerate(items, start=1):
        if not item.xml.is_file():
            raise DatasetError(
                f"{origin}: annotation file {item.xml} does not exist; allowed: an Annotations/ID.xml for every "
                "listed ID"
            )
        node = _parse_voc_xml(item.xml)
        image = item.image or _voc_image(
            item.xml.parent.parent if item.xml.parent.name == "Annotations" else item.xml.parent, item.xml, node
        )
        rec: dict[str, Any] = {
            "id": iid,
            "file_name": str(image or item.xml.parent.parent / "JPEGImages" / f"{item.xml.stem}.jpg"),
        }
        size = node.get("size") or {}
        try:
            rec["width"], rec["height"] = int(size["width"]), int(size["height"])
        except (KeyError, TypeError, ValueError):
            pass  # taken from the file
        images.append(rec)
        for k, obj in enumerate(_voc_objects(node), start=1):
            aid = len(anns) + 1
            describe[aid] = f"{item.xml.name}: object {k} ({obj.get('name')!r})"
            bb = obj.get("bndbox") or {}
            try:
                x1, y1, x2, y2 = (float(bb[key]) for key in ("xmin", "ymin", "xmax", "ymax"))
                bbox: Any = [x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1]
            except (KeyError, TypeError, ValueError):
                bbox = None
            anns.append(
                {
                    "id": aid,
                    "image_id": iid,
                    "category_id": cat_id.get(obj.get("name"), obj.get("name")),
                    "bbox": bbox,
                    "iscrowd": int(str(obj.get("difficult", "0")).strip() == "1"),
                }
            )
    return SourceSpec(
        {"images": images, "annotations": anns, "categories": cats}, base_root, origin, describe, by_name=True
    )


def load_voc_detection(dataset: dict, cache_dir: Path | None) -> Splits:
    """(train, val, test or None) of a VOC-format folder (see :func:`voc_split_items`); the label
    space is :func:`voc_class_names` (PASCAL's 20 names when it returns None)."""
    opts = options(dataset)
    splits, _ = voc_split_items(dataset)
    classes = voc_class_names({**dataset, "download": False}) or VOC_CLASSES
    root = Path(dataset["root"]).expanduser()
    out = [build_split(voc_source(origin, items, root, classes), opts, cache_dir) for origin, items in splits]
    return Splits(*out) if len(out) == 3 else Splits(out[0], out[1], None)
