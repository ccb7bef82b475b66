"""One split's annotations as a COCO instances dict: where it comes from (:class:`SourceSpec`),
its validation (``dataset.on_invalid``: error or skip), and the letterboxed split it becomes."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from ghmbench.data.formats.images import image_size, letterbox_size, load_images
from ghmbench.data.formats.options import FileDatasetCfg
from ghmbench.data.splits import DetectionSplit
from ghmbench.errors import DatasetError


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


class Validator:
    """Collects dropped items in ``skip`` mode, raises :class:`DatasetError` in ``error`` mode."""

    def __init__(self, spec: SourceSpec, on_invalid: str) -> None:
        self.spec, self.skip = spec, on_invalid == "skip"
        self.dropped: dict[str, int] = {}

    def bad(self, reason: str, what: str, message: str, allowed: str) -> None:
        if not self.skip:
            raise DatasetError(
                f"{self.spec.origin}: {what}: {message}; allowed: {allowed} (dataset.on_invalid=skip drops it)"
            )
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


def validate_source(
    spec: SourceSpec, opts: FileDatasetCfg, categories: list[dict] | None = None
) -> tuple[dict, list[Path], dict[str, int]]:
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
        raise DatasetError(
            f"{origin}: not a COCO instances file (expected an object with images, annotations, categories)"
        )
    images = _list_of_dicts(gt, "images", origin)
    anns = _list_of_dicts(gt, "annotations", origin, required=False)
    cats = categories if categories is not None else _list_of_dicts(gt, "categories", origin)
    if not cats:
        raise DatasetError(f"{origin}: no categories; allowed: at least one entry in 'categories'")
    validator = Validator(spec, opts.on_invalid)
    cat_ids = {c["id"] for c in cats}
    all_ids = {r.get("id") for r in images}
    kept, paths = _kept_images(images, spec, opts, validator)
    out_anns = []
    for ann in anns:
        fields_ = _clean_annotation(ann, kept, all_ids, cat_ids, cats, opts.box_tolerance, validator)
        if fields_ is not None:
            out_anns.append({"id": len(out_anns) + 1, **fields_})
    if not kept:
        raise DatasetError(
            f"{origin}: empty dataset: no usable image ({_dropped_text(validator.dropped)}); allowed: at least one "
            "image"
        )
    if not any(a["iscrowd"] == 0 for a in out_anns):
        raise DatasetError(
            f"{origin}: empty dataset: no usable object annotation ({_dropped_text(validator.dropped)}); allowed: at "
            "least one box"
        )
    clean = {
        "images": list(kept.values()),
        "annotations": out_anns,
        "categories": [{"id": c["id"], "name": str(c.get("name", c["id"]))} for c in cats],
    }
    return clean, [paths[i] for i in kept], validator.dropped


def _kept_images(
    images: list[dict], spec: SourceSpec, opts: FileDatasetCfg, validator: Validator
) -> tuple[dict[int, dict], dict[int, Path]]:
    """The image records that pass (by id, sorted; at most ``max_images``) with the file's size, and their paths."""
    kept: dict[int, dict] = {}
    paths: dict[int, Path] = {}
    for rec in sorted(
        images, key=lambda r: (not isinstance(r.get("id"), int), r.get("id") if isinstance(r.get("id"), int) else 0)
    ):
        iid, name = rec.get("id"), rec.get("file_name")
        if not isinstance(iid, int) or not isinstance(name, str) or iid in kept:
            validator.bad(
                "bad_image_record",
                f"image record {rec!r:.80}",
                "needs a unique integer 'id' and a 'file_name'",
                "COCO image records",
            )
            continue
        path = Path(name) if os.path.isabs(name) else spec.image_root / name
        if not path.is_file():
            validator.bad("missing_image", f"image id {iid}", f"file {path} does not exist", "an existing image file")
            continue
        try:
            w, h = image_size(path)
        except Exception as e:  # PIL raises several types for broken files
            validator.bad(
                "unreadable_image",
                f"image id {iid}",
                f"file {path} cannot be read ({type(e).__name__})",
                "a readable PNG or JPEG",
            )
            continue
        rw, rh = rec.get("width", w), rec.get("height", h)
        if (rw, rh) != (w, h):
            validator.bad(
                "image_size_mismatch",
                f"image id {iid}",
                f"file {path} is {w}x{h} but its record says {rw}x{rh}",
                "a record matching the file",
            )
            continue
        kept[iid] = {"id": iid, "file_name": name, "width": w, "height": h}
        paths[iid] = path
        if opts.max_images is not None and len(kept) >= opts.max_images:
            break
    return kept, paths


