"""COCO-format and Pascal VOC datasets: validation, letterbox resizing, image caching, export.

Both formats end up as a COCO instances dict (VOC through torchvision's XML parsing), which is
validated annotation by annotation (``on_invalid=error`` stops at the first problem with a
one-line message naming the file and annotation; ``skip`` drops it and counts it), and turned
into a :class:`~ghmbench.data.DetectionSplit`: images resized with their aspect ratio kept
(longer side = ``image_size``) and padded right/bottom to a square, boxes transformed with them
(torchvision.transforms.v2 on tv_tensors). The split keeps the original annotations, so
detections mapped back through its per-image scales evaluate against the files on disk.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor

from ghmbench.config import ConfigError, FileDatasetCfg
from ghmbench.data import DetectionSplit, Splits
from ghmbench.fileio import atomic_write, write_json

CACHE_VERSION = 1
VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip
CACHE_LIMIT_BYTES = 4 << 30  # cache_images=auto keeps a split in memory (and on disk) below this


class DatasetError(ConfigError):
    """Invalid dataset content; one line naming the file (and annotation) and what is allowed."""


@dataclass
class SourceSpec:
    """Where one split's data lives and how to read it.

    Attributes:
        gt: COCO instances dict (images with absolute or root-relative ``file_name``).
        image_root: folder that ``file_name`` is relative to.
        origin: the annotation file, for messages.
        describe: annotation id -> how to name it in a message (default "annotation id N").
    """

    gt: dict
    image_root: Path
    origin: str
    describe: dict[int, str] = field(default_factory=dict)
    by_name: bool = False  # objects name their class (VOC, YOLO): messages list the class names


# ----------------------------------------------------------------------------- validation


class _Validator:
    """Collects dropped items in ``skip`` mode, raises :class:`DatasetError` in ``error`` mode."""

    def __init__(self, spec: SourceSpec, on_invalid: str) -> None:
        self.spec, self.skip = spec, on_invalid == "skip"
        self.dropped: dict[str, int] = {}

    def bad(self, reason: str, what: str, message: str, allowed: str) -> None:
        if not self.skip:
            raise DatasetError(f"{self.spec.origin}: {what}: {message}; allowed: {allowed} (dataset.on_invalid=skip drops it)")
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def ann_name(self, ann: dict) -> str:
        aid = ann.get("id")
        return self.spec.describe.get(aid, f"annotation id {aid}")


def _list_of_dicts(gt: Any, key: str, origin: str, required: bool = True) -> list[dict]:
    value = gt.get(key) if isinstance(gt, dict) else None
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        raise DatasetError(f"{origin}: '{key}' must be a list of objects (COCO instances format)")
    return value


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header; raises OSError if it cannot be read."""
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def validate_source(spec: SourceSpec, opts: FileDatasetCfg, categories: list[dict] | None = None) -> tuple[dict, list[Path], dict[str, int]]:
    """Check every image and annotation of one split.

    Args:
        spec: the split's COCO dict and where its images are.
        opts: on_invalid, box_tolerance, max_images.
        categories: the label space (the train split's); None = this split's own.

    Returns:
        (clean COCO dict with the kept images sorted by id and boxes clipped to the image,
        image paths in that order, dropped counts by reason).

    Raises:
        DatasetError: on the first problem when ``on_invalid=error``, or when nothing is left.
    """
    gt, origin = spec.gt, spec.origin
    if not isinstance(gt, dict):
        raise DatasetError(f"{origin}: not a COCO instances file (expected an object with images, annotations, categories)")
    images = _list_of_dicts(gt, "images", origin)
    anns = _list_of_dicts(gt, "annotations", origin, required=False)
    cats = categories if categories is not None else _list_of_dicts(gt, "categories", origin)
    if not cats:
        raise DatasetError(f"{origin}: no categories; allowed: at least one entry in 'categories'")
    v = _Validator(spec, opts.on_invalid)
    cat_ids = {c["id"] for c in cats}
    all_ids = {r.get("id") for r in images}
    kept: dict[int, dict] = {}
    paths: dict[int, Path] = {}
    for rec in sorted(images, key=lambda r: (not isinstance(r.get("id"), int), r.get("id") if isinstance(r.get("id"), int) else 0)):
        iid, name = rec.get("id"), rec.get("file_name")
        if not isinstance(iid, int) or not isinstance(name, str) or iid in kept:
            v.bad("bad_image_record", f"image record {rec!r:.80}", "needs a unique integer 'id' and a 'file_name'", "COCO image records")
            continue
        path = Path(name) if os.path.isabs(name) else spec.image_root / name
        if not path.is_file():
            v.bad("missing_image", f"image id {iid}", f"file {path} does not exist", "an existing image file")
            continue
        try:
            w, h = _image_size(path)
        except Exception as e:  # PIL raises several types for broken files
            v.bad("unreadable_image", f"image id {iid}", f"file {path} cannot be read ({type(e).__name__})", "a readable PNG or JPEG")
            continue
        rw, rh = rec.get("width", w), rec.get("height", h)
        if (rw, rh) != (w, h):
            v.bad("image_size_mismatch", f"image id {iid}", f"file {path} is {w}x{h} but its record says {rw}x{rh}", "a record matching the file")
            continue
        kept[iid] = {"id": iid, "file_name": name, "width": w, "height": h}
        paths[iid] = path
        if opts.max_images is not None and len(kept) >= opts.max_images:
            break
    out_anns = []
    tol = opts.box_tolerance
    for ann in anns:
        what = v.ann_name(ann)
        iid, cid, bbox = ann.get("image_id"), ann.get("category_id"), ann.get("bbox")
        if iid not in kept:
            if iid not in all_ids or not isinstance(iid, int):
                v.bad("unknown_image", what, f"image_id {iid!r} is not in 'images'", "the id of an image of this file")
            continue  # its image was dropped (or cut by max_images): the annotation goes with it
        if cid not in cat_ids:
            if spec.by_name:
                names = ", ".join(str(c.get("name")) for c in cats)
                v.bad("unknown_category", what, f"class {cid!r} is not one of the dataset's classes", f"one of {names} (dataset.classes)")
            else:
                v.bad("unknown_category", what, f"category_id {cid!r} is not a known category", f"one of {sorted(cat_ids)}")
            continue
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(x, (int, float)) for x in bbox)):
            v.bad("bad_box", what, f"bbox {bbox!r} is not 4 numbers", "[x, y, width, height]")
            continue
        if not all(math.isfinite(x) for x in bbox):
            v.bad("non_finite_box", what, f"bbox {bbox} has NaN or infinite coordinates", "finite numbers")
            continue
        x, y, w, h = (float(t) for t in bbox)
        if w <= 0 or h <= 0:
            v.bad("non_positive_size", what, f"bbox width {w:g} and height {h:g}", "width > 0 and height > 0")
            continue
        W, H = kept[iid]["width"], kept[iid]["height"]
        if x < -tol or y < -tol or x + w > W + tol or y + h > H + tol:
            v.bad(
                "box_outside_image",
                what,
                f"bbox [{x:g}, {y:g}, {w:g}, {h:g}] leaves the {W}x{H} image by more than dataset.box_tolerance={tol:g} px",
                "boxes inside the image",
            )
            continue
        x1, y1, x2, y2 = max(0.0, x), max(0.0, y), min(float(W), x + w), min(float(H), y + h)
        if x2 <= x1 or y2 <= y1:
            v.bad("non_positive_size", what, f"bbox [{x:g}, {y:g}, {w:g}, {h:g}] is empty inside the image", "width > 0 and height > 0")
            continue
        crowd = int(bool(ann.get("iscrowd", 0)))
        bw, bh = x2 - x1, y2 - y1
        area = float(ann["area"]) if crowd and isinstance(ann.get("area"), (int, float)) else bw * bh
        out_anns.append({"id": len(out_anns) + 1, "image_id": iid, "category_id": cid, "bbox": [x1, y1, bw, bh], "area": area, "iscrowd": crowd})
    if not kept:
        raise DatasetError(f"{origin}: empty dataset: no usable image ({_dropped_text(v.dropped)}); allowed: at least one image")
    if not any(a["iscrowd"] == 0 for a in out_anns):
        raise DatasetError(f"{origin}: empty dataset: no usable object annotation ({_dropped_text(v.dropped)}); allowed: at least one box")
    clean = {"images": list(kept.values()), "annotations": out_anns, "categories": [{"id": c["id"], "name": str(c.get("name", c["id"]))} for c in cats]}
    return clean, [paths[i] for i in kept], v.dropped


