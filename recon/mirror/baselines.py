r"""The Euclidean baselines of learned mirror descent on the same objective :math:`f`: gradient
descent and Nesterov's accelerated gradient, thin wrappers over the one loop of each in
:mod:`recon.solvers.gradient` that add the objective's gradient, its default step and the
objective values along the iterates.

Example
-------
>>> import torch
>>> from operators import IdentityOperator
>>> from recon.solvers import SmoothedTV
>>> x = nesterov_gradient(torch.ones(3), IdentityOperator(3), objective=SmoothedTV(lam=0.0),
...                       n_iter=1, step=1.0)
>>> x
tensor([1., 1., 1.])
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from operators import OperatorLike
from recon.base import check_measurements
from recon.checks import check_bool, check_n_iter
from recon.mirror.objective import Objective, default_step, value_and_gradient
from recon.solvers.common import initial_guess
from recon.solvers.gradient import fista, gradient_descent_loop, nonneg_projection

__all__ = ["gradient_descent", "nesterov_gradient"]

Callback = Callable[[int, torch.Tensor], None]


def _start(
    y: torch.Tensor,
    op: OperatorLike,
    objective: Objective,
    *,
    n_iter: int,
    step: float | None,
    x0: torch.Tensor | None,
    nonneg: bool,
) -> tuple[int, tuple[int, ...], float, bool, torch.Tensor]:
    """The checked ``n_iter``, batch shape, step and ``nonneg``, and the (projected) start."""
    n_iter = check_n_iter(n_iter)
    batch_shape = check_measurements(y, op)
    step = default_step(step, objective, op)
    nonneg = check_bool("nonneg", nonneg)
    x = initial_guess(x0, y, batch_shape, tuple(op.domain_shape))
    return n_iter, batch_shape, step, nonneg, nonneg_projection(x) if nonneg else x


def _stack(
    values: list[torch.Tensor], y: torch.Tensor, batch_shape: tuple[int, ...]
) -> torch.Tensor:
    """The objective values ``(n_iter, *batch)``; empty for no iterations."""
    if values:
        return torch.stack(values)
    return torch.zeros((0, *batch_shape), dtype=y.dtype, device=y.device)


def gradient_descent(
    y: torch.Tensor,
    op: OperatorLike,
    *,
    objective: Objective,
    n_iter: int,
    step: float | None = None,
    x0: torch.Tensor | None = None,
    callback: Callback | None = None,
    return_objective: bool = False,
    nonneg: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Gradient descent with a fixed step, :math:`x_{k+1} = x_k - t\,\nabla f(x_k)`.

    The Euclidean baseline of :class:`~recon.mirror.LearnedMirrorDescent` (mirror descent with
    :math:`\psi = \tfrac12\|x\|^2`), run by :func:`recon.solvers.gradient_descent_loop`.
    Converges for :math:`0 < t < 2/L`; a step so large that the iterates overflow raises
    :class:`~recon.solvers.DivergenceError`. With ``nonneg``, projected gradient descent for
    :math:`\min_{x \ge 0} f`: :math:`x_{k+1} = \max(x_k - t\,\nabla f(x_k), 0)` (and
    :math:`x_0` projected).

    Parameters
    ----------
    y : torch.Tensor
        Measurements ``(*batch, *op.range_shape)``.
    op : LinearOperator
        Forward operator.
    objective : callable
        ``f(x, y, op) -> values (*batch)``, e.g. :class:`~recon.solvers.SmoothedTV`; its
        gradient comes from its ``value_and_gradient`` method when it has one, else from
        autograd.
    n_iter : int
        Number of iterations.
    step : float, optional
        :math:`t`; by default :math:`1/L` from ``objective.lipschitz(op)``.
    x0 : torch.Tensor, optional
        Initial point ``(*batch, *op.domain_shape)``; zeros by default.
    callback : callable, optional
        ``callback(k, x)`` after iteration ``k``.
    return_objective : bool
        Also return :math:`f(x_k)` after every iteration.
    nonneg : bool
        Keep the iterates non-negative (the projection above).

    Returns
    -------
    torch.Tensor or (torch.Tensor, torch.Tensor)
        ``x``, and with ``return_objective`` the values ``(n_iter, *batch)``.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> from recon.solvers import SmoothedTV
    >>> x, values = gradient_descent(torch.ones(3), IdentityOperator(3),
    ...                              objective=SmoothedTV(lam=0.0), n_iter=2, step=0.5,
    ...                              return_objective=True)
    >>> x, values
    (tensor([0.7500, 0.7500, 0.7500]), tensor([0.3750, 0.0938]))
    """
    n_iter, batch_shape, step, nonneg, x = _start(
        y, op, objective, n_iter=n_iter, step=step, x0=x0, nonneg=nonneg
    )
    values: list[torch.Tensor] = []
    # with return_objective, f and ∇f come together at each new iterate: its gradient is kept
    # for the next step, so each iteration costs one evaluation either way
    kept: dict[str, torch.Tensor] = {}

    def gradient(point: torch.Tensor) -> torch.Tensor:
        if kept.get("point") is point:
            return kept["gradient"]
        return value_and_gradient(objective, point, y, op, create_graph=False)[1]

    def observe(k: int, point: torch.Tensor) -> None:
        if callback is not None:
            callback(k, point)
        if return_objective:
            value, grad = value_and_gradient(objective, point, y, op, create_graph=False)
            values.append(value.detach())
            kept.update(point=point, gradient=grad)

    x = gradient_descent_loop(
        x,
        gradient,
        step=step,
        n_iter=n_iter,
        prox=nonneg_projection if nonneg else None,
        callback=observe,
        name="gradient_descent",
    )
    if return_objective:
        return x, _stack(values, y, batch_shape)
    return x


