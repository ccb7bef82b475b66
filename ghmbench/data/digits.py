"""The embedded ``digits`` detection dataset.

Images are composed from the handwritten digits that scikit-learn ships (the UCI optical
digits, 1,797 8x8 images, 10 classes): no download. Train, validation and (optionally) test
images are built from disjoint sets of the source digits, deterministically from a seed, and
cached on disk as an ``.npz`` keyed by the generation parameters. Besides the annotated digits
an image can hold unannotated *clutter* (digit fragments and pen strokes): hard negatives.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ghmbench.data.splits import DetectionSplit, Splits
from ghmbench.store.fileio import atomic_write

DIGIT_NAMES = [str(i) for i in range(10)]
CACHE_VERSION = 1
CLASS_NOISE_STREAM = 1  # the class-noise generator's second seed word (the first is the dataset seed)


@dataclass
class DigitsParams:
    """Generation knobs of the digits dataset (all part of the cache key). Runs take their values from
    conf/dataset/digits.yaml; the defaults here, for one-line datasets in tests and scripts, equal it
    (tests/test_config.py checks)."""

    image_size: int = 64
    num_train: int = 2000
    num_val: int = 300
    min_objects: int = 1
    max_objects: int = 4
    min_scale: int = 12
    max_scale: int = 28
    noise: float = 0.05
    class_freq: Optional[list[float]] = None  # typing.Optional: OmegaConf reads this schema
    unannotated_rate: float = 0.0  # training objects drawn but left unannotated (missing labels)
    val_fraction: float = 0.3
    max_overlap: float = 0.1
    seed: int = 0
    clutter: int = 0  # unannotated distractors per image (fragments, strokes): uniform in [0, 2 * clutter]
    num_test: int = 0  # held-out test images (0 = no test split)
    test_fraction: float = 0.2  # share of the source digits reserved for test images (when num_test > 0)
    class_noise: float = 0.0  # training annotations given a wrong class (uniform over the other nine)


def _tight_digits() -> tuple[list[np.ndarray], np.ndarray]:
    """The sklearn digits cropped to their ink, as float32 in [0, 1], and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    crops = []
    for img in digits.images:
        ys, xs = np.nonzero(img > 0)
        crops.append((img[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] / 16.0).astype(np.float32))
    return crops, digits.target.astype(np.int64)