def _dropped_text(dropped: dict[str, int]) -> str:
    return ", ".join(f"{k}: {n} dropped" for k, n in sorted(dropped.items())) or "nothing dropped"


# ----------------------------------------------------------------------------- images


def letterbox_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) after resizing so the longer side is ``size``, aspect ratio kept."""
    longer = max(height, width)
    return max(1, round(height * size / longer)), max(1, round(width * size / longer))


def letterbox(image: Tensor, boxes: Tensor, size: int) -> tuple[Tensor, Tensor, tuple[float, float]]:
    """Resize so the longer side is ``size`` (aspect ratio kept), pad right/bottom to size x size.

    Args:
        image: [C, h, w] uint8.
        boxes: [G, 4] float xyxy in the image's pixels.
        size: output side.

    Returns:
        (image [C, size, size] uint8, boxes [G, 4] in the output frame, (scale_x, scale_y)).
    """
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import functional as TF

    h, w = image.shape[-2:]
    nh, nw = letterbox_size(h, w, size)
    img = TF.resize(tv_tensors.Image(image), [nh, nw], antialias=True)
    bb = TF.resize(tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)), [nh, nw])
    pad = [0, 0, size - nw, size - nh]
    img, bb = TF.pad(img, pad), TF.pad(bb, pad)
    return img.as_subclass(Tensor).contiguous(), bb.as_subclass(Tensor).float(), (nw / w, nh / h)


def decode(path: Path, channels: int) -> Tensor:
    """[channels, h, w] uint8 pixels of a PNG/JPEG file (grey files become RGB and vice versa)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L" if channels == 1 else "RGB"))
    except Exception as e:  # PIL raises several types for broken files
        raise DatasetError(f"{path}: cannot decode image ({type(e).__name__}: {e}); allowed: a readable PNG or JPEG") from None
    return torch.from_numpy(arr.copy()).reshape(arr.shape[0], arr.shape[1], -1).permute(2, 0, 1).contiguous()


