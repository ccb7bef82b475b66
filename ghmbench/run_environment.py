"""What surrounds one run's training: the run folder's lock, its log file, the progress bar and the
versions of the libraries that determine the numbers."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import platform
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

log = logging.getLogger("ghmbench")


class RunLocked(RuntimeError):
    """Another process is training the same configuration in the same folder."""


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[bool]:
    """An exclusive lock on ``folder/.lock`` while the block runs.

    Yields:
        True when this process holds the lock, False when another process does (it is not waited for).
    """
    with open(folder / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the file closes (or the process dies)
            acquired = True
        except OSError:
            acquired = False
        yield acquired


@contextlib.contextmanager
def log_to_file(folder: Path) -> Iterator[None]:
    """The ``ghmbench`` logger also writes to ``folder/train.log`` while the block runs."""
    handler = logging.FileHandler(folder / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()


def progress_bar(enabled: bool):
    """A rich progress bar of the training steps with the running mean losses (silent unless ``enabled``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[losses]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that determine the numbers."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ["torch", "torchvision", "numpy", "faster-coco-eval", "hydra-core", "scikit-learn", "ghmbench"]:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


__all__ = ["RunLocked", "folder_lock", "library_versions", "log_to_file", "progress_bar"]
