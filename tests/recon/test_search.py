"""The validation grid search."""

from __future__ import annotations

import pytest
import torch

from operators import Parallel2D, RayTransform
from recon.classical import Landweber
from recon.search import grid_points, grid_search


def test_grid_points_cartesian_product():
    assert grid_points({}) == [{}]
    assert grid_points({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    for bad in ({"a": []}, {"a": "abc"}, {"a": 3}):
        with pytest.raises(ValueError, match="non-empty list"):
            grid_points(bad)


def test_grid_search_prefers_more_iterations_on_clean_data():
    op = RayTransform(Parallel2D((16, 16), n_angles=24), backend="matrix")
    x = torch.zeros(2, 1, 16, 16)
    x[:, :, 4:12, 5:11] = 1.0
    y = op(x)
    best, table = grid_search(lambda p: Landweber(**p), {"n_iter": [1, 5, 200]}, y, x, op)
    assert best == {"n_iter": 200}
    assert [row["n_iter"] for row in table] == [200, 5, 1]
    assert table[0]["psnr"] > table[1]["psnr"] > table[2]["psnr"]
