"""The convergence check, in one place: how far a run's validation metric at the end of training rose
above what it had reached by 75% of training, the mean rise of a configuration's runs, and whether
that is too much.

"What it had reached" is the best of its value at 75% of training and every earlier validation point.
A curve that is still climbing is flagged exactly as by its value at 75% alone; a plateau whose
single-seed measurements dip and recover is not (a validation split of a few hundred images moves
AP by about the tolerance from one evaluation to the next).
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

CONVERGENCE_TOL = 0.01
"""A configuration is *not converged* when its validation AP at the end of training exceeds what it had
reached by 75% of training by more than this, on average over seeds."""


def convergence_note(mark: str = "*not converged*", metric: str = "AP", over: str = " (mean over seeds)") -> str:
    """The note under a table that explains its ``mark`` of a configuration flagged by :func:`still_rising`."""
    return (
        f"{mark}: validation {metric} at the end of training exceeded its best value up to 75% of training by more "
        f"than {CONVERGENCE_TOL:g}{over}."
    )


CONVERGENCE_NOTE = convergence_note()


def convergence_rise(curve: list[dict] | None, total_steps: float | None, metric: str = "AP") -> float | None:
    """Metric at the last curve point minus the best of the metric interpolated at 75% of training and
    the metric at every earlier point.

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
    at_three_quarters = np.interp(0.75 * total, steps, values)
    reached = max(at_three_quarters, *values[steps <= 0.75 * total])
    return float(values[-1] - reached)


def mean_rise(rises: Iterable[float | None]) -> float:
    """The mean of the runs' rises (missing ones left out); NaN without any."""
    known = [float(r) for r in rises if r is not None and not math.isnan(r)]
    return float(np.mean(known)) if known else math.nan


def still_rising(rise: float | None) -> bool:
    """True when a (mean) rise exceeds :data:`CONVERGENCE_TOL`: the configuration is not converged."""
    return rise is not None and not math.isnan(rise) and rise > CONVERGENCE_TOL
