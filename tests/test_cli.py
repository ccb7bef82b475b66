"""Command-line conventions: -h everywhere, --version, help texts true to the code."""

from __future__ import annotations

import ast
import inspect
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ghmbench
from ghmbench.cli import app
from tests.conftest import ghmbench_cli

ROOT = Path(__file__).resolve().parent.parent
WIDE = os.environ | {"COLUMNS": "200"}  # rich wraps help to the terminal's width


def _text(output: str) -> str:
    """Help as plain words: rich's panel borders dropped, whitespace collapsed."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


@pytest.mark.parametrize(
    "args",
    [
        ["-h"],
        ["train", "-h"],
        ["train", "-h", "experiment=smoke", "loss=ghm"],
        ["sweep", "-h", "loss=ce,focal"],
        ["report", "-h"],
        ["data", "-h"],
        ["data", "check", "-h"],
        ["data", "export", "-h"],
    ],
)
def test_dash_h_is_help_everywhere(args):
    result = CliRunner().invoke(app, args, prog_name="ghmbench", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    command = " ".join(a for a in args if a != "-h" and "=" not in a)
    assert f"Usage: ghmbench {command}".strip() in _text(result.output)
    assert (
        result.output
        == CliRunner()
        .invoke(app, [a if a != "-h" else "--help" for a in args], prog_name="ghmbench", env={"COLUMNS": "200"})
        .output
    )


@pytest.mark.slow
def test_help_and_version_as_a_user_runs_them(tmp_path):
    top = ghmbench_cli("-h", env=WIDE)
    assert top.returncode == 0 and "--version" in top.stdout and "Usage: ghmbench" in top.stdout
    train = ghmbench_cli("train", "-h", "experiment=smoke", f"paths.runs_dir={tmp_path / 'runs'}", env=WIDE)
    assert train.returncode == 0 and "Train one configuration" in train.stdout and train.stderr == ""
    assert not (tmp_path / "runs").exists()  # help, not a run
    version = ghmbench_cli("--version")
    assert (version.returncode, version.stdout) == (0, f"ghmbench {ghmbench.__version__}\n")


def _report_table_names() -> set[str]:
    """Every table name the report's code can write: the literal first argument of each
    ``Table(...)`` and the literal ``name`` argument of each ``_grid_table(...)`` in ghmbench/."""
    from ghmbench.reporting import tables

    name_at = {"Table": 0, "_grid_table": list(inspect.signature(tables._grid_table).parameters).index("name")}
    names = set()
    for path in (ROOT / "ghmbench").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in name_at:
                at = name_at[node.func.id]
                if len(node.args) > at and isinstance(node.args[at], ast.Constant):
                    names.add(node.args[at].value)
    return names


def test_report_help_lists_every_table_and_the_real_out_default():
    result = CliRunner().invoke(app, ["report", "--help"], prog_name="ghmbench", env={"COLUMNS": "200"})
    text = _text(result.output)
    names = _report_table_names()
    assert {"summary", "headline", "loss_comparison", "ghm_bins_momentum"} <= names
    assert [n for n in sorted(names) if n not in text] == []
    assert "Output folder [default: <first runs folder>/report]" in text
