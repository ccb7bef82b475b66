"""The embedded digits dataset: determinism, caching, disjoint sources, knobs."""

from __future__ import annotations

import numpy as np
import torch

from ghmbench.data import DigitsParams, load_digits_detection, source_split

SMALL = dict(num_train=40, num_val=10, image_size=64)


def test_same_params_same_data_and_cache(tmp_path):
    p = DigitsParams(**SMALL)
    a_train, a_val = load_digits_detection(p, None)
    b_train, b_val = load_digits_detection(p, tmp_path)
    c_train, _ = load_digits_detection(p, tmp_path)  # from the cache file
    assert len(list(tmp_path.glob("digits-*.npz"))) == 1
    for x in (b_train, c_train):
        assert torch.equal(a_train.images, x.images)
        assert all(torch.equal(u, v) for u, v in zip(a_train.boxes, x.boxes))
        assert all(torch.equal(u, v) for u, v in zip(a_train.labels, x.labels))
    assert torch.equal(a_val.images, b_val.images)
    other, _ = load_digits_detection(DigitsParams(**SMALL, seed=1), None)
    assert not torch.equal(a_train.images, other.images)


def test_train_and_val_come_from_disjoint_digits():
    targets = np.repeat(np.arange(10), 30)
    train_pool, val_pool = source_split(targets, 0.3, np.random.default_rng(0))
    assert not set(train_pool) & set(val_pool)
    assert len(train_pool) + len(val_pool) == 300
    assert set(targets[val_pool]) == set(range(10)) == set(targets[train_pool])


def test_boxes_inside_image_and_knobs():
    p = DigitsParams(**SMALL, min_objects=2, max_objects=2, min_scale=16, max_scale=16, class_freq=[1] + [0] * 9)
    train, val = load_digits_detection(p, None)
    for boxes, labels in zip(train.boxes, train.labels):
        assert len(boxes) <= 2 and (labels == 0).all()
        assert (boxes >= 0).all() and (boxes <= 64).all()
        assert (torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) == 16).all()
    assert sum(len(b) for b in train.boxes) >= 60  # nearly every image holds its two digits
    noisy, clean_val = load_digits_detection(DigitsParams(**SMALL, unannotated_rate=0.5), None)
    clean, _ = load_digits_detection(DigitsParams(**SMALL), None)
    assert sum(map(len, noisy.boxes)) < 0.75 * sum(map(len, clean.boxes))  # label noise in train
    assert sum(map(len, clean_val.boxes)) >= len(clean_val)  # validation stays fully annotated
    gt = clean_val.coco_ground_truth()
    assert len(gt["annotations"]) == sum(map(len, clean_val.boxes)) and len(gt["categories"]) == 10
