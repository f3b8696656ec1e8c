"""``tune_tv`` (issue 37, item 9): the best λ of a grid by validation PSNR, as brute force finds
it; a default grid around ``tv_default_lam`` that brackets the optimum; ‖A‖ computed once."""

from __future__ import annotations

import pytest
import torch

from data_tools.metrics import psnr
from data_tools.noise import GaussianNoise
from data_tools.phantoms.ellipses import random_ellipse_params, render_random_ellipses
from data_tools.simulate import simulate
from operators import LinearOperator, Parallel2D, RayTransform
from operators.counting import CountingOperator
from recon.classical import TV
from recon.runs.tuning import GRID_STEPS, noise_estimate, tune_tv, tv_lam_grid


@pytest.fixture(scope="module")
def validation():
    """Four 32² random-ellipse images, 20 angles, 2.5 % noise, simulated on a 2× finer grid."""
    geometry = Parallel2D((32, 32), n_angles=20)
    op = RayTransform(geometry, backend="matrix")
    gen = torch.Generator().manual_seed(0)
    params = random_ellipse_params(4, generator=gen)
    x, y = simulate(
        lambda shape: render_random_ellipses(params, shape),
        geometry,
        noise=GaussianNoise(relative=0.025),
        generator=gen,
        backend="matrix",
    )
    return op, x, y


def test_tuning_picks_the_brute_force_best_of_a_grid(validation):
    op, x, y = validation
    lams = [0.02, 0.1, 0.5, 2.5, 12.5]
    tv = tune_tv(op, y, x, lams=lams, n_iter=60, progress=False)
    scores = [float(psnr(TV(lam=lam, n_iter=60)(y, op), x, ndim=2).mean()) for lam in lams]
    assert tv.lam == lams[max(range(len(lams)), key=scores.__getitem__)]
    assert tv.lam not in (lams[0], lams[-1])  # the grid brackets the optimum here
    assert max(scores) > min(scores) + 1.0  # and the choice matters
    assert tv.n_iter == 60 and tv.op_norm == pytest.approx(op.norm())


def test_the_default_grid_brackets_the_optimum(validation, caplog):
    op, x, y = validation
    sigma = noise_estimate(op, y, x)
    true_sigma = float((op(x) - y).square().mean().sqrt())
    assert sigma == pytest.approx(true_sigma)
    grid = tv_lam_grid(op, y, x)
    assert len(grid) == len(GRID_STEPS) and grid == sorted(grid)
    assert grid[-1] / grid[0] == pytest.approx(32, rel=1e-3)
    with caplog.at_level("INFO", logger="recon.runs.tuning"):
        tv = tune_tv(op, y, x, n_iter=100, progress=False)
    assert grid[0] < tv.lam < grid[-1]  # measured: the default λ / √2 (PSNR 26.91 dB)
    assert "best lam" in caplog.text and "edge of the grid" not in caplog.text


def test_an_optimum_at_the_edge_is_reported(validation, caplog):
    op, x, y = validation
    with caplog.at_level("WARNING", logger="recon.runs.tuning"):
        tv = tune_tv(op, y, x, lams=[1e-4, 2e-4], n_iter=30, progress=False)
    assert tv.lam == 2e-4 and "edge of the grid" in caplog.text


def test_the_norm_is_computed_once_for_the_whole_grid(validation):
    class PowerCounted(CountingOperator):
        norm = LinearOperator.norm

    op, x, y = validation
    counted = PowerCounted(op)
    tv = tune_tv(counted, y, x, lams=[0.1, 1.0, 10.0], n_iter=10, progress=False)
    power = counted.adjoint_count - 3 * 10 * len(x)
    assert 5 <= power <= 100  # one power iteration (≤ 100 steps), not one per λ
    assert tv.op_norm == pytest.approx(counted.norm())


def test_mismatched_validation_pairs_are_refused(validation):
    op, x, y = validation
    with pytest.raises(ValueError, match="one image per measurement"):
        tune_tv(op, y, x[:2], progress=False)
