"""How a table cell writes a result, in one place: ``mean ± std (n)`` over seeds, ``mean [lo, hi] (n)``
with an interval, the runs that diverged or failed, and why a cell without a completed run is empty."""

from __future__ import annotations

import math

from ghmbench.reporting.intervals import Interval


def no_result(runs: int, diverged: int, failed: int) -> str:
    """The text of a cell without a completed run: what happened to its ``runs``."""
    if not runs or not (diverged or failed):
        return "-"
    if diverged and failed:
        return f"diverged {diverged}, failed {failed} /{runs}"
    return f"diverged ({diverged}/{runs})" if diverged else f"failed ({failed}/{runs})"


def _counted(text: str, n: int, notes: list[str], diverged: int, failed: int) -> str:
    """``text (n, notes..., d diverged, f failed)``."""
    notes = notes + [f"{k} {w}" for k, w in ((diverged, "diverged"), (failed, "failed")) if k]
    return text + f" ({n}" + "".join(f", {e}" for e in notes) + ")"


def fmt_cell(mean: float, std: float, n: int, runs: int, diverged: int, failed: int, digits: int = 3) -> str:
    """``0.651 ± 0.012 (3)``; a cell without a completed run says why (:func:`no_result`)."""
    if n == 0:
        return no_result(runs, diverged, failed)
    text = f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if not math.isnan(std) else "")
    return _counted(text, n, [], diverged, failed)


def fmt_summary_cell(row, metric: str, digits: int = 3) -> str:
    """:func:`fmt_cell` of one row of :func:`ghmbench.reporting.run_table.summarize`."""
    stats = (row[f"{metric}_mean"], row[f"{metric}_std"], row[f"{metric}_n"])
    return fmt_cell(*stats, row["runs"], row["diverged"], row["failed"], digits)


def fmt_interval(iv: Interval, runs: int = 0, diverged: int = 0, failed: int = 0, digits: int = 3) -> str:
    """``0.400 [0.152, 0.648] (3)``; ``(1, image bootstrap)`` for a bootstrap interval; a cell without
    a completed run says why (:func:`no_result`)."""
    if iv.n == 0:
        return no_result(runs, diverged, failed)
    text = f"{iv.mean:.{digits}f}" + (f" [{iv.lo:.{digits}f}, {iv.hi:.{digits}f}]" if not math.isnan(iv.lo) else "")
    return _counted(text, iv.n, ["image bootstrap"] if iv.method == "bootstrap" else [], diverged, failed)
