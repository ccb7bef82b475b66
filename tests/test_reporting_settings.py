"""The "which settings?" report: grid cells and their selection, the best column per row, the seeds
table against the papers' default, the shapes' verdicts, and the label-noise table."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ghmbench.reporting.comparison import Bootstrap
from ghmbench.reporting.intervals import Interval
from ghmbench.reporting.noise_table import noise_table
from ghmbench.reporting.settings import (
    FOCAL,
    GHM,
    best_per_row_table,
    grid_cells,
    grid_table,
    seeds_table,
    tuning_table,
    verdict,
)
from ghmbench.reporting.shapes import focal_contrasts, ghm_contrasts, shapes_table

NO_BOOT = Bootstrap(0)


def _run(loss: str, seed: int = 0, test: float = 0.3, val: float = 0.3, epochs: int = 36, **config) -> dict:
    return {
        "run_key": f"{loss}-{seed}-{sorted(config.items())}-{epochs}",
        "loss": loss,
        "regression": "smooth_l1",
        "seed": seed,
        "status": "completed",
        "AP": test,
        "val_AP": val,
        "rise": 0.0,
        "train.epochs": epochs,
        **config,
    }


def _focal_grid(val: dict, test: dict | None = None) -> pd.DataFrame:
    """A gamma x alpha grid of seed-0 runs with the given validation (and test) AP per cell."""
    test = test or val
    return pd.DataFrame(
        [_run("focal", test=test[k], val=v, **{"loss.gamma": k[0], "loss.alpha": k[1]}) for k, v in val.items()]
    )


GAMMAS, ALPHAS = (0.0, 0.5, 1.0, 2.0, 5.0), (0.1, 0.25, 0.5, 0.75)


def test_grid_selects_the_best_validation_cell_not_the_best_test_cell():
    val = {(g, a): 0.2 + 0.01 * g + 0.1 * a for g in GAMMAS for a in ALPHAS}
    val[(1.0, 0.25)] = 0.9  # the best on validation
    test = dict(val) | {(5.0, 0.75): 0.95}  # the best on test: must not be the selected one
    cells = grid_cells(_focal_grid(val, test), FOCAL)
    selected = cells[cells["selected"]]
    assert len(selected) == 1 and (selected["loss.gamma"].item(), selected["loss.alpha"].item()) == (1.0, 0.25)
    assert cells[cells["default"]][["loss.gamma", "loss.alpha"]].values.tolist() == [[2.0, 0.25]]
    table = grid_table(cells, FOCAL, "AP", NO_BOOT)
    assert table.cells.shape == (5, 5) and table.cells.loc[2, "α 0.25"] == "0.900"
    assert table.best.loc[2, "α 0.25"] and table.best.values.sum() == 1  # only the selected cell in bold
    assert table.cells.loc[3, "α 0.25"].endswith(" *")  # the papers' default
    best = best_per_row_table(cells, FOCAL, "AP", NO_BOOT)
    assert best.cells["best α (validation)"].tolist() == ["0.75", "0.75", "0.25", "0.75", "0.75"]
    assert best.cells["best α on test"].tolist()[-1] == "0.75"


def test_grid_needs_two_values_on_each_axis_and_uses_seed_0_at_the_common_schedule():
    one_row = _focal_grid({(2.0, a): 0.3 for a in ALPHAS})
    assert grid_cells(one_row, FOCAL) is None
    frame = _focal_grid({(g, a): 0.3 for g in (0.0, 2.0) for a in (0.25, 0.75)})
    extra = pd.DataFrame(
        [
            _run("focal", seed=1, val=0.99, **{"loss.gamma": 0.0, "loss.alpha": 0.25}),
            _run("focal", epochs=12, val=0.98, **{"loss.gamma": 2.0, "loss.alpha": 0.75}),
        ]
    )
    cells = grid_cells(pd.concat([frame, extra], ignore_index=True), FOCAL)
    assert len(cells) == 4 and cells["val_AP"].max() == 0.3  # neither another seed nor another schedule


def test_seeds_table_pairs_by_seed_against_the_default():
    rows = []
    for seed, (sel, default) in enumerate([(0.40, 0.37), (0.42, 0.38), (0.41, 0.39)]):
        rows += [
            _run("focal", seed, test=sel, **{"loss.gamma": 1.0, "loss.alpha": 0.25}),
            _run("focal", seed, test=default, **{"loss.gamma": 2.0, "loss.alpha": 0.25}),
        ]
    table = seeds_table(pd.DataFrame(rows), FOCAL, "AP")
    selected = table.numbers[table.numbers["loss.gamma"] == 1.0].iloc[0]
    assert selected["delta"] == pytest.approx(0.03)
    assert selected["delta_lo"] > 0  # 0.03, 0.04, 0.02: a paired t interval above 0
    assert "cell > default" in table.cells["verdict"].tolist()


def test_verdict_words():
    assert verdict(Interval(0.02, 0.01, 0.03, 1)) == "reproduces"
    assert verdict(Interval(-0.02, -0.03, -0.01, 1)) == "does not reproduce"
    assert verdict(Interval(0.0, -0.01, 0.01, 1)) == "no clear difference"
    assert verdict(None) == "-" and verdict(Interval(0.1, math.nan, math.nan, 1)) == "-"


def test_shapes_contrast_the_cells_they_name():
    val = {(g, a): 0.3 for g in GAMMAS for a in ALPHAS} | {(2.0, 0.5): 0.5, (1.0, 0.1): 0.45}
    cells = grid_cells(_focal_grid(val), FOCAL)
    claims = {claim.split(" (")[0]: (runs, weights) for claim, _, runs, weights in focal_contrasts(cells)}
    runs, weights = claims["γ 2 is the best γ"]
    assert [(r["loss.gamma"], r["loss.alpha"]) for r in runs] == [(2.0, 0.5), (1.0, 0.1)] and weights == [1.0, -1.0]
    runs, weights = claims["The best α falls as γ rises"]
    assert [(r["loss.gamma"], r["loss.alpha"]) for r in runs] == [
        (2.0, 0.25),
        (2.0, 0.75),
        (0.0, 0.25),
        (0.0, 0.75),
    ] and sum(weights) == 0
    ghm = pd.DataFrame(
        [_run("ghm", val=0.3 + 0.01 * m, **{"loss.bins": b, "loss.momentum": m}) for b in (10, 30) for m in (0.5, 0.75)]
    )
    (_, _, by_bins, _), (_, _, by_momentum, _) = ghm_contrasts(grid_cells(ghm, GHM))
    assert [(r["loss.bins"], r["loss.momentum"]) for r in by_bins] == [(30, 0.75), (10, 0.75)]
    assert [(r["loss.bins"], r["loss.momentum"]) for r in by_momentum] == [(30, 0.75), (30, 0.5)]
    table = shapes_table(_focal_grid(val), "AP", NO_BOOT)  # no bootstrap: no interval, so no verdict
    assert table.cells["verdict"].tolist() == ["-", "-", "-"]


def test_noise_table_by_loss_kind_and_level():
    rows = []
    for loss, drop in (("focal", 0.2), ("ghm", 0.1)):
        rows.append(_run(loss, test=0.4, **{"dataset.unannotated_rate": 0.0, "dataset.class_noise": 0.0}))
        for level in (0.1, 0.4):
            rows.append(
                _run(
                    loss,
                    test=0.4 - drop * level,
                    noisy_relative_weight=1.0 + level,
                    noisy_grad_share=level / 10,
                    **{"dataset.unannotated_rate": level, "dataset.class_noise": 0.0},
                )
            )
            rows.append(
                _run(
                    loss,
                    test=0.39,
                    noisy_relative_weight=0.5,
                    noisy_grad_share=0.01,
                    **{"dataset.unannotated_rate": 0.0, "dataset.class_noise": level},
                )
            )
    table = noise_table(pd.DataFrame(rows), "AP", NO_BOOT)
    nums = table.numbers
    assert len(nums) == 2 * 2 * 3  # loss x kind x (clean, 10%, 40%)
    missing = nums[(nums["loss"] == "ghm") & (nums["noise"] == "missing annotations")]
    assert missing["level"].tolist() == [0.0, 0.1, 0.4] and missing["AP"].tolist() == pytest.approx([0.4, 0.39, 0.36])
    assert table.cells["gradient share on mislabelled"].tolist()[2] == "4.0%"
    assert noise_table(pd.DataFrame([_run("focal")]), "AP", NO_BOOT) is None  # no label noise: no table


def test_a_tuned_cell_is_its_best_validation_candidate_and_seeds_pair_within_its_setting():
    rows = []
    for g in (0.0, 2.0):
        for a in (0.25, 0.75):
            for lr, val in ((0.001, 0.2), (0.003, 0.3 + g / 10)):
                rows.append(
                    _run(
                        "focal",
                        val=val,
                        test=val,
                        **{"loss.gamma": g, "loss.alpha": a, "train.lr": lr, "train.batch_size": 8},
                    )
                )
    rows += [
        _run(
            "focal", seed, test=0.5, **{"loss.gamma": 2.0, "loss.alpha": 0.25, "train.lr": 0.003, "train.batch_size": 8}
        )
        for seed in (1, 2)
    ]
    df = pd.DataFrame(rows)
    cells = grid_cells(df, FOCAL)
    assert len(cells) == 4 and (cells["train.lr"] == 0.003).all()
    tuning = tuning_table(df, cells, FOCAL, "AP")
    assert tuning.cells.loc[0, "α 0.25"].startswith("lr 0.003, batch_size 8")
    seeds = seeds_table(df, FOCAL, "AP")
    assert seeds is None  # only the default has several seeds: nothing to compare it with
