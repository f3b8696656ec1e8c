"""Tests of recon.mirror.baselines: gradient descent and Nesterov's method on the objective of
mirror descent, and their divergence on a too-large step."""

from __future__ import annotations

import pytest
import torch

from recon.classical import fbp
from recon.mirror import gradient_descent, nesterov_gradient
from recon.solvers import DivergenceError, SmoothedTV


def test_baselines_decrease_the_objective_and_nesterov_is_faster(ray, problem):
    _, y, f = problem
    x0 = fbp(y, ray, filter="hann")
    _, gd = gradient_descent(y, ray, objective=f, n_iter=40, x0=x0, return_objective=True)
    _, nag = nesterov_gradient(y, ray, objective=f, n_iter=40, x0=x0, return_objective=True)
    assert gd.shape == nag.shape == (40, 3, 1)
    assert (gd[1:] <= gd[:-1] + 1e-12).all()  # step 1/L: monotone
    assert (f(x0, y, ray) > gd[0]).all()
    assert (nag[-1] < gd[-1]).all()

    # a generic differentiable objective (gradient by autograd) gives the same iterates
    def data_fit(x, y, op):
        return 0.5 * (op(x) - y).square().sum(dim=(-2, -1))

    data_only = SmoothedTV(lam=0.0)
    step = 1 / data_only.lipschitz(ray)
    a = gradient_descent(y, ray, objective=data_fit, n_iter=5, step=step)
    b = gradient_descent(y, ray, objective=data_only, n_iter=5)
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="lipschitz"):
        gradient_descent(y, ray, objective=data_fit, n_iter=5)


@pytest.mark.parametrize("method", [gradient_descent, nesterov_gradient])
def test_a_too_large_step_raises_instead_of_returning_nan(ray, problem, method):
    """Hardening issue 31, item 9: the iterates of a step far past 2/L overflow; the baselines
    raise DivergenceError (naming the method) instead of returning NaN images."""
    _, y, f = problem
    step = 100 / f.lipschitz(ray)
    with pytest.raises(DivergenceError, match=f"{method.__name__} diverged: iterate"):
        method(y.float(), ray, objective=f, n_iter=200, step=step)
    with pytest.raises(DivergenceError, match="diverged"):
        method(y.float(), ray, objective=f, n_iter=200, step=step, return_objective=True)
    x = method(y, ray, objective=f, n_iter=3, step=step)  # overflow not yet reached: no error
    assert torch.isfinite(x).all()


def test_return_objective_keeps_the_iterates_and_evaluates_once_per_iterate(ray, problem):
    # f and ∇f together at x_1 … x_n: their gradients serve the next steps (plus the one at x_0)
    _, y, f = problem
    calls = []

    class Counted(SmoothedTV):
        def value_and_gradient(self, x, y, op):
            calls.append(1)
            return super().value_and_gradient(x, y, op)

    counted = Counted(lam=f.lam, eps=f.eps)
    plain = gradient_descent(y, ray, objective=counted, n_iter=5)
    assert len(calls) == 5
    calls.clear()
    x, values = gradient_descent(y, ray, objective=counted, n_iter=5, return_objective=True)
    assert len(calls) == 6 and torch.equal(x, plain) and values.shape == (5, 3, 1)
    torch.testing.assert_close(values[-1], f(x, y, ray))
    empty = gradient_descent(y, ray, objective=f, n_iter=0, return_objective=True)[1]
    assert empty.shape == (0, 3, 1)
