"""Small tensor helpers of the solvers: per-element norms, broadcasting, safe division, the
initial iterate and the operator norm. Every batch element is its own problem, so reductions run
over the trailing (image or data) dimensions only.

Example
-------
>>> import torch
>>> sq_norm(torch.ones(2, 3, 4), 2)
tensor([12., 12.])
"""

from __future__ import annotations

import torch

from operators import LinearOperator, OperatorLike

__all__ = [
    "DivergenceError",
    "check_finite_iterate",
    "expand",
    "initial_guess",
    "operator_norm",
    "safe_div",
    "sq_norm",
]


class DivergenceError(FloatingPointError):
    """An iterative solver produced NaN/infinite values or its iterates blew up.

    Every solver of :mod:`recon` raises it instead of returning a NaN image; the message names
    the solver, the iteration and what to change (usually the step size).

    Example
    -------
    >>> issubclass(DivergenceError, FloatingPointError)
    True
    """


def check_finite_iterate(
    name: str, k: int, x: torch.Tensor, hint: str = "reduce the step size"
) -> None:
    """Raise :class:`DivergenceError` if iterate ``k`` (counted from 0) of solver ``name`` holds
    NaN or infinite values.

    Example
    -------
    >>> check_finite_iterate("landweber", 4, torch.tensor([1.0, float("inf")]))
    Traceback (most recent call last):
    ...
    recon.solvers.common.DivergenceError: landweber diverged: iterate 5 contains NaN or ...
    """
    if not bool(torch.isfinite(x).all()):
        raise DivergenceError(
            f"{name} diverged: iterate {k + 1} contains NaN or infinite values; {hint}"
        )


def sq_norm(v: torch.Tensor, n_trailing: int) -> torch.Tensor:
    """Squared norm over the ``n_trailing`` last dimensions, of shape ``v.shape[:-n_trailing]``."""
    if n_trailing == 0:
        return v * v
    return (v * v).sum(dim=tuple(range(-n_trailing, 0)))


def expand(scalars: torch.Tensor, n_trailing: int) -> torch.Tensor:
    """Append ``n_trailing`` size-1 dimensions so per-element scalars broadcast over an image."""
    return scalars.reshape(*scalars.shape, *([1] * n_trailing))


def safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den > 0``, else 0 (no NaN in values or gradients)."""
    positive = den > 0
    return torch.where(positive, num / torch.where(positive, den, torch.ones_like(den)), 0.0)


def initial_guess(
    x0: torch.Tensor | None,
    y: torch.Tensor,
    batch_shape: tuple[int, ...],
    domain_shape: tuple[int, ...],
) -> torch.Tensor:
    """``x0`` (validated, on ``y``'s device and dtype) or zeros of shape ``(*batch, *domain)``."""
    shape = (*batch_shape, *domain_shape)
    if x0 is None:
        return torch.zeros(shape, dtype=y.dtype, device=y.device)
    if not isinstance(x0, torch.Tensor) or tuple(x0.shape) != shape:
        got = tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__
        raise ValueError(f"x0 must have shape (*batch, *op.domain_shape) = {shape}, got {got}")
    if not torch.isfinite(x0).all():
        raise ValueError("x0 contains NaN or infinite values")
    return x0.to(dtype=y.dtype, device=y.device)


def operator_norm(
    op: OperatorLike,
    *,
    device: torch.device | str | None = None,
    hint: str = "pass the step size(s) explicitly",
) -> float:
    """``‖A‖`` from ``op.norm()`` (a :class:`~operators.LinearOperator` caches its power
    iteration, run on ``device`` when given, so GPU-only operators work too).

    Raises ``ValueError`` when ``op`` has no ``norm()`` (the message ends with ``hint``: what to
    do instead) or its norm is not positive.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> round(operator_norm(IdentityOperator((3,))), 6)
    1.0
    """
    norm = getattr(op, "norm", None)
    if not callable(norm):
        raise ValueError(f"{type(op).__name__} has no norm() method: {hint}")
    value = float(norm(device=device) if isinstance(op, LinearOperator) and device else norm())
    if not value > 0:
        raise ValueError(f"the operator's norm is {value}; {hint}")
    return value
