"""Config composition (Hydra) and validation against the schema (:mod:`ghmbench.config.schema`).

``compose_config(overrides)`` composes ``conf/config.yaml`` with Hydra overrides;
``validate(cfg)`` checks every key, type and range before any work starts and raises
:class:`~ghmbench.errors.ConfigError` with a one-line message that names the key and what is allowed.
"""

from __future__ import annotations

import functools
import os
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from ghmbench.config.overrides import override_key
from ghmbench.config.presets import check_preset_on_data, fitted_detector_override
from ghmbench.config.schema import (
    LOSS_SECTIONS,
    NAME_PATTERN,
    PATH_KEYS,
    RANGES,
    SECTIONS,
    TARGET_PATTERN,
    TOP_LEVEL,
    DigitsCfg,
    cross_checks,
)
from ghmbench.data.formats.coco import coco_paths
from ghmbench.data.formats.voc import voc_class_names, voc_split_items
from ghmbench.data.formats.yolo import yolo_data, yolo_data_file, yolo_images
from ghmbench.errors import ConfigError
from ghmbench.losses import build_loss
from ghmbench.losses.builtin import BUILTIN_TARGETS
from ghmbench.ranges import passes


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
    package = Path(__file__).resolve().parent.parent  # ghmbench/, above config/
    candidates = (package / "conf", package.parent / "conf")
    for candidate in candidates:
        if (candidate / "config.yaml").is_file():
            return candidate
    raise ConfigError(
        f"no ghmbench configs (config.yaml) in {' or '.join(map(str, candidates))}; allowed: an installed ghmbench "
        "wheel, a checkout, or GHMBENCH_CONF_DIR=<folder>"
    )


@functools.lru_cache(maxsize=64)
def _builtin_values(folder: str, section: str, name: str) -> dict:
    """The values of the built-in option ``name`` of ``section`` (its YAML under ``folder``; for
    ``model`` and ``train``, the option config.yaml's defaults list picks; ``protocol`` and
    ``paths`` are in config.yaml itself). The YAML configs are the one place defaults are written:
    a section that leaves a key out (a config of the user's own) gets the built-in one's value.
    """
    root = Path(folder)
    top = OmegaConf.load(root / "config.yaml")
    if section in top:
        node = top[section]
    else:
        chosen = {key: value for entry in top.defaults if isinstance(entry, DictConfig) for key, value in entry.items()}
        node = OmegaConf.load(root / section / f"{name or chosen[section]}.yaml")
    values = OmegaConf.to_container(node)
    assert isinstance(values, dict)
    values.pop("defaults", None)
    return values


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
                hint = (
                    " (a digits-only key, e.g. from a budget or experiment preset: add budget=none, and "
                    "dataset.max_images=N to subsample)"
                )
            if section in LOSS_SECTIONS:
                hint = (
                    f" (a loss of your own with its own parameters: {section}=custom, "
                    'see README "Use it from another project")'
                )
            shown = [k for k in allowed if k != "_target_"]  # a built-in loss's target is fixed
            raise ConfigError(f"unknown key {section}.{key}; allowed keys: {', '.join(shown)}{hint}")
    try:
        builtin = OmegaConf.to_container(
            OmegaConf.create(_builtin_values(str(conf_dir()), section, name if "" not in schemas else "")), resolve=True
        )
        typed = OmegaConf.merge(OmegaConf.structured(schema), builtin, node)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", "") or ""
        msg = str(e).splitlines()[0]
        raise ConfigError(f"{section}.{key}: {msg}") from None
    if section in LOSS_SECTIONS and typed._target_ != BUILTIN_TARGETS[section][name]:
        raise ConfigError(
            f"{section}._target_={typed._target_} with {section}.name={name}: the built-in {name} is "
            f"{BUILTIN_TARGETS[section][name]}; "
            f"allowed: a target of your own under a name of your own ({section}=custom {section}.name=NAME "
            f"{section}._target_=...; "
            f"to sweep it beside {name}, a {section}/NAME.yaml in your --config-dir)"
        )
    return typed


