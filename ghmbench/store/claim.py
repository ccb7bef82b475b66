"""The store's side of a run: whether a run folder is trained at all. A complete record is reused
unless ``force``; otherwise the folder is locked for this process (another process training it is
an error), cleared of its results when ``force``, and a run that raises leaves a failed record."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from ghmbench.store.checkpoint import CHECKPOINT_FILE
from ghmbench.store.fields import FAILED
from ghmbench.store.fileio import remove_temp_files, write_json
from ghmbench.store.lock import RunLocked, folder_lock
from ghmbench.store.records import METRICS_FILE, is_complete, read_record

RESULT_FILES = (METRICS_FILE, CHECKPOINT_FILE, "detections.json")
"""What ``force`` removes before a run is trained again."""


def reused_record(folder: Path) -> dict:
    """The complete record of ``folder``, marked ``skipped=True``."""
    record = read_record(folder)
    assert record is not None
    return {**record, "skipped": True}


@contextlib.contextmanager
def claim(folder: Path, force: bool, decided: Callable[[str], object] = lambda decision: None) -> Iterator[dict | None]:
    """Decide what to do with ``folder``; ``decided`` hears the decision ("skip", "locked" or
    "train") before the block runs, e.g. to tell the other ranks of a distributed run.

    Yields:
        The complete record to reuse (the block returns it), or None: the folder is this process's
        to train in until the block ends (locked; cleared of interrupted writes' temporary files, and of
        its results when ``force``).

    Raises:
        RunLocked: another process holds the folder's lock.
    """
    if not force and is_complete(folder):
        decided("skip")
        yield reused_record(folder)
        return
    folder.mkdir(parents=True, exist_ok=True)
    with folder_lock(folder) as acquired:
        if not acquired:
            decided("locked")
            raise RunLocked(f"{folder} is being trained by another process")
        if not force and is_complete(folder):  # finished while we were starting
            decided("skip")
            yield reused_record(folder)
            return
        remove_temp_files(folder)  # a killed write's leftovers (a checkpoint's can weigh megabytes)
        if force:
            for name in RESULT_FILES:
                (folder / name).unlink(missing_ok=True)
        decided("train")
        yield None


def record_failure(folder: Path, record: dict, error: Exception) -> None:
    """Write ``record`` (what is known of the run) as failed, with the error's type and message."""
    write_json(folder / METRICS_FILE, record | {"status": FAILED, "error": f"{type(error).__name__}: {error}"})
