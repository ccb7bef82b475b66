"""Writing a split to disk as a COCO-format or a YOLO-format dataset (``ghmbench data export``)."""

from __future__ import annotations

from pathlib import Path

from ghmbench.data.splits import DetectionSplit
from ghmbench.store.fileio import write_json


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
    data = {
        "path": str(out.resolve()),
        **{k: v for k, v in data.items() if k not in ("path", "names")},
        name: f"images/{name}",
        "names": list(class_names),
    }
    data_file.write_text(yaml.safe_dump(data, sort_keys=False))
    return data_file


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
