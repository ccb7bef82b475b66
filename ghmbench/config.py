"""Config composition (Hydra) and validation against a dataclass schema.

``compose_config(overrides)`` composes ``conf/config.yaml`` with Hydra overrides;
``validate(cfg)`` checks every key, type and range before any work starts and raises
:class:`ConfigError` with a one-line message that names the key and what is allowed.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ghmbench.data import DigitsParams
from ghmbench.record_fields import METRICS


class ConfigError(ValueError):
    """A bad config value; the message is one line naming the key and what is allowed."""


def conf_dir() -> Path:
    """The built-in Hydra configs: $GHMBENCH_CONF_DIR, else the package's ``ghmbench/conf/`` (an
    installed wheel or sdist), else the repository's top-level ``conf/`` (a checkout or an editable
    install).

    Raises:
        ConfigError: none of them holds a config.yaml.
    """
    env = os.environ.get("GHMBENCH_CONF_DIR")
    if env:
        return Path(env)
    package = Path(__file__).resolve().parent
    candidates = (package / "conf", package.parent / "conf")
    for candidate in candidates:
        if (candidate / "config.yaml").is_file():
            return candidate
    raise ConfigError(f"no ghmbench configs (config.yaml) in {' or '.join(map(str, candidates))}; allowed: an installed ghmbench wheel, a checkout, or GHMBENCH_CONF_DIR=<folder>")


# ----------------------------------------------------------------------------- schema


@dataclass
class DigitsCfg(DigitsParams):
    name: str = "digits"


@dataclass
class FileDatasetCfg:
    """Knobs shared by the datasets read from disk (coco, voc, yolo)."""

    root: Optional[str] = None
    image_size: int = 512
    channels: int = 3
    on_invalid: str = "error"
    box_tolerance: float = 2.0
    max_images: Optional[int] = None
    cache_images: str = "auto"
    num_workers: Optional[int] = None


@dataclass
class CocoCfg(FileDatasetCfg):
    name: str = "coco"
    train_split: str = "train2017"
    val_split: str = "val2017"
    train_images: Optional[str] = None
    val_images: Optional[str] = None
    train_annotations: Optional[str] = None
    val_annotations: Optional[str] = None
    test_split: Optional[str] = None  # optional held-out split (COCO layout name), or the two paths below
    test_images: Optional[str] = None
    test_annotations: Optional[str] = None


@dataclass
class VocCfg(FileDatasetCfg):
    name: str = "voc"
    train_sets: list[str] = field(default_factory=lambda: ["2007-trainval"])
    val_sets: list[str] = field(default_factory=lambda: ["2007-test"])
    test_sets: list[str] = field(default_factory=list)  # optional held-out split, e.g. [2007-test] with val_sets=[2007-val]
    download: bool = False
    classes: Any = None  # null: from the annotations (PASCAL's 20 when all names are PASCAL's); a list; or pascal
    val_fraction: float = 0.2  # without ImageSets (LabelImg exports): the seeded split's shares
    test_fraction: float = 0.0
    split_seed: int = 0


@dataclass
class YoloCfg(FileDatasetCfg):
    """An ultralytics-style YOLO dataset: ``root`` is its data.yaml (or the folder holding it)."""

    name: str = "yolo"
    classes: Any = None  # filled in from data.yaml's names when the config is validated (so they are in the run key)


@dataclass
class ModelCfg:
    backbone: str = "small"
    backbone_width: int = 16
    weights_path: Optional[str] = None
    levels: list[int] = field(default_factory=lambda: [2, 3, 4])
    fpn_channels: int = 64
    head_convs: int = 2
    anchor_sizes: list[float] = field(default_factory=lambda: [12.0, 24.0, 48.0])
    anchor_scales: list[float] = field(default_factory=lambda: [1.0, 1.26, 1.587])
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    prior_prob: float = 0.01
    fg_iou: float = 0.5
    bg_iou: float = 0.4
    allow_low_quality: bool = True
    score_thresh: float = 0.05
    topk_candidates: int = 1000
    nms_thresh: float = 0.5
    detections_per_img: int = 100


@dataclass
class CECfg:
    name: str = "ce"
    _target_: str = "ghmbench.losses.CrossEntropyLoss"
    alpha: Optional[float] = 0.75
    loss_weight: float = 1.0


@dataclass
class FocalCfg:
    name: str = "focal"
    _target_: str = "ghmbench.losses.FocalLoss"
    alpha: Optional[float] = 0.25
    gamma: float = 2.0
    loss_weight: float = 1.0


@dataclass
class GHMCCfg:
    name: str = "ghm"
    _target_: str = "ghmbench.losses.GHMC"
    bins: int = 30
    momentum: float = 0.75
    loss_weight: float = 1.0
    per_level: bool = False
    sync: bool = True


@dataclass
class SmoothL1Cfg:
    name: str = "smooth_l1"
    _target_: str = "ghmbench.losses.SmoothL1Loss"
    beta: float = 0.11
    loss_weight: float = 1.0


@dataclass
class L1Cfg:
    name: str = "l1"
    _target_: str = "ghmbench.losses.L1Loss"
    loss_weight: float = 1.0


@dataclass
class GHMRCfg:
    name: str = "ghm"
    _target_: str = "ghmbench.losses.GHMR"
    mu: float = 0.02
    bins: int = 10
    momentum: float = 0.7
    loss_weight: float = 10.0
    per_level: bool = False
    sync: bool = True


@dataclass
class TrainCfg:
    epochs: int = 12
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0001
    warmup_iters: int = 100
    warmup_factor: float = 0.001
    schedule: str = "cosine"
    step_epochs: list[int] = field(default_factory=lambda: [8, 11])
    step_gamma: float = 0.1
    grad_clip: Optional[float] = 35.0
    num_threads: int = 0
    eval_batch_size: int = 64
    progress: bool = True
    checkpoint: bool = True
    smoke_check: bool = False
    g_hist_bins: int = 100
    log_every: int = 10
    amp: str = "none"
    channels_last: bool = False
    pin_memory: bool = True
    eval_every: int = 0


@dataclass
class ProtocolCfg:
    """The fair-comparison protocol of ``ghmbench sweep`` (not part of any run key).

    ``tune``: Hydra sweep overrides, the search every classification loss gets (e.g.
    ``train.lr=0.001,0.002``); ``tune_with``: overrides that fix the tuning stage (e.g.
    ``seed=0``, ``regression=smooth_l1``); ``select_metric``: validation metric to select by.
    Empty ``tune`` = a plain grid sweep.
    """

    tune: list[str] = field(default_factory=list)
    tune_with: list[str] = field(default_factory=list)
    select_metric: str = "AP"


@dataclass
class LoggerCfg:
    name: str = "none"


@dataclass
class WandbCfg:
    name: str = "wandb"
    project: str = "ghmbench"
    entity: Optional[str] = None
    group: Optional[str] = None
    mode: Optional[str] = None
    dir: Optional[str] = None
    tags: list[str] = field(default_factory=list)


@dataclass
class PathsCfg:
    runs_dir: str = "runs"
    cache_dir: str = "~/.cache/ghmbench"


SECTIONS: dict[str, dict[str, type]] = {
    "dataset": {"digits": DigitsCfg, "coco": CocoCfg, "voc": VocCfg, "yolo": YoloCfg},
    "model": {"": ModelCfg},
    "loss": {"ce": CECfg, "focal": FocalCfg, "ghm": GHMCCfg},
    "regression": {"smooth_l1": SmoothL1Cfg, "l1": L1Cfg, "ghm": GHMRCfg},
    "train": {"": TrainCfg},
    "logger": {"none": LoggerCfg, "wandb": WandbCfg},
    "paths": {"": PathsCfg},
    "protocol": {"": ProtocolCfg},
}
LOSS_SECTIONS = ("loss", "regression")
BUILTIN_TARGETS: dict[str, dict[str, str]] = {
    section: {name: next(f.default for f in fields(schema) if f.name == "_target_") for name, schema in SECTIONS[section].items()} for section in LOSS_SECTIONS
}
"""The class each built-in loss name stands for (a built-in name keeps its class)."""
LOSS_INTERFACE = "forward(pred, target, label_weight, avg_factor=None, level_ids=None)"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_TARGET = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
PATH_KEYS = [f"dataset.{k}" for k in ("root", "train_images", "val_images", "test_images", "train_annotations", "val_annotations", "test_annotations")] + ["model.weights_path"]
TOP_LEVEL = {"seed": int, "device": str, "run_name": Optional[str], "force": bool, "force_keep": list}


# ----------------------------------------------------------------------------- ranges

Check = tuple[str, Callable[[Any], bool], str]


def _unit(v: Any) -> bool:
    return v is not None and 0.0 <= v <= 1.0


def _alpha(v: Any) -> bool:
    return v is None or 0.0 <= v <= 1.0


def _pos(v: Any) -> bool:
    return v is not None and v > 0 and math.isfinite(v)


def _nonneg(v: Any) -> bool:
    return v is not None and v >= 0 and math.isfinite(v)


def _ge1(v: Any) -> bool:
    return v is not None and v >= 1


def _voc_set(v: Any) -> bool:
    year, _, image_set = str(v).partition("-")
    return year in [str(y) for y in range(2007, 2013)] and (image_set in ("train", "val", "trainval") or (year, image_set) == ("2007", "test"))


RANGES: list[Check] = [
    ("seed", _nonneg, "an integer >= 0"),
    ("device", lambda v: v in ("auto", "cpu", "cuda") or str(v).startswith("cuda:"), "one of auto, cpu, cuda, cuda:N"),
    ("dataset.image_size", lambda v: v >= 32, "an integer >= 32"),
    ("dataset.num_train", _ge1, "an integer >= 1"),
    ("dataset.num_val", _ge1, "an integer >= 1"),
    ("dataset.min_objects", _nonneg, "an integer >= 0"),
    ("dataset.max_objects", _ge1, "an integer >= 1 and >= dataset.min_objects"),
    ("dataset.min_scale", lambda v: v >= 4, "an integer >= 4"),
    ("dataset.max_scale", _ge1, "an integer >= dataset.min_scale and <= dataset.image_size"),
    ("dataset.noise", lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    ("dataset.class_freq", lambda v: v is None or (len(v) == 10 and all(x >= 0 for x in v) and sum(v) > 0), "null or 10 non-negative numbers, not all zero"),
    ("dataset.unannotated_rate", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("dataset.val_fraction", lambda v: 0 < v < 1, "a number in (0, 1)"),
    ("dataset.max_overlap", _unit, "a number in [0, 1]"),
    ("dataset.seed", _nonneg, "an integer >= 0"),
    ("dataset.clutter", _nonneg, "an integer >= 0 (mean unannotated distractors per image)"),
    ("dataset.num_test", _nonneg, "an integer >= 0 (0 = no test split)"),
    ("dataset.test_fraction", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("dataset.split_seed", _nonneg, "an integer >= 0"),
    ("dataset.classes", lambda v: v is None or v == "pascal" or (isinstance(v, list) and len(v) >= 1 and len(set(map(str, v))) == len(v)), "null (from the annotations), pascal, or a non-empty list of distinct class names"),
    ("dataset.channels", lambda v: v in (1, 3), "1 (grey) or 3 (RGB)"),
    ("dataset.on_invalid", lambda v: v in ("error", "skip"), "error or skip"),
    ("dataset.box_tolerance", _nonneg, "a number of pixels >= 0"),
    ("dataset.max_images", lambda v: v is None or v >= 1, "null (all) or an integer >= 1"),
    ("dataset.cache_images", lambda v: str(v).lower() in ("auto", "true", "false"), "auto, true or false"),
    ("dataset.num_workers", lambda v: v is None or v >= 0, "null (auto) or an integer >= 0"),
    ("dataset.train_sets", lambda v: len(v) >= 1 and all(_voc_set(x) for x in v), "a non-empty list of YEAR-SET, YEAR in 2007..2012, SET in train, val, trainval (test: 2007 only)"),
    ("dataset.val_sets", lambda v: len(v) >= 1 and all(_voc_set(x) for x in v), "a non-empty list of YEAR-SET, YEAR in 2007..2012, SET in train, val, trainval (test: 2007 only)"),
    ("dataset.test_sets", lambda v: all(_voc_set(x) for x in v), "a list (empty = no test split) of YEAR-SET, YEAR in 2007..2012, SET in train, val, trainval (test: 2007 only)"),
    ("model.backbone", lambda v: v in ("small", "resnet18"), "one of small, resnet18"),
    ("model.backbone_width", lambda v: v >= 4, "an integer >= 4"),
    ("model.levels", lambda v: len(v) >= 1 and list(v) == sorted(set(v)) and all(2 <= x <= 7 for x in v), "increasing distinct integers in 2..7"),
    ("model.fpn_channels", lambda v: v >= 8, "an integer >= 8"),
    ("model.head_convs", _nonneg, "an integer >= 0"),
    ("model.anchor_sizes", lambda v: all(x > 0 for x in v), "positive numbers, one per level"),
    ("model.anchor_scales", lambda v: len(v) >= 1 and all(x > 0 for x in v), "a non-empty list of positive numbers"),
    ("model.aspect_ratios", lambda v: len(v) >= 1 and all(x > 0 for x in v), "a non-empty list of positive numbers"),
    ("model.prior_prob", lambda v: 0 < v < 1, "a number in (0, 1)"),
    ("model.fg_iou", lambda v: 0 < v <= 1, "a number in (0, 1]"),
    ("model.bg_iou", lambda v: 0 <= v, "a number in [0, model.fg_iou]"),
    ("model.score_thresh", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("model.topk_candidates", _ge1, "an integer >= 1"),
    ("model.nms_thresh", lambda v: 0 < v <= 1, "a number in (0, 1]"),
    ("model.detections_per_img", _ge1, "an integer >= 1"),
    ("loss.alpha", _alpha, "null or a number in [0, 1]"),
    ("loss.gamma", _nonneg, "a number >= 0"),
    ("loss.bins", _ge1, "an integer >= 1"),
    ("loss.momentum", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("loss.loss_weight", _nonneg, "a number >= 0"),
    ("regression.beta", _nonneg, "a number >= 0"),
    ("regression.mu", _pos, "a number > 0"),
    ("regression.bins", _ge1, "an integer >= 1"),
    ("regression.momentum", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("regression.loss_weight", _nonneg, "a number >= 0"),
    ("train.epochs", _ge1, "an integer >= 1"),
    ("train.batch_size", _ge1, "an integer >= 1"),
    ("train.optimizer", lambda v: v in ("adamw", "sgd"), "one of adamw, sgd"),
    ("train.lr", _pos, "a number > 0"),
    ("train.momentum", lambda v: 0 <= v < 1, "a number in [0, 1)"),
    ("train.weight_decay", _nonneg, "a number >= 0"),
    ("train.warmup_iters", _nonneg, "an integer >= 0"),
    ("train.warmup_factor", lambda v: 0 < v <= 1, "a number in (0, 1]"),
    ("train.schedule", lambda v: v in ("cosine", "step"), "one of cosine, step"),
    ("train.step_epochs", lambda v: list(v) == sorted(v) and all(x >= 1 for x in v), "increasing epochs >= 1"),
    ("train.step_gamma", lambda v: 0 < v <= 1, "a number in (0, 1]"),
    ("train.grad_clip", lambda v: v is None or v > 0, "null or a number > 0"),
    ("train.num_threads", _nonneg, "an integer >= 0 (0 = torch's default)"),
    ("train.eval_batch_size", _ge1, "an integer >= 1"),
    ("train.g_hist_bins", _ge1, "an integer >= 1"),
    ("train.log_every", _ge1, "an integer >= 1"),
    ("train.amp", lambda v: v in ("none", "bf16"), "one of none, bf16"),
    ("train.eval_every", _nonneg, "an integer >= 0 (epochs between validation evaluations; 0 = only at the end)"),
    ("protocol.tune", lambda v: all("=" in str(x) for x in v), "a list of Hydra sweep overrides KEY=V1,V2,..."),
    ("protocol.tune_with", lambda v: all("=" in str(x) and "," not in str(x) for x in v), "a list of single-valued overrides KEY=VALUE"),
    ("protocol.select_metric", lambda v: v in METRICS, f"one of {', '.join(METRICS)}"),
    ("logger.mode", lambda v: v is None or v in ("online", "offline", "disabled"), "null, online, offline or disabled"),
]


def _cross_checks(cfg: DictConfig) -> None:
    d, m = cfg.dataset, cfg.model
    if m.bg_iou > m.fg_iou:
        raise ConfigError(f"model.bg_iou={m.bg_iou} must be <= model.fg_iou={m.fg_iou} (IoU thresholds ordered)")
    if len(m.anchor_sizes) != len(m.levels):
        raise ConfigError(f"model.anchor_sizes has {len(m.anchor_sizes)} entries; allowed: one per entry of model.levels ({len(m.levels)})")
    if d.name == "digits":
        if d.max_objects < d.min_objects:
            raise ConfigError(f"dataset.max_objects={d.max_objects} must be >= dataset.min_objects={d.min_objects}")
        if not d.min_scale <= d.max_scale <= d.image_size:
            raise ConfigError(f"dataset.max_scale={d.max_scale} must be in [dataset.min_scale={d.min_scale}, dataset.image_size={d.image_size}]")
        if d.num_test > 0 and d.test_fraction == 0:
            raise ConfigError("dataset.test_fraction=0 with dataset.num_test > 0: no source digits for the test images; allowed: a number in (0, 1)")
        if d.num_test > 0 and d.val_fraction + d.test_fraction >= 0.9:
            raise ConfigError(f"dataset.test_fraction={d.test_fraction} with dataset.val_fraction={d.val_fraction} leaves too few training digits; allowed: a sum below 0.9")
    if d.name == "voc" and not d.root:
        raise ConfigError("dataset.root is required for dataset=voc; allowed: the folder holding VOCdevkit/ (dataset.root=/data/voc) or a VOC-format export")
    if d.name == "voc" and d.val_fraction + d.test_fraction >= 0.9:
        raise ConfigError(f"dataset.val_fraction={d.val_fraction} + dataset.test_fraction={d.test_fraction} leaves too few training images; allowed: a sum below 0.9")
    if d.name == "yolo" and not d.root:
        raise ConfigError("dataset.root is required for dataset=yolo; allowed: the dataset's data.yaml, or the folder holding it (dataset.root=/data/my_set/data.yaml)")
    if d.name == "coco":
        for split in ("train", "val"):
            for kind in ("images", "annotations"):
                if not d.root and not d[f"{split}_{kind}"]:
                    raise ConfigError(f"dataset.{split}_{kind} is unset and so is dataset.root; allowed: dataset.root=/data/coco (COCO layout) or explicit paths")


def _get(cfg: DictConfig, dotted: str) -> tuple[bool, Any]:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return False, None
        node = node[part]
    if isinstance(node, ListConfig):
        node = OmegaConf.to_container(node)
    return True, node


def _typed_section(section: str, node: Any) -> DictConfig:
    """Merge a section onto its schema: unknown keys and wrong types raise ConfigError."""
    schemas = SECTIONS[section]
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{section} must be a mapping, got {node!r}")
    name = node.get("name")
    if "" in schemas:
        schema = schemas[""]
    elif section in LOSS_SECTIONS and name not in schemas:
        return _custom_loss_section(section, node)
    else:
        if name not in schemas:
            raise ConfigError(f"{section}.name={name!r} is not allowed; allowed: {', '.join(schemas)}")
        schema = schemas[name]
    allowed = [f.name for f in fields(schema)]
    for key in node.keys():
        if key not in allowed:
            hint = ""
            if section == "dataset" and key in {f.name for f in fields(DigitsCfg)}:
                hint = " (a digits-only key, e.g. from a budget or experiment preset: add budget=none, and dataset.max_images=N to subsample)"
            if section in LOSS_SECTIONS:
                hint = f" (a loss of your own with its own parameters: {section}=custom, see README \"Use it from another project\")"
            shown = [k for k in allowed if k != "_target_"]  # a built-in loss's target is fixed
            raise ConfigError(f"unknown key {section}.{key}; allowed keys: {', '.join(shown)}{hint}")
    try:
        typed = OmegaConf.merge(OmegaConf.structured(schema), node)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", "") or ""
        msg = str(e).splitlines()[0]
        raise ConfigError(f"{section}.{key}: {msg}") from None
    if section in LOSS_SECTIONS and typed._target_ != BUILTIN_TARGETS[section][name]:
        raise ConfigError(
            f"{section}._target_={typed._target_} with {section}.name={name}: the built-in {name} is {BUILTIN_TARGETS[section][name]}; "
            f"allowed: a target of your own under a name of your own ({section}=custom {section}.name=NAME {section}._target_=...; "
            f"to sweep it beside {name}, a {section}/NAME.yaml in your --config-dir)"
        )
    return typed


def _custom_loss_section(section: str, node: DictConfig) -> DictConfig:
    """A loss of the user's own: a safe ``name`` and a ``_target_``; its other keys are its
    parameters, checked by :func:`build_loss` (the class must accept them)."""
    name, target = node.get("name"), node.get("_target_")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"{section}.name={name!r} is not allowed; allowed: {', '.join(SECTIONS[section])}, or a name of your own for "
            f"{section}=custom (letters, digits, _ . -; it names the run folders and the report's rows)"
        )
    example = f"{section}._target_=my_pkg.losses.My{'Box' if section == 'regression' else ''}Loss"
    if target is None or target == "???":
        raise ConfigError(f"{section}._target_ is not set ({section}.name={name}); allowed: the dotted path of your loss class, e.g. {example}")
    if not isinstance(target, str) or not _TARGET.fullmatch(target):
        raise ConfigError(f"{section}._target_={target!r} is not allowed; allowed: the dotted path of your loss class, e.g. {example}")
    return node


def validate(cfg: DictConfig) -> DictConfig:
    """Check keys, types and ranges; return a resolved, typed copy.

    Raises:
        ConfigError: one line naming the key and what is allowed.
    """
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"cannot resolve config: {str(e).splitlines()[0]}") from None
    cfg = OmegaConf.create(container)
    allowed_top = set(SECTIONS) | set(TOP_LEVEL)
    for key in cfg.keys():
        if key not in allowed_top:
            raise ConfigError(f"unknown key {key}; allowed keys: {', '.join(sorted(allowed_top))}")
    out: dict[str, Any] = {}
    for section in SECTIONS:
        if section not in cfg:
            raise ConfigError(f"missing config section {section}")
        out[section] = _typed_section(section, cfg[section])
    for key, typ in TOP_LEVEL.items():
        value = cfg.get(key)
        if typ is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"{key}={value!r}: allowed: an integer")
        if typ is str and not isinstance(value, str):
            raise ConfigError(f"{key}={value!r}: allowed: a string")
        if typ is Optional[str] and value is not None and not isinstance(value, (str, int, float)):
            raise ConfigError(f"{key}={value!r}: allowed: null or a string")
        out[key] = value
    typed = OmegaConf.create(out)
    custom = tuple(f"{s}." for s in LOSS_SECTIONS if typed[s].name not in SECTIONS[s])  # their parameters are their own
    for key, ok, allowed in RANGES:
        if key.startswith(custom):
            continue
        present, value = _get(typed, key)
        if not present:
            continue
        try:
            good = bool(ok(value))
        except (TypeError, ValueError):
            good = False
        if not good:
            raise ConfigError(f"{key}={value!r} is not allowed; allowed: {allowed}")
    _cross_checks(typed)
    for section in LOSS_SECTIONS:  # the classes import and take their arguments, before any run starts
        build_loss(section, typed[section])
    for key in PATH_KEYS:  # absolute, so sweep jobs running elsewhere (and run keys) agree
        present, value = _get(typed, key)
        if present and value:
            OmegaConf.update(typed, key, str(Path(value).expanduser().resolve()))
    _resolve_dataset(typed)
    OmegaConf.set_struct(typed, True)
    return typed


def _resolve_dataset(cfg: DictConfig) -> None:
    """Check the dataset's files and folders before any run folder is made, and fix what the run
    key needs from them: a VOC-format folder's class names (``dataset.classes``, left null for
    PASCAL VOC itself so its run keys stay as they were)."""
    from ghmbench import datasets

    d = OmegaConf.to_container(cfg.dataset, resolve=True)
    assert isinstance(d, dict)
    if d["name"] == "coco":
        datasets.coco_paths(d)
    elif d["name"] == "yolo":
        base, data, names = datasets.yolo_data(d)
        if d["classes"] is not None and [str(c) for c in d["classes"]] != names:
            raise ConfigError(f"dataset.classes={d['classes']!r:.100} differs from the names of {datasets.yolo_data_file(d)}; allowed: null (they are read from data.yaml)")
        cfg.dataset.classes = names
        for split in ("train", "val", "test"):
            if data.get(split):
                datasets.yolo_images(base, data[split], split, datasets.yolo_data_file(d))
    elif d["name"] == "voc" and not d["download"]:
        if d["classes"] is None:
            cfg.dataset.classes = datasets.voc_class_names(d)
        else:
            datasets.voc_split_items(d)


def build_loss(section: str, node: DictConfig) -> Any:
    """The loss module of a validated ``loss`` / ``regression`` section: ``hydra.utils.instantiate``
    of its ``_target_`` with every key but ``name`` as an argument.

    Raises:
        ConfigError: one line naming the target: it cannot be imported, does not accept the
            arguments, is not a ``torch.nn.Module``, or its forward does not take
            ``(pred, target, label_weight, avg_factor=None, level_ids=None)``.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    from torch import nn

    params = OmegaConf.to_container(node, resolve=True)
    assert isinstance(params, dict)
    params.pop("name", None)
    target = params["_target_"]
    module_path, _, attr = target.rpartition(".")
    try:
        getattr(importlib.import_module(module_path), attr)
    except Exception as e:  # the user's module may raise anything while importing
        hint = " (is its module installed, or its folder on PYTHONPATH?)" if isinstance(e, ImportError) else ""
        raise ConfigError(f"{section}._target_={target} cannot be imported: {_one_line(e)}{hint}") from None
    args = ", ".join(f"{k}={v!r}" for k, v in params.items() if k != "_target_")
    try:
        module = instantiate(params, _convert_="all")
    except Exception as e:
        cause = e.__cause__ if isinstance(e, InstantiationException) and e.__cause__ is not None else e
        raise ConfigError(f"{section}._target_={target} does not accept the arguments ({args}): {_one_line(cause)}") from None
    if not isinstance(module, nn.Module):
        raise ConfigError(f"{section}._target_={target} made a {type(module).__name__}; allowed: a torch.nn.Module with {LOSS_INTERFACE}")
    signature = inspect.signature(module.forward)
    try:
        signature.bind("pred", "target", "label_weight", avg_factor=None, level_ids=None)
    except TypeError as e:
        raise ConfigError(f"{section}._target_={target}: its forward{signature} cannot be called as {LOSS_INTERFACE}: {e}") from None
    return module


