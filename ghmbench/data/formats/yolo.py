"""Ultralytics-style YOLO datasets: data.yaml, image folders or list files, one label file per image."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ghmbench.data.formats.images import image_size
from ghmbench.data.formats.options import FileDatasetCfg
from ghmbench.data.formats.source import SourceSpec, Validator, build_split, options
from ghmbench.data.splits import Splits
from ghmbench.errors import DatasetError

YOLO_TOLERANCE = 1e-3  # normalised coordinates may leave [0, 1] by this much (rounding in exports)
YOLO_IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def yolo_data_file(dataset: dict) -> Path:
    """The data.yaml of ``dataset.root`` (the file itself, or the folder holding data.yaml)."""
    root = Path(dataset["root"]).expanduser()
    path = root / "data.yaml" if root.is_dir() else root
    if not path.is_file():
        raise DatasetError(
            f"dataset.root={root}: no such file{' (no data.yaml in the folder)' if root.is_dir() else ''}; allowed: "
            "an ultralytics-style data.yaml, or the folder holding it"
        )
    return path


def yolo_data(dataset: dict) -> tuple[Path, dict, list[str]]:
    """(dataset folder, the parsed data.yaml, class names) with the file's keys checked."""
    import yaml

    path = yolo_data_file(dataset)
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DatasetError(
            f"{path}: not valid YAML ({' '.join(str(e).split())}); allowed: an ultralytics-style data.yaml"
        ) from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: not a mapping; allowed: a data.yaml with path, train, val, optional test, names")
    for key in ("train", "val", "names"):
        if not data.get(key):
            raise DatasetError(
                f"{path}: '{key}' is missing; allowed: a data.yaml with path, train, val, optional test, names"
            )
    names = data["names"]
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise DatasetError(
                f"{path}: names keys {sorted(names)!r:.80} are not 0..{len(names) - 1}; allowed: names as a list, or "
                "a mapping with class ids 0..K-1"
            )
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
            raise DatasetError(
                f"{origin}: {key}: {p} does not exist; allowed: an image folder or a list file of image paths "
                "(relative to 'path')"
            )
    return images, folders


def _check_orphan_labels(folders: list[Path], images: list[Path], validator: Validator) -> None:
    """A label file whose image is missing is a mistake (a renamed or deleted image)."""
    stems = {p.with_suffix("") for p in images}
    for folder in folders:
        labels = yolo_label_path(folder / "x.png").parent
        for txt in sorted(labels.rglob("*.txt")) if labels.is_dir() and labels != folder else []:
            if folder / txt.relative_to(labels).with_suffix("") not in stems:
                validator.bad("label_without_image", f"{txt}", "has no image", f"an image of the same name in {folder}")


def _parse_label_line(line: str, what: str, names: list[str], validator: Validator) -> tuple[int, list[float]] | None:
    """(class id, [cx, cy, w, h] normalised) of one label line, or None: reported to ``validator``."""
    fields_ = line.split()
    if len(fields_) != 5:
        validator.bad(
            "bad_label_line", what, f"{len(fields_)} fields", "5 fields: class cx cy w h (normalised to [0, 1])"
        )
        return None
    try:
        cls, coords = int(fields_[0]), [float(x) for x in fields_[1:]]
    except ValueError:
        validator.bad(
            "bad_label_line", what, f"{line.strip()!r:.60} is not numbers", "an integer class id and 4 numbers"
        )
        return None
    if not 0 <= cls < len(names):
        validator.bad(
            "class_out_of_range", what, f"class id {cls} is out of range", f"0..{len(names) - 1} ({', '.join(names)})"
        )
        return None
    if not all(math.isfinite(x) and -YOLO_TOLERANCE <= x <= 1 + YOLO_TOLERANCE for x in coords):
        validator.bad(
            "coordinates_outside_image",
            what,
            f"cx cy w h {' '.join(fields_[1:])} leave [0, 1]",
            f"normalised coordinates in [0, 1] (tolerance {YOLO_TOLERANCE:g})",
        )
        return None
    return cls, coords


def yolo_source(
    entry: Any, split: str, base: Path, names: list[str], origin: Path, opts: FileDatasetCfg
) -> tuple[SourceSpec, dict[str, int]]:
    """One split of a YOLO dataset (``entry``: its data.yaml value; ``base``, ``names``: from
    :func:`yolo_data`) as a COCO dict (category ids 1..K), and the label lines dropped
    (``on_invalid=skip``) before the common validation."""
    images, folders = yolo_images(base, entry, split, origin)
    spec = SourceSpec(
        {"images": [], "annotations": [], "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)]},
        base,
        f"{origin} ({split})",
        {},
        by_name=True,
    )
    validator = Validator(spec, opts.on_invalid)
    _check_orphan_labels(folders, images, validator)
    gt = spec.gt
    for iid, image in enumerate(images, start=1):
        rec: dict[str, Any] = {"id": iid, "file_name": str(image)}
        gt["images"].append(rec)
        label = yolo_label_path(image)
        if not label.is_file() or not image.is_file():
            continue  # no label file: an image without objects (a missing image: reported by the validation)
        try:
            w, h = image_size(image)
        except Exception:  # noqa: BLE001 -- reported as unreadable by the validation
            continue
        for n, line in enumerate(label.read_text().splitlines(), start=1):
            what = f"{label}: line {n}"
            parsed = _parse_label_line(line, what, names, validator) if line.split() else None
            if parsed is None:
                continue
            cls, (cx, cy, bw, bh) = parsed
            aid = len(gt["annotations"]) + 1
            spec.describe[aid] = what
            box = [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
            gt["annotations"].append({"id": aid, "image_id": iid, "category_id": cls + 1, "bbox": box, "iscrowd": 0})
    return spec, validator.dropped


def load_yolo_detection(dataset: dict, cache_dir: Path | None) -> Splits:
    """(train, val, test or None) of an ultralytics-style YOLO dataset (``dataset.root``: its data.yaml)."""
    opts = options(dataset)
    base, data, names = yolo_data(dataset)  # data.yaml read once for the three splits
    origin = yolo_data_file(dataset)
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
