"""Hydra override strings (``key=value``, ``+key=value``, ``group=a,b``, ``hydra/launcher=joblib``),
read in one place: the key and value of one string by hand where Hydra's grammar is not needed, and
Hydra's own parser for sweeps and typed values."""

from __future__ import annotations

from typing import Any, Iterable


def override_key(override: str) -> str:
    """The key an override sets (``+``, ``++`` and ``~`` prefixes dropped)."""
    return override.lstrip("+~").split("=", 1)[0]


def override_value(override: str) -> str | None:
    """The value text of an override, as written (None for ``~key`` without a value)."""
    return override.split("=", 1)[1] if "=" in override else None


def is_launcher_override(override: str) -> bool:
    """A launcher / Hydra-only override, left out when a job's config is composed and validated.

    ``hydra.searchpath`` is not one: the user's config folders (``--config-dir``) are needed to
    compose the jobs that name their presets and losses.
    """
    key = override_key(override)
    return key != "hydra.searchpath" and (key == "hydra" or key.startswith(("hydra.", "hydra/")))


def parse_overrides(overrides: Iterable[str]) -> list:
    """Hydra's parse of override strings: its ``Override`` objects (sweeps, typed values).

    Raises:
        HydraException: an override Hydra cannot parse.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(list(overrides))


def override_values(overrides: Iterable[str]) -> dict[str, list]:
    """Override strings -> {key: [typed values]} (a sweep gives several values, sorted).

    Raises:
        HydraException: an override Hydra cannot parse.
    """
    out: dict[str, list] = {}
    for o in parse_overrides(overrides):
        values = list(o.sweep_iterator()) if o.is_sweep_override() else [o.value()]
        out[o.key_or_group] = sorted(values, key=_sort_key)
    return out


def _sort_key(value: Any) -> tuple:
    return (
        (0, float(value), "")
        if isinstance(value, (int, float)) and not isinstance(value, bool)
        else (1, 0.0, str(value))
    )
