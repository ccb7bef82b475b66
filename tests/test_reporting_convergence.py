"""The convergence check: the rise of a validation curve over the last quarter of training and the
configuration's mean rise against the tolerance."""

from __future__ import annotations

import math

import pytest

from ghmbench.reporting.convergence import convergence_rise, mean_rise, still_rising


def test_convergence_rise_flags_a_curve_still_rising():
    rising = [
        {"epoch": e, "step": 25 * e, "AP": 0.30 + (0.02 * (e - 6) / 2 if e > 6 else 0)} for e in range(1, 9)
    ]  # +.02 after 75%
    flat = [{**p, "AP": 0.30} for p in rising]
    assert convergence_rise(rising, 200) == pytest.approx(0.02)
    assert convergence_rise(flat, 200) == pytest.approx(0.0)
    assert convergence_rise(rising[:1], 200) is None and convergence_rise(None, 200) is None
    assert convergence_rise([{"step": 100, "AP": None}, *rising], None) == pytest.approx(0.02)  # null points skipped
    assert still_rising(mean_rise([0.02, 0.015])) and not still_rising(mean_rise([0.0, 0.005]))
    assert math.isnan(mean_rise([None])) and not still_rising(mean_rise([None]))


def test_a_dip_before_the_last_quarter_is_not_a_rise():
    """A plateau measured with noise (best at half-way, a dip at 75%, a partial recovery) is not still
    rising; a curve that climbs through every point is flagged as by its 75% value alone."""
    points = [(15, 0.321), (30, 0.393), (45, 0.368), (60, 0.381)]
    dipped = [{"step": s, "AP": ap} for s, ap in points]
    assert convergence_rise(dipped, 60) == pytest.approx(0.381 - 0.393)
    climbing = [{"step": s, "AP": ap} for s, ap in [(9, 0.125), (18, 0.224), (27, 0.325), (36, 0.356)]]
    assert convergence_rise(climbing, 36) == pytest.approx(0.356 - 0.325)
    late_best = [{"step": s, "AP": ap} for s, ap in [(15, 0.30), (30, 0.31), (45, 0.33), (60, 0.345)]]
    assert still_rising(convergence_rise(late_best, 60))  # +.015 over every earlier point
