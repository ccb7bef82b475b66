"""The config schema: each section's typed fields (no default values: the YAML configs under
``conf/`` hold them, and :func:`ghmbench.config.compose.validate` fills a key a config leaves out from
the built-in option's YAML), what each value may be (:data:`RANGES`), and the checks across keys.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, make_dataclass
from types import UnionType
from typing import Any, Optional, get_args, get_type_hints

from omegaconf import DictConfig

from ghmbench.data.digits import DigitsParams
from ghmbench.data.formats.options import FileDatasetCfg
from ghmbench.errors import ConfigError
from ghmbench.losses.builtin import BUILTIN_LOSSES
from ghmbench.ranges import (
    LOSS_PARAMETERS,
    Check,
    in_unit_interval,
    is_at_least_one,
    is_non_negative,
    is_positive,
)
from ghmbench.store.fields import METRICS

DigitsCfg = make_dataclass("DigitsCfg", [*get_type_hints(DigitsParams).items(), ("name", str)])
"""The digits dataset's section: ``name`` and the generator's knobs (:class:`~ghmbench.data.digits.DigitsParams`)."""


@dataclass
class CocoCfg(FileDatasetCfg):
    name: str
    train_split: str
    val_split: str
    train_images: Optional[str]
    val_images: Optional[str]
    train_annotations: Optional[str]
    val_annotations: Optional[str]
    test_split: Optional[str]  # optional held-out split (COCO layout name), or the two paths below
    test_images: Optional[str]
    test_annotations: Optional[str]


@dataclass
class VocCfg(FileDatasetCfg):
    name: str
    train_sets: list[str]
    val_sets: list[str]
    test_sets: list[str]  # optional held-out split, e.g. [2007-test] with val_sets=[2007-val]
    download: bool
    classes: Any  # null: from the annotations (PASCAL's 20 when all names are PASCAL's); a list; or pascal
    val_fraction: float  # without ImageSets (LabelImg exports): the seeded split's shares
    test_fraction: float
    split_seed: int


@dataclass
class BccdCfg(FileDatasetCfg):
    """The embedded BCCD photos (:mod:`ghmbench.data.bccd`); ``root`` null reads the embedded copy."""

    name: str


@dataclass
class YoloCfg(FileDatasetCfg):
    """An ultralytics-style YOLO dataset: ``root`` is its data.yaml (or the folder holding it)."""

    name: str
    classes: Any  # filled in from data.yaml's names when the config is validated (so they are in the run key)


@dataclass
class ModelCfg:
    backbone: str
    backbone_width: int
    weights_path: Optional[str]
    levels: list[int]
    fpn_channels: int
    head_convs: int
    anchor_sizes: Any  # one positive size per level, or auto (fitted to the training boxes)
    anchor_scales: list[float]
    aspect_ratios: list[float]
    prior_prob: float
    fg_iou: float
    bg_iou: float
    allow_low_quality: bool
    score_thresh: float
    topk_candidates: int
    nms_thresh: float
    detections_per_img: int


def _loss_schema(schema_name: str, loss_class: type) -> type:
    """A built-in loss's section: ``name``, ``_target_`` and the parameters of the class's
    constructor, typed as it declares them (the values are the YAML's, e.g. conf/loss/ghm.yaml)."""
    hints = get_type_hints(loss_class.__init__)
    parameters = [name for name in inspect.signature(loss_class.__init__).parameters if name != "self"]
    return make_dataclass(
        schema_name, [("name", str), ("_target_", str), *((name, _optional(hints[name])) for name in parameters)]
    )


def _optional(hint: Any) -> Any:
    """``float | None`` as ``Optional[float]`` (the spelling OmegaConf reads)."""
    return (
        Optional[tuple(arg for arg in get_args(hint) if arg is not type(None))[0]]
        if isinstance(hint, UnionType)
        else hint
    )


LOSS_SCHEMAS = {
    section: {name: _loss_schema(f"{loss_class.__name__}Cfg", loss_class) for name, loss_class in losses.items()}
    for section, losses in BUILTIN_LOSSES.items()
}


@dataclass
class TrainCfg:
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    warmup_iters: int
    warmup_factor: float
    schedule: str
    step_epochs: list[int]
    step_gamma: float
    grad_clip: Optional[float]
    num_threads: int
    eval_batch_size: int
    progress: bool
    checkpoint: bool
    smoke_check: bool
    g_hist_bins: int
    log_every: int
    amp: str
    channels_last: bool
    pin_memory: bool
    eval_every: int


@dataclass
class ProtocolCfg:
    """The fair-comparison protocol of ``ghmbench sweep`` (not part of any run key).

    ``tune``: Hydra sweep overrides, the search every classification loss gets (e.g.
    ``train.lr=0.001,0.002``); ``tune_with``: overrides that fix the tuning stage (e.g.
    ``seed=0``, ``regression=smooth_l1``); ``select_metric``: validation metric to select by.
    Empty ``tune`` = a plain grid sweep. ``seed_draws``: every run trains and is tested on the data
    draw of its own seed (``dataset.seed`` = ``seed``), so that intervals over seeds also cover the
    draw of the data, not only the training's randomness.
    """

    tune: list[str]
    tune_with: list[str]
    select_metric: str
    seed_draws: bool


@dataclass
class LoggerCfg:
    name: str


@dataclass
class WandbCfg:
    name: str
    project: str
    entity: Optional[str]
    group: Optional[str]
    mode: Optional[str]
    dir: Optional[str]
    tags: list[str]


@dataclass
class PathsCfg:
    runs_dir: str
    cache_dir: str


SECTIONS: dict[str, dict[str, type]] = {
    "dataset": {"digits": DigitsCfg, "bccd": BccdCfg, "coco": CocoCfg, "voc": VocCfg, "yolo": YoloCfg},
    "model": {"": ModelCfg},
    "loss": LOSS_SCHEMAS["loss"],
    "regression": LOSS_SCHEMAS["regression"],
    "train": {"": TrainCfg},
    "logger": {"none": LoggerCfg, "wandb": WandbCfg},
    "paths": {"": PathsCfg},
    "protocol": {"": ProtocolCfg},
}
"""Each section's schema by its ``name`` ("": one schema whatever the name)."""

LOSS_SECTIONS = ("loss", "regression")

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

TARGET_PATTERN = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")

PATH_KEYS = [
    f"dataset.{k}"
    for k in (
        "root",
        "train_images",
        "val_images",
        "test_images",
        "train_annotations",
        "val_annotations",
        "test_annotations",
    )
] + ["model.weights_path"]

TOP_LEVEL = {"seed": int, "device": str, "run_name": Optional[str], "force": bool, "force_keep": list}


def _voc_set(entry: Any) -> bool:
    year, _, image_set = str(entry).partition("-")
    return year in [str(y) for y in range(2007, 2013)] and (
        image_set in ("train", "val", "trainval") or (year, image_set) == ("2007", "test")
    )


RANGES: list[Check] = [
    ("seed", is_non_negative, "an integer >= 0"),
    ("device", lambda v: v in ("auto", "cpu", "cuda") or str(v).startswith("cuda:"), "one of auto, cpu, cuda, cuda:N"),
    ("dataset.image_size", lambda v: v >= 32, "an integer >= 32"),
    ("dataset.num_train", is_at_least_one, "an integer >= 1"),
    ("dataset.num_val", is_at_least_one, "an integer >= 1"),
    ("dataset.min_objects", is_non_negative, "an integer >= 0"),
    ("dataset.max_objects", is_at_least_one, "an integer >= 1 and >= dataset.min_objects"),
    ("dataset.min_scale", lambda v: v >= 4, "an integer >= 4"),
    ("dataset.max_scale", is_at_least_one, "an integer >= dataset.min_scale and <= dataset.image_size"),
    ("dataset.noise", lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    (
        "dataset.class_freq",
        lambda v: v is None or (len(v) == 10 and all(x >= 0 for x in v) and sum(v) > 0),
        "null or 10 non-negative numbers, not all zero",
    ),
    ("dataset.unannotated_rate", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("dataset.class_noise", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("dataset.val_fraction", lambda v: 0 < v < 1, "a number in (0, 1)"),
    ("dataset.max_overlap", in_unit_interval, "a number in [0, 1]"),
    ("dataset.seed", is_non_negative, "an integer >= 0"),
    ("dataset.clutter", is_non_negative, "an integer >= 0 (mean unannotated distractors per image)"),
    ("dataset.num_test", is_non_negative, "an integer >= 0 (0 = no test split)"),
    ("dataset.test_fraction", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("dataset.split_seed", is_non_negative, "an integer >= 0"),
    (
        "dataset.classes",
        lambda v: (
            v is None or v == "pascal" or (isinstance(v, list) and len(v) >= 1 and len(set(map(str, v))) == len(v))
        ),
        "null (from the annotations), pascal, or a non-empty list of distinct class names",
    ),
    ("dataset.channels", lambda v: v in (1, 3), "1 (grey) or 3 (RGB)"),
    ("dataset.on_invalid", lambda v: v in ("error", "skip"), "error or skip"),
    ("dataset.box_tolerance", is_non_negative, "a number of pixels >= 0"),
    ("dataset.max_images", lambda v: v is None or v >= 1, "null (all) or an integer >= 1"),
    ("dataset.cache_images", lambda v: str(v).lower() in ("auto", "true", "false"), "auto, true or false"),
    ("dataset.num_workers", lambda v: v is None or v >= 0, "null (auto) or an integer >= 0"),
    ("dataset.hflip", in_unit_interval, "a probability in [0, 1] (0 = no flip)"),
    ("dataset.scale_jitter", lambda v: len(v) == 2 and 0 < v[0] <= v[1], "[low, high], 0 < low <= high ([1, 1]: off)"),
    (
        "dataset.train_sets",
        lambda v: len(v) >= 1 and all(_voc_set(x) for x in v),
        "a non-empty list of YEAR-SET, YEAR in 2007..2012, SET in train, val, trainval (test: 2007 only)",
    ),
    (
        "dataset.val_sets",
        lambda v: len(v) >= 1 and all(_voc_set(x) for x in v),
        "a non-empty list of YEAR-SET, YEAR in 2007..2012, SET in train, val, trainval (test: 2007 only)",
    ),
    (
        "dataset.test_sets",
        lambda v: all(_voc_set(x) for x in v),
        "a list (empty = no test split) of YEAR-SET, YEAR in 2007..2012, SET in train, val, trainval (test: 2007 only)",
    ),
    ("model.backbone", lambda v: v in ("small", "resnet18"), "one of small, resnet18"),
    ("model.backbone_width", lambda v: v >= 4, "an integer >= 4"),
    (
        "model.levels",
        lambda v: len(v) >= 1 and list(v) == sorted(set(v)) and all(2 <= x <= 7 for x in v),
        "increasing distinct integers in 2..7",
    ),
    ("model.fpn_channels", lambda v: v >= 8, "an integer >= 8"),
    ("model.head_convs", is_non_negative, "an integer >= 0"),
    ("model.anchor_sizes", lambda v: v == "auto" or all(x > 0 for x in v), "positive numbers, one per level, or auto"),
    ("model.anchor_scales", lambda v: len(v) >= 1 and all(x > 0 for x in v), "a non-empty list of positive numbers"),
    ("model.aspect_ratios", lambda v: len(v) >= 1 and all(x > 0 for x in v), "a non-empty list of positive numbers"),
    ("model.prior_prob", lambda v: 0 < v < 1, "a number in (0, 1)"),
    ("model.fg_iou", lambda v: 0 < v <= 1, "a number in (0, 1]"),
    ("model.bg_iou", lambda v: 0 <= v, "a number in [0, model.fg_iou]"),
    ("model.score_thresh", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("model.topk_candidates", is_at_least_one, "an integer >= 1"),
    ("model.nms_thresh", lambda v: 0 < v <= 1, "a number in (0, 1]"),
    ("model.detections_per_img", is_at_least_one, "an integer >= 1"),
    *(
        (f"{section}.{key}", check, allowed)
        for section in ("loss", "regression")
        for key, check, allowed in LOSS_PARAMETERS[section]
    ),
    ("train.epochs", is_at_least_one, "an integer >= 1"),
    ("train.batch_size", is_at_least_one, "an integer >= 1"),
    ("train.optimizer", lambda v: v in ("adamw", "sgd"), "one of adamw, sgd"),
    ("train.lr", is_positive, "a number > 0"),
    ("train.momentum", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("train.weight_decay", is_non_negative, "a number >= 0"),
    ("train.warmup_iters", is_non_negative, "an integer >= 0"),
    ("train.warmup_factor", lambda v: 0 < v <= 1, "a number in (0, 1]"),
    ("train.schedule", lambda v: v in ("cosine", "step"), "one of cosine, step"),
    ("train.step_epochs", lambda v: list(v) == sorted(v) and all(x >= 1 for x in v), "increasing epochs >= 1"),
    ("train.step_gamma", lambda v: 0 < v <= 1, "a number in (0, 1]"),
    ("train.grad_clip", lambda v: v is None or v > 0, "null or a number > 0"),
    ("train.num_threads", is_non_negative, "an integer >= 0 (0 = torch's default)"),
    ("train.eval_batch_size", is_at_least_one, "an integer >= 1"),
    ("train.g_hist_bins", is_at_least_one, "an integer >= 1"),
    ("train.log_every", is_at_least_one, "an integer >= 1"),
    ("train.amp", lambda v: v in ("none", "bf16"), "one of none, bf16"),
    (
        "train.eval_every",
        is_non_negative,
        "an integer >= 0 (epochs between validation evaluations; 0 = only at the end)",
    ),
    ("protocol.tune", lambda v: all("=" in str(x) for x in v), "a list of Hydra sweep overrides KEY=V1,V2,..."),
    (
        "protocol.tune_with",
        lambda v: all("=" in str(x) and "," not in str(x) for x in v),
        "a list of single-valued overrides KEY=VALUE",
    ),
    ("protocol.select_metric", lambda v: v in METRICS, f"one of {', '.join(METRICS)}"),
    ("logger.mode", lambda v: v is None or v in ("online", "offline", "disabled"), "null, online, offline or disabled"),
]


def cross_checks(cfg: DictConfig) -> None:
    """The checks across keys of a typed config (after each value's range).

    Raises:
        ConfigError: one line naming the keys and what is allowed.
    """
    dataset, model = cfg.dataset, cfg.model
    if model.bg_iou > model.fg_iou:
        raise ConfigError(
            f"model.bg_iou={model.bg_iou} must be <= model.fg_iou={model.fg_iou} (IoU thresholds ordered)"
        )
    if model.anchor_sizes != "auto" and len(model.anchor_sizes) != len(model.levels):
        raise ConfigError(
            f"model.anchor_sizes has {len(model.anchor_sizes)} entries; allowed: one per entry of model.levels "
            f"({len(model.levels)})"
        )
    if dataset.name == "digits":
        if dataset.max_objects < dataset.min_objects:
            raise ConfigError(
                f"dataset.max_objects={dataset.max_objects} must be >= dataset.min_objects={dataset.min_objects}"
            )
        if not dataset.min_scale <= dataset.max_scale <= dataset.image_size:
            raise ConfigError(
                f"dataset.max_scale={dataset.max_scale} must be in [dataset.min_scale={dataset.min_scale}, "
                f"dataset.image_size={dataset.image_size}]"
            )
        if dataset.num_test > 0 and dataset.test_fraction == 0:
            raise ConfigError(
                "dataset.test_fraction=0 with dataset.num_test > 0: no source digits for the test images; allowed: a "
                "number in (0, 1)"
            )
        if dataset.num_test > 0 and dataset.val_fraction + dataset.test_fraction >= 0.9:
            raise ConfigError(
                f"dataset.test_fraction={dataset.test_fraction} with dataset.val_fraction={dataset.val_fraction} "
                "leaves too few training digits; allowed: a sum below 0.9"
            )
    if dataset.name == "voc" and not dataset.root:
        raise ConfigError(
            "dataset.root is required for dataset=voc; allowed: the folder holding VOCdevkit/ "
            "(dataset.root=/data/voc) or a VOC-format export"
        )
    if dataset.name == "voc" and dataset.val_fraction + dataset.test_fraction >= 0.9:
        raise ConfigError(
            f"dataset.val_fraction={dataset.val_fraction} + dataset.test_fraction={dataset.test_fraction} leaves too "
            "few training images; allowed: a sum below 0.9"
        )
    if dataset.name == "yolo" and not dataset.root:
        raise ConfigError(
            "dataset.root is required for dataset=yolo; allowed: the dataset's data.yaml, or the folder holding it "
            "(dataset.root=/data/my_set/data.yaml)"
        )
    if dataset.name == "coco":
        for split in ("train", "val"):
            for kind in ("images", "annotations"):
                if not dataset.root and not dataset[f"{split}_{kind}"]:
                    raise ConfigError(
                        f"dataset.{split}_{kind} is unset and so is dataset.root; allowed: dataset.root=/data/coco "
                        "(COCO layout) or explicit paths"
                    )
