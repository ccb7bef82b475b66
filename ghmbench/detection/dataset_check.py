"""``ghmbench data check``: a dataset's statistics as the command prints them (images, objects per
class, box sizes, the anchor imbalance it gives the configured detector) and the anchor-fit warning,
built here so that the command line only renders them."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from ghmbench.data.builder import build_datasets
from ghmbench.detection import anchor_fit
from ghmbench.detection.autoanchor import describe_anchors, fitted_model_config
from ghmbench.detection.model import build_model


@dataclass
class DatasetCheck:
    """The statistics of a dataset's splits, as rows of text with one value per split."""

    title: str
    splits: list[str]  # the column names: train, val (and test)
    overview: dict[str, list[str]]  # images, images without objects, box sizes, anchor imbalance, drops
    per_class: dict[str, list[str]]  # objects per class
    warning: str | None  # the anchors do not fit the objects (as at the start of a run)
    anchors: str  # the detector's levels and anchor sizes (fitted, for model.anchor_sizes=auto)


def check_dataset(cfg: DictConfig) -> DatasetCheck:
    """Build ``cfg``'s datasets and detector and measure them.

    Raises:
        ConfigError: the dataset's content is invalid (one line naming the file and annotation).
    """
    train_split, val_split, test_split = build_datasets(cfg)
    channels = train_split.images.shape[1]
    model_cfg, fitted = fitted_model_config(cfg.model, train_split.boxes)
    anchors = anchor_fit.detector_anchors(
        build_model(model_cfg, train_split.num_classes, channels), channels, cfg.dataset.image_size
    )
    splits = [(n, s) for n, s in (("train", train_split), ("val", val_split), ("test", test_split)) if s is not None]
    rows: dict[str, list[str]] = {"images": [str(len(s)) for _, s in splits]}
    rows["images without objects"] = [str(sum(len(b) == 0 for b in s.boxes)) for _, s in splits]
    for _, split in splits:
        for key, value in anchor_fit.box_sizes(split).items():
            rows.setdefault(key, []).append(str(value))
        for key, value in anchor_fit.anchor_imbalance(split, anchors, split.num_classes, cfg.model).items():
            rows.setdefault(key, []).append(str(value))
    rows["dropped (on_invalid=skip; bccd: its known defects)"] = [
        ", ".join(f"{k} {n}" for k, n in s.dropped.items()) or "none" for _, s in splits
    ]
    counts = [anchor_fit.class_counts(s) for _, s in splits]
    per_class = {name: [str(c[k]) for c in counts] for k, name in enumerate(train_split.class_names)}
    return DatasetCheck(
        title=f"dataset={cfg.dataset.name} (input {cfg.dataset.image_size} px)",
        splits=[n for n, _ in splits],
        overview=rows,
        per_class=per_class,
        warning=anchor_fit.anchor_fit_warning(train_split, anchors, model_cfg, cfg.dataset.image_size),
        anchors=describe_anchors(model_cfg, fitted, cfg.dataset.image_size),
    )
