"""Tests of models.gsdenoiser.GSDenoiser: D = I - ∇g against finite differences of g, the exact
Hessian norm of a quadratic potential, gradients for training (create_graph) and evaluation
(no_grad), argument errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.drunet import DRUNet
from models.gsdenoiser import GSDenoiser


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Scale(nn.Module):
    """N(x, sigma) = c x: g = (1 - c)² |x|² / 2, ∇g = (1 - c)² x, ∇²g = (1 - c)² I."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(c, dtype=torch.float64))

    def forward(self, x, sigma):
        return self.c * x


def _small(seed: int = 0) -> GSDenoiser:
    torch.manual_seed(seed)
    return GSDenoiser(channels=4, depth=1, n_blocks=1).double()


def test_denoiser_is_x_minus_the_gradient_of_the_potential():
    gs = _small()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    v = torch.randn_like(x)
    eps = 1e-6
    with torch.no_grad():
        fd = (gs.potential(x + eps * v, 0.1) - gs.potential(x - eps * v, 0.1)) / (2 * eps)
        grad = x - gs(x, 0.1)
    directional = (grad * v).flatten(1).sum(1)
    assert torch.allclose(directional, fd, rtol=1e-6, atol=1e-9)
    assert grad.abs().max() > 1e-3  # not trivially the identity


def test_quadratic_potential_gives_the_exact_denoiser_and_hessian_norm():
    gs = GSDenoiser(network=Scale(0.4))
    x = torch.rand(3, 1, 6, 6, dtype=torch.float64)
    assert torch.allclose(gs(x, 0.1), x - 0.36 * x)
    assert torch.allclose(
        gs.hessian_norm(x, 0.1, n_iter=3), torch.full((3,), 0.36, dtype=torch.float64)
    )
    assert torch.allclose(gs.potential(x, 0.1), 0.18 * x.square().flatten(1).sum(1))


def test_hessian_norm_matches_a_dense_hessian():
    gs = _small(1)
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    hessian = torch.autograd.functional.hessian(lambda v: gs.potential(v, 0.1).sum(), x)
    exact = torch.linalg.matrix_norm(hessian.reshape(16, 16), ord=2)
    estimate = gs.hessian_norm(x, 0.1, n_iter=100)
    assert estimate.item() == pytest.approx(exact.item(), rel=1e-5)


def test_training_mode_differentiates_through_the_gradient_step():
    gs = GSDenoiser(network=Scale(0.4))
    x = torch.rand(2, 1, 5, 5, dtype=torch.float64)
    # loss(c) = |D(x) - 0|² = (1 - (1 - c)²)² |x|², d/dc = 2 (1 - (1-c)²) · 2 (1 - c) |x|²
    gs(x, 0.1).square().sum().backward()
    c, sq = 0.4, float(x.square().sum())
    expected = 2 * (1 - (1 - c) ** 2) * 2 * (1 - c) * sq
    assert gs.network.c.grad.item() == pytest.approx(expected, rel=1e-10)


def test_evaluation_under_no_grad_returns_a_detached_result_and_works_on_default_net():
    gs = GSDenoiser(channels=4, depth=2, n_blocks=1)
    x = torch.rand(2, 1, 12, 12)
    with torch.no_grad():
        out = gs(x, torch.tensor([0.05, 0.1]))
    assert out.shape == x.shape and not out.requires_grad
    assert isinstance(gs.network, DRUNet) and gs.network.activation == "elu"
    with_grad = gs(x, torch.tensor([0.05, 0.1]))
    assert with_grad.requires_grad and torch.allclose(with_grad, out, atol=1e-6)


def test_hessian_norm_penalty_is_differentiable():
    gs = GSDenoiser(network=Scale(0.4))
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    gs.hessian_norm(x, 0.1, n_iter=2, create_graph=True).sum().backward()
    assert gs.network.c.grad.item() == pytest.approx(-2 * 0.6, rel=1e-10)  # d(1-c)²/dc


def test_typos_and_conflicting_arguments_raise():
    with pytest.raises(TypeError, match="chanels"):
        GSDenoiser(chanels=4)
    with pytest.raises(ValueError, match="channels, depth size the default DRUNet"):
        GSDenoiser(network=Scale(0.5), channels=4, depth=2)
    with pytest.raises(ValueError, match="network must be a torch.nn.Module"):
        GSDenoiser(network=lambda x, s: x)
