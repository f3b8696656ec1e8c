"""Tests of data_tools.simulate: the finer grid keeps the physics, and avoids the inverse crime."""

from __future__ import annotations

import math

import pytest
import torch

from data_tools.noise import GaussianNoise
from data_tools.phantoms import ellipses_image, random_ellipse_params, render_random_ellipses
from data_tools.simulate import cached_ray_transform, downsample, fine_geometry, simulate
from operators import FanBeam2D, Parallel2D, Parallel3D

GEOMETRY = Parallel2D((64, 64), n_angles=30, n_detectors=91)


def ellipses_phantom(n: int, seed: int):
    params = random_ellipse_params(n, generator=torch.Generator().manual_seed(seed))
    return lambda shape: render_random_ellipses(params, shape, dtype=torch.float64)


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).flatten(-2).norm(dim=-1) / b.flatten(-2).norm(dim=-1)


@pytest.mark.parametrize(
    "geometry",
    [
        pytest.param(
            Parallel2D((64, 48), n_angles=30, n_detectors=91, pixel_size=0.5), id="parallel"
        ),
        pytest.param(
            FanBeam2D((64, 64), n_angles=20, source_distance=200.0, detector_distance=100.0),
            id="fan",
        ),
    ],
)
def test_fine_geometry_keeps_the_physical_extent(geometry):
    fine = fine_geometry(geometry, 3)
    assert type(fine) is type(geometry)
    assert fine.image_shape == (geometry.image_shape[0] * 3, geometry.image_shape[1] * 3)
    assert fine.pixel_size == pytest.approx(geometry.pixel_size / 3)
    assert fine.image_shape[1] * fine.pixel_size == pytest.approx(
        geometry.image_shape[1] * geometry.pixel_size
    )
    assert fine.range_shape == geometry.range_shape
    assert fine.angles == geometry.angles
    assert fine.detector_spacing == geometry.detector_spacing
    assert fine_geometry(geometry, 1) is geometry


@pytest.mark.parametrize("factor", [0, -1, 1.5, True])
def test_invalid_factor_raises(factor):
    with pytest.raises(ValueError, match="factor"):
        fine_geometry(GEOMETRY, factor)
    with pytest.raises(ValueError, match="factor"):
        downsample(torch.zeros(4, 4), factor)


def test_fine_geometry_needs_a_2d_ct_geometry():
    with pytest.raises(ValueError, match="Parallel2D or FanBeam2D"):
        fine_geometry(Parallel3D((8, 8, 8), n_angles=4), 2)


def test_downsample_averages_blocks():
    x = torch.arange(16.0).reshape(4, 4)
    expected = torch.tensor([[(0 + 1 + 4 + 5) / 4, (2 + 3 + 6 + 7) / 4], [10.5, 12.5]])
    torch.testing.assert_close(downsample(x, 2), expected)
    batch = torch.rand(2, 3, 12, 18, dtype=torch.float64)
    pooled = downsample(batch, 3)
    assert pooled.shape == (2, 3, 4, 6) and pooled.dtype == torch.float64
    torch.testing.assert_close(pooled, torch.nn.functional.avg_pool2d(batch, 3))
    torch.testing.assert_close(pooled.mean(), batch.mean())  # the mean value is kept
    assert downsample(batch, 1) is batch
    with pytest.raises(ValueError, match="divisible"):
        downsample(torch.zeros(5, 6), 2)
    with pytest.raises(ValueError, match="two dimensions"):
        downsample(torch.zeros(6), 2)


def test_factor_two_data_are_close_to_but_not_the_coarse_model():
    phantom = ellipses_phantom(4, seed=0)
    x, y = simulate(phantom, GEOMETRY, factor=2)
    assert x.shape == (4, 64, 64) and y.shape == (4, 30, 91)
    torch.testing.assert_close(x, downsample(phantom((128, 128)), 2))
    A = cached_ray_transform(GEOMETRY)
    difference = relative_difference(y, A(x))
    assert (difference > 1e-4).all()  # not the inverse crime ...
    assert (difference < 5e-2).all()  # ... but the same physics


