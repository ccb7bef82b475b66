"""The embedded BCCD photos: the upstream splits, the known defects repaired and counted, the license
and provenance beside the files, and ``ghmbench data check dataset=bccd``."""

from __future__ import annotations

import pytest

from ghmbench.config.compose import compose_config, validate
from ghmbench.data.bccd import BCCD_ROOT
from ghmbench.data.builder import build_datasets
from tests.conftest import ghmbench_cli


def test_bccd_loads_the_upstream_splits_with_its_defects_repaired_and_counted(tmp_path):
    cfg = validate(compose_config(["dataset=bccd", "dataset.image_size=64", f"paths.cache_dir={tmp_path}"]))
    splits = build_datasets(cfg)
    assert [len(s) for s in splits] == [205, 87, 72]
    assert splits.train.class_names == ["Platelets", "RBC", "WBC"]
    assert tuple(splits.train.images.shape[1:]) == (3, 64, 64)
    dropped = [s.dropped for s in splits]
    assert sum(d.get("point_box", 0) for d in dropped) == 2
    assert sum(d.get("near_duplicate_box", 0) for d in dropped) == 7
    assert sum(sum(len(b) for b in s.boxes) for s in splits) == 4888 - 2 - 7  # the upstream boxes less the repairs
    for split in splits:  # every kept box has an area, and no two boxes of a class are one object
        for boxes in split.boxes:
            assert ((boxes[:, 2] - boxes[:, 0]) > 0).all() and ((boxes[:, 3] - boxes[:, 1]) > 0).all()


def test_license_and_provenance_travel_with_the_files():
    assert "MIT License" in (BCCD_ROOT / "LICENSE").read_text()
    provenance = (BCCD_ROOT / "PROVENANCE.md").read_text()
    assert "d272fb14cdff6e473fafeeeba32aba5f560e9e43" in provenance and "MIT" in provenance
    assert len(list((BCCD_ROOT / "JPEGImages").glob("*.jpg"))) == 364


@pytest.mark.slow
def test_data_check_prints_bccd_statistics_and_its_repairs(tmp_path):
    result = ghmbench_cli("data", "check", "dataset=bccd", "dataset.image_size=64", f"paths.cache_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "dataset=bccd" in text and "205" in text and "87" in text and "72" in text
    assert "point_box 1" in text and "near_duplicate_box 4" in text
    assert "fitted to the training boxes" in text  # model=fitted on a dataset read from disk
    assert "Platelets" in text and "WBC" in text
