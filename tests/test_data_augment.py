"""Training augmentation for photos: a flip mirrors the boxes, the zoom keeps them on the canvas, the
same seeds give the same batches, and the digits are never augmented."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ghmbench.config.compose import compose_config, validate
from ghmbench.data.augment import PhotoAugment, from_dataset_config, image_seed


def _batch(n: int = 4, size: int = 64):
    images = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    boxes = [torch.tensor([[10.0, 12.0, 30.0, 40.0], [40.0, 5.0, 60.0, 20.0]]) for _ in range(n)]
    labels = [torch.tensor([0, 2]) for _ in range(n)]
    return images, boxes, labels


def test_a_flip_moves_a_known_box_to_its_mirror_image():
    images = torch.rand(1, 3, 50, 100)  # [B, C, H, W]: width 100
    out, boxes, labels = PhotoAugment(hflip=1.0, scale_jitter=(1.0, 1.0))(
        images, [torch.tensor([[10.0, 20.0, 30.0, 40.0]])], [torch.tensor([3])], [0]
    )
    assert torch.equal(boxes[0], torch.tensor([[70.0, 20.0, 90.0, 40.0]]))  # x -> 100 - x
    assert torch.equal(labels[0], torch.tensor([3]))
    assert torch.equal(out[0], images[0].flip(-1))


def test_the_same_seeds_give_the_same_augmented_batches_and_others_differ():
    augment = PhotoAugment(hflip=0.5, scale_jitter=(0.8, 1.25))
    seeds = [image_seed(seed=3, epoch=2, index=i) for i in range(4)]
    first = augment(*_batch(), seeds)
    torch.rand(10)  # the global random state does not matter
    again = augment(*_batch(), seeds)
    assert torch.equal(first[0], again[0])
    assert all(torch.equal(a, b) for a, b in zip(first[1], again[1]))
    other = augment(*_batch(), [image_seed(seed=4, epoch=2, index=i) for i in range(4)])
    assert not torch.equal(first[0], other[0])
    state = torch.get_rng_state()
    augment(*_batch(), seeds)
    assert torch.equal(state, torch.get_rng_state())  # torch's global generator is left as it was


def test_the_zoom_keeps_the_image_size_and_the_boxes_on_the_canvas():
    augment = PhotoAugment(hflip=0.0, scale_jitter=(0.5, 2.0))
    images, boxes, labels = augment(*_batch(8), list(range(8)))
    assert images.shape == (8, 3, 64, 64)
    for b, lab in zip(boxes, labels):
        assert len(b) == len(lab)
        assert (b >= 0).all() and (b <= 64).all()
        assert ((b[:, 2] - b[:, 0]) >= 1).all() and ((b[:, 3] - b[:, 1]) >= 1).all()
    assert any(not torch.allclose(b, torch.tensor([[10.0, 12.0, 30.0, 40.0], [40.0, 5.0, 60.0, 20.0]])) for b in boxes)


def test_photos_are_augmented_by_default_and_the_digits_never():
    digits = validate(compose_config([]))
    assert "hflip" not in digits.dataset and from_dataset_config(dict(digits.dataset)) is None
    bccd = validate(compose_config(["dataset=bccd"]))
    assert (bccd.dataset.hflip, list(bccd.dataset.scale_jitter)) == (0.5, [0.8, 1.25])
    assert from_dataset_config(dict(bccd.dataset)) is not None
    off = validate(compose_config(["dataset=bccd", "dataset.hflip=0", "dataset.scale_jitter=[1,1]"]))
    assert from_dataset_config(dict(off.dataset)) is None


@pytest.mark.slow
def test_an_augmented_run_resumed_after_an_epoch_repeats_the_uninterrupted_run(tmp_path, monkeypatch):
    """The augmentation's draws depend on the seed, the epoch and the image: a run killed after its
    first epoch's checkpoint and resumed trains the second epoch on the same augmented batches."""
    from ghmbench.run import engine
    from ghmbench.run.training import run
    from tests.disk_datasets import make_voc

    root = make_voc(tmp_path / "voc", num_train=16, num_val=4)
    overrides = ["dataset=voc", f"dataset.root={root}", "dataset.image_size=64", "model=small"]
    overrides += ["train.epochs=2", "train.batch_size=8", "train.warmup_iters=1", "train.progress=false"]
    overrides += ["train.num_threads=1", f"paths.cache_dir={tmp_path / 'cache'}"]
    whole = run(validate(compose_config([*overrides, f"paths.runs_dir={tmp_path / 'a'}"])))
    cfg = validate(compose_config([*overrides, f"paths.runs_dir={tmp_path / 'b'}"]))
    save = engine.train_state.save

    def save_then_die(*args, **kwargs):
        save(*args, **kwargs)
        raise KeyboardInterrupt  # killed right after the first epoch's checkpoint

    monkeypatch.setattr(engine.train_state, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    monkeypatch.setattr(engine.train_state, "save", save)
    resumed = run(cfg)
    assert resumed["epochs_done"] == 2 and "resumed from" in (Path(resumed["run_dir"]) / "train.log").read_text()
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole["history"]]
