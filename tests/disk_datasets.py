"""Small real COCO-format and Pascal VOC datasets written to disk for the tests.

Images come from the embedded digits dataset, resized to different sizes and aspect ratios and
saved as PNG or JPEG, grey or RGB; boxes are scaled with them. Category ids are deliberately
not contiguous (10, 20, ...) so the label mapping is exercised.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image
from torch.nn import functional

from ghmbench.data.digits import DigitsParams, load_digits_detection
from ghmbench.data.formats.voc import VOC_CLASSES

SIZES = [(64, 64), (48, 96), (100, 60), (80, 80), (40, 120), (96, 72)]  # (height, width)


def _digits(num_train: int, num_val: int):
    return tuple(load_digits_detection(DigitsParams(num_train=num_train, num_val=num_val, seed=3), None))[:2]


def _resized(image: torch.Tensor, k: int) -> tuple[torch.Tensor, float, float]:
    h, w = SIZES[k % len(SIZES)]
    out = functional.interpolate(image[None].float(), size=(h, w), mode="bilinear", align_corners=False)[0]
    out = out.round().clamp(0, 255).to(torch.uint8)
    if k % 2:
        out = out.expand(3, -1, -1).contiguous()  # an RGB file
    return out, w / image.shape[-1], h / image.shape[-2]


def _save(image: torch.Tensor, path: Path) -> None:
    """[C, H, W] uint8 as a PNG or JPEG file (grey when C = 1)."""
    pixels = image.permute(1, 2, 0).numpy()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(path, quality=95)


def make_coco(root: Path, num_train: int = 48, num_val: int = 12, crowd: bool = True) -> Path:
    """COCO layout under root: train/, val/, annotations/instances_{train,val}.json."""
    train, val = _digits(num_train, num_val)
    cats = [{"id": 10 * (c + 1), "name": f"digit{c}"} for c in range(10)]
    for name, split in (("train", train), ("val", val)):
        (root / name).mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for k in range(len(split)):
            img, sx, sy = _resized(split.images[k], k)
            file_name = f"{k:04d}.{'jpg' if k % 3 == 1 else 'png'}"
            _save(img, root / name / file_name)
            image_id = 1000 + 7 * k
            images.append({"id": image_id, "file_name": file_name, "width": img.shape[-1], "height": img.shape[-2]})
            for box, label in zip(split.boxes[k].tolist(), split.labels[k].tolist()):
                x1, y1, x2, y2 = box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": image_id,
                        "category_id": cats[label]["id"],
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": (x2 - x1) * (y2 - y1),
                        "iscrowd": 0,
                    }
                )
        if crowd:  # a crowd region: not a training target, ignored by COCOeval
            w, h = images[0]["width"], images[0]["height"]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": images[0]["id"],
                    "category_id": 10,
                    "bbox": [0, 0, w / 3, h / 3],
                    "area": w * h / 9,
                    "iscrowd": 1,
                }
            )
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"instances_{name}.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": cats})
        )
    return root


def coco_overrides(root: Path) -> list[str]:
    return [
        "dataset=coco",
        f"dataset.root={root}",
        "dataset.train_split=train",
        "dataset.val_split=val",
        "dataset.image_size=64",
    ]


def make_voc(
    root: Path, num_train: int = 40, num_val: int = 12, names: list[str] | None = None, layout: str = "devkit"
) -> Path:
    """VOCdevkit/VOC2007 under root with trainval and test image sets; one object is difficult.

    Args:
        names: class name of each digit (default: the first 10 PASCAL names).
        layout: ``devkit`` (with ImageSets), ``labelimg`` (root/Annotations + root/JPEGImages, no
            ImageSets) or ``flat`` (images beside their XML files in root, no ImageSets).
    """
    names = names or VOC_CLASSES
    train, val = _digits(num_train, num_val)
    base = root / "VOCdevkit" / "VOC2007" if layout == "devkit" else root
    for sub in (
        ("JPEGImages", "Annotations", "ImageSets/Main")
        if layout == "devkit"
        else ("JPEGImages", "Annotations")
        if layout == "labelimg"
        else ()
    ):
        (base / sub).mkdir(parents=True, exist_ok=True)
    base.mkdir(parents=True, exist_ok=True)
    image_dir, ann_dir = (base / "JPEGImages", base / "Annotations") if layout != "flat" else (base, base)
    for image_set, split, offset in (("trainval", train, 0), ("test", val, 5000)):
        listed = []
        for k in range(len(split)):
            name = f"{offset + k:06d}"
            img, sx, sy = _resized(split.images[k], k)
            _save(img.expand(3, -1, -1).contiguous(), image_dir / f"{name}.jpg")
            objects = []
            for j, (box, label) in enumerate(zip(split.boxes[k].tolist(), split.labels[k].tolist())):
                x1, y1, x2, y2 = round(box[0] * sx) + 1, round(box[1] * sy) + 1, round(box[2] * sx), round(box[3] * sy)
                difficult = int(k == 0 and j == 0)
                objects.append(
                    f"<object><name>{names[label]}</name><difficult>{difficult}</difficult>"
                    f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
                )
            size = f"<width>{img.shape[-1]}</width><height>{img.shape[-2]}</height><depth>3</depth>"
            xml = f"<annotation><filename>{name}.jpg</filename><size>{size}</size>{''.join(objects)}</annotation>"
            (ann_dir / f"{name}.xml").write_text(xml)
            listed.append(name)
        if layout == "devkit":
            (base / "ImageSets" / "Main" / f"{image_set}.txt").write_text("\n".join(listed) + "\n")
    return root


def make_yolo(
    root: Path, num_train: int = 40, num_val: int = 12, names_as_dict: bool = False, list_files: bool = False
) -> Path:
    """An ultralytics-style dataset under root: data.yaml, images/{train,val}/, labels/{train,val}/.

    Images of several sizes, PNG and JPEG, grey and RGB; the last training image has no label
    file (an image without objects). ``list_files``: train / val given as list files of image
    paths (train.txt, val.txt) instead of folders. Class names ``digit0``..``digit9``.
    """
    train, val = _digits(num_train, num_val)
    names = [f"digit{c}" for c in range(10)]
    lines = {"path": str(root)}
    for name, split in (("train", train), ("val", val)):
        (root / "images" / name).mkdir(parents=True, exist_ok=True)
        (root / "labels" / name).mkdir(parents=True, exist_ok=True)
        listed = []
        for k in range(len(split)):
            img, sx, sy = _resized(split.images[k], k)
            file = root / "images" / name / f"{k:04d}.{'jpg' if k % 3 == 1 else 'png'}"
            _save(img, file)
            listed.append(f"./images/{name}/{file.name}")
            if name == "train" and k == len(split) - 1:
                continue  # no label file: no objects
            h, w = img.shape[-2:]
            rows = []
            for (x1, y1, x2, y2), label in zip(split.boxes[k].tolist(), split.labels[k].tolist()):
                x1, y1, x2, y2 = x1 * sx, y1 * sy, x2 * sx, y2 * sy
                rows.append(
                    f"{label} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}\n"
                )
            (root / "labels" / name / f"{file.stem}.txt").write_text("".join(rows))
        if list_files:
            (root / f"{name}.txt").write_text("\n".join(listed) + "\n")
        lines[name] = f"{name}.txt" if list_files else f"images/{name}"
    names_yaml = (
        "\n".join(f"  {k}: {n}" for k, n in enumerate(names)) if names_as_dict else "\n".join(f"  - {n}" for n in names)
    )
    (root / "data.yaml").write_text("".join(f"{k}: {v}\n" for k, v in lines.items()) + f"names:\n{names_yaml}\n")
    return root


def yolo_overrides(root: Path) -> list[str]:
    return ["dataset=yolo", f"dataset.root={root}", "dataset.image_size=64"]
