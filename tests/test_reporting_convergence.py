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
