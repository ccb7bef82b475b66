"""The ``ghmbench`` command line (Typer): ``train``, ``sweep``, ``report`` and ``data export|check``, one
module each; the commands are registered here, in the order ``ghmbench -h`` lists them."""

from __future__ import annotations

import typer

from ghmbench import __version__ as ghmbench_version
from ghmbench.cli import data, report, sweep, train
from ghmbench.cli.common import out

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},  # every command inherits it (click contexts)
    help=(
        "Benchmark classification losses for one-stage detectors: cross-entropy, Focal Loss, "
        "GHM (GHM-C / GHM-R), Quality Focal Loss and Varifocal Loss, with COCO AP.\n\n"
        "Every command takes Hydra overrides of the configs in `conf/`: groups `loss` (ce, focal, ghm, qfl, vfl, "
        "custom), `regression` (smooth_l1, l1, ghm, giou, custom), `model` (small, sparse, resnet18, "
        "retinanet_r18), `dataset` (digits, digits_sparse, coco, voc, yolo), "
        "`train`, plus `seed`, `device` and `paths.runs_dir`; `--config-dir DIR` adds your own config groups and "
        "presets."
    ),
)


def _print_version(value: bool) -> None:
    if value:
        out.print(f"ghmbench {ghmbench_version}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Run `ghmbench COMMAND --help` for a command's overrides and examples."""


EXTRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}  # Hydra overrides after the options
app.command(help=train.HELP, context_settings=EXTRA_ARGS)(train.train)
app.command(help=sweep.HELP, context_settings=EXTRA_ARGS)(sweep.sweep)
app.command(help=report.HELP)(report.report)
app.add_typer(data.data_app, name="data")


def main() -> None:
    """Console-script entry point."""
    app(prog_name="ghmbench")
