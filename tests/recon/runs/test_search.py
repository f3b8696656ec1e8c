"""The validation grid search."""

from __future__ import annotations

import pytest
import torch

from operators import Parallel2D, RayTransform
from recon.classical import Landweber
from recon.runs.search import grid_edges, grid_points, grid_search


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


def test_grid_edges_names_the_parameters_tuned_at_an_end_of_their_grid():
    grid = {"lam": [0.25, 0.5, 1.0], "mu": [0.01, 0.1, 1.0], "n_iter": [100], "filter": ["a", "b"]}
    assert grid_edges({"lam": 0.5, "mu": 0.1, "n_iter": 100, "filter": "b"}, grid) == []
    assert grid_edges({"lam": 0.25, "mu": 1.0, "n_iter": 100, "filter": "a"}, grid) == ["lam", "mu"]
    assert grid_edges({"lam": 1.0}, {"lam": [1.0, 0.25, 0.5]}) == ["lam"]  # unsorted grids too
    assert grid_edges({"lam": 1}, {"lam": [1, 2.5, True]}) == []  # not all numbers: no claim
