"""A run folder's lock: one process trains a configuration in its folder at a time."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


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
