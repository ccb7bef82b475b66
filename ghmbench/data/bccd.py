"""The embedded BCCD photos (``dataset=bccd``): where they are in the package, the upstream train / val /
test splits, and the repair of the upstream annotations' known defects.

The files are the upstream VOC folders unchanged (``ghmbench/data/embedded/bccd``, MIT license,
``ghmbench/data/embedded/bccd/PROVENANCE.md``); they are read by the VOC reader
(:mod:`ghmbench.data.formats.voc`). Two kinds of upstream annotation are wrong and are repaired here, on
every load, with what was done counted in the split's ``dropped`` (and so in ``metrics.json`` and
``ghmbench data check``):

- ``point_box``: a box whose VOC corners coincide (xmin = xmax or ymin = ymax), i.e. no object: dropped;
- ``near_duplicate_box``: a second box of the same class on the same object (IoU > 0.9 with an earlier
  box of its image): merged into the earlier one (the earlier box is kept, the later one dropped).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.ops import box_iou

from ghmbench.data.formats.source import SourceSpec, build_split, options
from ghmbench.data.formats.voc import voc_source, voc_split_items
from ghmbench.data.splits import Splits

BCCD_ROOT = Path(__file__).resolve().parent / "embedded" / "bccd"
BCCD_CLASSES = ["Platelets", "RBC", "WBC"]  # the sorted object names of the upstream annotations
DUPLICATE_IOU = 0.9  # same class and IoU above this: one object annotated twice
# The upstream ImageSets/Main lists, named as the VOC reader expects (YEAR-SET; the year only names a folder
# the reader does not find, so it reads the dataset's own root).
UPSTREAM_SETS = {"train_sets": ["2007-train"], "val_sets": ["2007-val"], "test_sets": ["2007-test"]}


def bccd_root(dataset: dict) -> Path:
    """The folder read: ``dataset.root`` when set (a copy with the same layout), else the embedded one."""
    return Path(dataset["root"]).expanduser() if dataset.get("root") else BCCD_ROOT


def repair_annotations(spec: SourceSpec) -> dict[str, int]:
    """Drop the point boxes and merge the near-duplicate boxes of one split, in place.

    Args:
        spec: the split's COCO dict from :func:`ghmbench.data.formats.voc.voc_source` (bbox [x, y, w, h],
            VOC's inclusive corners made half-open, so a point box has w or h = 1).

    Returns:
        What was done, by reason: ``point_box`` and ``near_duplicate_box`` counts (only those > 0).
    """
    kept, counts = [], {"point_box": 0, "near_duplicate_box": 0}
    by_image: dict[tuple, list[list[float]]] = {}
    for ann in spec.gt["annotations"]:
        bbox = ann.get("bbox")
        if bbox is None:  # unreadable corners: the validator names the file and object
            kept.append(ann)
            continue
        if bbox[2] <= 1 or bbox[3] <= 1:
            counts["point_box"] += 1
            continue
        x, y, w, h = bbox
        group = by_image.setdefault((ann["image_id"], ann["category_id"]), [])
        if group and box_iou(torch.tensor([[x, y, x + w, y + h]]), torch.tensor(group)).max() > DUPLICATE_IOU:
            counts["near_duplicate_box"] += 1
            continue
        group.append([x, y, x + w, y + h])
        kept.append(ann)
    spec.gt["annotations"] = kept
    return {reason: n for reason, n in counts.items() if n}


def load_bccd_detection(dataset: dict, cache_dir: Path | None) -> Splits:
    """(train, val, test) of BCCD: the upstream splits (train 205 / val 87 / test 72 images), the
    classes Platelets, RBC, WBC, the known defects repaired (:func:`repair_annotations`)."""
    opts = options(dataset)
    root = bccd_root(dataset)
    splits, _ = voc_split_items({"root": str(root), "download": False, **UPSTREAM_SETS})
    out = []
    for origin, items in splits:
        spec = voc_source(origin, items, root, BCCD_CLASSES)
        repaired = repair_annotations(spec)
        split = build_split(spec, opts, cache_dir)
        split.dropped = repaired | split.dropped
        out.append(split)
    return Splits(*out)
