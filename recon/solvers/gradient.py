r"""First-order methods on a smooth term plus an optional proximal step: (projected) gradient
descent and FISTA, written once for every family.

Both take the gradient as a function of the iterate, so the same loop serves smoothed-TV least
squares with a linear or a learned operator (:mod:`recon.correction`), the Euclidean baselines of
mirror descent (:mod:`recon.mirror`) and the sparse-deviation step of the generative
regularisers (:mod:`recon.generative`). ``prox`` is the proximal map of the non-smooth term at the
step size (a projection such as ``x.clamp_min(0)``, or a soft threshold). Every iterate is checked:
a NaN or infinite value raises :class:`~recon.solvers.common.DivergenceError`.

Example
-------
>>> import torch
>>> b = torch.tensor([3.0, -1.0])
>>> fista(torch.zeros(2), lambda x: x - b, step=1.0, n_iter=3, prox=soft_threshold(0.5))
tensor([ 2.5000, -0.5000])
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from recon.checks import check_n_iter, check_positive
from recon.solvers.common import check_finite_iterate

__all__ = ["Prox", "fista", "gradient_descent_loop", "nonneg_projection", "soft_threshold"]

#: A proximal map ``prox(v) -> x`` at the method's step size.
Prox = Callable[[torch.Tensor], torch.Tensor]
Gradient = Callable[[torch.Tensor], torch.Tensor]
Callback = Callable[[int, torch.Tensor], None]

_HINT = "lower the step size (a larger Lipschitz constant)"


def nonneg_projection(x: torch.Tensor) -> torch.Tensor:
    """The projection onto ``{x >= 0}``: the prox of its indicator.

    Example
    -------
    >>> nonneg_projection(torch.tensor([-1.0, 2.0]))
    tensor([0., 2.])
    """
    return x.clamp_min(0)


def soft_threshold(threshold: float) -> Prox:
    r"""The prox of :math:`t\|\cdot\|_1` with ``threshold`` :math:`t`:
    :math:`\operatorname{sign}(v)\max(|v| - t, 0)`.

    Example
    -------
    >>> soft_threshold(1.0)(torch.tensor([-3.0, 0.5, 2.0]))
    tensor([-2.,  0.,  1.])
    """
    threshold = check_positive("threshold", threshold, allow_zero=True)

    def prox(v: torch.Tensor) -> torch.Tensor:
        return torch.sign(v) * (v.abs() - threshold).clamp_min(0.0)

    return prox


def gradient_descent_loop(
    x0: torch.Tensor,
    gradient: Gradient,
    *,
    step: float,
    n_iter: int,
    prox: Prox | None = None,
    callback: Callback | None = None,
    name: str = "gradient descent",
) -> torch.Tensor:
    r"""(Proximal) gradient descent with a fixed step: :math:`x_{k+1} = \mathrm{prox}(x_k -
    t\,\nabla f(x_k))`.

    Converges for :math:`0 < t < 2/L` (``L`` the Lipschitz constant of :math:`\nabla f`).
    ``callback(k, x)`` runs after iteration ``k``; ``name`` appears in the divergence message.

    Example
    -------
    >>> gradient_descent_loop(torch.ones(2), lambda x: x, step=0.5, n_iter=2)
    tensor([0.2500, 0.2500])
    """
    step = check_positive("step", step)
    n_iter = check_n_iter(n_iter)
    x = x0
    for k in range(n_iter):
        x = x - step * gradient(x)
        if prox is not None:
            x = prox(x)
        check_finite_iterate(name, k, x, _HINT)
        if callback is not None:
            callback(k, x)
    return x.clone() if n_iter == 0 else x


def fista(
    x0: torch.Tensor,
    gradient: Gradient,
    *,
    step: float,
    n_iter: int,
    prox: Prox | None = None,
    callback: Callback | None = None,
    name: str = "FISTA",
) -> torch.Tensor:
    r"""FISTA (Beck & Teboulle 2009), Nesterov's momentum around a proximal gradient step.

    .. math::

        x_{k+1} &= \mathrm{prox}\big(v_k - t\,\nabla f(v_k)\big), \qquad
        \tau_{k+1} = \tfrac12\big(1 + \sqrt{1 + 4\tau_k^2}\big), \\
        v_{k+1} &= x_{k+1} + \frac{\tau_k - 1}{\tau_{k+1}}\,(x_{k+1} - x_k),

    from :math:`v_0 = x_0`, :math:`\tau_0 = 1`; for :math:`t \le 1/L` the objective gap is
    :math:`O(1/k^2)`. Without ``prox`` it is Nesterov's accelerated gradient.
    ``callback(k, x_{k+1})`` runs after iteration ``k``.

    Example
    -------
    >>> fista(torch.ones(2), lambda x: x, step=1.0, n_iter=1)
    tensor([0., 0.])
    """
    step = check_positive("step", step)
    n_iter = check_n_iter(n_iter)
    x, v, tau = x0, x0, 1.0
    for k in range(n_iter):
        x_new = v - step * gradient(v)
        if prox is not None:
            x_new = prox(x_new)
        tau_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * tau * tau))
        v = x_new + ((tau - 1.0) / tau_new) * (x_new - x)
        x, tau = x_new, tau_new
        check_finite_iterate(name, k, x, _HINT)
        if callback is not None:
            callback(k, x)
    return x.clone() if n_iter == 0 else x
