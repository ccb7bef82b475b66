"""The fair-comparison protocol: tune every classification loss on the same grid, select on val.

A protocol (``config.protocol`` of the run records) is three things: ``tune``, Hydra sweep
overrides whose keys are the tuning axes (``["train.lr=0.0005,0.001", "train.batch_size=16,32"]``);
``tune_with``, overrides that pick the tuning runs (``["regression=smooth_l1", "seed=0"]``); and
``select_metric``, the validation metric that scores a candidate. For each loss, every candidate
(one value per axis) is scored by the mean validation metric of its completed tuning runs and the
best is selected (ties: the first in sorted order). The loss's *final* runs are its runs at the
selected values, any seed and regression.

Everything here works on a frame of runs: the report's run table, or :func:`runs_frame` of
metrics.json dicts. Config values are columns named by their dotted path (``train.lr``, ``seed``);
a config group (``regression=smooth_l1``) is its ``<group>`` or ``<group>.name`` column.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Any, Iterable

import pandas as pd

from ghmbench.config.overrides import override_values
from ghmbench.store.fields import COMPLETED
from ghmbench.store.records import flat_config, protocol_column, validation_columns


class ProtocolError(ValueError):
    """A malformed protocol, or records that disagree on it; the message is one line."""


@dataclass
class Protocol:
    """A parsed protocol.

    Attributes:
        axes: tuning axis -> its candidate values (sorted).
        fixed: key -> the value every tuning run has.
        metric: the validation metric that selects.
    """

    axes: dict[str, list]
    fixed: dict[str, Any]
    metric: str = "AP"

    @classmethod
    def from_config(cls, protocol: dict | str | None) -> Protocol | None:
        """The protocol of ``config.protocol`` (a dict or its JSON), None when ``tune`` is empty."""
        if isinstance(protocol, str):
            protocol = json.loads(protocol)
        if not protocol or not protocol.get("tune"):
            return None
        fixed = {k: v[0] for k, v in parse_overrides(protocol.get("tune_with") or []).items()}
        return cls(parse_overrides(protocol["tune"]), fixed, protocol.get("select_metric") or "AP")


@dataclass
class Selection:
    """The setting selected for one classification loss.

    Attributes:
        loss: the classification loss.
        axes: the tuning axes, in protocol order.
        settings: axis -> selected value (:meth:`overrides` turns them into Hydra overrides).
        metric: the validation metric that selected.
        candidates: one row per candidate: the axis values, ``val_<metric>`` (mean over its
            completed tuning runs), ``runs`` (tuning runs), ``n`` (with a metric), ``selected``.
    """

    loss: str
    axes: list[str]
    settings: dict[str, Any]
    metric: str
    candidates: pd.DataFrame

    def overrides(self) -> list[str]:
        """``["train.lr=0.002", "train.batch_size=16"]``: values printed so Hydra reads them back."""
        return [f"{axis}={format_value(self.settings[axis])}" for axis in self.axes]

    def describe(self) -> str:
        """``train.lr=0.002, train.batch_size=16``."""
        return ", ".join(self.overrides())


def format_value(value: Any) -> str:
    """A config value as a Hydra override value: floats losslessly (``repr``), ints as ints."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    return repr(value) if isinstance(value, float) else str(value)  # repr: shortest lossless; 2.0 stays a float


def parse_overrides(overrides: Iterable[str]) -> dict[str, list]:
    """Hydra override strings -> {key: [values]} (a sweep gives several values, sorted).

    Raises:
        ProtocolError: an override Hydra cannot parse, or one that is not ``key=value(s)``.
    """
    from hydra.errors import HydraException

    try:
        return override_values(overrides)
    except HydraException as e:
        raise ProtocolError(f"protocol: {str(e).splitlines()[0]}") from None


def same_value(a: Any, b: Any) -> bool:
    """Config value equality: numbers up to rounding, lists as JSON text (as frames hold them),
    anything else as text."""
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return _text(a) == _text(b)


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, tuple)) else str(value)