class _Letterboxed(torch.utils.data.Dataset):
    def __init__(self, paths: list[Path], size: int, channels: int) -> None:
        self.paths, self.size, self.channels = paths, size, channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Tensor:
        image = decode(self.paths[i], self.channels)
        return letterbox(image, torch.zeros(0, 4), self.size)[0]


class LazyImages:
    """Images decoded on demand (datasets too big to cache): ``images[idx]`` -> [B, C, S, S] uint8."""

    def __init__(self, paths: list[Path], size: int, channels: int, num_workers: int) -> None:
        self.dataset = _Letterboxed(paths, size, channels)
        self.shape = (len(paths), channels, size, size)
        self.num_workers = num_workers

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx: list[int]) -> Tensor:
        return torch.stack([self.dataset[i] for i in idx])

    def batches(self, batches: list[list[int]]) -> Iterator[Tensor]:
        """Decode the given index batches in worker processes, in order."""
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=batches,
            num_workers=self.num_workers,
            collate_fn=torch.stack,
            persistent_workers=False,
        )
        try:
            yield from loader
        except DatasetError as e:  # from a worker: its message arrives wrapped in a traceback
            last = str(e).strip().splitlines()[-1]
            raise DatasetError(last.split("DatasetError: ", 1)[-1]) from None


def _auto_workers(n: int, requested: int | None) -> int:
    if requested is not None:
        return requested
    return 0 if n < 256 else min(8, os.cpu_count() or 1)


