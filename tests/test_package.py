"""ghmbench as a dependency: the wheel carries its configs and runs outside the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ci_command, write_user_project

REPO = Path(__file__).resolve().parent.parent


def _run(args: list, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_wheel_installed_outside_the_repository_passes_the_smoke_check_and_the_ci_recipe(tmp_path):
    # build from a copy of what the sdist holds, so the repository gets no build/ or egg-info
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (src / name).write_bytes((REPO / name).read_bytes())
    for name in ("ghmbench", "conf"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    built = _run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp_path / "dist", src], cwd=tmp_path
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("ghmbench-*.whl")
    packaged = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".yaml")}
    assert packaged == {f"ghmbench/conf/{p.relative_to(REPO / 'conf')}" for p in (REPO / "conf").rglob("*.yaml")}
    # the embedded BCCD photos travel with their license and provenance, every file as it is in the repository
    bccd = REPO / "ghmbench" / "data" / "embedded" / "bccd"
    in_wheel = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("ghmbench/data/embedded/")}
    assert in_wheel == {f"ghmbench/data/embedded/bccd/{p.relative_to(bccd)}" for p in bccd.rglob("*") if p.is_file()}
    assert {"LICENSE", "PROVENANCE.md", "SOURCE.txt"} <= {Path(n).name for n in in_wheel}
    assert wheel.stat().st_size < 16 << 20  # the photos are about 10 MB

    site = tmp_path / "site"
    installed = _run([*pip, "install", "--no-deps", "--no-index", "--target", site, wheel], cwd=tmp_path)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # a user's project: not the repository, with docs/own-loss.md's loss, config folder and CI job
    project = write_user_project(tmp_path / "project")
    env = {k: v for k, v in os.environ.items() if k != "GHMBENCH_CONF_DIR"} | {
        "PYTHONPATH": f"{site}{os.pathsep}{project}"
    }
    where = _run(
        [sys.executable, "-c", "import ghmbench.config.compose as c; print(c.__file__); print(c.conf_dir())"],
        cwd=project,
        env=env,
    )
    expected = [str(site / "ghmbench" / "config" / "compose.py"), str(site / "ghmbench" / "conf")]
    assert where.stdout.split() == expected, where.stderr

    cache = f"paths.cache_dir={tmp_path.parent / 'ghmbench-cache'}"
    smoke = _run(
        [sys.executable, "-m", "ghmbench", "train", "experiment=smoke", "train.progress=false", cache],
        cwd=project,
        env=env,
    )
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert "smoke check passed" in smoke.stdout
    # the embedded photos, read from the installed package (small: 16 images per split at 128 px)
    photos = _run(
        [sys.executable, "-m", "ghmbench", "train", "dataset=bccd", "train.epochs=1", "train.progress=false"]
        + ["dataset.max_images=16", "dataset.image_size=128", "train.batch_size=8", cache]
        + [f"paths.runs_dir={tmp_path / 'photo_runs'}"],
        cwd=project,
        env=env,
    )
    assert photos.returncode == 0, photos.stdout + photos.stderr
    assert "fitted to the training boxes" in photos.stdout and "completed" in photos.stdout

    # docs/own-loss.md's CI job, through the console script the wheel installed
    command = ci_command()
    ci = _run([site / "bin" / command[0], *command[1:], cache], cwd=project, env=env)
    assert ci.returncode == 0, ci.stdout + ci.stderr
    assert "smoke check passed" in ci.stdout
    folders = sorted(p.name for p in (project / "runs").iterdir() if not p.name.startswith("."))
    assert (
        len(folders) == 2
        and folders[0].startswith("focal-smooth_l1-s0-")
        and folders[1].startswith("scaled_bce-smooth_l1-s0-")
    )
