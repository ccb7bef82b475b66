"""A run's log file: the ``ghmbench`` logger's lines also go to ``train.log`` in the run folder."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("ghmbench")


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
