"""The options shared by the datasets read from disk (bccd, coco, voc, yolo): one dataclass that the
config schema extends and the format readers take."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class FileDatasetCfg:
    """Knobs shared by the datasets read from disk (bccd, coco, voc, yolo)."""

    root: Optional[str]
    image_size: int
    channels: int
    on_invalid: str
    box_tolerance: float
    max_images: Optional[int]
    cache_images: str
    num_workers: Optional[int]
    hflip: float  # training augmentation (ghmbench.data.augment): probability of a horizontal flip
    scale_jitter: list[float]  # [low, high] range of the random zoom factor; [1, 1] = none