def _cache_key(paths: list[Path], opts: FileDatasetCfg) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{opts.image_size}|{opts.channels}".encode())
    for p in paths:
        st = p.stat()
        h.update(f"|{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def load_images(paths: list[Path], opts: FileDatasetCfg, cache_dir: Path | None) -> Tensor | LazyImages:
    """All images letterboxed into one uint8 tensor (cached on disk), or a lazy loader.

    ``cache_images``: ``auto`` caches below 4 GiB, ``true`` always, ``false`` never.
    """
    n, s, c = len(paths), opts.image_size, opts.channels
    workers = _auto_workers(n, opts.num_workers)
    fits = n * c * s * s <= CACHE_LIMIT_BYTES
    if opts.cache_images == "false" or (opts.cache_images == "auto" and not fits):
        return LazyImages(paths, s, c, workers)
    file = cache_dir / f"images-{_cache_key(paths, opts)}.npy" if cache_dir else None
    if file is not None and file.exists():
        arr = np.load(file)
        if arr.shape == (n, c, s, s) and arr.dtype == np.uint8:
            return torch.from_numpy(arr)
    out = torch.empty((n, c, s, s), dtype=torch.uint8)
    lazy = LazyImages(paths, s, c, workers)
    order = list(range(n))
    chunks = [order[i : i + 64] for i in range(0, n, 64)]
    for idx, batch in zip(chunks, lazy.batches(chunks)):
        out[idx[0] : idx[-1] + 1] = batch
    if file is not None:
        atomic_write(file, lambda f: np.save(f, out.numpy()))
    return out


# ----------------------------------------------------------------------------- splits


def build_split(spec: SourceSpec, opts: FileDatasetCfg, cache_dir: Path | None, categories: list[dict] | None = None) -> DetectionSplit:
    """Validate one split and turn it into a letterboxed :class:`DetectionSplit`."""
    clean, paths, dropped = validate_source(spec, opts, categories)
    cats = clean["categories"]
    label_of = {c["id"]: k for k, c in enumerate(cats)}
    per_image: dict[int, list[dict]] = {r["id"]: [] for r in clean["images"]}
    for a in clean["annotations"]:
        if not a["iscrowd"]:  # crowd regions are not training targets; COCOeval ignores them
            per_image[a["image_id"]].append(a)
    boxes, labels, scales = [], [], []
    s = opts.image_size
    for rec in clean["images"]:
        anns = per_image[rec["id"]]
        xyxy = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], dtype=torch.float32).reshape(-1, 4)
        nh, nw = letterbox_size(rec["height"], rec["width"], s)
        sx, sy = nw / rec["width"], nh / rec["height"]  # what letterbox() does to the pixels
        boxes.append(xyxy * torch.tensor([sx, sy, sx, sy]))
        labels.append(torch.tensor([label_of[a["category_id"]] for a in anns], dtype=torch.int64))
        scales.append((sx, sy))
    images = load_images(paths, opts, cache_dir)
    return DetectionSplit(
        images=images,
        boxes=boxes,
        labels=labels,
        class_names=[c["name"] for c in cats],
        image_ids=[r["id"] for r in clean["images"]],
        category_ids=[c["id"] for c in cats],
        scales=torch.tensor(scales, dtype=torch.float64).reshape(-1, 2),
        orig_sizes=[(r["height"], r["width"]) for r in clean["images"]],
        ground_truth=clean,
        dropped=dropped,
    )


def _read_json(path: Path, key: str) -> Any:
    if not path.is_file():
        raise DatasetError(f"{key}={path}: file does not exist; allowed: a COCO instances JSON file")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{key}={path}: not valid JSON ({e}); allowed: a COCO instances JSON file") from None


def coco_paths(d: dict) -> list[tuple[str, Path, Path]]:
    """(split, image folder, annotation file) of train, val and the optional test split, checked to exist.

    Paths not given explicitly follow the COCO layout under ``root``: ``<root>/<split>/`` and
    ``<root>/annotations/instances_<split>.json``.
    """
    root = Path(d["root"]).expanduser() if d["root"] else None
    if root is not None and not root.is_dir():
        raise DatasetError(f"dataset.root={root}: folder does not exist; allowed: the folder holding the COCO layout (<split>/ and annotations/)")
    has_test = bool(d.get("test_split") or d.get("test_images") or d.get("test_annotations"))
    out = []
    for split in ("train", "val", "test") if has_test else ("train", "val"):
        name = d[f"{split}_split"]
        if root is None and not (d[f"{split}_images"] and d[f"{split}_annotations"]):
            raise DatasetError(f"dataset.{split}_images / dataset.{split}_annotations: both are needed without dataset.root; allowed: two paths, or dataset.root with dataset.{split}_split")
        img = Path(d[f"{split}_images"] or root / name).expanduser()
        ann = Path(d[f"{split}_annotations"] or root / "annotations" / f"instances_{name}.json").expanduser()
        if not img.is_dir():
            raise DatasetError(f"dataset.{split}_images={img}: folder does not exist; allowed: the folder holding the split's images")
        if not ann.is_file():
            raise DatasetError(f"dataset.{split}_annotations={ann}: file does not exist; allowed: a COCO instances JSON file")
        out.append((split, img, ann))
    return out


