"""Training augmentation for photos: a random zoom (scale jitter) and a horizontal flip of each training
image with its boxes, by ``torchvision.transforms.v2`` on ``tv_tensors``; deterministic per seed.

The file datasets (bccd, coco, voc, yolo) set it with ``dataset.hflip`` (a probability) and
``dataset.scale_jitter`` ([low, high] zoom factors); the generated digits have no augmentation. The
zoom scales the (letterboxed, square) image about its centre and keeps its size: zoomed in, the
border is cut off and the boxes with it (a box left with no area is dropped); zoomed out, the border
is filled with zeros, as the letterbox padding is.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2


class PhotoAugment:
    """Augments a training batch, the same way for the same seed.

    Args:
        hflip: probability of flipping an image left-right.
        scale_jitter: (low, high): the zoom factor is drawn uniformly from this range; (1, 1) = none.
    """

    def __init__(self, hflip: float, scale_jitter: tuple[float, float]) -> None:
        steps: list[v2.Transform] = []
        low, high = scale_jitter
        if (low, high) != (1.0, 1.0):
            steps.append(v2.RandomAffine(degrees=0.0, scale=(low, high), interpolation=v2.InterpolationMode.BILINEAR))
        if hflip > 0:
            steps.append(v2.RandomHorizontalFlip(p=hflip))
        steps.append(v2.SanitizeBoundingBoxes(min_size=1.0))  # boxes cut to nothing leave with their labels
        self.transform = v2.Compose(steps)
        self.active = len(steps) > 1

    def __call__(
        self, images: Tensor, boxes: list[Tensor], labels: list[Tensor], seeds: list[int]
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """The augmented batch.

        Args:
            images: [B, C, S, S] float in [0, 1].
            boxes: per image, [G, 4] float xyxy in input pixels.
            labels: per image, [G] int64.
            seeds: per image, the seed of its random draws (:func:`image_seed`: same seeds, same batch
                out, whatever the batch size or number of processes); torch's global random state is
                left as it was.

        Returns:
            (images [B, C, S, S], boxes per image [G', 4], labels per image [G']), G' <= G.
        """
        if not self.active:
            return images, boxes, labels
        size = tuple(images.shape[-2:])
        out_images, out_boxes, out_labels = [], [], []
        with torch.random.fork_rng(devices=[]):  # v2 draws from torch's global generator
            for image, box, label, seed in zip(images, boxes, labels, seeds):
                torch.manual_seed(seed)
                sample = self.transform(
                    {
                        "image": tv_tensors.Image(image),
                        "boxes": tv_tensors.BoundingBoxes(box, format="XYXY", canvas_size=size),
                        "labels": label,
                    }
                )
                out_images.append(sample["image"].as_subclass(Tensor))
                out_boxes.append(sample["boxes"].as_subclass(Tensor).float())
                out_labels.append(sample["labels"])
        return torch.stack(out_images), out_boxes, out_labels


def image_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one training image in one epoch: from the run's seed, the epoch and the
    image's index in the split, so a run resumed at an epoch boundary draws what the uninterrupted run
    drew, and the draws do not depend on the batch size or the number of processes."""
    return (seed * 1_000_003 + epoch) * 1_000_033 + index


def from_dataset_config(dataset: dict) -> PhotoAugment | None:
    """The augmentation a ``dataset`` section asks for, or None (the digits; or both knobs off)."""
    if "hflip" not in dataset:
        return None
    augment = PhotoAugment(float(dataset["hflip"]), tuple(float(x) for x in dataset["scale_jitter"]))
    return augment if augment.active else None
