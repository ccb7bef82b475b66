"""A run's checkpoint file: saved after each epoch, loaded to resume."""

from __future__ import annotations

from pathlib import Path

import torch

from ghmbench.store.fileio import atomic_write

CHECKPOINT_FILE = "checkpoint.pt"


def save_checkpoint(path: Path, state: dict) -> None:
    """``torch.save`` atomically."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers, never code."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)