def load_coco_detection(d: dict, cache_dir: Path | None) -> Splits:
    """(train, val, test or None) of a COCO-format dataset described by the ``dataset`` config section.

    Paths not given explicitly follow the COCO layout under ``root``: ``<root>/<split>/`` and
    ``<root>/annotations/instances_<split>.json``. The test split is optional: given by
    ``test_split`` (COCO layout) or ``test_images`` + ``test_annotations``.
    """
    opts = _options(d)
    specs = [SourceSpec(_read_json(ann, f"dataset.{split}_annotations"), img, str(ann)) for split, img, ann in coco_paths(d)]
    has_test = len(specs) == 3
    train = build_split(specs[0], opts, cache_dir)
    cats = [{"id": c, "name": n} for c, n in zip(train.category_ids, train.class_names)]
    test = build_split(specs[2], opts, cache_dir, cats) if has_test else None
    return Splits(train, build_split(specs[1], opts, cache_dir, cats), test)


def _options(d: dict) -> FileDatasetCfg:
    opts = FileDatasetCfg(**{f.name: d[f.name] for f in fields(FileDatasetCfg)})
    opts.cache_images = str(opts.cache_images).lower()
    return opts


# ----------------------------------------------------------------------------- VOC

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


def voc_split_items(d: dict) -> tuple[list[tuple[str, list[VocItem]]], bool]:
    """The (origin, items) of each split (train, val[, test]) of a VOC-format folder, and whether
    it is the listed (ImageSets) layout.

    Listed (``ImageSets/Main/<first train set>.txt`` exists): ``train_sets`` / ``val_sets`` /
    ``test_sets`` name ``ImageSets/Main/<set>.txt`` files. Unlisted (LabelImg exports without
    ImageSets, CVAT's with only ``default.txt``): every annotation file with a matching image,
    split at random (``split_seed``) by ``val_fraction`` and ``test_fraction``.
    """
    root = Path(d["root"]).expanduser()
    year = str(d["train_sets"][0]).partition("-")[0]
    if d.get("download"):
        from torchvision.datasets import VOCDetection

        for key in ("train_sets", "val_sets", "test_sets"):
            for item in d.get(key) or []:
                y, _, image_set = str(item).partition("-")
                try:
                    VOCDetection(str(root), year=y, image_set=image_set, download=True)
                except (RuntimeError, FileNotFoundError, ValueError) as e:
                    raise DatasetError(f"dataset.root={root}: VOC{y} {image_set}: {str(e).splitlines()[0]}; allowed: a folder holding VOCdevkit/VOC{y}") from None
    base = _voc_base(root, year)
    if base is None:
        raise DatasetError(
            f"dataset.root={root}: no VOC folder (VOCdevkit/VOC{year}, Annotations/ or *.xml files) (dataset.download=true fetches PASCAL VOC, with network); "
            f"allowed: a folder holding VOCdevkit/VOC{year}, or a VOC-format export (Annotations/ + JPEGImages/, or images beside their XML files)"
        )
    ann_dir = base / "Annotations" if (base / "Annotations").is_dir() else base
    first = str(d["train_sets"][0]).partition("-")[2]
    if (base / "ImageSets" / "Main" / f"{first}.txt").is_file():  # else (no ImageSets, or CVAT's default.txt only): every annotation
        if base not in (root, _voc_base(root, year, exact=True)):  # PASCAL VOC of another year
            raise DatasetError(f"dataset.root={root}: no VOCdevkit/VOC{year} (dataset.download=true fetches PASCAL VOC{year}, with network); allowed: dataset.train_sets / val_sets of the year there is, {base.name}")
        keys = ("train_sets", "val_sets", "test_sets") if d.get("test_sets") else ("train_sets", "val_sets")
        out = []
        for key in keys:
            items, origins = [], []
            for entry in d[key]:
                y, _, image_set = str(entry).partition("-")
                b = _voc_base(root, y, exact=True) or (base if y == year else None)
                if b is None:
                    raise DatasetError(f"dataset.{key}: {entry}: no VOCdevkit/VOC{y} under dataset.root={root} (dataset.download=true fetches PASCAL VOC{y}, with network); allowed: sets of the VOC years there are")
                listing = b / "ImageSets" / "Main" / f"{image_set}.txt"
                if not listing.is_file():
                    raise DatasetError(f"dataset.{key}: {listing} does not exist; allowed: YEAR-SET with an ImageSets/Main/SET.txt file (dataset.download=true fetches PASCAL VOC{y})")
                origins.append(str(listing))
                a = b / "Annotations" if (b / "Annotations").is_dir() else b
                for line in listing.read_text().split("\n"):
                    if line.strip():
                        xml = a / f"{line.split()[0]}.xml"
                        items.append(VocItem(xml, None))
            out.append((" + ".join(origins), items))
        return out, True
    xmls = sorted(ann_dir.glob("*.xml"))
    items = [VocItem(x, None) for x in xmls]
    if not items:
        raise DatasetError(f"dataset.root={root}: no annotation files in {ann_dir}; allowed: VOC XML files (Annotations/*.xml or beside the images)")
    for it in items:
        it.image = _voc_image(base, it.xml, _parse_voc_xml(it.xml))
    items = [it for it in items if it.image is not None]  # an annotation without its image is not part of the dataset
    if not items:
        raise DatasetError(f"dataset.root={root}: no annotation file in {ann_dir} has a matching image; allowed: images named as the XML's <filename> or stem, in JPEGImages/ or beside it")
    order = np.random.default_rng(int(d.get("split_seed") or 0)).permutation(len(items)).tolist()
    n = len(items)
    n_val = max(1, round(n * float(d.get("val_fraction", 0.2))))
    n_test = round(n * float(d.get("test_fraction") or 0.0))
    if d.get("test_fraction"):
        n_test = max(1, n_test)
    if n - n_val - n_test < 1:
        raise DatasetError(f"dataset.root={root}: {n} annotated images cannot be split by dataset.val_fraction / dataset.test_fraction; allowed: fractions leaving a training image")
    parts = [sorted(order[n_val + n_test :]), sorted(order[:n_val])] + ([sorted(order[n_val : n_val + n_test])] if n_test else [])
    names = ["train", "val", "test"]
    return [(f"{ann_dir} ({names[k]} part of a dataset.split_seed={d.get('split_seed') or 0} split)", [items[i] for i in part]) for k, part in enumerate(parts)], False


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


