"""Photoacoustic data for ring and arc arrays: simulation on a finer grid
(data_tools.simulate.simulate_pat, fine_pat_operator) and vessels kept inside a disc."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_tools.noise import GaussianNoise
from data_tools.phantoms import vessels
from data_tools.phantoms.photoacoustic import disc_mask
from data_tools.simulate import fine_pat_operator, simulate_pat
from operators import KSpaceWave, LineSensor, Medium, PATGrid, SensorMask, SensorPoints, TimeGrid

F64 = torch.float64


def ring_operator(n: int = 32, **kwargs) -> KSpaceWave:
    grid = PATGrid((n, n), spacing=0.1)
    ring = SensorPoints.circle(0.45 * n * 0.1, 32, grid=grid)
    return KSpaceWave(grid, time=TimeGrid.from_cfl(grid), sensor=ring, **kwargs)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# --------------------------------------------------------------------------- simulate_pat
def test_fine_grid_data_are_close_to_but_not_the_coarse_models():
    """Vessels in a disc, 32², ring of 32: the fine-grid data (factor 2) differ from A x by
    13.7 % (measured; factor 3: 17.0 %): close, as the same physics, but not the inverse crime."""
    A = ring_operator(32)
    p0 = vessels(32, seed=3, margin=0, disc_radius=0.8, radius=(0.8, 2.0)).double()
    x, y = simulate_pat(p0, A, factor=2)
    assert x.shape == p0.shape and y.shape == A.range_shape
    torch.testing.assert_close(x, p0)  # a coarse tensor: every pixel repeated, its mean is itself
    error = rel(y, A(p0))
    assert 0.02 < error < 0.2, error


def test_factor_one_is_the_inverse_crime():
    A = ring_operator(24)
    p0 = torch.rand(2, 24, 24, dtype=F64)
    x, y = simulate_pat(p0, A, factor=1)
    torch.testing.assert_close(y, A(p0))
    torch.testing.assert_close(x, p0)


def test_a_finer_time_step_samples_the_same_times():
    """time_factor=2 halves dt and keeps every other sample: in a homogeneous medium the k-space
    scheme is exact in time, so the two agree up to the PML (measured 5.9e-5 relative)."""
    A = ring_operator(24)
    p0 = vessels(24, seed=0, margin=0, disc_radius=0.7).double()
    fine = fine_pat_operator(A, 2, time_factor=2)
    assert fine.time.dt == pytest.approx(A.time.dt / 2) and fine.time.n_t == 2 * A.time.n_t - 1
    _, y1 = simulate_pat(p0, A, factor=2)
    _, y2 = simulate_pat(p0, A, factor=2, time_factor=2)
    assert y2.shape == A.range_shape
    assert rel(y2, y1) < 1e-3


def test_callables_and_fine_tensors_give_the_block_mean_as_truth():
    A = ring_operator(16)
    fine = torch.rand(3, 32, 32, dtype=F64)
    x, y = simulate_pat(lambda shape: fine[:, : shape[0], : shape[1]], A, factor=2)
    expected = fine.reshape(3, 16, 2, 16, 2).mean(dim=(2, 4))
    torch.testing.assert_close(x, expected)
    x2, y2 = simulate_pat(fine, A, factor=2)
    torch.testing.assert_close(x2, expected)
    torch.testing.assert_close(y2, y)
    assert y.shape == (3, *A.range_shape)


def test_the_fine_operator_keeps_the_physics():
    grid = PATGrid((16, 20), spacing=(0.1, 0.2))
    c = np.full(grid.shape, 1500.0)
    c[8:] = 1600.0
    mask = np.zeros(grid.shape, dtype=bool)
    mask[0, 3] = mask[5, 0] = True
    A = KSpaceWave(
        grid,
        medium=Medium(sound_speed=c),
        time=TimeGrid(dt=1e-8, n_t=30),
        sensor=SensorMask(mask),
        pml_size=4,
        pml_inside=True,
    )
    fine = fine_pat_operator(A, 2)
    assert fine.grid.shape == (32, 40) and fine.grid.spacing == (0.05, 0.1)
    assert fine.grid.size_mm == pytest.approx(grid.size_mm)
    assert fine.medium.sound_speed.shape == (32, 40)
    assert fine.medium.sound_speed[15, 0] == 1500.0 and fine.medium.sound_speed[16, 0] == 1600.0
    np.testing.assert_allclose(fine.sensor.points, [[-0.75, -1.3], [-0.25, -1.9]])  # mask → mm
    assert fine.pml_inside and fine.pml_size == (8, 8) and fine.c_ref == A.c_ref
    assert fine.range_shape == A.range_shape
    outside = fine_pat_operator(ring_operator(16, pml_size=0), 3)
    assert outside.pml_size == (0, 0) and outside.grid.shape == (48, 48)


def test_noise_and_3d():
    grid = PATGrid((8, 8, 8), spacing=0.1)
    A = KSpaceWave(grid, time=TimeGrid(dt=2e-8, n_t=12), sensor=SensorPoints([[0.3, 0.0, -0.2]]))
    p0 = torch.rand(8, 8, 8, dtype=F64)
    noise = GaussianNoise(relative=0.5, reference="max")
    x, y = simulate_pat(p0, A, factor=2, noise=noise, generator=torch.Generator().manual_seed(0))
    _, clean = simulate_pat(p0, A, factor=2)
    assert x.shape == (8, 8, 8) and y.shape == (1, 12)
    assert 0.2 < float((y - clean).std() / clean.abs().max()) < 0.8


def test_simulate_pat_refuses_bad_input():
    A = ring_operator(16)
    with pytest.raises(ValueError, match="KSpaceWave"):
        simulate_pat(torch.rand(16, 16), LineSensor(A.grid, time=A.time))
    with pytest.raises(ValueError, match="factor"):
        simulate_pat(torch.rand(16, 16), A, factor=0)
    with pytest.raises(ValueError, match="time_factor"):
        simulate_pat(torch.rand(16, 16), A, time_factor=1.5)
    with pytest.raises(ValueError, match=r"\(\*batch, \*\(16, 16\)\)"):
        simulate_pat(torch.rand(20, 20), A)
    with pytest.raises(ValueError, match="must return a tensor"):
        simulate_pat(lambda shape: np.zeros(shape), A)
    with pytest.raises(ValueError, match="callable or a tensor"):
        simulate_pat("vessels", A)


# --------------------------------------------------------------------------- vessels in a disc
@pytest.mark.parametrize(("shape", "fraction"), [((64, 64), 0.8), ((48, 64), 0.5), ((64, 64), 1.0)])
def test_vessels_are_zero_outside_the_disc(shape, fraction):
    x = vessels(shape, n=4, seed=5, margin=0, disc_radius=fraction)
    h, w = shape
    radius = fraction * min(h, w) / 2
    rows = torch.arange(h, dtype=F64)[:, None] - (h - 1) / 2
    cols = torch.arange(w, dtype=F64)[None, :] - (w - 1) / 2
    distance = torch.hypot(rows, cols)
    assert float(x[:, distance >= radius].abs().max()) == 0.0
    # every image has vessels inside (the trees start in the disc)
    assert bool((x[:, distance < radius - 1].amax(dim=-1) > 0.2).all())
    assert float(x.min()) >= 0 and float(x.max()) <= 1


def test_the_disc_edge_is_smooth_and_the_default_is_unchanged():
    m = disc_mask(64, 64, 20.0)
    profile = m[31, 31:].numpy()  # from 0.5 px to 32.5 px from the centre
    assert np.all(np.diff(profile) <= 0)
    # distances √(0.25 + (k − 0.5)²): 18.51 px (inside R − 1), 19.51 px (the edge), 20.51 px
    assert profile[19] == 1.0 and 0 < profile[20] < 1 and profile[21] == 0.0
    # the disc option changes nothing when it is not used
    torch.testing.assert_close(vessels(32, seed=2), vessels(32, seed=2, disc_radius=None))


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.5, "half", True])
def test_disc_radius_must_be_a_fraction(bad):
    with pytest.raises(ValueError, match="disc_radius"):
        vessels(32, seed=0, disc_radius=bad)
