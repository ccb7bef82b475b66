"""``ghmbench report``: tables and figures from run records."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ghmbench.cli.common import fail, out

HELP = """Turn run records into tables and figures.

Reads every `<run>/metrics.json` under the given runs folders (default: `runs`) and writes to
`--out` (default: `<first folder>/report`): runs.csv and runs.parquet (every run), summary /
headline / differences / iou_aware / candidates / imbalance / loss_comparison / ce_alpha / focal_gamma_alpha /
ghm_bins_momentum / focal_settings and ghm_settings (with _best, _tuning, _seeds) / label_noise /
shapes tables as .md, .tex and .csv (whichever the runs allow), PNG figures, and report.md.
Diverged and failed runs are counted and shown; the best value per column is in bold.

Runs of a `protocol` sweep are compared fairly: each loss's setting is selected on validation,
and the headline (mean [95% interval] (n) over seeds; an image bootstrap for a single run) and the
paired differences use only the runs at the selected settings, on the test split when there is
one. Configurations whose validation AP still rose in the last quarter of training are marked
*not converged*. Unreadable records are skipped with a warning.

* `ghmbench report` · `ghmbench report runs other_runs --out report`

* `ghmbench report --metric AP50 --group-by loss,loss.gamma --bootstrap 0`
"""


def report(
    runs_dirs: Optional[list[Path]] = typer.Argument(None, help="Runs folders (or run folders).", show_default=False),
    out_dir: Optional[Path] = typer.Option(
        None, "--out", help="Output folder [default: `<first runs folder>/report`]."
    ),
    metric: str = typer.Option(
        "AP",
        "--metric",
        help="Metric of the paper-shaped tables and figures: AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100.",
    ),
    group_by: Optional[str] = typer.Option(
        None,
        "--group-by",
        help=(
            "Comma-separated columns of the summary table [default: loss, regression and every config key that varies]."
        ),
    ),
    bootstrap: int = typer.Option(
        500, "--bootstrap", min=0, help="Image bootstrap replicates for single-run intervals and differences (0 = off)."
    ),
    note: Optional[str] = typer.Option(
        None,
        "--note",
        help=(
            "A line in bold under the report's title, e.g. what its runs are for (`make bench-quick`: a setup check, "
            "not a verdict)."
        ),
        show_default=False,
    ),
) -> None:
    from ghmbench.reporting.report import make_report
    from ghmbench.reporting.run_table import ReportError

    try:
        result = make_report(list(runs_dirs or [Path("runs")]), out_dir, metric, group_by, bootstrap, note)
    except ReportError as e:
        fail(str(e))
    out.print(result.path.read_text().split("### Figures")[0], highlight=False, markup=False, soft_wrap=True)
    for fig in result.figures:
        out.print(f"figure: {fig}", highlight=False, soft_wrap=True)
    out.print(
        f"report: {result.path} (tables as .md/.tex/.csv and runs.csv/.parquet beside it)",
        highlight=False,
        soft_wrap=True,
    )