def _custom_loss_section(section: str, node: DictConfig) -> DictConfig:
    """A loss of the user's own: a safe ``name`` and a ``_target_``; its other keys are its
    parameters, checked by :func:`build_loss` (the class must accept them)."""
    name, target = node.get("name"), node.get("_target_")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"{section}.name={name!r} is not allowed; allowed: {', '.join(SECTIONS[section])}, or a name of your own "
            "for "
            f"{section}=custom (letters, digits, _ . -; it names the run folders and the report's rows)"
        )
    example = f"{section}._target_=my_pkg.losses.My{'Box' if section == 'regression' else ''}Loss"
    if target is None or target == "???":
        raise ConfigError(
            f"{section}._target_ is not set ({section}.name={name}); allowed: the dotted path of your loss class, "
            f"e.g. {example}"
        )
    if not isinstance(target, str) or not TARGET_PATTERN.fullmatch(target):
        raise ConfigError(
            f"{section}._target_={target!r} is not allowed; allowed: the dotted path of your loss class, e.g. {example}"
        )
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
        if typ is bool and not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r}: allowed: true or false")
        if typ is list and not isinstance(value, ListConfig):
            raise ConfigError(f"{key}={value!r}: allowed: a list")
        out[key] = value
    typed = OmegaConf.create(out)
    custom = tuple(f"{s}." for s in LOSS_SECTIONS if typed[s].name not in SECTIONS[s])  # their parameters are their own
    for check in RANGES:
        key, _, allowed = check
        if key.startswith(custom):
            continue
        present, value = _get(typed, key)
        if present and not passes(check, value):
            raise ConfigError(f"{key}={value!r} is not allowed; allowed: {allowed}")
    cross_checks(typed)
    if typed.model.anchor_sizes != "auto":  # typed Any (a list or auto): floats, as the list[float] it was
        typed.model.anchor_sizes = [float(x) for x in typed.model.anchor_sizes]
    _draw_per_seed(typed)
    for section in LOSS_SECTIONS:  # the classes import and take their arguments, before any run starts
        build_loss(section, typed[section])
    for key in PATH_KEYS:  # absolute, so sweep jobs running elsewhere (and run keys) agree
        present, value = _get(typed, key)
        if present and value:
            OmegaConf.update(typed, key, str(Path(value).expanduser().resolve()))
    _resolve_dataset(typed)
    OmegaConf.set_struct(typed, True)
    return typed


def _draw_per_seed(cfg: DictConfig) -> None:
    """``protocol.seed_draws``: the generated data's draw follows the run's seed (``dataset.seed`` = ``seed``).
    A dataset read from disk has one draw, its fixed splits: there the seeds cover the training's
    randomness only (the reports say which intervals cover what)."""
    if not cfg.protocol.seed_draws or cfg.dataset.name != "digits":
        return  # fixed splits (read from disk): the seeds vary the initialisation, data order and augmentation only
    cfg.dataset.seed = cfg.seed


def _resolve_dataset(cfg: DictConfig) -> None:
    """Check the dataset's files and folders before any run folder is made, and fix what the run
    key needs from them: a VOC-format folder's class names (``dataset.classes``, left null for
    PASCAL VOC itself so its run keys stay as they were)."""
    dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
    assert isinstance(dataset, dict)
    if dataset["name"] == "coco":
        coco_paths(dataset)
    elif dataset["name"] == "yolo":
        base, data, names = yolo_data(dataset)
        if dataset["classes"] is not None and [str(c) for c in dataset["classes"]] != names:
            raise ConfigError(
                f"dataset.classes={dataset['classes']!r:.100} differs from the names of {yolo_data_file(dataset)}; "
                "allowed: null (they are read from data.yaml)"
            )
        cfg.dataset.classes = names
        for split in ("train", "val", "test"):
            if data.get(split):
                yolo_images(base, data[split], split, yolo_data_file(dataset))
    elif dataset["name"] == "voc" and not dataset["download"]:
        if dataset["classes"] is None:
            cfg.dataset.classes = voc_class_names(dataset)
        else:
            voc_split_items(dataset)


def searchpath_overrides(
    config_dirs: list[str] | list[Path] | tuple = (), overrides: list[str] | tuple = ()
) -> list[str]:
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
            raise ConfigError(
                f"--config-dir {folder}: no such folder; allowed: a folder of config groups (loss/, experiment/, ...)"
            )
        if '"' in str(path):
            raise ConfigError(f"--config-dir {folder}: a path with a double quote is not allowed")
        paths.append(f'"file://{path}"')
    return [f"hydra.searchpath=[{','.join(paths)}]"]


