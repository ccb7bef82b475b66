"""The run record: stable run keys, run folders, metrics.json and checkpoints.

A run is identified by a key derived from its semantic config (everything that changes the
numbers; not paths, device, logging or the run label), so a repeated command recognises a
finished run. Files are written to a temporary name and renamed, so a killed process leaves
either a whole file or none.
"""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ghmbench.losses.builtin import BUILTIN_TARGETS
from ghmbench.store.fields import COMPLETE_STATUSES, COMPLETED, DIVERGED, METRICS

NON_SEMANTIC = {
    "paths": None,
    "protocol": None,
    "device": None,
    "run_name": None,
    "force": None,
    "force_keep": None,
    "logger": None,
    "train": {
        "progress",
        "num_threads",
        "checkpoint",
        "eval_batch_size",
        "smoke_check",
        "log_every",
        "channels_last",
        "pin_memory",
    },
}

OMITTED_AT_DEFAULT = {
    "train": {"amp": "none", "eval_every": 0},
    "dataset": {
        "clutter": 0,
        "class_noise": 0.0,
        "num_test": 0,
        "test_fraction": 0.2,
        "test_split": None,
        "test_images": None,
        "test_annotations": None,
        "test_sets": [],
    },
}
"""Keys added after run keys were first recorded: at their default they are left out of the key,
so that existing run folders keep their keys."""

NO_AUGMENTATION = {"hflip": 0.0, "scale_jitter": [1.0, 1.0]}
OMITTED_AT_DEFAULT_BY_DATASET = {
    "voc": {"classes": None, "val_fraction": 0.2, "test_fraction": 0.0, "split_seed": 0, **NO_AUGMENTATION},
    "coco": NO_AUGMENTATION,
    "yolo": NO_AUGMENTATION,
}
"""Per dataset name, in place of OMITTED_AT_DEFAULT["dataset"] for the same keys. The training
augmentation of the file datasets (added after their first runs) is left out when it is off, the way
those runs trained, so they keep their keys; on (the default since) it is in the key. The digits have
no augmentation keys at all: their keys are unchanged."""

# A loss's ``_target_`` (added after run keys were first recorded) is in the key only when it is not
# the built-in class of the loss's name, i.e. for a loss of the user's own (``loss=custom``).
METRICS_FILE = "metrics.json"


def semantic_config(cfg: DictConfig) -> dict:
    """The part of the config that determines a run's numbers."""
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    for key, sub in NON_SEMANTIC.items():
        if sub is None:
            data.pop(key, None)
        elif isinstance(data.get(key), dict):
            for k in sub:
                data[key].pop(k, None)
    for key, defaults in OMITTED_AT_DEFAULT.items():
        if key == "dataset" and isinstance(data.get(key), dict):
            defaults = {**defaults, **OMITTED_AT_DEFAULT_BY_DATASET.get(data[key].get("name"), {})}
        for k, default in defaults.items():
            if isinstance(data.get(key), dict) and data[key].get(k, default) == default:
                data[key].pop(k, None)
    for key, targets in BUILTIN_TARGETS.items():
        node = data.get(key)
        if not isinstance(node, dict) or "_target_" not in node:
            continue
        if node["_target_"] == targets.get(node.get("name")):
            node.pop("_target_")
        else:  # a loss of the user's own: untyped parameters, so 2 (command line) and 2.0 (YAML) are one run
            data[key] = {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in node.items()}
    return data


def run_key(cfg: DictConfig) -> str:
    """Stable 12-hex-digit key of the semantic config."""
    blob = json.dumps(semantic_config(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_dir(cfg: DictConfig) -> Path:
    """``<runs_dir>/<loss>-<regression>-s<seed>-<key>``."""
    name = f"{cfg.loss.name}-{cfg.regression.name}-s{cfg.seed}-{run_key(cfg)}"
    return Path(cfg.paths.runs_dir).expanduser() / name


def read_record(folder: Path) -> dict | None:
    """The run's metrics.json, or None when missing or unreadable."""
    try:
        return json.loads((Path(folder) / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return None


def is_complete(folder: Path) -> bool:
    """True when the folder holds a finished record (completed or diverged)."""
    record = read_record(folder)
    return record is not None and record.get("status") in COMPLETE_STATUSES


def smoke_failures(record: dict) -> list[str]:
    """Why a smoke run fails: non-finite loss, loss not decreasing, or AP zero (empty = passes)."""
    if record.get("status") != COMPLETED:
        return [
            f"status is {record.get('status')} (the loss was not finite)"
            if record.get("status") == DIVERGED
            else f"status is {record.get('status')}"
        ]
    problems = []
    history = record.get("history") or []
    if len(history) < 2 or not history[-1]["loss"] < history[0]["loss"]:
        first, last = (history[0]["loss"], history[-1]["loss"]) if history else (None, None)
        problems.append(f"the loss did not decrease (first epoch {first}, last epoch {last})")
    if not (record.get("metrics") or {}).get("AP"):
        problems.append("AP is zero")
    return problems


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that determine the numbers."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ["torch", "torchvision", "numpy", "faster-coco-eval", "hydra-core", "scikit-learn", "ghmbench"]:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


# ----------------------------------------------------------------------------- records as rows


def flat_config(config: dict, sections: tuple[str, ...] | None = None) -> dict:
    """Config values by dotted path (``train.lr``), lists as JSON text: the columns a frame of run
    records gives its config (``sections``: only these top-level keys, in this order; default all)."""
    out: dict = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = json.dumps(value) if isinstance(value, list) else value

    for key in config if sections is None else [s for s in sections if s in config]:
        walk(str(key), config[key])
    return out


def validation_columns(record: dict) -> dict:
    """``val_<metric>`` of a record: its validation metrics (``metrics`` for records that predate them)."""
    val = record.get("val_metrics") or record.get("metrics") or {}
    return {f"val_{m}": val.get(m) for m in METRICS}


def protocol_column(record: dict) -> str:
    """The protocol a record's run belongs to (``config.protocol``), as JSON text."""
    return json.dumps((record.get("config") or {}).get("protocol"), sort_keys=True)
