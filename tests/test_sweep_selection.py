"""The tuning protocol's selection on validation: override values round-trip, the best validation
candidate of each loss, the mean over tuning seeds, conflicting protocols (no training)."""

from __future__ import annotations

import numpy as np
import pytest

from ghmbench.sweep.selection import (
    Protocol,
    ProtocolError,
    Selection,
    final_mask,
    format_value,
    parse_overrides,
    runs_frame,
    select_settings,
)

PROTOCOL = {
    "tune": ["train.lr=0.0005,0.001,0.002", "train.batch_size=16,32"],
    "tune_with": ["regression=smooth_l1", "seed=0"],
    "select_metric": "AP",
}


def record(
    loss: str, lr: float, bs: int, seed: int, val: float | None, reg: str = "smooth_l1", status: str = "completed"
) -> dict:
    config = {
        "seed": seed,
        "loss": {"name": loss},
        "regression": {"name": reg},
        "train": {"lr": lr, "batch_size": bs},
        "protocol": PROTOCOL,
    }
    return {
        "loss": loss,
        "seed": seed,
        "status": status,
        "config": config,
        "val_metrics": {"AP": val},
        "metrics": {"AP": -1.0},
    }


def test_parse_and_format_round_trip():
    axes = parse_overrides(PROTOCOL["tune"])
    assert axes == {"train.lr": [0.0005, 0.001, 0.002], "train.batch_size": [16, 32]}
    assert [format_value(v) for v in axes["train.lr"]] == ["0.0005", "0.001", "0.002"]
    assert (
        format_value(16) == "16"
        and format_value(1e-05) == "1e-05"
        and format_value(2.0) == "2.0"
        and format_value(True) == "true"
    )
    for v in (0.1 + 0.2, 3e-4, 16, 2.0):
        assert parse_overrides([f"x={format_value(v)}"])["x"] == [v] and type(
            parse_overrides([f"x={format_value(v)}"])["x"][0]
        ) is type(v)
    with pytest.raises(ProtocolError):
        parse_overrides(["train.lr=0.1,,"])


def test_select_settings_picks_the_best_validation_candidate():
    records = [
        record("ce", 0.001, 16, 0, 0.30),
        record("ce", 0.002, 16, 0, 0.40),
        record("ce", 0.002, 32, 0, 0.38),
        record("ce", 0.0005, 32, 0, None, status="diverged"),
        record("ce", 0.001, 32, 1, 0.90),  # seed 1: not a tuning run
        record("ce", 0.001, 32, 0, 0.95, reg="ghm"),  # GHM-R: not a tuning run
        record("focal", 0.001, 16, 0, 0.50),
        record("focal", 0.002, 32, 0, 0.50),  # a tie: the first in sorted order (lr 0.001) wins
        record("focal", 0.001, 16, 1, 0.10),  # final (the selected setting), whatever its score
        record("focal", 0.001, 16, 2, 0.20, reg="ghm"),
        record("focal", 0.002, 32, 1, 0.10),  # unselected: not final
    ]
    sel = select_settings(records)
    assert sel["ce"].settings == {"train.lr": 0.002, "train.batch_size": 16}
    assert sel["ce"].overrides() == ["train.lr=0.002", "train.batch_size=16"]
    assert sel["focal"].settings == {"train.lr": 0.001, "train.batch_size": 16}
    cands = sel["ce"].candidates
    assert len(cands) == 6 and cands["selected"].sum() == 1
    row = cands[(cands["train.lr"] == 0.0005) & (cands["train.batch_size"] == 32)].iloc[0]
    assert row["runs"] == 1 and row["n"] == 0 and np.isnan(row["val_AP"])  # diverged: counted, not scored
    final = final_runs(records, sel)
    assert [(r["loss"], r["seed"], r["config"]["train"]["lr"], r["config"]["regression"]["name"]) for r in final] == [
        ("ce", 0, 0.002, "smooth_l1"),
        ("focal", 0, 0.001, "smooth_l1"),
        ("focal", 1, 0.001, "smooth_l1"),
        ("focal", 2, 0.001, "ghm"),
    ]
    assert select_settings([{**r, "config": {**r["config"], "protocol": None}} for r in records]) == {}


def test_select_settings_mean_over_tuning_seeds_and_conflicts():
    p = Protocol.from_config(
        {"tune": ["train.lr=0.001,0.002"], "tune_with": ["regression=smooth_l1"], "select_metric": "AP"}
    )
    records = [record("ce", 0.001, 16, s, v) for s, v in ((0, 0.5), (1, 0.1))] + [
        record("ce", 0.002, 16, s, v) for s, v in ((0, 0.4), (1, 0.35))
    ]
    sel = select_settings(records, p)["ce"]  # means .30 vs .375
    assert sel.settings == {"train.lr": 0.002} and sel.candidates["n"].tolist() == [2, 2]
    other = {**records[0], "config": {**records[0]["config"], "protocol": {**PROTOCOL, "tune": ["train.lr=0.1,0.2"]}}}
    with pytest.raises(ProtocolError, match="different protocols"):
        select_settings([*records, other])


def final_runs(records: list[dict], selections: dict[str, Selection]) -> list[dict]:
    """The final runs among metrics.json dicts."""
    mask = final_mask(runs_frame(records), selections)
    return [r for r, keep in zip(records, mask) if keep]
