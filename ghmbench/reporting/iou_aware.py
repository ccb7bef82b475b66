"""The IoU-aware losses' claims, fixed before their runs: QFL and VFL each beat Focal Loss, and their
gain is larger at the strict IoU threshold (AP75) than at the loose one (AP50), since they train the
class score to predict localisation quality.

Each is read from the final runs of the fair comparison, paired by seed, under each box loss: the
gain in AP, AP50 and AP75, and the gap ``[AP75(X) - AP75(Focal)] - [AP50(X) - AP50(Focal)]``.
"""

from __future__ import annotations

import math

import pandas as pd

from ghmbench.reporting import published
from ghmbench.reporting.comparison import Bootstrap, compare, difference_text
from ghmbench.reporting.intervals import Interval
from ghmbench.reporting.run_table import REG_ORDER, final_runs, loss_label, regression_label
from ghmbench.reporting.tables import Table

IOU_AWARE = ("qfl", "vfl")
GAP = "AP75 − AP50"


def _claim(name: str, metric: str) -> str:
    if metric == GAP:
        return f"{name} gains more in AP75 than in AP50 (IoU-aware)"
    return f"{name} > Focal ({metric})"


def _verdict(diff: Interval | None) -> str:
    if diff is None or math.isnan(diff.lo):  # no runs, or one pair of seeds
        return "-"
    return "reproduces" if diff.lo > 0 else "does not reproduce" if diff.hi < 0 else "no clear difference"


def _rows(final: pd.DataFrame, boot: Bootstrap) -> tuple[list[dict], list[dict]]:
    """A row per (box loss, IoU-aware loss, metric): the contrast with Focal, as cells and as numbers."""
    rows, nums = [], []
    for reg in sorted(final["regression"].unique(), key=lambda r: REG_ORDER.get(r, 99)):
        at = final[final["regression"] == reg]
        focal = at[at["loss"] == "focal"]
        for loss in [name for name in IOU_AWARE if (at["loss"] == name).any() and not focal.empty]:
            for metric in ("AP", "AP50", "AP75", GAP):
                # the gap is a difference of two metrics: paired by seed only, no image bootstrap of it
                diff, how = compare(at[at["loss"] == loss], focal, metric, boot if metric != GAP else Bootstrap(0))
                text = "-" if diff is None else difference_text(diff.mean, diff.lo, diff.hi)
                rows.append(
                    {
                        "claim": _claim(loss_label(loss), metric),
                        "under": f"regression {regression_label(reg)}",
                        "Δ [95% interval]": text,
                        "paired": how,
                        "verdict": _verdict(diff),
                    }
                )
                numbers = {} if diff is None else {"mean": diff.mean, "lo": diff.lo, "hi": diff.hi, "n": diff.n}
                nums.append({"loss": loss, "regression": reg, "metric": metric, "paired": how} | numbers)
    return rows, nums


def iou_aware_table(df: pd.DataFrame, boot: Bootstrap) -> Table | None:
    """QFL and VFL against Focal under each box loss of the final runs; None without both sides."""
    final = final_runs(df)
    if "AP50" not in final or not (final["loss"].isin(IOU_AWARE).any() and (final["loss"] == "focal").any()):
        return None
    rows, nums = _rows(final.assign(**{GAP: final["AP75"] - final["AP50"]}), boot)
    if not rows:
        return None
    notes = [
        "Δ = {QFL, VFL} − Focal on the reported split, paired by seed; in the IoU-aware row Δ = ΔAP75 − ΔAP50. "
        "reproduces: the 95% interval lies above 0; does not reproduce: below 0.",
        published.iou_aware_note([loss for loss in IOU_AWARE if (final["loss"] == loss).any()]),
    ]
    title = "The IoU-aware claims, fixed before the runs: QFL and VFL against Focal"
    return Table("iou_aware", title, pd.DataFrame(rows), pd.DataFrame(nums), [n for n in notes if n])


__all__ = ["IOU_AWARE", "iou_aware_table"]