def voc_class_names(d: dict) -> list[str] | None:
    """The label space of a VOC-format dataset: ``dataset.classes`` as given, PASCAL's 20 names
    (``pascal``, or when every object of the training split has a PASCAL name; returned as None),
    else the sorted union of the training split's object names."""
    classes = d.get("classes")
    if isinstance(classes, list):
        return [str(c) for c in classes]
    if classes == "pascal":
        return None
    keys = ("root", "train_sets", "val_sets", "test_sets", "val_fraction", "test_fraction", "split_seed")
    root = Path(d["root"]).expanduser()
    base = _voc_base(root, str(d["train_sets"][0]).partition("-")[0]) or root
    stamp = max((p.stat().st_mtime_ns for p in (base, base / "Annotations") if p.is_dir()), default=0)
    names = _voc_found_names(json.dumps({k: d.get(k) for k in keys} | {"download": False}, sort_keys=True), stamp)
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
            raise DatasetError(f"{origin}: annotation file {item.xml} does not exist; allowed: an Annotations/ID.xml for every listed ID")
        node = _parse_voc_xml(item.xml)
        image = item.image or _voc_image(item.xml.parent.parent if item.xml.parent.name == "Annotations" else item.xml.parent, item.xml, node)
        rec: dict[str, Any] = {"id": iid, "file_name": str(image or item.xml.parent.parent / "JPEGImages" / f"{item.xml.stem}.jpg")}
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
                {"id": aid, "image_id": iid, "category_id": cat_id.get(obj.get("name"), obj.get("name")), "bbox": bbox, "iscrowd": int(str(obj.get("difficult", "0")).strip() == "1")}
            )
    return SourceSpec({"images": images, "annotations": anns, "categories": cats}, base_root, origin, describe, by_name=True)


def load_voc_detection(d: dict, cache_dir: Path | None) -> Splits:
    """(train, val, test or None) of a VOC-format folder (see :func:`voc_split_items`); the label
    space is :func:`voc_class_names` (PASCAL's 20 names when it returns None)."""
    opts = _options(d)
    splits, _ = voc_split_items(d)
    classes = voc_class_names({**d, "download": False}) or VOC_CLASSES
    root = Path(d["root"]).expanduser()
    out = [build_split(voc_source(origin, items, root, classes), opts, cache_dir) for origin, items in splits]
    return Splits(*out) if len(out) == 3 else Splits(out[0], out[1], None)


# ----------------------------------------------------------------------------- YOLO

