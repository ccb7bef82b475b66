"""Atomic file writes: a reader (another process of a sweep, a report) sees the old file or the
new one, never a half-written one, and an interrupted write leaves nothing behind. The files get
the mode ``open()`` would give them (0o666 less the umask), so a colleague's report on a shared
file system reads them."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import IO, Any, Callable

TMP_SUFFIX = ".tmp"  # ``.<name>.<16 hex digits>.tmp``: a write in progress, or one a SIGKILL interrupted


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, flush it to disk, rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # not tempfile.mkstemp: its files are mode 0o600 whatever the umask, and a record stays private
    # to its owner; O_EXCL keeps mkstemp's guarantee that no other file is opened or clobbered
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}{TMP_SUFFIX}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_temp_files(folder: str | Path) -> list[Path]:
    """Remove what interrupted atomic writes left in ``folder`` (call it only while no write can be in
    progress there, e.g. holding the folder's lock). Returns the removed paths."""
    leftovers = sorted(Path(folder).glob(f".*.*{TMP_SUFFIX}"))
    for tmp in leftovers:
        tmp.unlink(missing_ok=True)
    return leftovers


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    """Write JSON atomically (NaN and infinity refused: they are not JSON)."""
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=indent, allow_nan=False).encode()))


def write_text(path: str | Path, text: str) -> None:
    """Write text atomically."""
    atomic_write(path, lambda f: f.write(text.encode()))