def _clean_annotation(
    ann: dict,
    kept: dict[int, dict],
    all_ids: set,
    cat_ids: set,
    cats: list[dict],
    tolerance: float,
    validator: Validator,
) -> dict | None:
    """The clean annotation's fields but its id (the box clipped to its image), or None: dropped,
    or its image was (or was cut by max_images)."""
    what = validator.ann_name(ann)
    iid, cid, bbox = ann.get("image_id"), ann.get("category_id"), ann.get("bbox")
    if iid not in kept:
        if iid not in all_ids or not isinstance(iid, int):
            validator.bad(
                "unknown_image", what, f"image_id {iid!r} is not in 'images'", "the id of an image of this file"
            )
        return None  # its image was dropped (or cut by max_images): the annotation goes with it
    if cid not in cat_ids:
        if validator.spec.by_name:
            names = ", ".join(str(c.get("name")) for c in cats)
            validator.bad(
                "unknown_category",
                what,
                f"class {cid!r} is not one of the dataset's classes",
                f"one of {names} (dataset.classes)",
            )
        else:
            validator.bad(
                "unknown_category", what, f"category_id {cid!r} is not a known category", f"one of {sorted(cat_ids)}"
            )
        return None
    corners = _clipped_box(bbox, kept[iid], tolerance, validator, what)
    if corners is None:
        return None
    x1, y1, x2, y2 = corners
    crowd = int(bool(ann.get("iscrowd", 0)))
    bw, bh = x2 - x1, y2 - y1
    area = float(ann["area"]) if crowd and isinstance(ann.get("area"), (int, float)) else bw * bh
    return {"image_id": iid, "category_id": cid, "bbox": [x1, y1, bw, bh], "area": area, "iscrowd": crowd}


def _clipped_box(
    bbox: Any, image: dict, tolerance: float, validator: Validator, what: str
) -> tuple[float, float, float, float] | None:
    """An annotation's [x, y, width, height] checked against its image and clipped to it, as
    corners (x1, y1, x2, y2); None when it is invalid (reported to ``validator``)."""
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(x, (int, float)) for x in bbox)):
        validator.bad("bad_box", what, f"bbox {bbox!r} is not 4 numbers", "[x, y, width, height]")
        return None
    if not all(math.isfinite(x) for x in bbox):
        validator.bad("non_finite_box", what, f"bbox {bbox} has NaN or infinite coordinates", "finite numbers")
        return None
    x, y, w, h = (float(t) for t in bbox)
    if w <= 0 or h <= 0:
        validator.bad("non_positive_size", what, f"bbox width {w:g} and height {h:g}", "width > 0 and height > 0")
        return None
    width, height = image["width"], image["height"]
    if x < -tolerance or y < -tolerance or x + w > width + tolerance or y + h > height + tolerance:
        validator.bad(
            "box_outside_image",
            what,
            f"bbox [{x:g}, {y:g}, {w:g}, {h:g}] leaves the {width}x{height} image by more than "
            f"dataset.box_tolerance={tolerance:g} px",
            "boxes inside the image",
        )
        return None
    x1, y1, x2, y2 = max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h)
    if x2 <= x1 or y2 <= y1:
        validator.bad(
            "non_positive_size",
            what,
            f"bbox [{x:g}, {y:g}, {w:g}, {h:g}] is empty inside the image",
            "width > 0 and height > 0",
        )
        return None
    return x1, y1, x2, y2


def _dropped_text(dropped: dict[str, int]) -> str:
    return ", ".join(f"{k}: {n} dropped" for k, n in sorted(dropped.items())) or "nothing dropped"


def build_split(
    spec: SourceSpec, opts: FileDatasetCfg, cache_dir: Path | None, categories: list[dict] | None = None
) -> DetectionSplit:
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
        xyxy = torch.tensor(
            [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], dtype=torch.float32
        ).reshape(-1, 4)
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


def options(dataset: dict) -> FileDatasetCfg:
    opts = FileDatasetCfg(**{f.name: dataset[f.name] for f in fields(FileDatasetCfg)})
    opts.cache_images = str(opts.cache_images).lower()
    return opts
