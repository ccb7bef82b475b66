"""A dataset's splits in memory (:class:`DetectionSplit`, :class:`Splits`) and the batch
iterator over one split, sharded across processes under torch.distributed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from ghmbench.errors import ConfigError


@dataclass
class DetectionSplit:
    """One split, every image at the network's input size.

    Attributes:
        images: [N, C, H, W] uint8 in memory, or a lazy loader with the same ``shape`` whose
            ``images[idx]`` decodes a batch (``ghmbench.data.formats.images.LazyImages``).
        boxes: per image, [G, 4] float32 xyxy in input pixels.
        labels: per image, [G] int64 contiguous labels in [0, num_classes).
        class_names: name of each contiguous label.
        image_ids: COCO image id of each image.
        category_ids: COCO category id of each contiguous label.
        scales: [N, 2] float64 (scale_x, scale_y) from original to input pixels; None = 1.
        orig_sizes: per image (height, width) of the original file; None = the input size.
        ground_truth: the original COCO annotations to evaluate against; None = built from boxes.
        dropped: items dropped while loading, by reason: invalid ones (``dataset.on_invalid=skip``) and a
            dataset's known defects (``dataset=bccd``: point boxes dropped, near-duplicate boxes merged).
        noisy_boxes: per image, [K, 4] float32 xyxy boxes of the objects whose label is known to be
            wrong (generated label noise: left unannotated, or annotated with another class); None =
            no known noise. The training loop measures how much gradient their anchors get.
    """

    images: Any
    boxes: list[Tensor]
    labels: list[Tensor]
    class_names: list[str]
    image_ids: list[int] = field(default_factory=list)
    category_ids: list[int] = field(default_factory=list)
    scales: Optional[Tensor] = None
    orig_sizes: Optional[list[tuple[int, int]]] = None
    ground_truth: Optional[dict] = None
    dropped: dict[str, int] = field(default_factory=dict)
    noisy_boxes: Optional[list[Tensor]] = None

    def __post_init__(self) -> None:
        if not self.image_ids:
            self.image_ids = list(range(1, len(self.boxes) + 1))
        if not self.category_ids:
            self.category_ids = list(range(1, len(self.class_names) + 1))

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_original(self, k: int, boxes: Tensor) -> Tensor:
        """Boxes [D, 4] xyxy of image ``k`` from input pixels back to its original pixels (clipped)."""
        if self.scales is None:
            return boxes
        sx, sy = self.scales[k].tolist()
        h, w = self.orig_sizes[k] if self.orig_sizes else self.images.shape[-2:]
        out = boxes.double() / torch.tensor([sx, sy, sx, sy], dtype=torch.float64)
        out[:, 0::2] = out[:, 0::2].clamp(0, w)
        out[:, 1::2] = out[:, 1::2].clamp(0, h)
        return out.float()

    def coco_ground_truth(self) -> dict:
        """The split's annotations as a COCO instances dict (boxes in xywh, original pixels)."""
        if self.ground_truth is not None:
            return self.ground_truth
        h, w = self.images.shape[-2:]
        images = [{"id": i, "width": int(w), "height": int(h), "file_name": f"{i:06d}.png"} for i in self.image_ids]
        cats = [{"id": c, "name": n} for c, n in zip(self.category_ids, self.class_names)]
        anns = []
        for img_id, boxes, labels in zip(self.image_ids, self.boxes, self.labels):
            for box, label in zip(boxes.tolist(), labels.tolist()):
                x1, y1, x2, y2 = box
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": img_id,
                        "category_id": self.category_ids[label],
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": (x2 - x1) * (y2 - y1),
                        "iscrowd": 0,
                    }
                )
        return {"images": images, "annotations": anns, "categories": cats}


class Splits(NamedTuple):
    """The splits of a dataset: train, validation, and the held-out test split or None."""

    train: DetectionSplit
    val: DetectionSplit
    test: Optional[DetectionSplit] = None


def check_shardable(batch_size: int, world_size: int) -> None:
    """A global batch must split into equal shards, one per process.

    Raises:
        ConfigError: ``batch_size`` is not a multiple of ``world_size``.
    """
    if batch_size % world_size:
        raise ConfigError(
            f"train.batch_size={batch_size} is not allowed with {world_size} processes; allowed: a multiple of "
            f"{world_size}"
        )


def iterate_batches(
    split: DetectionSplit,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    *,
    rank: int = 0,
    world_size: int = 1,
    skip: int = 0,
) -> Iterator[tuple[Tensor, list[Tensor], list[Tensor], list[int]]]:
    """Yield (images [B, C, H, W] float in [0, 1], boxes list, labels list, indices).

    Images held in memory are sliced; a lazy split decodes its batches in worker processes.

    With ``world_size`` > 1 every rank draws the same order (pass generators seeded alike) and
    yields only its contiguous shard of each global batch of ``batch_size`` images, so ranks
    0..W-1 together see exactly the single-process batches. A smaller last batch is split as
    evenly as possible, and skipped on every rank when it has fewer images than ranks (a rank
    cannot step on an empty shard). ``skip``: leave out the first ``skip`` batches of that order
    (an epoch resumed after a stop), without loading them.

    Raises:
        ConfigError: ``batch_size`` is not a multiple of ``world_size`` (at the first ``next``).
    """
    check_shardable(batch_size, world_size)
    n = len(split)
    order = torch.randperm(n, generator=generator).tolist() if shuffle else list(range(n))
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    batches = [order[start : start + batch_size] for start in range(0, stop, batch_size)]
    if world_size > 1:  # this rank's shard of each global batch
        batches = [
            np.array_split(np.asarray(idx), world_size)[rank].tolist() for idx in batches if len(idx) >= world_size
        ]
    batches = batches[skip:]
    if isinstance(split.images, Tensor):
        pixels: Iterator[Tensor] = (split.images[idx] for idx in batches)
    else:
        pixels = split.images.batches(batches)
    for idx, raw in zip(batches, pixels):
        images = raw.float().div_(255.0)
        yield images, [split.boxes[i] for i in idx], [split.labels[i] for i in idx], idx
