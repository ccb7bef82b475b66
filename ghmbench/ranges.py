"""Range checks: what a config value (or a loss's constructor argument) may be, written once.

A check is ``(key, predicate, allowed)``: ``allowed`` words the range for the one-line message
(``loss.bins=0 is not allowed; allowed: an integer >= 1``). The losses' parameters are listed
here, so that :func:`ghmbench.config.compose.validate` and the loss constructors test the same ranges.
"""

from __future__ import annotations

import math
from typing import Any, Callable

Check = tuple[str, Callable[[Any], bool], str]


def in_unit_interval(value: Any) -> bool:
    return value is not None and 0.0 <= value <= 1.0


def is_balance_weight(value: Any) -> bool:
    return value is None or 0.0 <= value <= 1.0


def is_positive(value: Any) -> bool:
    return value is not None and value > 0 and math.isfinite(value)


def is_non_negative(value: Any) -> bool:
    return value is not None and value >= 0 and math.isfinite(value)


def is_at_least_one(value: Any) -> bool:
    return value is not None and value >= 1


def passes(check: Check, value: Any) -> bool:
    """Whether ``value`` is in the range of ``check`` (a value the predicate cannot compare is not)."""
    try:
        return bool(check[1](value))
    except (TypeError, ValueError):
        return False


def require(check: Check, value: Any) -> None:
    """A loss constructor's argument check.

    Raises:
        ValueError: ``bins must be >= 1, got 0`` (the range without its "an integer" / "a number").
    """
    if not passes(check, value):
        key, _, allowed = check
        raise ValueError(f"{key} must be {allowed.removeprefix('an integer ').removeprefix('a number ')}, got {value}")


ALPHA: Check = ("alpha", is_balance_weight, "null or a number in [0, 1]")
GAMMA: Check = ("gamma", is_non_negative, "a number >= 0")
BINS: Check = ("bins", is_at_least_one, "an integer >= 1")
MOMENTUM: Check = ("momentum", lambda value: 0 <= value < 1, "a number in [0, 1)")
LOSS_WEIGHT: Check = ("loss_weight", is_non_negative, "a number >= 0")
BETA: Check = ("beta", is_non_negative, "a number >= 0")
MU: Check = ("mu", is_positive, "a number > 0")

LOSS_PARAMETERS: dict[str, list[Check]] = {
    "loss": [ALPHA, GAMMA, BETA, BINS, MOMENTUM, LOSS_WEIGHT],
    "regression": [BETA, MU, BINS, MOMENTUM, LOSS_WEIGHT],
}
"""The ranges of the built-in losses' parameters, by config section, in the order validate checks them."""
