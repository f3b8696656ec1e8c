"""Tests of recon.solvers.splitting: the data prox solves its Tikhonov problem with either inner
solver, the steps follow their formulas, and the monitor detects divergence and convergence."""

from __future__ import annotations

import pytest
import torch

from operators import MatrixOperator
from recon.solvers import DivergenceError
from recon.solvers.splitting import (
    IterationMonitor,
    admm_step,
    check_denoiser,
    data_prox,
    hqs_step,
    pgd_step,
    start_iteration,
)


@pytest.fixture(scope="module")
def toy():
    """A well-conditioned random operator from 4×4 images to 30 values, in float64."""
    gen = torch.Generator().manual_seed(0)
    return MatrixOperator(
        torch.randn(30, 16, generator=gen, dtype=torch.float64), domain_shape=(4, 4)
    )


def tikhonov(op: MatrixOperator, y: torch.Tensor, v: torch.Tensor, alpha: float) -> torch.Tensor:
    """argmin ½|Ax - y|² + α/2 |x - v|², exactly, for one element."""
    M = op.matrix
    rhs = M.T @ y + alpha * v.flatten()
    return torch.linalg.solve(M.T @ M + alpha * torch.eye(16, dtype=M.dtype), rhs).reshape(4, 4)


@pytest.mark.parametrize(("solver", "n_iter"), [("cg", 16), ("gradient", 2000)])
def test_data_prox_solves_the_tikhonov_problem(toy, solver, n_iter):
    y = torch.randn(2, 30, dtype=torch.float64)
    v = torch.randn(2, 4, 4, dtype=torch.float64)
    alpha, a_norm = 0.5 * toy.norm() ** 2, toy.norm()
    x = data_prox(y, toy, v, alpha, torch.zeros_like(v), n_iter=n_iter, solver=solver,
                  a_norm=a_norm)  # fmt: skip
    exact = torch.stack([tikhonov(toy, y[i], v[i], alpha) for i in range(2)])
    assert torch.allclose(x, exact, atol=1e-8)


def test_steps_follow_their_formulas(toy):
    y = torch.randn(30, dtype=torch.float64)
    x0 = torch.randn(4, 4, dtype=torch.float64)
    x, monitor = start_iteration("test", y, toy, x0, tol=None, divergence_factor=None)
    half = lambda v, s: 0.5 * v  # noqa: E731
    z, x_new = pgd_step(x, toy(x) - y, toy, tau=0.1, denoiser=half, sigma=0.1, monitor=monitor,
                        k=0)  # fmt: skip
    assert torch.allclose(z, x0 - 0.1 * toy.T(toy(x0) - y)) and torch.allclose(x_new, 0.5 * z)
    u0 = torch.randn(4, 4, dtype=torch.float64)
    x1, z1, u1 = admm_step(x, x, u0, y=y, op=toy, rho=2.0, denoiser=half, sigma=0.1,
                           inner_iter=16, inner="cg", monitor=monitor, k=0)  # fmt: skip
    assert torch.allclose(x1, tikhonov(toy, y, x0 - u0, 2.0), atol=1e-8)
    assert torch.allclose(z1, 0.5 * (x1 + u0)) and torch.allclose(u1, u0 + x1 - z1)
    x2, z2 = hqs_step(x, x, y=y, op=toy, alpha=2.0, denoiser=half, sigma=0.1, inner_iter=16,
                      inner="cg", monitor=monitor, k=0)  # fmt: skip
    assert torch.allclose(x2, tikhonov(toy, y, x0, 2.0), atol=1e-8)
    assert torch.allclose(z2, 0.5 * x2)


def test_monitor_detects_blow_up_nan_and_convergence(toy):
    y = torch.randn(30, dtype=torch.float64)
    monitor = IterationMonitor("test", torch.zeros(4, 4, dtype=torch.float64), y, toy,
                               toy.norm(), divergence_factor=10.0, tol=1e-3)  # fmt: skip
    limit = 10.0 * float(y.norm()) / toy.norm()
    monitor.check(0, torch.full((4, 4), 0.9 * limit / 4, dtype=torch.float64))
    with pytest.raises(DivergenceError, match=r"test diverged: at iteration 3, \|\|x\|\|"):
        monitor.check(2, torch.full((4, 4), 1.1 * limit / 4, dtype=torch.float64))
    with pytest.raises(DivergenceError, match="iterate 1 contains NaN"):
        monitor.check(0, torch.full((4, 4), float("nan"), dtype=torch.float64))
    x = torch.ones(4, 4, dtype=torch.float64)
    assert monitor.converged(x * (1 + 1e-4), x) and not monitor.converged(x * 1.01, x)


def test_denoisers_are_checked():
    check_denoiser(lambda x, s: x, module=False)
    with pytest.raises(ValueError, match="must be a torch.nn.Module"):
        check_denoiser(lambda x, s: x, module=True)
    with pytest.raises(ValueError, match="must be callable"):
        check_denoiser(3, module=False)
