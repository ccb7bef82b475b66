"""Images of a split: decoding, letterbox resizing, and the in-memory / on-disk image cache."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from ghmbench.data.formats.options import FileDatasetCfg
from ghmbench.errors import DatasetError
from ghmbench.store.fileio import atomic_write

CACHE_VERSION = 1
CACHE_LIMIT_BYTES = 4 << 30  # cache_images=auto keeps a split in memory (and on disk) below this


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header; raises OSError if it cannot be read."""
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def letterbox_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) after resizing so the longer side is ``size``, aspect ratio kept."""
    longer = max(height, width)
    return max(1, round(height * size / longer)), max(1, round(width * size / longer))


def letterbox(image: Tensor, boxes: Tensor, size: int) -> tuple[Tensor, Tensor, tuple[float, float]]:
    """Resize so the longer side is ``size`` (aspect ratio kept), pad right/bottom to size x size.

    Args:
        image: [C, h, w] uint8.
        boxes: [G, 4] float xyxy in the image's pixels.
        size: output side.

    Returns:
        (image [C, size, size] uint8, boxes [G, 4] in the output frame, (scale_x, scale_y)).
    """
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import functional as TF

    h, w = image.shape[-2:]
    nh, nw = letterbox_size(h, w, size)
    img = TF.resize(tv_tensors.Image(image), [nh, nw], antialias=True)
    bb = TF.resize(tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)), [nh, nw])
    pad = [0, 0, size - nw, size - nh]
    img, bb = TF.pad(img, pad), TF.pad(bb, pad)
    return img.as_subclass(Tensor).contiguous(), bb.as_subclass(Tensor).float(), (nw / w, nh / h)


def decode(path: Path, channels: int) -> Tensor:
    """[channels, h, w] uint8 pixels of a PNG/JPEG file (grey files become RGB and vice versa)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L" if channels == 1 else "RGB"))
    except Exception as e:  # PIL raises several types for broken files
        raise DatasetError(
            f"{path}: cannot decode image ({type(e).__name__}: {e}); allowed: a readable PNG or JPEG"
        ) from None
    return torch.from_numpy(arr.copy()).reshape(arr.shape[0], arr.shape[1], -1).permute(2, 0, 1).contiguous()


class _Letterboxed(torch.utils.data.Dataset):
    def __init__(self, paths: list[Path], size: int, channels: int) -> None:
        self.paths, self.size, self.channels = paths, size, channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Tensor:
        image = decode(self.paths[i], self.channels)
        return letterbox(image, torch.zeros(0, 4), self.size)[0]


class LazyImages:
    """Images decoded on demand (datasets too big to cache): ``images[idx]`` -> [B, C, S, S] uint8."""

    def __init__(self, paths: list[Path], size: int, channels: int, num_workers: int) -> None:
        self.dataset = _Letterboxed(paths, size, channels)
        self.shape = (len(paths), channels, size, size)
        self.num_workers = num_workers

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx: list[int]) -> Tensor:
        return torch.stack([self.dataset[i] for i in idx])

    def batches(self, batches: list[list[int]]) -> Iterator[Tensor]:
        """Decode the given index batches in worker processes, in order."""
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=batches,
            num_workers=self.num_workers,
            collate_fn=torch.stack,
            persistent_workers=False,
        )
        try:
            yield from loader
        except DatasetError as e:  # from a worker: its message arrives wrapped in a traceback
            last = str(e).strip().splitlines()[-1]
            raise DatasetError(last.split("DatasetError: ", 1)[-1]) from None


def _auto_workers(n: int, requested: int | None) -> int:
    if requested is not None:
        return requested
    return 0 if n < 256 else min(8, os.cpu_count() or 1)


def _cache_key(paths: list[Path], opts: FileDatasetCfg) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{opts.image_size}|{opts.channels}".encode())
    for p in paths:
        st = p.stat()
        h.update(f"|{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def load_images(paths: list[Path], opts: FileDatasetCfg, cache_dir: Path | None) -> Tensor | LazyImages:
    """All images letterboxed into one uint8 tensor (cached on disk), or a lazy loader.

    ``cache_images``: ``auto`` caches below 4 GiB, ``true`` always, ``false`` never.
    """
    n, s, c = len(paths), opts.image_size, opts.channels
    workers = _auto_workers(n, opts.num_workers)
    fits = n * c * s * s <= CACHE_LIMIT_BYTES
    if opts.cache_images == "false" or (opts.cache_images == "auto" and not fits):
        return LazyImages(paths, s, c, workers)
    file = cache_dir / f"images-{_cache_key(paths, opts)}.npy" if cache_dir else None
    if file is not None and file.exists():
        arr = np.load(file)
        if arr.shape == (n, c, s, s) and arr.dtype == np.uint8:
            return torch.from_numpy(arr)
    out = torch.empty((n, c, s, s), dtype=torch.uint8)
    lazy = LazyImages(paths, s, c, workers)
    order = list(range(n))
    chunks = [order[i : i + 64] for i in range(0, n, 64)]
    for idx, batch in zip(chunks, lazy.batches(chunks)):
        out[idx[0] : idx[-1] + 1] = batch
    if file is not None:
        atomic_write(file, lambda f: np.save(f, out.numpy()))
    return out