def test_factor_one_is_the_inverse_crime():
    phantom = ellipses_phantom(2, seed=1)
    x, y = simulate(phantom, GEOMETRY, factor=1)
    torch.testing.assert_close(x, phantom((64, 64)), rtol=0, atol=0)
    assert torch.equal(y, cached_ray_transform(GEOMETRY)(x))


def test_finer_simulation_approaches_the_analytic_line_integrals():
    # A unit disc of radius 0.5 (in [-1, 1]² units) on a 64 mm field of view has radius 16 mm, so
    # its parallel projection is 2 √(16² − u²) mm at every angle, and its mass π·16² mm².
    disc = [[1.0, 0.5, 0.5, 0.0, 0.0, 0.0]]
    u = torch.arange(91, dtype=torch.float64) - 45.0
    exact = 2.0 * torch.sqrt((16.0**2 - u**2).clamp_min(0.0))
    inside = u.abs() <= 14  # away from the tangent rays, where the pixelated edge dominates
    profile_errors, mass_errors = [], []
    for factor in (1, 4):
        _, y = simulate(
            lambda shape: ellipses_image(disc, shape, dtype=torch.float64), GEOMETRY, factor=factor
        )
        error = (y[:, inside] - exact[inside]).norm(dim=-1) / exact[inside].norm()
        profile_errors.append(error.max().item())
        mass = y.sum(dim=-1)  # detector spacing 1 mm
        mass_errors.append(((mass - math.pi * 256) / (math.pi * 256)).abs().max().item())
    assert profile_errors[1] < 0.01 and profile_errors[1] < profile_errors[0] / 2
    assert mass_errors[1] < 0.002 and mass_errors[1] < mass_errors[0] / 4


def test_a_tensor_on_the_fine_grid_is_accepted():
    phantom = ellipses_phantom(3, seed=2)
    fine = phantom((128, 128))
    x, y = simulate(fine, GEOMETRY)
    x_ref, y_ref = simulate(phantom, GEOMETRY)
    assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
    with pytest.raises(ValueError, match="fine grid"):
        simulate(phantom((64, 64)), GEOMETRY)  # the coarse grid is not the fine one
    with pytest.raises(ValueError, match="fine grid"):
        simulate(lambda shape: torch.zeros(shape[0], shape[1] + 1), GEOMETRY)
    with pytest.raises(ValueError, match="callable or a tensor"):
        simulate("ellipses", GEOMETRY)


def test_noise_is_applied_with_the_generator():
    phantom = ellipses_phantom(2, seed=3)
    _, clean = simulate(phantom, GEOMETRY)
    noise = GaussianNoise(relative=0.05)
    _, a = simulate(phantom, GEOMETRY, noise=noise, generator=torch.Generator().manual_seed(0))
    _, b = simulate(phantom, GEOMETRY, noise=noise, generator=torch.Generator().manual_seed(0))
    _, c = simulate(phantom, GEOMETRY, noise=noise, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    level = (a - clean).flatten(-2).std(dim=-1) / clean.abs().flatten(-2).mean(dim=-1)
    torch.testing.assert_close(level, torch.full((2,), 0.05, dtype=level.dtype), rtol=0.1, atol=0)


def test_fan_beam_simulation():
    geometry = FanBeam2D((32, 32), n_angles=20, source_distance=200.0, detector_distance=100.0)
    x, y = simulate(lambda s: ellipses_image([[1.0, 0.5, 0.3, 0.1, 0.0, 30.0]], s), geometry)
    assert x.shape == (32, 32) and y.shape == geometry.range_shape
    assert x.dtype == y.dtype == torch.float32
    A = cached_ray_transform(geometry)
    assert 1e-4 < relative_difference(y, A(x)).item() < 5e-2


def test_ray_transforms_are_cached_per_geometry():
    same = Parallel2D((64, 64), n_angles=30, n_detectors=91)
    assert cached_ray_transform(same) is cached_ray_transform(GEOMETRY)
    assert cached_ray_transform(same, backend="astra") is not cached_ray_transform(same)
    assert cached_ray_transform(same, backend="astra").backend == "astra"