def find_protocol(protocols: Iterable[dict | str | None]) -> Protocol | None:
    """The one protocol the records carry (records without one are ignored).

    Raises:
        ProtocolError: the records carry different protocols.
    """
    found = {
        json.dumps(p, sort_keys=True) if not isinstance(p, str) else p
        for p in protocols
        if p is not None and not _isnan(p)
    }
    parsed = {k: Protocol.from_config(k) for k in found}
    parsed = {k: v for k, v in parsed.items() if v is not None}
    if len(parsed) > 1:
        raise ProtocolError(
            f"the runs carry {len(parsed)} different protocols (config.protocol); report each sweep's runs separately"
        )
    return next(iter(parsed.values()), None)


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def runs_frame(records: list[dict]) -> pd.DataFrame:
    """metrics.json dicts -> the frame this module works on.

    Columns: ``loss``, ``status``, ``protocol`` (JSON), ``val_<metric>`` and every config value by
    dotted path, with the report's run table's conventions (:mod:`ghmbench.store.records`).
    """
    rows = []
    for r in records:
        row = {k: v for k, v in flat_config(r.get("config") or {}).items() if not k.startswith("protocol.")}
        row |= {"loss": r.get("loss"), "status": r.get("status"), "seed": r.get("seed", row.get("seed"))}
        row |= validation_columns(r) | {"protocol": protocol_column(r)}
        rows.append(row)
    return pd.DataFrame(rows)


def axis_column(runs: pd.DataFrame, axis: str) -> str | None:
    """The column of a config path: itself, or ``<axis>.name`` for a config group."""
    for col in (axis, f"{axis}.name"):
        if col in runs.columns:
            return col
    return None


def matches(runs: pd.DataFrame, values: dict[str, Any]) -> pd.Series:
    """Rows whose config has every ``key: value`` of ``values``."""
    mask = pd.Series(True, index=runs.index)
    for key, value in values.items():
        col = axis_column(runs, key)
        mask &= runs[col].map(lambda v: same_value(v, value)) if col else False
    return mask


def select_settings(runs: pd.DataFrame | list[dict], protocol: Protocol | None = None) -> dict[str, Selection]:
    """Each classification loss's selected setting.

    Args:
        runs: a run frame (see the module doc) or metrics.json dicts.
        protocol: the protocol; default: the one the runs carry.

    Returns:
        {loss: Selection}; a loss without any scored candidate is left out; {} without a protocol.

    Raises:
        ProtocolError: the runs carry different protocols, or a bad override.
    """
    runs = runs_frame(runs) if isinstance(runs, list) else runs
    protocol = protocol or (find_protocol(runs["protocol"]) if "protocol" in runs else None)
    if protocol is None or runs.empty:
        return {}
    axes, metric = list(protocol.axes), protocol.metric
    col = f"val_{metric}"
    tuning = runs[matches(runs, protocol.fixed)]
    selections = {}
    for loss in runs["loss"].dropna().unique():
        part = tuning[tuning["loss"] == loss]
        rows = []
        for combo in itertools.product(*protocol.axes.values()):
            at = part[matches(part, dict(zip(axes, combo)))]
            scores = (
                pd.to_numeric(at.loc[at["status"] == COMPLETED, col], errors="coerce").dropna()
                if col in at
                else pd.Series(dtype=float)
            )
            rows.append(
                {
                    **dict(zip(axes, combo)),
                    col: scores.mean() if len(scores) else math.nan,
                    "runs": len(at),
                    "n": len(scores),
                }
            )
        candidates = pd.DataFrame(rows)
        if candidates[col].notna().any():
            best = candidates[col].idxmax()  # the first maximum: ties go to the first in sorted order
            candidates["selected"] = candidates.index == best
            settings = {a: candidates.loc[best, a] for a in axes}
            settings = {a: _plain(v) for a, v in settings.items()}
            selections[str(loss)] = Selection(str(loss), axes, settings, metric, candidates)
    return selections


def _plain(value: Any) -> Any:
    """numpy scalars -> Python ones (so that ``format_value`` prints ints as ints)."""
    return value.item() if hasattr(value, "item") else value


def final_mask(runs: pd.DataFrame, selections: dict[str, Selection]) -> pd.Series:
    """True for the final runs: each loss's runs at its selected setting (every run without selections).

    A loss without a selection has no final runs.
    """
    if not selections:
        return pd.Series(True, index=runs.index)
    mask = pd.Series(False, index=runs.index)
    for loss, sel in selections.items():
        mask |= (runs["loss"] == loss) & matches(runs, sel.settings)
    return mask
