r"""The objective :math:`f(x, y, A)` of mirror descent and its baselines: values, gradients and
the default step.

An objective is any callable ``f(x, y, op) -> values (*batch)``. When it has a
``value_and_gradient(x, y, op)`` method (e.g. :class:`~recon.solvers.SmoothedTV`) that gives the
gradient; otherwise automatic differentiation does. A ``lipschitz(op)`` method, when present,
gives the bound :math:`L` on the Lipschitz constant of :math:`\nabla f` that sets the default
step :math:`1/L`.

Example
-------
>>> import torch
>>> from operators import IdentityOperator
>>> def f(x, y, op):
...     return 0.5 * (op(x) - y).square().sum(-1)
>>> value, grad = value_and_gradient(f, torch.zeros(2), torch.ones(2), IdentityOperator(2),
...                                  create_graph=False)
>>> value, grad
(tensor(1.), tensor([-1., -1.]))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from operators import OperatorLike
from recon.checks import check_positive

__all__ = ["Objective", "default_step", "objective_lipschitz", "value_and_gradient"]

#: ``f(x, y, op) -> values (*batch)``.
Objective = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]


def value_and_gradient(
    objective: Objective,
    x: torch.Tensor,
    y: torch.Tensor,
    op: OperatorLike,
    *,
    create_graph: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f(x), ∇f(x))``: the objective's own ``value_and_gradient`` method, or automatic
    differentiation (with ``create_graph``, differentiable again, for training through it).

    Example
    -------
    >>> from operators import IdentityOperator
    >>> from recon.solvers import SmoothedTV
    >>> value_and_gradient(SmoothedTV(lam=0.0), torch.ones(2), torch.zeros(2),
    ...                    IdentityOperator(2), create_graph=False)[1]
    tensor([1., 1.])
    """
    method = getattr(objective, "value_and_gradient", None)
    if callable(method):
        return method(x, y, op)
    with torch.enable_grad():
        point = x if x.requires_grad else x.detach().requires_grad_(True)
        value = objective(point, y, op)
        (grad,) = torch.autograd.grad(value.sum(), point, create_graph=create_graph)
    return (value if create_graph else value.detach()), grad


def objective_lipschitz(objective: Objective, op: OperatorLike) -> float | None:
    """The objective's ``lipschitz(op)`` bound, or ``None`` when it has no such method.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> from recon.solvers import SmoothedTV
    >>> objective_lipschitz(SmoothedTV(lam=0.0), IdentityOperator(2))
    1.0
    >>> objective_lipschitz(lambda x, y, op: x.sum(), IdentityOperator(2)) is None
    True
    """
    method = getattr(objective, "lipschitz", None)
    return float(method(op)) if callable(method) else None


def default_step(step: float | None, objective: Objective, op: OperatorLike) -> float:
    """``step`` (checked), or :math:`1/L` from ``objective.lipschitz(op)``; a ``ValueError``
    when neither is available.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> from recon.solvers import SmoothedTV
    >>> default_step(None, SmoothedTV(lam=0.0), IdentityOperator(2))
    1.0
    """
    if step is not None:
        return check_positive("step", step)
    lipschitz = objective_lipschitz(objective, op)
    if lipschitz is None:
        raise ValueError("the objective has no lipschitz(op) method: give step explicitly")
    return 1.0 / lipschitz