def compose_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Compose ``conf/config.yaml`` with Hydra overrides (no validation); a ``hydra.searchpath``
    override (:func:`searchpath_overrides`) adds the user's config folders. On a dataset read from
    disk a detector sized for the digits becomes ``model=fitted`` (:func:`fitted_detector_override`).

    Raises:
        ConfigError: a malformed override, an unknown config group option, sizes that do not
            compose (:func:`check_sizes`), or a preset that studies the generated digits on a dataset
            read from disk (:func:`check_preset_on_data`).
    """
    cfg, hydra_cfg = _hydra_compose(list(overrides))
    extra = fitted_detector_override(hydra_cfg.runtime.choices, cfg, overrides)
    if extra:
        cfg, hydra_cfg = _hydra_compose([*overrides, *extra])
    check_sizes(hydra_cfg.runtime.choices, cfg, overrides)
    check_preset_on_data(hydra_cfg, cfg)
    return cfg


def _hydra_compose(overrides: list[str]) -> tuple[DictConfig, DictConfig]:
    """Hydra's composition of ``overrides``: (the config without its ``hydra`` node, that node).

    Raises:
        ConfigError: a malformed override or an unknown config group option.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as e:
        raise hydra_error(e) from None
    with open_dict(cfg):
        return cfg, cfg.pop("hydra")


def detector_overrides(overrides: list[str]) -> list[str]:
    """The overrides a Hydra multirun must add to compose the same detector as :func:`compose_config`
    (``ghmbench sweep`` passes them to its jobs): ``[model=fitted]`` or ``[]``.

    Raises:
        ConfigError: the overrides do not compose.
    """
    cfg, hydra_cfg = _hydra_compose(list(overrides))
    return fitted_detector_override(hydra_cfg.runtime.choices, cfg, overrides)


def check_sizes(choices: DictConfig, cfg: DictConfig, overrides: list[str] | tuple[str, ...] = ()) -> None:
    """Refuse the ``budget=`` / ``scale=`` combinations that would compose a silent mix: a budget
    sizes the default run (dataset=digits); ``scale=gpu`` sizes an experiment preset, after it.

    Args:
        choices: the option Hydra chose in each config group (``hydra.runtime.choices``).
        cfg: the composed config.
        overrides: the command line's overrides (a preset may choose a budget itself, a user may not add one).

    Raises:
        ConfigError: one line naming the combination and what is allowed.
    """
    budget, experiment, scale, dataset = (choices.get(k) for k in ("budget", "experiment", "scale", "dataset"))
    budget_given = any(override_key(o) == "budget" for o in overrides)
    if budget not in (None, "none") and experiment is not None and budget_given:
        gpu = " or with scale=gpu (GPU scale)" if cfg.dataset.get("name") == "digits" else ""
        raise ConfigError(
            f"budget={budget} with experiment={experiment}: a budget sizes the default run, a preset brings its own "
            f"size and regime; allowed: experiment={experiment} alone (CPU scale){gpu}"
        )
    if budget not in (None, "none") and dataset != "digits":
        raise ConfigError(
            f"budget={budget} with dataset={dataset}: a budget sizes dataset=digits; allowed: dataset=digits, or "
            "budget=none"
        )
    if scale in (None, "cpu"):
        return
    if experiment is None:
        raise ConfigError(
            f"scale={scale} without an experiment: it sizes an experiment preset; allowed: with experiment=NAME (e.g. "
            "experiment=loss_comparison), or budget=full for the default run"
        )
    if cfg.train.get("smoke_check"):
        raise ConfigError(
            f"scale={scale} with experiment={experiment}: the smoke check has one size, for CI; allowed: scale=cpu "
            "(device=cuda runs it on a GPU)"
        )
    if cfg.dataset.get("name") != "digits":
        raise ConfigError(
            f"scale={scale} with dataset={dataset}: it sizes the embedded digits data; allowed: dataset=digits or "
            "digits_sparse, or sizes of your own (model=resnet18 train.epochs=...)"
        )


def hydra_error(e: Exception) -> ConfigError:
    """A Hydra / OmegaConf exception (and its cause) as a one-line ConfigError."""
    messages = [str(x) for x in (e, e.__cause__) if x is not None and str(x).strip()]
    text = " ".join(" ".join(messages).split()) or type(e).__name__
    for noise in (" Config search path:", " full_key:"):  # Hydra appends search paths / key dumps
        text = text.split(noise)[0]
    return ConfigError(text)
