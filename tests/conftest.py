"""Shared fixtures: a tiny but real training configuration pointed at a temporary folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")

# Small enough to train in seconds on 2 CPU cores, big enough to learn something.
TINY = [
    "dataset.num_train=64",
    "dataset.num_val=16",
    "train.epochs=2",
    "train.batch_size=16",
    "train.warmup_iters=4",
    "train.progress=false",
    "model.score_thresh=0.001",  # a barely trained model still scores near its prior (0.01)
]


# TINY without the digits-only dataset keys, for the datasets read from disk.
TINY_TRAIN = [o for o in TINY if not o.startswith("dataset.")]


@pytest.fixture
def tiny(tmp_path: Path) -> list[str]:
    """Overrides for a tiny run writing under tmp_path (the dataset cache is shared per session)."""
    cache = Path(os.environ.get("GHMBENCH_TEST_CACHE", tmp_path.parent / "ghmbench-cache"))
    return [*TINY, f"paths.runs_dir={tmp_path / 'runs'}", f"paths.cache_dir={cache}"]


def ghmbench_exe() -> str:
    """The installed ``ghmbench`` console script (the one beside this interpreter first)."""
    exe = shutil.which("ghmbench", path=str(Path(sys.executable).parent)) or shutil.which("ghmbench")
    assert exe, "the ghmbench console script is not installed"
    return exe


def ghmbench_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run the installed ``ghmbench`` command as a user would."""
    return subprocess.run([ghmbench_exe(), *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


DOCS = Path(__file__).resolve().parent.parent / "docs"
OWN_LOSS_DOC = DOCS / "own-loss.md"  # your own loss, ghmbench from another project, in CI
OWN_DATA_DOC = DOCS / "own-data.md"  # COCO / VOC / YOLO


def doc_files() -> dict[str, str]:
    """docs/own-loss.md's example files: fenced blocks whose first line is ``# <path>.py|yaml|yml``."""
    import re

    blocks = re.findall(r"```[a-z]*\n# ([\w./-]+\.(?:py|yaml|yml))\n(.*?)```", OWN_LOSS_DOC.read_text(), flags=re.S)
    return {path: body for path, body in blocks}


def write_user_project(folder: Path) -> Path:
    """A user's project as docs/own-loss.md shows it: my_pkg/losses.py,
    ghmbench_conf/loss/scaled_bce.yaml and the CI workflow."""
    for path, body in doc_files().items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(body)
    (folder / "my_pkg" / "__init__.py").write_text("")
    return folder


def ci_command() -> list[str]:
    """The ``ghmbench train ...`` command of docs/own-loss.md's GitHub Actions job."""
    import re
    import shlex

    (command,) = re.findall(r"run: (ghmbench train .+)", doc_files()[".github/workflows/ghmbench.yml"])
    return shlex.split(command)