def nesterov_gradient(
    y: torch.Tensor,
    op: OperatorLike,
    *,
    objective: Objective,
    n_iter: int,
    step: float | None = None,
    x0: torch.Tensor | None = None,
    callback: Callback | None = None,
    return_objective: bool = False,
    nonneg: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Nesterov's accelerated gradient: :func:`recon.solvers.fista` without a proximal step.

    .. math::

        x_{k+1} &= v_k - t\,\nabla f(v_k), \qquad
        \tau_{k+1} = \tfrac12\big(1 + \sqrt{1 + 4\tau_k^2}\big), \\
        v_{k+1} &= x_{k+1} + \frac{\tau_k - 1}{\tau_{k+1}}\,(x_{k+1} - x_k),

    from :math:`v_0 = x_0`, :math:`\tau_0 = 1`; :math:`f(x_k) - f^* = O(1/k^2)` for
    :math:`t \le 1/L`. Same parameters and returns as :func:`gradient_descent`; with
    ``return_objective`` the values are :math:`f(x_k)` (one more forward operator application per
    iteration). With ``nonneg`` the gradient step is projected,
    :math:`x_{k+1} = \max(v_k - t\,\nabla f(v_k), 0)`: FISTA for :math:`\min_{x \ge 0} f`.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> from recon.solvers import SmoothedTV
    >>> nesterov_gradient(torch.ones(2), IdentityOperator(2), objective=SmoothedTV(lam=0.0),
    ...                   n_iter=2, step=0.5, return_objective=True)[1]
    tensor([0.2500, 0.0625])
    """
    n_iter, batch_shape, step, nonneg, x = _start(
        y, op, objective, n_iter=n_iter, step=step, x0=x0, nonneg=nonneg
    )
    values: list[torch.Tensor] = []

    def gradient(point: torch.Tensor) -> torch.Tensor:
        return value_and_gradient(objective, point, y, op, create_graph=False)[1]

    def observe(k: int, point: torch.Tensor) -> None:
        if callback is not None:
            callback(k, point)
        if return_objective:
            values.append(objective(point, y, op).detach())

    x = fista(
        x,
        gradient,
        step=step,
        n_iter=n_iter,
        prox=nonneg_projection if nonneg else None,
        callback=observe,
        name="nesterov_gradient",
    )
    if return_objective:
        return x, _stack(values, y, batch_shape)
    return x