YOLO_TOLERANCE = 1e-3  # normalised coordinates may leave [0, 1] by this much (rounding in exports)
YOLO_IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def yolo_data_file(d: dict) -> Path:
    """The data.yaml of ``dataset.root`` (the file itself, or the folder holding data.yaml)."""
    root = Path(d["root"]).expanduser()
    path = root / "data.yaml" if root.is_dir() else root
    if not path.is_file():
        raise DatasetError(f"dataset.root={root}: no such file{' (no data.yaml in the folder)' if root.is_dir() else ''}; allowed: an ultralytics-style data.yaml, or the folder holding it")
    return path


def yolo_data(d: dict) -> tuple[Path, dict, list[str]]:
    """(dataset folder, the parsed data.yaml, class names) with the file's keys checked."""
    import yaml

    path = yolo_data_file(d)
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not valid YAML ({' '.join(str(e).split())}); allowed: an ultralytics-style data.yaml") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: not a mapping; allowed: a data.yaml with path, train, val, optional test, names")
    for key in ("train", "val", "names"):
        if not data.get(key):
            raise DatasetError(f"{path}: '{key}' is missing; allowed: a data.yaml with path, train, val, optional test, names")
    names = data["names"]
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise DatasetError(f"{path}: names keys {sorted(names)!r:.80} are not 0..{len(names) - 1}; allowed: names as a list, or a mapping with class ids 0..K-1")
        names = [names[k] for k in range(len(names))]
    if not isinstance(names, list) or len(set(map(str, names))) != len(names):
        raise DatasetError(f"{path}: names must be a list of distinct class names or a mapping id -> name")
    base = Path(data.get("path") or ".").expanduser()
    base = base if base.is_absolute() else path.parent / base
    return base, data, [str(n) for n in names]


