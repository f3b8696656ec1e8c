"""data_tools.phantoms.rectangles: the `rectangles` family (3 random rectangles per image)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from data_tools.phantoms.rectangles import (
    random_rectangles,
    rectangle_params,
    rectangles_family,
    rectangles_image,
)
from data_tools.phantoms.registry import PHANTOMS, phantom_family


def test_params_follow_the_distribution():
    tables = torch.stack(
        [rectangle_params(generator=torch.Generator().manual_seed(s)) for s in range(200)]
    )
    assert tables.shape == (200, 3, 6) and tables.dtype == torch.float64
    value, half_a, half_b, x, y, angle = tables.unbind(-1)
    assert 0.5 <= value.min() and value.max() < 1.0
    assert 0.1 <= torch.minimum(half_a, half_b).min() and torch.maximum(half_a, half_b).max() < 0.8
    assert -0.75 <= torch.minimum(x, y).min() and torch.maximum(x, y).max() < 0.75
    assert 0 <= angle.min() and angle.max() < math.pi
    # one angle mode per image: the rectangles of an image are nearly parallel
    spread = torch.remainder(angle - angle[:, :1] + math.pi / 2, math.pi) - math.pi / 2
    assert float(spread.abs().max()) < 0.5 and float(spread.std()) < 0.1


def test_images_are_deterministic_and_normalised():
    a = random_rectangles(64, 4, seed=0)
    b = random_rectangles(64, 4, seed=0)
    assert a.shape == (4, 64, 64) and a.dtype == torch.float32 and torch.equal(a, b)
    assert not torch.equal(a, random_rectangles(64, 4, seed=1))
    assert float(a.min()) == 0.0 and torch.allclose(a.amax(dim=(1, 2)), torch.ones(4))
    assert random_rectangles(32, seed=3).shape == (32, 32)


def test_area_of_a_rotated_rectangle():
    for angle in (0.0, 0.3, math.pi / 4, 2.0):
        table = torch.tensor([[0.7, 0.4, 0.25, 0.1, -0.2, angle]], dtype=torch.float64)
        image = rectangles_image(table, 64, supersample=8)
        area = (2 * 0.4) * (2 * 0.25) / 4  # fraction of the square [-1, 1]²
        assert float(image.mean()) == pytest.approx(area, rel=0.01)
        assert float(image.max()) == 1.0


def test_overlaps_add_up_before_normalising():
    table = torch.tensor(
        [[0.6, 0.5, 0.5, -0.25, 0.0, 0.0], [0.9, 0.5, 0.5, 0.25, 0.0, 0.0]], dtype=torch.float64
    )
    image = rectangles_image(table, 32)
    centre, left, right = image[16, 16], image[16, 6], image[16, 26]
    assert float(centre) == pytest.approx(1.0)
    assert float(left) == pytest.approx(0.6 / 1.5, rel=1e-6)
    assert float(right) == pytest.approx(0.9 / 1.5, rel=1e-6)
    raw = rectangles_image(table, 32, normalise=False)
    assert float(raw.max()) == pytest.approx(1.5)


def test_family_renders_the_same_object_at_any_resolution():
    render = phantom_family("rectangles")(torch.Generator().manual_seed(5))
    fine, coarse = render((128, 128)), render((64, 64))
    pooled = F.avg_pool2d(fine[None, None], 2)[0, 0]
    assert float((pooled - coarse).abs().mean()) < 2e-3
    assert PHANTOMS["rectangles"] is rectangles_family


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="n_rects must be a positive int"):
        rectangle_params(0)
    with pytest.raises(ValueError, match="side_range must be > 0"):
        rectangle_params(side_range=(0.0, 0.5))
    with pytest.raises(ValueError, match="angle_std"):
        rectangle_params(angle_std=-1.0)
    with pytest.raises(ValueError, match="either generator or seed"):
        rectangle_params(generator=torch.Generator(), seed=1)
    with pytest.raises(ValueError, match=r"params must have shape \(n_rects, 6\)"):
        rectangles_image(torch.zeros(3, 5), 16)
    with pytest.raises(ValueError, match="supersample"):
        rectangles_image(torch.zeros(1, 6), 16, supersample=0)
    with pytest.raises(ValueError, match="n must be a positive int or None"):
        random_rectangles(16, 0)
