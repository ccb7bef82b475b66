"""The dataset builder: the splits of a validated config's ``dataset`` section, from the digits
generator (:mod:`ghmbench.data.digits`) or a file format on disk (:mod:`ghmbench.data.formats`)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ghmbench.data.bccd import load_bccd_detection
from ghmbench.data.digits import DigitsParams, load_digits_detection
from ghmbench.data.formats.coco import load_coco_detection
from ghmbench.data.formats.voc import load_voc_detection
from ghmbench.data.formats.yolo import load_yolo_detection
from ghmbench.data.splits import Splits
from ghmbench.errors import ConfigError


def build_datasets(cfg: DictConfig) -> Splits:
    """(train, val, test or None) splits of the configured dataset."""
    dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
    assert isinstance(dataset, dict)
    name = dataset.pop("name")
    cache = Path(cfg.paths.cache_dir).expanduser() if cfg.paths.cache_dir else None
    if name == "digits":
        return load_digits_detection(DigitsParams(**dataset), cache)
    if name == "bccd":
        return load_bccd_detection(dataset, cache)
    if name == "coco":
        return load_coco_detection(dataset, cache)
    if name == "voc":
        return load_voc_detection(dataset, cache)
    if name == "yolo":
        return load_yolo_detection(dataset, cache)
    raise ConfigError(f"dataset.name={name!r} is not allowed; allowed: digits, bccd, coco, voc, yolo")
