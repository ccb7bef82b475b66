"""What a preset composes on which data: the detector that fits a dataset read from disk
(``model=fitted`` in place of the digits' detectors) and the presets that study the generated digits,
refused on photos. The preset brings the protocol and its grid, the data its regime, and the detector
fits the data."""

from __future__ import annotations

from dataclasses import fields

from omegaconf import DictConfig

from ghmbench.config.overrides import override_key
from ghmbench.config.schema import SECTIONS, DigitsCfg
from ghmbench.errors import ConfigError

DIGITS_DETECTORS = ("small", "sparse")
"""The model options sized for the digits (anchors of 12-64 px): replaced by ``model=fitted`` on photos."""


def fitted_detector_override(choices: DictConfig, cfg: DictConfig, overrides: list[str] | tuple[str, ...]) -> list[str]:
    """``[model=fitted]`` where a dataset read from disk meets a detector sized for the digits
    (``model=small``, the default, or ``model=sparse``, the experiment presets') that the command line
    did not name; else ``[]``. The presets bring the protocol, the data its regime, and the detector
    fits the data (``model/fitted.yaml``: anchors fitted to the training boxes)."""
    named = any(override_key(o) == "model" for o in overrides)
    if named or cfg.dataset.get("name") == "digits" or choices.get("model") not in DIGITS_DETECTORS:
        return []
    return ["model=fitted"]


def check_preset_on_data(hydra_cfg: DictConfig, cfg: DictConfig) -> None:
    """Refuse an experiment preset on a dataset read from disk where it studies the generated data:
    it sweeps ``dataset.*`` keys (the imbalance curve's canvas size, label noise's corruption rates)
    or sets keys that only the digits have (the smoke check's image counts).

    Raises:
        ConfigError: one line naming the preset, the keys and what is allowed.
    """
    experiment, name = hydra_cfg.runtime.choices.get("experiment"), cfg.dataset.get("name")
    if experiment is None or name == "digits":
        return
    params = hydra_cfg.sweeper.get("params") or {}
    swept = sorted(str(k) for k in params if str(k).startswith("dataset."))
    if swept:
        raise ConfigError(
            f"experiment={experiment} sweeps {', '.join(swept)}, the regime of the generated digits; on dataset={name} "
            f"the data brings its own regime; allowed: experiment={experiment} with dataset=digits_sparse or digits"
        )
    own = {f.name for f in fields(SECTIONS["dataset"].get(name, DigitsCfg))}
    digits_only = sorted(
        f"dataset.{k}" for k in cfg.dataset if k not in own and k in {f.name for f in fields(DigitsCfg)}
    )
    if name in SECTIONS["dataset"] and digits_only:
        instead = (
            " (on your data: train.smoke_check=true, dataset.max_images=N)" if cfg.train.get("smoke_check") else ""
        )
        raise ConfigError(
            f"experiment={experiment} sets {', '.join(digits_only)}, keys of the generated digits only; allowed: "
            f"experiment={experiment} with dataset=digits or digits_sparse{instead}"
        )
