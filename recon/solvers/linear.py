r"""Iterative solvers of linear least squares: Landweber, SIRT, CGLS, and conjugate gradients on
the regularised normal equations :math:`(A^TA + sI)x = b` (:func:`cg_normal`).

Every solver takes measurements ``y`` of shape ``(*batch, *op.range_shape)`` and a linear operator
``op`` (``op(x)``, ``op.T(y)``, ``op.domain_shape``, ``op.range_shape``), treats each batch element
as an independent problem, applies ``op`` to the whole batch at once and reports progress through
an optional ``callback(k, x)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from operators import OperatorLike
from recon.base import check_measurements
from recon.checks import check_n_iter, check_positive
from recon.solvers.common import (
    check_finite_iterate,
    expand,
    initial_guess,
    operator_norm,
    safe_div,
    sq_norm,
)

__all__ = ["cg_normal", "cgls", "landweber", "sirt"]


def landweber(
    y: torch.Tensor,
    op: OperatorLike,
    *,
    n_iter: int,
    step: float | None = None,
    x0: torch.Tensor | None = None,
    nonneg: bool = False,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    r"""Landweber iteration (gradient descent on :math:`\tfrac12\|Ax - y\|^2`).

    .. math:: x_{k+1} = x_k + ω A^T (y - A x_k)\quad(\text{then } \max(x_{k+1}, 0)
              \text{ if nonneg}),

    with :math:`ω = 1/\|A\|^2` by default (``op.norm()``, power iteration, cached). It converges
    for :math:`0 < ω < 2/\|A\|^2` to the least-squares solution nearest to :math:`x_0` (to the
    non-negative least-squares solution with ``nonneg``); early stopping regularises.

    Parameters
    ----------
    y : torch.Tensor
        Measurements ``(*batch, *op.range_shape)``.
    op : LinearOperator
        The forward operator.
    n_iter : int
        Number of iterations.
    step : float, optional
        Step size ω; default ``1 / op.norm()**2``.
    x0 : torch.Tensor, optional
        Initial guess ``(*batch, *op.domain_shape)``; zeros by default.
    nonneg : bool
        Project onto ``x ≥ 0`` after each step.
    callback : callable, optional
        ``callback(k, x)`` after iteration ``k``.

    Returns
    -------
    torch.Tensor
        ``(*batch, *op.domain_shape)``.

    Raises
    ------
    ValueError
        For misshapen or non-finite ``y`` or ``x0``, a negative ``n_iter``, a non-positive step.
    DivergenceError
        If an iterate turns NaN or infinite (a step above ``2 / ||A||²``).

    Example
    -------
    >>> import operators
    >>> op = operators.RayTransform(operators.Parallel2D((32, 32), n_angles=30), backend="astra")
    >>> x = landweber(op(torch.ones(32, 32)), op, n_iter=10, nonneg=True)
    >>> x.shape
    torch.Size([32, 32])
    """
    n_iter = check_n_iter(n_iter)
    batch_shape = check_measurements(y, op)
    step = operator_norm(op) ** -2 if step is None else check_positive("step", step)
    x = initial_guess(x0, y, batch_shape, tuple(op.domain_shape))
    for k in range(n_iter):
        x = x + step * op.T(y - op(x))
        if nonneg:
            x = x.clamp_min(0)
        check_finite_iterate(
            "landweber", k, x, "use a step below 2 / ||A||^2 (default 1 / ||A||^2)"
        )
        if callback is not None:
            callback(k, x)
    return x.clone() if n_iter == 0 else x


def sirt(
    y: torch.Tensor,
    op: OperatorLike,
    *,
    n_iter: int,
    x0: torch.Tensor | None = None,
    nonneg: bool = False,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    r"""Simultaneous iterative reconstruction technique (SIRT).

    .. math:: x_{k+1} = x_k + C A^T R (y - A x_k),\qquad
              R = \operatorname{diag}(1 / A\mathbf 1),\quad
              C = \operatorname{diag}(1 / A^T\mathbf 1)

    (row and column sums of a non-negative ``A``; rays or pixels whose sum is zero get weight 0).
    Since :math:`\|C^{1/2} A^T R A C^{1/2}\| \le 1`, it converges without a step size to the
    minimiser of :math:`\|Ax - y\|_R^2` (the ``R``-weighted least-squares solution) nearest to
    :math:`x_0` in the :math:`C^{-1}` norm; with ``nonneg``, each iterate is clipped at 0.

    Parameters
    ----------
    y : torch.Tensor
        Measurements ``(*batch, *op.range_shape)``.
    op : LinearOperator
        A forward operator with non-negative entries (a ray transform).
    n_iter : int
        Number of iterations.
    x0 : torch.Tensor, optional
        Initial guess; zeros by default.
    nonneg : bool
        Project onto ``x ≥ 0`` after each step.
    callback : callable, optional
        ``callback(k, x)`` after iteration ``k``.

    Returns
    -------
    torch.Tensor
        ``(*batch, *op.domain_shape)``.

    Raises
    ------
    ValueError
        For misshapen or non-finite ``y`` or ``x0``, or a negative ``n_iter``.

    Example
    -------
    >>> import operators
    >>> op = operators.RayTransform(operators.Parallel2D((32, 32), n_angles=30), backend="astra")
    >>> sirt(op(torch.ones(32, 32)), op, n_iter=10).shape
    torch.Size([32, 32])
    """
    n_iter = check_n_iter(n_iter)
    batch_shape = check_measurements(y, op)
    x = initial_guess(x0, y, batch_shape, tuple(op.domain_shape))
    kw = {"dtype": y.dtype, "device": y.device}
    ones_x = torch.ones(tuple(op.domain_shape), **kw)
    ones_y = torch.ones(tuple(op.range_shape), **kw)
    row_weight = safe_div(torch.ones_like(ones_y), op(ones_x))  # R = 1 / (A 1)
    col_weight = safe_div(torch.ones_like(ones_x), op.T(ones_y))  # C = 1 / (Aᵀ 1)
    for k in range(n_iter):
        x = x + col_weight * op.T(row_weight * (y - op(x)))
        if nonneg:
            x = x.clamp_min(0)
        check_finite_iterate("sirt", k, x, "check that the operator has non-negative entries")
        if callback is not None:
            callback(k, x)
    return x.clone() if n_iter == 0 else x


def cgls(
    y: torch.Tensor,
    op: OperatorLike,
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
    n_iter = check_n_iter(n_iter)
    batch_shape = check_measurements(y, op)
    domain_shape = tuple(op.domain_shape)
    n_domain, n_range = len(domain_shape), len(tuple(op.range_shape))
    x = initial_guess(x0, y, batch_shape, domain_shape)
    r = y if x0 is None else y - op(x)
    s = op.T(r)
    p = s
    gamma = sq_norm(s, n_domain)

    for k in range(n_iter):
        q = op(p)
        alpha = safe_div(gamma, sq_norm(q, n_range))  # one step size per batch element
        x = x + expand(alpha, n_domain) * p
        r = r - expand(alpha, n_range) * q
        s = op.T(r)
        gamma_next = sq_norm(s, n_domain)
        beta = safe_div(gamma_next, gamma)
        p = s + expand(beta, n_domain) * p
        gamma = gamma_next
        check_finite_iterate("cgls", k, x, "check the operator and its adjoint (check_adjoint)")
        if callback is not None:
            callback(k, x)
    return x.clone() if n_iter == 0 else x


def cg_normal(
    op: OperatorLike,
    rhs: torch.Tensor,
    x0: torch.Tensor,
    *,
    shift: float,
    n_iter: int,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    r"""Conjugate gradients on the regularised normal equations :math:`(A^TA + sI)\,x = b`.

    For :math:`s > 0` the matrix is symmetric positive definite, and this is the minimiser of
    :math:`\|Ax\|^2 + s\|x\|^2 - 2\langle b, x\rangle`; with :math:`b = A^Ty + s\,g` that is
    Tikhonov regularisation towards ``g``, :math:`\min_x \|Ax - y\|^2 + s\|x - g\|^2` (the
    ``x``-step of :func:`recon.generative.soft_generative`). :func:`cgls` is the unregularised
    problem (:math:`s = 0`) written without forming :math:`A^TA`. From :math:`x_0`, with
    :math:`r_0 = p_0 = b - (A^TA + sI)x_0`, :math:`\gamma_0 = \|r_0\|^2`, each iteration does

    .. math::

        q_k = (A^TA + sI)\,p_k,\quad \alpha_k = \gamma_k / \langle p_k, q_k\rangle,\quad
        x_{k+1} = x_k + \alpha_k p_k,\quad r_{k+1} = r_k - \alpha_k q_k,

        \gamma_{k+1} = \|r_{k+1}\|^2,\quad p_{k+1} = r_{k+1} + (\gamma_{k+1}/\gamma_k)\, p_k.

    One iteration costs one forward and one adjoint application (plus one of each for the
    initial residual). Each batch element is its own problem with its own step sizes, and a step
    whose denominator is zero (a converged element) is taken as zero.

    Parameters
    ----------
    op : LinearOperator
        The operator ``A`` (``op(x)``, ``op.T(y)``, ``op.domain_shape``).
    rhs : torch.Tensor
        The right-hand side ``b``, ``(*batch, *op.domain_shape)``.
    x0 : torch.Tensor
        Initial guess (a warm start), of the shape of ``rhs``.
    shift : float
        The shift :math:`s \ge 0` (the regularisation weight).
    n_iter : int
        Number of iterations; 0 returns a copy of ``x0``.
    callback : callable, optional
        ``callback(k, x)`` after iteration ``k``.

    Returns
    -------
    torch.Tensor
        The iterate after ``n_iter`` iterations, of the shape of ``rhs``.

    Raises
    ------
    ValueError
        If ``rhs`` does not end in ``op.domain_shape``, ``x0`` has another shape, ``shift`` is
        negative or not finite, or ``n_iter`` is not a non-negative int.
    DivergenceError
        If an iterate turns NaN or infinite.

    Example
    -------
    >>> from operators import MatrixOperator
    >>> A = MatrixOperator(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    >>> x = cg_normal(A, torch.tensor([2.0, 5.0]), torch.zeros(2), shift=1.0, n_iter=2)
    >>> x.round(decimals=5)  # ((1 + 1) x1, (4 + 1) x2) = (2, 5): two steps solve a 2 x 2 system
    tensor([1., 1.])
    """
    n_iter = check_n_iter(n_iter)
    shift = check_positive("shift", shift, allow_zero=True)
    domain_shape = tuple(op.domain_shape)
    n_domain = len(domain_shape)
    if not isinstance(rhs, torch.Tensor) or tuple(rhs.shape[rhs.ndim - n_domain :]) != domain_shape:
        got = tuple(rhs.shape) if isinstance(rhs, torch.Tensor) else type(rhs).__name__
        raise ValueError(
            f"rhs must have shape (*batch, *op.domain_shape {domain_shape}), got {got}"
        )
    if not isinstance(x0, torch.Tensor) or x0.shape != rhs.shape:
        got = tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__
        raise ValueError(f"x0 must have the shape of rhs {tuple(rhs.shape)}, got {got}")
    dims = tuple(range(-n_domain, 0))

    def normal(v: torch.Tensor) -> torch.Tensor:
        return op.T(op(v)) + shift * v

    x = x0
    r = rhs - normal(x)
    p = r
    gamma = sq_norm(r, n_domain)
    for k in range(n_iter):
        q = normal(p)
        alpha = safe_div(gamma, (p * q).sum(dim=dims))  # one step size per batch element
        x = x + expand(alpha, n_domain) * p
        r = r - expand(alpha, n_domain) * q
        gamma_next = sq_norm(r, n_domain)
        p = r + expand(safe_div(gamma_next, gamma), n_domain) * p
        gamma = gamma_next
        check_finite_iterate("cg_normal", k, x, "check the operator, its adjoint and the shift")
        if callback is not None:
            callback(k, x)
    return x.clone() if n_iter == 0 else x
