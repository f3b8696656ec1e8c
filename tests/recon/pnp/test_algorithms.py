"""Tests of recon.pnp.algorithms: reductions to known iterations (Landweber, ADMM/HQS/RED with
exact proximal maps of quadratics, Tikhonov steps of the DPIR schedule), provable convergence
with a gradient-step denoiser, the stopping rule, divergence and argument errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models.gsdenoiser import GSDenoiser
from operators import MatrixOperator
from recon.pnp import DivergenceError, dpir_schedule, pnp_admm, pnp_hqs, pnp_pgd, red
from recon.solvers import landweber


class Record(nn.Module):
    """Wraps a function of (x, sigma); records every input and noise level."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn, self.inputs, self.sigmas = fn, [], []

    def forward(self, x, sigma):
        self.inputs.append(x.detach().clone())
        self.sigmas.append(float(sigma))
        return self.fn(x, sigma)


def _lstsq(op: MatrixOperator, y: torch.Tensor, mu: float) -> torch.Tensor:
    """(AᵀA + μI)⁻¹Aᵀy, reshaped to the domain."""
    M = op.matrix
    x = torch.linalg.solve(M.T @ M + mu * torch.eye(M.shape[1], dtype=M.dtype), M.T @ y)
    return x.reshape(op.domain_shape)


# --------------------------------------------------------------------------- known iterations
def test_pgd_with_the_identity_is_landweber(toy):
    y = torch.randn(2, 80, dtype=torch.float64)
    ours, theirs = [], []
    x = pnp_pgd(
        y,
        toy,
        lambda v, s: v,
        sigma=0.0,
        n_iter=7,
        step=1.5,
        callback=lambda k, v: ours.append(v.clone()),
    )
    ref = landweber(
        y, toy, n_iter=7, step=1.5 / toy.norm() ** 2, callback=lambda k, v: theirs.append(v.clone())
    )
    assert torch.allclose(x, ref, rtol=1e-12, atol=1e-12)
    assert len(ours) == 7 and all(
        torch.allclose(a, b, atol=1e-12) for a, b in zip(ours, theirs, strict=True)
    )


@pytest.mark.parametrize(("inner", "inner_iter"), [("cg", 12), ("cg", 3), ("gradient", 5)])
def test_admm_with_the_prox_of_a_quadratic_converges_to_the_analytic_solution(
    toy, inner, inner_iter
):
    """D(v) = ρv/(ρ + μ) is prox_{(μ/2)|·|²/ρ}: ADMM on |Ax - y|²/2 + μ|x|²/2."""
    y = torch.randn(3, 80, dtype=torch.float64)
    mu, rho = 3.0, 0.5 * toy.norm() ** 2
    exact = torch.stack([_lstsq(toy, yi, mu) for yi in y])
    x = pnp_admm(
        y,
        toy,
        lambda v, s: rho * v / (rho + mu),
        sigma=0.1,
        n_iter=200,
        rho=0.5,
        inner=inner,
        inner_iter=inner_iter,
    )
    assert torch.allclose(x, exact, atol=1e-9)
    early = pnp_admm(
        y,
        toy,
        lambda v, s: rho * v / (rho + mu),
        sigma=0.1,
        n_iter=2,
        rho=0.5,
        inner=inner,
        inner_iter=inner_iter,
    )
    assert not torch.allclose(early, exact, atol=1e-3)  # it does iterate


def test_hqs_follows_the_dpir_schedule_with_exact_tikhonov_steps(toy):
    y = torch.randn(80, dtype=torch.float64)
    zero = Record(lambda v, s: torch.zeros_like(v))
    lam, n = 0.3, 5
    pnp_hqs(y, toy, zero, n_iter=n, sigma_start=0.2, sigma_end=0.01, lam=lam, inner_iter=36)
    sigmas = dpir_schedule(0.2, 0.01, n)
    assert zero.sigmas == pytest.approx(sigmas, rel=1e-12)
    assert sigmas[0] == 0.2 and sigmas[-1] == pytest.approx(0.01)
    for x, sigma in zip(zero.inputs, sigmas, strict=True):
        alpha = lam * toy.norm() ** 2 * (0.01 / sigma) ** 2  # z = 0: x is Tikhonov with α_k
        assert torch.allclose(x.reshape(6, 6), _lstsq(toy, y, alpha), atol=1e-10)


def test_hqs_with_a_fixed_level_and_a_shrinking_denoiser_converges_to_the_fixed_point(toy):
    y = torch.randn(80, dtype=torch.float64)
    c, lam = 0.5, 0.2
    z = pnp_hqs(
        y,
        toy,
        lambda v, s: c * v,
        n_iter=40,
        sigma_start=0.05,
        sigma_end=0.05,
        lam=lam,
        inner_iter=20,
    )
    alpha = lam * toy.norm() ** 2
    assert torch.allclose(z, c * _lstsq(toy, y, alpha * (1 - c)), atol=1e-10)


@pytest.mark.parametrize("mode", ["gradient", "fixed_point"])
def test_red_with_a_linear_denoiser_converges_to_the_regularised_solution(toy, mode):
    y = torch.randn(2, 80, dtype=torch.float64)
    c, lam = 0.6, 0.05
    x = red(
        y,
        toy,
        lambda v, s: c * v,
        sigma=0.1,
        n_iter=300 if mode == "gradient" else 50,
        lam=lam,
        mode=mode,
        step=1.9,
        inner_iter=5,
    )
    exact = torch.stack([_lstsq(toy, yi, lam * toy.norm() ** 2 * (1 - c)) for yi in y])
    assert torch.allclose(x, exact, atol=1e-8)


