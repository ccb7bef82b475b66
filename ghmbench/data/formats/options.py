"""The options shared by the datasets read from disk (coco, voc, yolo): one dataclass that the
config schema extends and the format readers take."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class FileDatasetCfg:
    """Knobs shared by the datasets read from disk (coco, voc, yolo)."""

    root: Optional[str]
    image_size: int
    channels: int
    on_invalid: str
    box_tolerance: float
    max_images: Optional[int]
    cache_images: str
    num_workers: Optional[int]
