"""The ``ghmbench`` command line (Typer)."""

from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ghmbench.config import ConfigError, compose_config, validate

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help=(
        "Benchmark classification losses for one-stage detectors: cross-entropy, Focal Loss and "
        "GHM (GHM-C / GHM-R), with COCO AP.\n\n"
        "Every command takes Hydra overrides of the configs in `conf/`: groups `loss` (ce, focal, ghm), "
        "`regression` (smooth_l1, l1, ghm), `model` (small, resnet18), `dataset` (digits), `train`, "
        "plus `seed`, `device` and `paths.runs_dir`."
    ),
)


@app.callback()
def _root() -> None:
    """Run `ghmbench COMMAND --help` for a command's overrides and examples."""


err = Console(stderr=True)
out = Console()
if not out.is_terminal:  # logs and pipes: wide enough for the summary table
    out.width = max(out.width, 120)

TRAIN_HELP = """Train one configuration, evaluate it with COCO metrics, and write its run folder.

OVERRIDES are Hydra overrides, e.g.:

* `ghmbench train` (focal loss + smooth L1 on the embedded digits dataset)

* `ghmbench train loss=focal loss.gamma=1 loss.alpha=0.5 regression=ghm seed=3`

* `ghmbench train loss=ce loss.alpha=0.75`

* `ghmbench train loss=ghm loss.bins=10 loss.momentum=0.5 train.epochs=6`

* `ghmbench train model=resnet18 device=cuda paths.runs_dir=/data/runs`

The run folder `<paths.runs_dir>/<loss>-<regression>-s<seed>-<key>` holds config.yaml,
metrics.json, detections.json (COCO results), train.log and checkpoint.pt. The key is derived
from the config, so repeating a finished command reuses its record (use --force to retrain),
and an interrupted one resumes from its last checkpoint.
"""


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _fmt(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


def _summary(record: dict) -> Table:
    table = Table(title=f"run {record['run_key']}" + (" (existing record)" if record.get("skipped") else ""))
    for col in ["loss", "regression", "seed", "status", "AP", "AP50", "AP75", "AR100", "wall s"]:
        table.add_column(col, justify="right" if col not in ("loss", "regression", "status") else "left")
    m = record.get("metrics") or {}
    status = record["status"] + (f" @ step {record['diverged_at_step']}" if record["status"] == "diverged" else "")
    table.add_row(
        record["loss"],
        record["regression"],
        str(record["seed"]),
        status,
        _fmt(m.get("AP")),
        _fmt(m.get("AP50")),
        _fmt(m.get("AP75")),
        _fmt(m.get("AR100")),
        f"{record.get('wall_time_s', 0):.1f}",
    )
    return table


@app.command(
    help=TRAIN_HELP,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def train(
    overrides: Optional[list[str]] = typer.Argument(None, help="Hydra overrides, KEY=VALUE or GROUP=OPTION.", show_default=False),
    force: bool = typer.Option(False, "--force", help="Retrain even when a complete record exists."),
    print_config: bool = typer.Option(False, "--cfg", help="Print the resolved config and exit."),
) -> None:
    from omegaconf import OmegaConf

    try:
        cfg = validate(compose_config(overrides or []))
    except ConfigError as e:
        _fail(str(e))
        return
    if print_config:
        out.print(OmegaConf.to_yaml(cfg), highlight=False)
        return
    from ghmbench.training import run

    try:
        record = run(cfg, force=force)
    except ConfigError as e:
        _fail(str(e))
        return
    out.print(_summary(record))
    out.print(f"run folder: {record['run_dir']}", highlight=False, soft_wrap=True)
    if record["status"] != "completed":
        raise typer.Exit(code=1)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="ghmbench")


if __name__ == "__main__":
    sys.exit(main())
