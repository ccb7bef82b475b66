"""The embedded digits dataset: determinism, caching, disjoint sources, knobs."""

from __future__ import annotations

import numpy as np
import torch

from ghmbench.data.digits import DigitsParams, load_digits_detection, params_key, source_split, source_split3

SMALL = dict(num_train=40, num_val=10, image_size=64)


def test_same_params_same_data_and_cache(tmp_path):
    params = DigitsParams(**SMALL)
    a_train, a_val, a_test = load_digits_detection(params, None)
    b_train, b_val, _ = load_digits_detection(params, tmp_path)
    c_train, _, _ = load_digits_detection(params, tmp_path)  # from the cache file
    assert len(list(tmp_path.glob("digits-*.npz"))) == 1
    for x in (b_train, c_train):
        assert torch.equal(a_train.images, x.images)
        assert all(torch.equal(u, v) for u, v in zip(a_train.boxes, x.boxes))
        assert all(torch.equal(u, v) for u, v in zip(a_train.labels, x.labels))
    assert torch.equal(a_val.images, b_val.images)
    assert a_test is None  # no test split unless asked for
    other, _, _ = load_digits_detection(DigitsParams(**SMALL, seed=1), None)
    assert not torch.equal(a_train.images, other.images)


def test_train_and_val_come_from_disjoint_digits():
    targets = np.repeat(np.arange(10), 30)
    train_pool, val_pool = source_split(targets, 0.3, np.random.default_rng(0))
    assert not set(train_pool) & set(val_pool)
    assert len(train_pool) + len(val_pool) == 300
    assert set(targets[val_pool]) == set(range(10)) == set(targets[train_pool])


def test_boxes_inside_image_and_knobs():
    params = DigitsParams(**SMALL, min_objects=2, max_objects=2, min_scale=16, max_scale=16, class_freq=[1] + [0] * 9)
    train, val, _ = load_digits_detection(params, None)
    for boxes, labels in zip(train.boxes, train.labels):
        assert len(boxes) <= 2 and (labels == 0).all()
        assert (boxes >= 0).all() and (boxes <= 64).all()
        assert (torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) == 16).all()
    assert sum(len(b) for b in train.boxes) >= 60  # nearly every image holds its two digits
    noisy, clean_val, _ = load_digits_detection(DigitsParams(**SMALL, unannotated_rate=0.5), None)
    clean, _, _ = load_digits_detection(DigitsParams(**SMALL), None)
    assert sum(map(len, noisy.boxes)) < 0.75 * sum(map(len, clean.boxes))  # label noise in train
    assert sum(map(len, clean_val.boxes)) >= len(clean_val)  # validation stays fully annotated
    gt = clean_val.coco_ground_truth()
    assert len(gt["annotations"]) == sum(map(len, clean_val.boxes)) and len(gt["categories"]) == 10


def test_three_way_split_is_disjoint_and_deterministic(tmp_path):
    targets = np.repeat(np.arange(10), 30)
    pools = source_split3(targets, 0.3, 0.2, np.random.default_rng(0))
    again = source_split3(targets, 0.3, 0.2, np.random.default_rng(0))
    assert pools == again
    train_pool, val_pool, test_pool = map(set, pools)
    assert not (train_pool & val_pool or train_pool & test_pool or val_pool & test_pool)
    assert len(train_pool) + len(val_pool) + len(test_pool) == 300 and len(test_pool) == 60
    assert set(targets[list(test_pool)]) == set(range(10))
    params = DigitsParams(**SMALL, num_test=12)
    a = load_digits_detection(params, tmp_path)
    b = load_digits_detection(params, tmp_path)  # from the cache file
    c = load_digits_detection(params, None)
    assert a.test is not None and len(a.test) == 12 and sum(map(len, a.test.boxes)) >= 12
    for x in (b, c):
        assert torch.equal(a.test.images, x.test.images) and torch.equal(a.train.images, x.train.images)
    assert not torch.equal(a.val.images, a.test.images)


def test_new_knobs_at_default_keep_old_data_and_key():
    """clutter / num_test at their defaults change neither the images nor the cache key."""
    base = DigitsParams(**SMALL)
    assert params_key(base) == params_key(DigitsParams(**SMALL, clutter=0, num_test=0, test_fraction=0.2))
    assert params_key(base) != params_key(DigitsParams(**SMALL, clutter=2))


def test_clutter_draws_unannotated_ink_away_from_objects():
    params = dict(SMALL, image_size=96, min_objects=1, max_objects=1, min_scale=12, max_scale=16, noise=0.0)
    clean = load_digits_detection(DigitsParams(**params), None).train
    cluttered = load_digits_detection(DigitsParams(**params, clutter=3), None).train
    assert sum(map(len, cluttered.boxes)) == sum(map(len, clean.boxes))  # clutter is never annotated

    def ink_outside_boxes(split):
        counts = []
        for img, boxes in zip(split.images, split.boxes):
            mask = torch.ones(img.shape[-2:], dtype=torch.bool)
            for x1, y1, x2, y2 in boxes.round().long().tolist():
                mask[y1:y2, x1:x2] = False
            counts.append(int((img[0][mask] > 100).sum()))
        return counts

    for img, boxes in zip(cluttered.images, cluttered.boxes):
        for x1, y1, x2, y2 in boxes.round().long().tolist():
            assert img[0, y1:y2, x1:x2].max() > 100  # the digit itself is still there
    assert max(ink_outside_boxes(clean)) == 0  # without clutter, all ink is annotated
    cluttered_ink = ink_outside_boxes(cluttered)
    assert sum(v > 0 for v in cluttered_ink) > 0.7 * len(cluttered_ink)  # most images carry clutter
