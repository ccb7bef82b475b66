"""``model.anchor_sizes=auto``: the anchor sizes fitted to a hand-made set of boxes."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from ghmbench.config.compose import compose_config, validate
from ghmbench.detection.autoanchor import fit_anchor_sizes, fitted_model_config
from ghmbench.errors import ConfigError, DatasetError


def _squares(sides: list[float]) -> list[torch.Tensor]:
    """One image per side: a square box of that side."""
    return [torch.tensor([[5.0, 5.0, 5.0 + s, 5.0 + s]]) for s in sides]


def test_the_fit_on_hand_made_boxes_gives_the_expected_sizes():
    # 30 boxes of each of the sides 10, 20, 40: one level each
    boxes = _squares([10.0] * 30 + [20.0] * 30 + [40.0] * 30)
    assert fit_anchor_sizes(boxes, 3, [1.0]) == [10.0, 20.0, 40.0]
    # with RetinaNet's octave scales the middle one (2^(1/3)) lands on each centre
    assert fit_anchor_sizes(boxes, 3, [1.0, 2 ** (1 / 3), 2 ** (2 / 3)]) == [
        round(s / 2 ** (1 / 3), 1) for s in (10, 20, 40)
    ]
    # a centre is the geometric mean of its group: sides 8 and 12 (sqrt 96 = 9.8), 30 and 40, 90 and 110
    spread = _squares([8.0, 12.0] * 10 + [30.0, 40.0] * 10 + [90.0, 110.0] * 10)
    assert fit_anchor_sizes(spread, 3, [1.0]) == [9.8, 34.6, 99.5]
    # sqrt(area) of rectangles: 8 x 32 and 16 x 64 boxes are 16 and 32 px; one level: exp(mean log size)
    rects = [torch.tensor([[0.0, 0.0, 8.0, 32.0]]), torch.tensor([[0.0, 0.0, 16.0, 64.0]] * 3)]
    assert fit_anchor_sizes(rects, 1, [1.0]) == [round(16**0.25 * 32**0.75, 1)]
    assert fit_anchor_sizes(rects, 2, [1.0]) == [16.0, 32.0]
    # fewer distinct sizes than levels: the levels share them, finest first
    assert fit_anchor_sizes(rects, 3, [1.0]) == [16.0, 16.0, 32.0]


def test_one_dominant_kind_of_object_does_not_take_every_level():
    # BCCD's shape: many mid-sized objects (red cells) beside a few small and a few large ones. Evenly
    # spaced quantiles would put all three levels near 40 px; the clusters give one level to each kind
    many, small, large = [38.0, 40.0, 42.0] * 100, [10.0, 11.0] * 10, [95.0, 105.0] * 10
    sizes = fit_anchor_sizes(_squares(many + small + large), 3, [1.0])
    assert 10 <= sizes[0] <= 11 and 38 <= sizes[1] <= 42 and 95 <= sizes[2] <= 105


def test_auto_is_a_config_value_fitted_when_the_detector_is_built():
    cfg = validate(compose_config(["model.anchor_sizes=auto", "model.anchor_scales=[1.0]"]))
    assert cfg.model.anchor_sizes == "auto"
    fitted, was_fitted = fitted_model_config(cfg.model, _squares([12.0] * 10 + [24.0] * 10 + [48.0] * 10))
    assert was_fitted and list(fitted.levels) == [2, 3, 4] and list(fitted.anchor_sizes) == [12.0, 24.0, 48.0]
    same, was_fitted = fitted_model_config(OmegaConf.create({"anchor_sizes": [1.0], "levels": [3]}), [])
    assert not was_fitted and list(same.anchor_sizes) == [1.0]


def test_no_box_to_fit_to_and_a_bad_value_are_one_line_errors():
    with pytest.raises(DatasetError, match="^model.anchor_sizes=auto: the training split has no box"):
        fit_anchor_sizes([torch.zeros(0, 4)], 3, [1.0])
    with pytest.raises(ConfigError, match=r"^model.anchor_sizes='big' is not allowed; allowed: .*or auto"):
        validate(compose_config(["model.anchor_sizes=big"]))
