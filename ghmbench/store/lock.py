"""A run folder's lock: one process trains a configuration in its folder at a time. The holder removes
the lock file when it lets go, so a finished run leaves none; a killed holder leaves an empty ``.lock``
that holds nothing (flock locks die with their process) and the next claim of the folder removes."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".lock"


class RunLocked(RuntimeError):
    """Another process is training the same configuration in the same folder."""


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[bool]:
    """An exclusive lock on ``folder/.lock`` while the block runs.

    Yields:
        True when this process holds the lock, False when another process does (it is not waited for).
    """
    path = folder / LOCK_FILE
    with open(path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the file closes (or the process dies)
            acquired = True
        except OSError:
            acquired = False
        try:
            yield acquired
        finally:
            # removed while still held: a process that opens the path after this gets a new file and the
            # lock, then finds the record this holder wrote (claim checks again once it holds the lock)
            if acquired:
                path.unlink(missing_ok=True)
