"""Tests of recon.correction.descent: TV descent with linear and learned operators."""

from __future__ import annotations

import pytest
import torch

from models.unet import UNet
from operators import MatrixOperator, Parallel2D, RayTransform
from operators.learned import LearnedOperator
from recon.correction import TVDescent, data_gradient, tv_descent
from recon.solvers import DivergenceError, SmoothedTV, tv_pdhg


def _small_net() -> UNet:
    torch.manual_seed(0)
    return UNet(channels=4, depth=1, residual=True, norm=None).double()


@pytest.fixture(scope="module")
def ct():
    return RayTransform(Parallel2D((16, 16), n_angles=12), backend="matrix")


def test_tv_descent_solves_least_squares_without_tv():
    torch.manual_seed(0)
    matrix = torch.randn(12, 6, dtype=torch.float64)
    op = MatrixOperator(matrix)
    truth = torch.randn(3, 6, dtype=torch.float64)
    y = op(truth)
    x = tv_descent(y, op, lam=0.0, n_iter=3000, nonneg=False)
    assert torch.allclose(x, truth, atol=1e-6)


def test_tv_descent_decreases_the_objective_and_matches_pdhg(ct):
    torch.manual_seed(1)
    truth = torch.zeros(2, 16, 16, dtype=torch.float64)
    truth[:, 4:12, 5:11] = 1.0
    y = ct(truth) + 0.05 * torch.randn(2, *ct.range_shape, dtype=torch.float64)
    objective = SmoothedTV(lam=0.05, eps=1e-3)
    values = []
    x = tv_descent(
        y, ct, lam=0.05, eps=1e-3, n_iter=400, nonneg=False,
        callback=lambda k, xk: values.append(objective(xk, y, ct).sum().item()),
    )  # fmt: skip
    assert values[-1] < values[0]
    assert values[-1] <= min(values) + 1e-6 * abs(min(values))
    reference = tv_pdhg(y, ct, lam=0.05, n_iter=2000)
    assert torch.linalg.vector_norm(x - reference) / torch.linalg.vector_norm(reference) < 0.05


def test_tv_descent_nonneg_and_errors(ct):
    y = ct(torch.rand(1, 16, 16, dtype=torch.float64))
    x = TVDescent(lam=0.01, n_iter=20)(y, ct)
    assert x.shape == (1, 16, 16) and x.min() >= 0
    with pytest.raises(ValueError, match="range_shape"):
        tv_descent(torch.zeros(1, 3, 3), ct, lam=0.1)
    with pytest.raises(ValueError, match="NaN"):
        tv_descent(torch.full_like(y, float("nan")), ct, lam=0.1)
    with pytest.raises(ValueError, match="lam"):
        TVDescent(lam=-1.0)
    with pytest.raises(FloatingPointError, match="diverged"):
        tv_descent(1e300 * y, ct, lam=0.0, n_iter=50, lipschitz=1e-3, nonneg=False)


def test_data_gradient_of_a_learned_operator_is_its_autograd_gradient(ct):
    model = LearnedOperator(ct, image_net=_small_net(), data_net=_small_net())
    x = torch.rand(2, 16, 16, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, *ct.range_shape, dtype=torch.float64)
    (0.5 * (model(x) - y).pow(2).sum()).backward()
    assert torch.allclose(data_gradient(model, x.detach(), y), x.grad, atol=1e-10)


@pytest.mark.parametrize("adjoint", ["linearised", "learned"])
def test_tv_descent_with_a_learned_operator_runs_without_a_graph(ct, adjoint):
    """Under no_grad (as the benchmark times it) TV descent with A_q gives what it gives with
    autograd enabled, and builds no graph through the nets' parameters."""
    nets = {"image_net": _small_net(), "data_net": _small_net()}
    if adjoint == "learned":
        nets |= {"adjoint_image_net": _small_net(), "adjoint_data_net": _small_net()}
    model = LearnedOperator(ct, adjoint=adjoint, **nets)
    y = ct(torch.rand(2, 16, 16, dtype=torch.float64))
    kwargs = {"lam": 0.01, "n_iter": 5, "lipschitz": 4 * float(ct.norm()) ** 2}
    with torch.no_grad():
        fast = tv_descent(y, model, **kwargs)
    with torch.enable_grad():
        slow = tv_descent(y, model, **kwargs)
    assert not fast.requires_grad and fast.grad_fn is None
    torch.testing.assert_close(fast, slow.detach(), rtol=1e-10, atol=1e-12)


def test_tv_descent_is_fista_on_the_smoothed_tv_objective(ct):
    """With a linear operator, tv_descent is nesterov_gradient on SmoothedTV with x ≥ 0: the one
    FISTA of recon.solvers, to the last bit."""
    from recon.mirror import nesterov_gradient

    y = ct(torch.rand(2, 16, 16, dtype=torch.float64))
    f = SmoothedTV(lam=0.02, eps=0.05)
    ours = tv_descent(y, ct, lam=0.02, eps=0.05, n_iter=15)
    theirs = nesterov_gradient(y, ct, objective=f, n_iter=15, nonneg=True)
    torch.testing.assert_close(ours, theirs, rtol=1e-13, atol=1e-13)
    with pytest.raises(DivergenceError, match="tv_descent diverged"):
        tv_descent(1e300 * y, ct, lam=0.0, n_iter=50, lipschitz=1e-3, nonneg=False)
    with pytest.raises(ValueError, match="x0 must have shape"):
        tv_descent(y, ct, lam=0.0, x0=torch.zeros(3, 16, 16))
    with pytest.raises(ValueError, match="TV needs a 2D or 3D domain"):
        tv_descent(torch.zeros(1, 5), MatrixOperator(torch.eye(5)), lam=0.1)