def _resize(patch: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a 2-D float array (torch's interpolate, antialiased off)."""
    t = torch.from_numpy(patch)[None, None]
    out = torch.nn.functional.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)
    return out[0, 0].numpy()


def _box_iou_max(box: np.ndarray, others: list[np.ndarray]) -> float:
    if not others:
        return 0.0
    o = np.stack(others)
    ix = np.clip(np.minimum(box[2], o[:, 2]) - np.maximum(box[0], o[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], o[:, 3]) - np.maximum(box[1], o[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (o[:, 2] - o[:, 0]) * (o[:, 3] - o[:, 1])
    return float((inter / (area + areas - inter)).max())


def _compose(
    params: DigitsParams,
    n: int,
    pool: list[int],
    crops: list[np.ndarray],
    targets: np.ndarray,
    rng: np.random.Generator,
    label_noise: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Compose ``n`` images from the source digits in ``pool``.

    Returns:
        images [n, S, S] uint8, boxes [K, 5] float32 (image index, x1, y1, x2, y2), labels [K] int64,
        and the boxes [U, 5] of the objects drawn but left unannotated (``unannotated_rate``).
    """
    s = params.image_size
    pool_arr = np.asarray(pool)
    by_class = [pool_arr[targets[pool_arr] == c] for c in range(10)]
    freq = np.ones(10) if params.class_freq is None else np.asarray(params.class_freq, dtype=np.float64)
    freq = freq / freq.sum()
    images = np.empty((n, s, s), dtype=np.uint8)
    all_boxes, all_labels, missing = [], [], []
    for i in range(n):
        canvas = np.clip(rng.normal(0.0, params.noise, size=(s, s)), 0.0, 1.0) if params.noise > 0 else np.zeros((s, s))
        placed: list[np.ndarray] = []
        for _ in range(int(rng.integers(params.min_objects, params.max_objects + 1))):
            cls = int(rng.choice(10, p=freq))
            crop = crops[int(rng.choice(by_class[cls]))]
            scale = int(rng.integers(params.min_scale, params.max_scale + 1))
            ch, cw = crop.shape
            h = max(2, round(scale * ch / max(ch, cw)))
            w = max(2, round(scale * cw / max(ch, cw)))
            for _attempt in range(20):
                x = int(rng.integers(0, s - w + 1))
                y = int(rng.integers(0, s - h + 1))
                box = np.array([x, y, x + w, y + h], dtype=np.float32)
                if _box_iou_max(box, placed) <= params.max_overlap:
                    break
            else:
                continue
            patch = np.clip(_resize(crop, h, w), 0.0, 1.0)
            canvas[y : y + h, x : x + w] = np.maximum(canvas[y : y + h, x : x + w], patch)
            placed.append(box)
            if label_noise and rng.random() < params.unannotated_rate:
                missing.append([i, *box.tolist()])  # drawn but left unannotated
                continue
            all_boxes.append([i, *box.tolist()])
            all_labels.append(cls)
        if params.clutter > 0:
            for _ in range(int(rng.integers(0, 2 * params.clutter + 1))):
                _draw_clutter(canvas, placed, params, pool_arr, crops, rng)
        images[i] = np.round(canvas * 255).astype(np.uint8)
    boxes = np.asarray(all_boxes, dtype=np.float32).reshape(-1, 5)
    return images, boxes, np.asarray(all_labels, dtype=np.int64), np.asarray(missing, dtype=np.float32).reshape(-1, 5)


def _flip_classes(labels: np.ndarray, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Give a share ``rate`` of the training labels [K] a wrong class, uniform over the other nine.

    The draw has a generator of its own (from the dataset seed), so the images and the validation and
    test splits are the same with and without class noise.

    Returns:
        (labels [K] int64, flipped [K] bool).
    """
    rng = np.random.default_rng([seed, CLASS_NOISE_STREAM])
    flipped = rng.random(labels.shape[0]) < rate
    shift = rng.integers(1, 10, size=labels.shape[0])
    return np.where(flipped, (labels + shift) % 10, labels), flipped


def _draw_clutter(
    canvas: np.ndarray,
    objects: list[np.ndarray],
    params: DigitsParams,
    pool: np.ndarray,
    crops: list[np.ndarray],
    rng: np.random.Generator,
) -> None:
    """Draw one unannotated distractor on ``canvas`` [S, S] (in place), clear of the objects.

    Half are *fragments*: a random window of 30-60% of the height and width of a source digit
    of this split's pool (a loop of an 8, the bar of a 7), scaled like an object. The other half
    are *strokes*: a straight pen line of 1-2 px, as long as an object. Neither is annotated, so
    both are hard negatives the classifier must learn to reject.
    """
    s = canvas.shape[0]
    if rng.random() < 0.5:
        crop = crops[int(rng.choice(pool))]
        ch, cw = crop.shape
        fh, fw = (max(2, int(round(n * rng.uniform(0.3, 0.6)))) for n in (ch, cw))
        y0, x0 = int(rng.integers(0, ch - fh + 1)), int(rng.integers(0, cw - fw + 1))
        frag = crop[y0 : y0 + fh, x0 : x0 + fw]
        scale = rng.uniform(params.min_scale, params.max_scale) * rng.uniform(0.4, 0.8)
        h = max(2, round(scale * fh / max(fh, fw)))
        w = max(2, round(scale * fw / max(fh, fw)))
        patch = np.clip(_resize(frag, h, w), 0.0, 1.0)
    else:
        length = rng.uniform(params.min_scale * 0.5, params.max_scale)
        angle = rng.uniform(0, np.pi)
        h = max(2, int(np.ceil(abs(np.sin(angle)) * length)) + 2)
        w = max(2, int(np.ceil(abs(np.cos(angle)) * length)) + 2)
        patch = np.zeros((h, w), dtype=np.float32)
        t = np.linspace(0.0, 1.0, int(length * 2) + 2)
        ys = np.clip(
            np.round(1 + t * (h - 3) if np.sin(angle) * np.cos(angle) >= 0 else 1 + (1 - t) * (h - 3)).astype(int),
            0,
            h - 1,
        )
        xs = np.clip(np.round(1 + t * (w - 3)).astype(int), 0, w - 1)
        patch[ys, xs] = rng.uniform(0.6, 1.0)
        if rng.random() < 0.5:  # 2 px thick
            patch[np.clip(ys + 1, 0, h - 1), xs] = patch[ys, xs]
    if h > s or w > s:
        return
    for _attempt in range(10):
        x, y = int(rng.integers(0, s - w + 1)), int(rng.integers(0, s - h + 1))
        box = np.array([x, y, x + w, y + h], dtype=np.float32)
        if _box_iou_max(box, objects) == 0.0:  # never on an annotated digit
            canvas[y : y + h, x : x + w] = np.maximum(canvas[y : y + h, x : x + w], patch)
            return


def source_split(targets: np.ndarray, val_fraction: float, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Split the source digits into disjoint train / val pools, stratified by class.

    Args:
        targets: [N] class of each source digit.
        val_fraction: share of each class reserved for validation (at least one digit).

    Returns:
        (train indices, val indices).
    """
    train_pool: list[int] = []
    val_pool: list[int] = []
    for c in np.unique(targets):
        members = rng.permutation(np.nonzero(targets == c)[0])
        k = max(1, int(round(len(members) * val_fraction)))
        val_pool += members[:k].tolist()
        train_pool += members[k:].tolist()
    return train_pool, val_pool


def source_split3(
    targets: np.ndarray, val_fraction: float, test_fraction: float, rng: np.random.Generator
) -> tuple[list[int], list[int], list[int]]:
    """Split the source digits into disjoint train / val / test pools, stratified by class.

    Args:
        targets: [N] class of each source digit.
        val_fraction, test_fraction: shares of each class reserved for validation and test
            (at least one digit each; their sum must leave training digits).

    Returns:
        (train indices, val indices, test indices).
    """
    pools: tuple[list[int], list[int], list[int]] = ([], [], [])
    for c in np.unique(targets):
        members = rng.permutation(np.nonzero(targets == c)[0])
        kv = max(1, int(round(len(members) * val_fraction)))
        kt = max(1, int(round(len(members) * test_fraction)))
        pools[1].extend(members[:kv].tolist())
        pools[2].extend(members[kv : kv + kt].tolist())
        pools[0].extend(members[kv + kt :].tolist())
    return pools


NEW_KEYS_DEFAULTS = {"clutter": 0, "num_test": 0, "test_fraction": 0.2, "class_noise": 0.0}
"""Knobs added after datasets were first cached: at their default they stay out of the key, so
the images of existing settings (and their run keys) do not change."""


def params_key(params: DigitsParams) -> str:
    """Stable short hash of the generation parameters."""
    keyed = {k: v for k, v in asdict(params).items() if not (k in NEW_KEYS_DEFAULTS and v == NEW_KEYS_DEFAULTS[k])}
    blob = json.dumps({"v": CACHE_VERSION, **keyed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _split_from_arrays(images: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> DetectionSplit:
    n = images.shape[0]
    idx = boxes[:, 0].astype(np.int64)
    order = np.argsort(idx, kind="stable")
    idx, boxes, labels = idx[order], boxes[order], labels[order]
    bounds = np.searchsorted(idx, np.arange(n + 1))
    return DetectionSplit(
        images=torch.from_numpy(images).unsqueeze(1),
        boxes=[torch.from_numpy(boxes[a:b, 1:].copy()) for a, b in zip(bounds[:-1], bounds[1:])],
        labels=[torch.from_numpy(labels[a:b].copy()) for a, b in zip(bounds[:-1], bounds[1:])],
        class_names=list(DIGIT_NAMES),
    )


def load_digits_detection(params: DigitsParams, cache_dir: str | Path | None) -> Splits:
    """Build (or load from the cache) the train, validation and test splits.

    With ``num_test == 0`` there is no test split and the train / val images are those of the
    two-way source split (the same images as before test splits existed). Label noise
    (``unannotated_rate``, ``class_noise``) touches the training split alone, and its
    ``noisy_boxes`` then name the objects whose label is wrong.

    Args:
        params: generation parameters.
        cache_dir: folder for the ``digits-<key>.npz`` cache, or None to skip caching.

    Returns:
        (train, val, test or None).
    """
    path = Path(cache_dir) / f"digits-{params_key(params)}.npz" if cache_dir else None
    arrays = _read_cache(path, noisy=params.unannotated_rate > 0 or params.class_noise > 0)
    if arrays is None:
        arrays = _generate(params)
        if path is not None:
            atomic_write(path, lambda f: np.savez_compressed(f, **arrays))
    train = _split_from_arrays(arrays["train_images"], arrays["train_boxes"], arrays["train_labels"])
    if "train_missing" in arrays:
        train.noisy_boxes = _noisy_boxes(arrays, len(train))
    val = _split_from_arrays(arrays["val_images"], arrays["val_boxes"], arrays["val_labels"])
    test = (
        _split_from_arrays(arrays["test_images"], arrays["test_boxes"], arrays["test_labels"])
        if "test_images" in arrays
        else None
    )
    return Splits(train, val, test)


def _read_cache(path: Path | None, noisy: bool) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None to generate them (no file, or a file from before the noise record)."""
    if path is None or not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return None if noisy and "train_missing" not in arrays else arrays


def _generate(params: DigitsParams) -> dict[str, np.ndarray]:
    """The splits' arrays (and, with label noise, which training objects carry it)."""
    crops, targets = _tight_digits()
    rng = np.random.default_rng(params.seed)
    if params.num_test > 0:
        train_pool, val_pool, test_pool = source_split3(targets, params.val_fraction, params.test_fraction, rng)
    else:
        (train_pool, val_pool), test_pool = source_split(targets, params.val_fraction, rng), []
    ti, tb, tl, missing = _compose(params, params.num_train, train_pool, crops, targets, rng, label_noise=True)
    vi, vb, vl, _ = _compose(params, params.num_val, val_pool, crops, targets, rng, label_noise=False)
    arrays = {
        "train_images": ti,
        "train_boxes": tb,
        "train_labels": tl,
        "val_images": vi,
        "val_boxes": vb,
        "val_labels": vl,
    }
    if params.unannotated_rate > 0 or params.class_noise > 0:
        arrays["train_labels"], flipped = _flip_classes(tl, params.class_noise, params.seed)
        arrays |= {"train_missing": missing, "train_flipped": flipped}
    if params.num_test > 0:
        si, sb, sl, _ = _compose(params, params.num_test, test_pool, crops, targets, rng, label_noise=False)
        arrays |= {"test_images": si, "test_boxes": sb, "test_labels": sl}
    return arrays


def _noisy_boxes(arrays: dict[str, np.ndarray], n: int) -> list[torch.Tensor]:
    """Per training image, the boxes [K, 4] of its objects whose label is wrong: left unannotated or
    annotated with another class (in the order of :func:`_split_from_arrays`' image index)."""
    flipped = arrays["train_boxes"][arrays["train_flipped"]]
    noisy = np.concatenate([arrays["train_missing"], flipped]).reshape(-1, 5)
    idx = noisy[:, 0].astype(np.int64)
    return [torch.from_numpy(noisy[idx == i, 1:].copy()) for i in range(n)]
