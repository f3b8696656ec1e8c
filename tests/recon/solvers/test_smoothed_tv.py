"""Tests of recon.solvers.smoothed_tv: smoothed TV and its gradient, the objective
SmoothedTV and the Lipschitz bound of its gradient."""

from __future__ import annotations

import pytest
import torch

from operators import IdentityOperator, Parallel2D, RayTransform
from recon.solvers import SmoothedTV, smoothed_tv, smoothed_tv_gradient, tv_lipschitz, tv_ndim

F64 = torch.float64


@pytest.fixture(scope="module")
def ray():
    return RayTransform(Parallel2D((16, 16), n_angles=8), backend="matrix")


@pytest.fixture(scope="module")
def problem(ray):
    """Three 16² disc images, their noisy sinograms (float64) and the TV objective."""
    c = torch.linspace(-1, 1, 16, dtype=F64)
    rows, cols = torch.meshgrid(c, c, indexing="ij")
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(3, 1, 16, 16, dtype=F64)
    for i in range(3):
        cy, cx = (torch.rand(2, generator=gen, dtype=F64) - 0.5).tolist()
        x[i, 0] = 0.3 + 0.7 * ((rows - cy) ** 2 + (cols - cx) ** 2 <= 0.3)
    y = ray(x)
    y = y + 0.02 * y.abs().mean() * torch.randn(y.shape, generator=gen, dtype=F64)
    return x, y, SmoothedTV(lam=0.3, eps=0.05)


@pytest.mark.parametrize("ndim", [2, 3])
def test_smoothed_tv_gradient_is_its_gradient_and_tends_to_tv(ndim):
    x = torch.randn(2, *([5] * ndim), dtype=F64, requires_grad=True)
    smoothed_tv(x, eps=0.1, ndim=ndim).sum().backward()
    torch.testing.assert_close(smoothed_tv_gradient(x.detach(), eps=0.1, ndim=ndim), x.grad)
    from recon.solvers import gradient2d, gradient3d

    grad = (gradient2d if ndim == 2 else gradient3d)(x.detach())
    tv = grad.square().sum(dim=-ndim - 1).sqrt().flatten(1).sum(1)
    gap = tv - smoothed_tv(x.detach(), eps=1e-3, ndim=ndim)
    assert (gap >= 0).all() and (gap <= 1e-3 * 5**ndim).all()


def test_objective_value_gradient_and_lipschitz_bound(ray, problem):
    _, y, f = problem
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, 16, 16, generator=gen, dtype=F64).requires_grad_(True)
    value, grad = f.value_and_gradient(x.detach(), y, ray)
    f(x, y, ray).sum().backward()
    torch.testing.assert_close(grad, x.grad)
    torch.testing.assert_close(value, f(x.detach(), y, ray))
    assert value.shape == (3, 1)
    lipschitz = f.lipschitz(ray)
    assert lipschitz == pytest.approx(ray.norm() ** 2 + 8 * 0.3 / 0.05)
    other = x.detach() + 0.1 * torch.randn(x.shape, generator=gen, dtype=F64)
    change = (f.gradient(other, y, ray) - grad).flatten(1).norm(dim=1)
    assert (change <= lipschitz * (other - x.detach()).flatten(1).norm(dim=1)).all()


def test_tv_lipschitz_is_the_bound_of_smoothed_tv_and_its_checks():
    assert tv_lipschitz(2.0, 3, 0.1, 0.05) == 2.0 + 12 * 0.1 / 0.05
    assert tv_lipschitz(2.0, 1, 0.0, 0.05) == 2.0  # no TV: any domain
    assert SmoothedTV(lam=0.0).lipschitz(IdentityOperator((5,))) == 1.0
    with pytest.raises(ValueError, match="TV needs a 2D or 3D domain"):
        tv_ndim(IdentityOperator((5,)))
    with pytest.raises(ValueError, match="has no norm"):
        SmoothedTV(lam=0.1).lipschitz(object())
    with pytest.raises(ValueError, match="eps"):
        smoothed_tv(torch.zeros(2, 2), eps=0.0)
    with pytest.raises(ValueError, match="ndim"):
        smoothed_tv_gradient(torch.zeros(2, 2), eps=0.1, ndim=1)