def _one_line(e: BaseException) -> str:
    text = " ".join(f"{type(e).__name__}: {e}".split())
    return text if len(text) <= 300 else text[:297] + "..."


def searchpath_overrides(config_dirs: list[str] | list[Path] | tuple = (), overrides: list[str] | tuple = ()) -> list[str]:
    """``hydra.searchpath=[...]`` for the user's config folders (``--config-dir``), [] for none.

    The folders add config groups and presets (``loss/my_loss.yaml``, ``experiment/my_ci.yaml``)
    beside the built-in ones; a name that exists in both is the built-in one.

    Raises:
        ConfigError: a folder that does not exist, or ``hydra.searchpath`` given as well.
    """
    if not config_dirs:
        return []
    if any(o.lstrip("+~").startswith("hydra.searchpath=") for o in overrides):
        raise ConfigError("--config-dir and a hydra.searchpath override are both given; allowed: one of them")
    paths = []
    for folder in config_dirs:
        path = Path(folder).expanduser().resolve()
        if not path.is_dir():
            raise ConfigError(f"--config-dir {folder}: no such folder; allowed: a folder of config groups (loss/, experiment/, ...)")
        if '"' in str(path):
            raise ConfigError(f"--config-dir {folder}: a path with a double quote is not allowed")
        paths.append(f'"file://{path}"')
    return [f"hydra.searchpath=[{','.join(paths)}]"]


def compose_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Compose ``conf/config.yaml`` with Hydra overrides (no validation); a ``hydra.searchpath``
    override (:func:`searchpath_overrides`) adds the user's config folders.

    Raises:
        ConfigError: a malformed override or an unknown config group option.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        raise hydra_error(e) from None


def hydra_error(e: Exception) -> ConfigError:
    """A Hydra / OmegaConf exception (and its cause) as a one-line ConfigError."""
    messages = [str(x) for x in (e, e.__cause__) if x is not None and str(x).strip()]
    text = " ".join(" ".join(messages).split()) or type(e).__name__
    for noise in (" Config search path:", " full_key:"):  # Hydra appends search paths / key dumps
        text = text.split(noise)[0]
    return ConfigError(text)
