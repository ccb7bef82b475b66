#!/usr/bin/env python
"""The paired verdicts of several reports of one protocol side by side, one column per report.

Reads the ``differences.csv`` (and ``headline.csv`` for convergence) that ``ghmbench report``
wrote for each report folder, e.g. the loss comparison at 12, 24 and 36 epochs, and prints a
Markdown table: one row per comparison (A - B under a fixed loss), one column per report, each
cell the paired difference with its 95% interval and the verdict (a verdict only when the
interval excludes 0). A difference that involves a headline cell flagged *not converged* is
marked so.

Usage: python scripts/verdicts_by_budget.py LABEL=REPORT_DIR [LABEL=REPORT_DIR ...]
e.g.   python scripts/verdicts_by_budget.py "12 epochs=results/loss_comparison" \
           "24 epochs=results/loss_comparison_24" "36 epochs=results/loss_comparison_36"
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from ghmbench.reporting.comparison import difference_text
from ghmbench.reporting.run_table import LOSS_LABELS, REG_LABELS, loss_label, regression_label


def _unconverged(report: Path) -> set[tuple[str, str]]:
    """(classification, regression) cells of the report's headline flagged *not converged*."""
    path = report / "headline.csv"
    if not path.is_file():
        return set()
    table = pd.read_csv(path)
    flagged = table[table["not_converged"].fillna(False).astype(bool)]
    return set(zip(flagged["loss"].astype(str), flagged["regression"].astype(str)))


def _cells(a: str, b: str, under: str) -> list[tuple[str, str]]:
    """The two (classification, regression) headline cells (config keys) a difference compares; its
    names are display names ("GHM-C", "smooth L1") or, in reports made before they were, keys."""
    losses = {label: key for key, label in LOSS_LABELS.items()}
    regs = {label: key for key, label in REG_LABELS.items()}
    kind, fixed = under.split(" ", 1)
    if kind == "regression":
        return [(losses.get(a, a), regs.get(fixed, fixed)), (losses.get(b, b), regs.get(fixed, fixed))]
    return [(losses.get(fixed, fixed), regs.get(a, a)), (losses.get(fixed, fixed), regs.get(b, b))]


def _named(row: pd.Series) -> tuple[str, str, str, str]:
    """(A, B, under, verdict) in display names, so that reports made before the display names align."""
    kind, fixed = row["under"].split(" ", 1)
    names, fixed = (
        (loss_label, regression_label(fixed)) if kind == "regression" else (regression_label, loss_label(fixed))
    )
    a, b = names(row["a"]), names(row["b"])
    verdict = str(row["verdict"])
    for sign in (">", "<"):
        if verdict == f"{row['a']} {sign} {row['b']}":
            verdict = f"{a} {sign} {b}"
    return a, b, f"{kind} {fixed}", verdict


def _cell(row: pd.Series, verdict: str, flagged: set[tuple[str, str]]) -> str:
    """The difference as the report's differences table writes it ("-" where it has none), its
    verdict (display names), and "(not converged)" when one of its two cells was flagged."""
    mean = row.get("mean", math.nan)
    text = "-" if math.isnan(mean) else difference_text(mean, row.get("lo", math.nan), row.get("hi", math.nan))
    stale = any(cell in flagged for cell in _cells(row["a"], row["b"], row["under"]))
    return f"{text} {verdict}" + (" (not converged)" if stale else "")


def verdict_table(reports: dict[str, Path]) -> pd.DataFrame:
    """One row per comparison, one column per report label (cells as :func:`_cell` writes them)."""
    columns = {}
    for label, report in reports.items():
        path = report / "differences.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (a folder written by `ghmbench report`)")
        diffs = pd.read_csv(path)
        flagged = _unconverged(report)
        columns[label] = {}
        for _, r in diffs.iterrows():
            *key, verdict = _named(r)
            columns[label][tuple(key)] = _cell(r, verdict, flagged)
    order = list(dict.fromkeys(key for col in columns.values() for key in col))
    rows = [
        {
            "A − B": f"{a} − {b}",
            "under": under,
            **{label: col.get((a, b, under), "-") for label, col in columns.items()},
        }
        for a, b, under in order
    ]
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", metavar="LABEL=REPORT_DIR")
    args = parser.parse_args(argv)
    reports = {}
    for item in args.reports:
        label, sep, folder = item.partition("=")
        if not sep:
            parser.error(f"{item!r}: expected LABEL=REPORT_DIR")
        reports[label] = Path(folder)
    try:
        table = verdict_table(reports)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table.to_markdown(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
