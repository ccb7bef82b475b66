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
    # 30 boxes of each of the sides 10, 20, 40: the quantiles 1/6, 1/2, 5/6 fall on them
    boxes = _squares([10.0] * 30 + [20.0] * 30 + [40.0] * 30)
    assert fit_anchor_sizes(boxes, 3, [1.0]) == [10.0, 20.0, 40.0]
    # with RetinaNet's octave scales the middle one (2^(1/3)) lands on each quantile
    assert fit_anchor_sizes(boxes, 3, [1.0, 2 ** (1 / 3), 2 ** (2 / 3)]) == [
        round(s / 2 ** (1 / 3), 1) for s in (10, 20, 40)
    ]
    # sqrt(area) of rectangles: 8 x 32 and 16 x 64 boxes are 16 and 32 px; one level gets the median
    rects = [torch.tensor([[0.0, 0.0, 8.0, 32.0]]), torch.tensor([[0.0, 0.0, 16.0, 64.0]] * 3)]
    assert fit_anchor_sizes(rects, 1, [1.0]) == [32.0]
    # two levels: the quantiles 1/4 and 3/4 of [16, 32, 32, 32], interpolated linearly (torch.quantile)
    assert fit_anchor_sizes(rects, 2, [1.0]) == [28.0, 32.0]


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
