"""Building a loss module from a validated ``loss`` / ``regression`` config section."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from ghmbench.errors import ConfigError

LOSS_INTERFACE = "forward(pred, target, label_weight, avg_factor=None, level_ids=None)"


def build_loss(section: str, node: DictConfig) -> Any:
    """The loss module of a validated ``loss`` / ``regression`` section: ``hydra.utils.instantiate``
    of its ``_target_`` with every key but ``name`` as an argument.

    Raises:
        ConfigError: one line naming the target: it cannot be imported, does not accept the
            arguments, is not a ``torch.nn.Module``, or its forward does not take
            ``(pred, target, label_weight, avg_factor=None, level_ids=None)``.
    """
    from hydra.errors import InstantiationException  # hydra only where a config builds the loss
    from hydra.utils import instantiate

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
        raise ConfigError(
            f"{section}._target_={target} does not accept the arguments ({args}): {_one_line(cause)}"
        ) from None
    if not isinstance(module, nn.Module):
        raise ConfigError(
            f"{section}._target_={target} made a {type(module).__name__}; allowed: a torch.nn.Module with "
            f"{LOSS_INTERFACE}"
        )
    signature = inspect.signature(module.forward)
    try:
        signature.bind("pred", "target", "label_weight", avg_factor=None, level_ids=None)
    except TypeError as e:
        raise ConfigError(
            f"{section}._target_={target}: its forward{signature} cannot be called as {LOSS_INTERFACE}: {e}"
        ) from None
    return module


def _one_line(e: BaseException) -> str:
    text = " ".join(f"{type(e).__name__}: {e}".split())
    return text if len(text) <= 300 else text[:297] + "..."
