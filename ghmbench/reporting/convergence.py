"""The convergence check, in one place: how much a run's validation metric still rose over the last
quarter of training, the mean rise of a configuration's runs, and whether that is too much."""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

CONVERGENCE_TOL = 0.01
"""A configuration is *not converged* when its validation AP still rose by more than this, on
average over seeds, over the last quarter of training."""

CONVERGENCE_NOTE = (
    f"*not converged*: validation AP still rose by more than {CONVERGENCE_TOL:g} (mean over seeds) between 75% of "
    "training and its end."
)


def convergence_rise(curve: list[dict] | None, total_steps: float | None, metric: str = "AP") -> float | None:
    """Metric at the last curve point minus the metric interpolated at 75% of training.

    Args:
        curve: validation points ``{"step": int, metric: float | None, ...}``.
        total_steps: the run's training steps (default: the last point's step).

    Returns:
        The rise, or None with fewer than 2 points carrying the metric.
    """
    points = sorted(
        (p["step"], p[metric]) for p in curve or [] if p.get(metric) is not None and p.get("step") is not None
    )
    if len(points) < 2:
        return None
    steps, values = np.array(points, dtype=float).T
    total = float(total_steps) if total_steps else steps[-1]
    return float(values[-1] - np.interp(0.75 * total, steps, values))


def mean_rise(rises: Iterable[float | None]) -> float:
    """The mean of the runs' rises (missing ones left out); NaN without any."""
    known = [float(r) for r in rises if r is not None and not math.isnan(r)]
    return float(np.mean(known)) if known else math.nan


def still_rising(rise: float | None) -> bool:
    """True when a (mean) rise exceeds :data:`CONVERGENCE_TOL`: the configuration is not converged."""
    return rise is not None and not math.isnan(rise) and rise > CONVERGENCE_TOL