def yolo_label_path(image: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder of the path becomes ``labels``, the suffix ``.txt``."""
    parts = list(image.parts)
    for k in range(len(parts) - 2, -1, -1):
        if parts[k] == "images":
            parts[k] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def yolo_images(base: Path, entry: Any, key: str, origin: Path) -> tuple[list[Path], list[Path]]:
    """(image files, image folders) of a data.yaml ``train`` / ``val`` / ``test`` entry: a folder,
    a list file of image paths (relative to the list file's folder), or a list of those."""
    images, folders = [], []
    for item in entry if isinstance(entry, list) else [entry]:
        p = Path(str(item)).expanduser()
        p = p if p.is_absolute() else base / p
        if p.is_dir():
            folders.append(p)
            images += sorted(f for f in p.rglob("*") if f.suffix.lower() in YOLO_IMAGE_EXTS and f.is_file())
        elif p.is_file():
            for line in p.read_text().splitlines():
                if line.strip():
                    q = Path(line.strip()).expanduser()
                    images.append(q if q.is_absolute() else (p.parent / q))
        else:
            raise DatasetError(f"{origin}: {key}: {p} does not exist; allowed: an image folder or a list file of image paths (relative to 'path')")
    return images, folders


def yolo_source(entry: Any, split: str, base: Path, names: list[str], origin: Path, opts: FileDatasetCfg) -> tuple[SourceSpec, dict[str, int]]:
    """One split of a YOLO dataset (``entry``: its data.yaml value; ``base``, ``names``: from
    :func:`yolo_data`) as a COCO dict (category ids 1..K), and the label lines dropped
    (``on_invalid=skip``) before the common validation."""
    images, folders = yolo_images(base, entry, split, origin)
    spec = SourceSpec({"images": [], "annotations": [], "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)]}, base, f"{origin} ({split})", {}, by_name=True)
    v = _Validator(spec, opts.on_invalid)
    stems = {p.with_suffix("") for p in images}
    for folder in folders:  # a label file whose image is missing is a mistake (a renamed or deleted image)
        labels = yolo_label_path(folder / "x.png").parent
        for txt in sorted(labels.rglob("*.txt")) if labels.is_dir() and labels != folder else []:
            if folder / txt.relative_to(labels).with_suffix("") not in stems:
                v.bad("label_without_image", f"{txt}", "has no image", f"an image of the same name in {folder}")
    gt = spec.gt
    for iid, image in enumerate(images, start=1):
        rec: dict[str, Any] = {"id": iid, "file_name": str(image)}
        gt["images"].append(rec)
        label = yolo_label_path(image)
        if not label.is_file() or not image.is_file():
            continue  # no label file: an image without objects (a missing image: reported by the validation)
        try:
            w, h = _image_size(image)
        except Exception:  # noqa: BLE001 -- reported as unreadable by the validation
            continue
        for n, line in enumerate(label.read_text().splitlines(), start=1):
            fields_ = line.split()
            if not fields_:
                continue
            what = f"{label}: line {n}"
            if len(fields_) != 5:
                v.bad("bad_label_line", what, f"{len(fields_)} fields", "5 fields: class cx cy w h (normalised to [0, 1])")
                continue
            try:
                cls, coords = int(fields_[0]), [float(x) for x in fields_[1:]]
            except ValueError:
                v.bad("bad_label_line", what, f"{line.strip()!r:.60} is not numbers", "an integer class id and 4 numbers")
                continue
            if not 0 <= cls < len(names):
                v.bad("class_out_of_range", what, f"class id {cls} is out of range", f"0..{len(names) - 1} ({', '.join(names)})")
                continue
            if not all(math.isfinite(x) and -YOLO_TOLERANCE <= x <= 1 + YOLO_TOLERANCE for x in coords):
                v.bad("coordinates_outside_image", what, f"cx cy w h {' '.join(fields_[1:])} leave [0, 1]", f"normalised coordinates in [0, 1] (tolerance {YOLO_TOLERANCE:g})")
                continue
            cx, cy, bw, bh = coords
            aid = len(gt["annotations"]) + 1
            spec.describe[aid] = what
            gt["annotations"].append({"id": aid, "image_id": iid, "category_id": cls + 1, "bbox": [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h], "iscrowd": 0})
    return spec, v.dropped


def load_yolo_detection(d: dict, cache_dir: Path | None) -> Splits:
    """(train, val, test or None) of an ultralytics-style YOLO dataset (``dataset.root``: its data.yaml)."""
    opts = _options(d)
    base, data, names = yolo_data(d)  # data.yaml read once for the three splits
    origin = yolo_data_file(d)
    out = []
    for split in ("train", "val", "test"):
        if not data.get(split):
            out.append(None)
            continue
        spec, dropped = yolo_source(data[split], split, base, names, origin, opts)
        built = build_split(spec, opts, cache_dir)
        for reason, n in dropped.items():
            built.dropped[reason] = built.dropped.get(reason, 0) + n
        out.append(built)
    return Splits(out[0], out[1], out[2])


def export_yolo(split: DetectionSplit, out: Path, name: str, class_names: list[str]) -> Path:
    """Write a split as ``out/images/<name>/*.png`` and ``out/labels/<name>/*.txt`` (class cx cy w h,
    normalised), and ``out/data.yaml`` naming the splits written so far.

    Returns:
        The data.yaml.
    """
    import yaml
    from PIL import Image

    images, labels = out / "images" / name, out / "labels" / name
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for k in range(len(split)):
        stem = f"{split.image_ids[k]:06d}"
        pixels = split.images[[k]][0].permute(1, 2, 0).numpy()
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(images / f"{stem}.png")
        h, w = pixels.shape[:2]
        lines = [
            f"{int(c)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
            for (x1, y1, x2, y2), c in zip(split.boxes[k].tolist(), split.labels[k].tolist())
        ]
        (labels / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))
    data_file = out / "data.yaml"
    data = yaml.safe_load(data_file.read_text()) if data_file.is_file() else {}
    data = {"path": str(out.resolve()), **{k: v for k, v in data.items() if k not in ("path", "names")}, name: f"images/{name}", "names": list(class_names)}
    data_file.write_text(yaml.safe_dump(data, sort_keys=False))
    return data_file


# ----------------------------------------------------------------------------- export


def export_coco(split: DetectionSplit, out: Path, name: str) -> Path:
    """Write a split as PNG files in ``out/name/`` and ``out/annotations/instances_<name>.json``.

    Returns:
        The annotation file.
    """
    from PIL import Image

    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    gt = split.coco_ground_truth()
    for k, rec in enumerate(gt["images"]):
        rec["file_name"] = f"{rec['id']:06d}.png"
        pixels = split.images[[k]][0].permute(1, 2, 0).numpy()
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(folder / rec["file_name"])
    ann = out / "annotations" / f"instances_{name}.json"
    write_json(ann, gt, indent=None)
    return ann