# --------------------------------------------------------------------------- convergence
class TanhResidual(nn.Module):
    """N(x) = x - a·tanh(Wx): g = a²|tanh(Wx)|²/2 has ∇²g ≤ a²‖W‖² (here ≤ 0.25·1.0)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(1, 1, 3, padding=1, bias=True).double()
        with torch.no_grad():
            self.conv.weight.mul_(1.0 / float(self.conv.weight.abs().sum()))  # ‖W‖ ≤ Σ|w| = 1
            self.conv.bias.fill_(0.3)

    def forward(self, x, sigma):
        return x - 0.5 * torch.tanh(self.conv(x) / sigma * 0.1)


def test_gradient_step_pgd_decreases_its_objective_and_converges(toy):
    gs = GSDenoiser(network=TanhResidual())
    y = toy(torch.rand(2, 6, 6, dtype=torch.float64)) + 0.1 * torch.randn(
        2, 80, dtype=torch.float64
    )
    step = 0.9
    x0 = torch.zeros(2, 6, 6, dtype=torch.float64)
    iterates = [x0]
    x, objective = pnp_pgd(
        y,
        toy,
        gs,
        sigma=0.1,
        n_iter=300,
        step=step,
        x0=x0,
        return_objective=True,
        callback=lambda k, v: iterates.append(v),
    )
    assert objective.shape == (300, 2)
    # the premise: ∇g is L-Lipschitz with L < 1 (here the Hessian norm at the solution)
    assert gs.hessian_norm(x.reshape(2, 1, 6, 6), 0.1, n_iter=50).max() < 0.3
    steps = torch.stack(
        [
            (b - a).square().sum(dim=(-2, -1))
            for a, b in zip(iterates[1:], iterates[2:], strict=False)
        ]
    )
    decrease = objective[:-1] - objective[1:]
    # sufficient decrease: F(x_k) - F(x_k+1) >= (1 - τ‖A‖²)/2 · |x_k+1 - x_k|²
    assert (decrease >= 0.5 * (1 - step) * steps - 1e-12).all()
    assert (decrease > 0).sum() > 10  # not a trivial constant sequence
    residual = steps.sqrt()
    assert (residual[-1] < 1e-4 * residual[0]).all()  # the fixed-point residual goes to zero
    assert (steps.sum(0) <= 2 * (objective[0] - objective[-1]) / (1 - step) + 1e-12).all()


def test_pgd_objective_needs_a_gradient_step_denoiser(toy):
    with pytest.raises(ValueError, match="potential"):
        pnp_pgd(
            torch.randn(80, dtype=torch.float64),
            toy,
            lambda v, s: v,
            sigma=0.1,
            n_iter=2,
            return_objective=True,
        )


def test_tol_stops_early_and_the_callback_sees_every_iteration(toy):
    y = torch.randn(80, dtype=torch.float64)
    seen = []
    x = pnp_pgd(
        y,
        toy,
        lambda v, s: 0.9 * v,
        sigma=0.1,
        n_iter=1000,
        tol=1e-6,
        callback=lambda k, v: seen.append((k, v.clone())),
    )
    assert 1 < len(seen) < 1000 and [k for k, _ in seen] == list(range(len(seen)))
    last, before, earlier = seen[-1][1], seen[-2][1], seen[-3][1]
    assert (last - before).norm() < 1e-6 * before.norm()
    assert (before - earlier).norm() >= 1e-6 * earlier.norm()  # it did not stop too late
    assert torch.equal(x, last)


# --------------------------------------------------------------------------- errors
def test_a_nan_denoiser_raises_a_divergence_error(ray, discs):
    y = ray(discs(1))
    for algorithm in (pnp_pgd, pnp_admm, red):
        with pytest.raises(DivergenceError, match="denoiser returned NaN .* iteration 1"):
            algorithm(y, ray, lambda v, s: v * math.nan, sigma=0.1, n_iter=3)
    with pytest.raises(DivergenceError, match="denoiser returned NaN"):
        pnp_hqs(y, ray, lambda v, s: v * math.nan, n_iter=3)


def test_divergence_is_detected_with_a_clear_error(toy):
    y = torch.randn(80, dtype=torch.float64)
    with pytest.raises(DivergenceError, match=r"PnP-PGD diverged: at iteration \d+, \|\|x\|\|"):
        pnp_pgd(y, toy, lambda v, s: v, sigma=0.1, n_iter=200, step=2.5)  # |1 - 2.5| > 1
    with pytest.raises(DivergenceError, match="RED diverged"):
        red(y, toy, lambda v, s: v, sigma=0.1, n_iter=200, lam=0.01, step=2.5)
    x = pnp_pgd(y, toy, lambda v, s: v, sigma=0.1, n_iter=30, step=2.5, divergence_factor=None)
    assert x.norm() > 1e3 * y.norm() / toy.norm()  # unchecked, it does blow up
    with pytest.raises(DivergenceError, match="RED diverged: iterate 2 contains NaN or infinite"):
        red(y, toy, lambda v, s: v, sigma=0.1, n_iter=5, step=1e308, divergence_factor=None)


def test_a_denoiser_that_changes_the_shape_raises(toy):
    with pytest.raises(ValueError, match="must keep the shape"):
        pnp_pgd(
            torch.randn(80, dtype=torch.float64), toy, lambda v, s: v[..., :3], sigma=0.1, n_iter=1
        )


def test_operators_without_a_norm_are_refused(toy):
    class NoNorm:
        domain_shape, range_shape = toy.domain_shape, toy.range_shape
        T = toy.T

        def __call__(self, x):
            return toy(x)

    with pytest.raises(ValueError, match="no norm\\(\\) method"):
        pnp_pgd(torch.randn(80, dtype=torch.float64), NoNorm(), lambda v, s: v, sigma=0.1, n_iter=1)
