"""What the commands share: the consoles, the one-line error with exit code 2, the records table."""

from __future__ import annotations

from typing import NoReturn, Optional

import typer
from rich.console import Console
from rich.table import Table

from ghmbench.store.fields import DIVERGED

err = Console(stderr=True)
out = Console()
if not out.is_terminal:  # logs and pipes: wide enough for the summary table
    out.width = max(out.width, 120)


def config_dir_option():
    """The ``--config-dir`` option that train, sweep and data check share."""
    return typer.Option(
        None,
        "--config-dir",
        help="Your own config folder (groups such as loss/, experiment/), searched after the built-in configs; "
        "repeatable.",
        show_default=False,
    )


def fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def fmt(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


SHOWN_METRICS = ["AP", "AP50", "AP75", "AR100"]  # the records tables' metric columns


def records_table(records: list[dict], title: str) -> Table:
    table = Table(title=title)
    for col in ["run", "loss", "regression", "seed", "status", *SHOWN_METRICS, "wall s"]:
        table.add_column(col, justify="right" if col not in ("run", "loss", "regression", "status") else "left")
    for record in records:
        metrics = record.get("metrics") or {}
        status = record["status"] + (f" @ step {record['diverged_at_step']}" if record["status"] == DIVERGED else "")
        shown = (fmt(metrics.get(name)) for name in SHOWN_METRICS)
        table.add_row(
            record["run_key"],
            record["loss"],
            record["regression"],
            str(record["seed"]),
            status,
            *shown,
            f"{record.get('wall_time_s', 0):.1f}",
        )
    return table
