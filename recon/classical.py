"""Classical reconstruction algorithms as functions with a visible loop.

Every solver takes measurements ``y`` of shape ``(*batch, *op.range_shape)`` and a linear operator
``op`` (``op(x)``, ``op.T(y)``, ``op.domain_shape``, ``op.range_shape``), treats each batch element
as an independent problem, and reports progress through an optional ``callback(k, x)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

__all__ = ["cgls"]


class _LinearOperatorLike(Protocol):
    """What the solvers use of an operator (``operators.LinearOperator`` provides it)."""

    domain_shape: tuple[int, ...]
    range_shape: tuple[int, ...]

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    @property
    def T(self) -> Callable[[torch.Tensor], torch.Tensor]: ...


def _sq_norm(v: torch.Tensor, n_trailing: int) -> torch.Tensor:
    """Squared norm over the ``n_trailing`` last dimensions, of shape ``v.shape[:-n_trailing]``."""
    if n_trailing == 0:
        return v * v
    return (v * v).sum(dim=tuple(range(-n_trailing, 0)))


def _expand(scalars: torch.Tensor, n_trailing: int) -> torch.Tensor:
    """Append ``n_trailing`` size-1 dimensions so per-element scalars broadcast over an image."""
    return scalars.reshape(*scalars.shape, *([1] * n_trailing))


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den > 0``, else 0 (no NaN in values or gradients)."""
    positive = den > 0
    return torch.where(positive, num / torch.where(positive, den, torch.ones_like(den)), 0.0)


def _check_measurements(y: torch.Tensor, op: _LinearOperatorLike) -> tuple[int, ...]:
    """Validate ``y`` against ``op`` and return its batch shape."""
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"y must be a torch.Tensor, got {type(y).__name__}")
    range_shape = tuple(op.range_shape)
    n_range = len(range_shape)
    if y.ndim < n_range or tuple(y.shape[y.ndim - n_range :]) != range_shape:
        raise ValueError(
            f"y must have shape (*batch, *op.range_shape) = (*batch, {range_shape}), "
            f"got {tuple(y.shape)}"
        )
    if not y.is_floating_point():
        raise ValueError(f"y must be a floating-point tensor, got {y.dtype}")
    if not torch.isfinite(y).all():
        raise ValueError("y contains NaN or infinite values")
    return tuple(y.shape[: y.ndim - n_range])


def cgls(
    y: torch.Tensor,
    op: _LinearOperatorLike,
    *,
    n_iter: int = 20,
    x0: torch.Tensor | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    r"""Conjugate gradient on the normal equations (CGLS) for :math:`\min_x \|A x - y\|_2^2`.

    This is the conjugate gradient method applied to :math:`A^T A x = A^T y` without forming
    :math:`A^T A` (Björck 1996, Alg. 7.4.1). Starting from :math:`x_0`, with
    :math:`r_0 = y - A x_0`, :math:`s_0 = p_0 = A^T r_0`, :math:`\gamma_0 = \|s_0\|^2`, each
    iteration does

    .. math::

        q_k = A p_k,\quad \alpha_k = \gamma_k / \|q_k\|^2,\quad
        x_{k+1} = x_k + \alpha_k p_k,\quad r_{k+1} = r_k - \alpha_k q_k,

        s_{k+1} = A^T r_{k+1},\quad \gamma_{k+1} = \|s_{k+1}\|^2,\quad
        p_{k+1} = s_{k+1} + (\gamma_{k+1} / \gamma_k)\, p_k.

    One iteration costs one forward and one adjoint application. Each batch element is its own
    problem with its own step sizes: inner products run over the trailing ``op.range_shape`` or
    ``op.domain_shape`` dimensions only. A step whose denominator is zero (the residual of that
    element is already zero or orthogonal to the range) is taken as zero, so a converged element
    stays put instead of turning into NaN. Early stopping acts as regularisation; ``n_iter`` is
    the regularisation parameter.

    Parameters
    ----------
    y : torch.Tensor
        Measurements of shape ``(*batch, *op.range_shape)``, floating point and finite.
    op : LinearOperator
        Linear operator with ``op(x)``, adjoint ``op.T(y)``, ``op.domain_shape`` and
        ``op.range_shape``.
    n_iter : int, optional
        Number of iterations (default 20); 0 returns a copy of the initial guess.
    x0 : torch.Tensor, optional
        Initial guess of shape ``(*batch, *op.domain_shape)``; zeros by default.
    callback : callable, optional
        Called as ``callback(k, x)`` after iteration ``k = 0, ..., n_iter - 1`` with the current
        iterate ``x``.

    Returns
    -------
    torch.Tensor
        The iterate after ``n_iter`` iterations, of shape ``(*batch, *op.domain_shape)`` and with
        the dtype and device of ``y``.

    Raises
    ------
    ValueError
        If ``y`` does not end in ``op.range_shape``, is not floating point or holds NaN or
        infinite values; if ``x0`` has the wrong shape; if ``n_iter`` is not a non-negative int.

    Examples
    --------
    >>> import operators
    >>> from data_tools.phantoms import shepp_logan
    >>> op = operators.RayTransform(
    ...     operators.Parallel2D(image_shape=(128, 128), n_angles=60, n_detectors=183),
    ...     backend="auto",
    ... )
    >>> x_true = shepp_logan((128, 128))
    >>> x = cgls(op(x_true), op, n_iter=20)
    >>> x.shape
    torch.Size([128, 128])
    """
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 0:
        raise ValueError(f"n_iter must be a non-negative int, got {n_iter!r}")
    batch_shape = _check_measurements(y, op)
    domain_shape = tuple(op.domain_shape)
    n_domain, n_range = len(domain_shape), len(tuple(op.range_shape))

    if x0 is None:
        x = torch.zeros((*batch_shape, *domain_shape), dtype=y.dtype, device=y.device)
        r = y
    else:
        if not isinstance(x0, torch.Tensor) or tuple(x0.shape) != (*batch_shape, *domain_shape):
            got = tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__
            raise ValueError(
                f"x0 must have shape (*batch, *op.domain_shape) = {(*batch_shape, *domain_shape)}, "
                f"got {got}"
            )
        x = x0.to(dtype=y.dtype, device=y.device)
        r = y - op(x)
    s = op.T(r)
    p = s
    gamma = _sq_norm(s, n_domain)

    for k in range(n_iter):
        q = op(p)
        alpha = _safe_div(gamma, _sq_norm(q, n_range))  # one step size per batch element
        x = x + _expand(alpha, n_domain) * p
        r = r - _expand(alpha, n_range) * q
        s = op.T(r)
        gamma_next = _sq_norm(s, n_domain)
        beta = _safe_div(gamma_next, gamma)
        p = s + _expand(beta, n_domain) * p
        gamma = gamma_next
        if callback is not None:
            callback(k, x)
    return x.clone() if n_iter == 0 else x
