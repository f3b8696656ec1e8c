"""Ring and arc arrays of point sensors: SensorPoints.circle (k-Wave's makeCartCircle) and the
time stepper with them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from operators import KSpaceWave, PATGrid, SensorPoints, TimeGrid
from operators.testing import check_adjoint


def make_cart_circle(radius, num_points, center=(0.0, 0.0), arc_angle=2 * math.pi):
    """k-Wave's makeCartCircle as its documentation and code describe it: angles
    π/2 + k·arc/n_steps (n_steps = n for a full circle, n − 1 for an arc), x = r cos θ,
    y = −r sin θ."""
    full = arc_angle == 2 * math.pi
    steps = num_points if full else num_points - 1
    angles = np.arange(num_points) * arc_angle / steps + math.pi / 2
    return np.stack([radius * np.cos(angles), -radius * np.sin(angles)], -1) + np.asarray(center)


def same_set(a: np.ndarray, b: np.ndarray) -> bool:
    d = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
    return bool(np.all(d.min(axis=1) < 1e-12) and np.all(d.min(axis=0) < 1e-12))


@pytest.mark.parametrize("n", [1, 2, 5, 64])
def test_a_full_ring_is_evenly_spaced_without_a_duplicated_end(n):
    pts = SensorPoints.circle(2.5, n, start_angle=0.3, centre=(0.2, -0.1)).points
    assert pts.shape == (n, 2)
    rel = pts - [0.2, -0.1]
    np.testing.assert_allclose(np.hypot(rel[:, 0], rel[:, 1]), 2.5)
    theta = 0.3 + 2 * math.pi * np.arange(n) / n
    np.testing.assert_allclose(rel, 2.5 * np.stack([np.cos(theta), np.sin(theta)], -1), atol=1e-12)


def test_an_arc_includes_both_ends():
    pts = SensorPoints.circle(1.0, 7, arc=math.radians(120), start_angle=math.radians(-60)).points
    theta = np.arctan2(pts[:, 1], pts[:, 0])
    np.testing.assert_allclose(theta, np.radians(np.linspace(-60, 60, 7)), atol=1e-12)
    np.testing.assert_allclose(pts[3], [1.0, 0.0], atol=1e-12)  # the middle one on the x axis


@pytest.mark.parametrize(
    ("n", "arc"), [(16, 2 * math.pi), (9, math.pi), (5, math.pi / 3), (12, 1.9 * math.pi)]
)
def test_the_same_points_as_make_cart_circle(n, arc):
    ours = SensorPoints.circle(0.8, n, arc=arc, start_angle=1.5 * math.pi - arc, centre=(0.3, 0.1))
    assert same_set(ours.points, make_cart_circle(0.8, n, (0.3, 0.1), arc))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"radius": 0.0, "n": 4}, "radius"),
        ({"radius": -1.0, "n": 4}, "radius"),
        ({"radius": 1.0, "n": 0}, "n "),
        ({"radius": 1.0, "n": 2.5}, "n "),
        ({"radius": 1.0, "n": True}, "n "),
        ({"radius": 1.0, "n": 4, "arc": 180.0}, r"math.radians\(180\)"),
        ({"radius": 1.0, "n": 4, "arc": 0.0}, "arc"),
        ({"radius": 1.0, "n": 4, "start_angle": 90.0}, "start_angle"),
        ({"radius": 1.0, "n": 1, "arc": math.pi}, "partial arc"),
        ({"radius": 1.0, "n": 4, "centre": (0.0, 0.0, 0.0)}, "centre"),
    ],
)
def test_bad_rings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SensorPoints.circle(**kwargs)


def test_a_ring_must_fit_in_the_grid():
    grid = PATGrid((32, 32), spacing=0.1)  # points span [-1.55, 1.55] mm
    SensorPoints.circle(1.55, 16, grid=grid)
    with pytest.raises(ValueError, match="outside the grid"):
        SensorPoints.circle(1.6, 16, grid=grid)
    ring = SensorPoints.circle(1.6, 16)  # without grid=, the operator refuses it
    with pytest.raises(ValueError, match="outside the grid"):
        KSpaceWave(grid, time=TimeGrid(dt=2e-8, n_t=8), sensor=ring)


def test_the_time_stepper_with_a_ring_passes_the_dot_test_and_sees_a_centred_source():
    """The operator's adjoint is exact with ring sensors, and the data of a centred Gaussian
    have the ring's symmetry: a 90° rotation of the grid maps sensor k to k + 3 (to 1e-6)."""
    grid = PATGrid((32, 32), spacing=0.1)
    ring = SensorPoints.circle(1.2, 12, grid=grid, start_angle=math.pi / 12)
    A = KSpaceWave(grid, time=TimeGrid.from_cfl(grid, n_t=80), sensor=ring)
    assert A.range_shape == (12, 80)
    assert check_adjoint(A) < 1e-10
    c = torch.arange(32, dtype=torch.float64) - 15.5
    p0 = torch.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / 8)
    y = A(p0)
    torch.testing.assert_close(y, y.roll(3, dims=0), atol=1e-6 * float(y.abs().max()), rtol=0)
