r"""Total variation: the forward-difference gradient and its adjoint, the TV objective and its
solver by the primal-dual hybrid gradient method (Chambolle–Pock).

Example
-------
>>> import torch
>>> x = torch.arange(9.0).reshape(3, 3)
>>> torch.equal(-divergence2d(gradient2d(x)).sum(), torch.tensor(0.0))
True
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import torch

from operators import OperatorLike
from recon.base import check_measurements
from recon.checks import check_n_iter, check_ndim, check_positive
from recon.solvers.common import check_finite_iterate, initial_guess, operator_norm, sq_norm

log = logging.getLogger(__name__)

__all__ = [
    "NORM_NOTICE_SECONDS",
    "TV_LAM_FACTOR",
    "divergence2d",
    "divergence3d",
    "gradient2d",
    "gradient3d",
    "smoothness_gradient",
    "tv_objective",
    "tv_default_lam",
    "tv_ndim",
    "tv_pdhg",
    "data_norm",
    "rms_column_norm",
]

#: Computing ``‖A‖`` for longer than this (seconds) is announced at WARNING level, which Python
#: shows by default, with the value to pass as ``op_norm`` next time; shorter runs log at INFO.
NORM_NOTICE_SECONDS = 2.0
#: ``λ ≈ TV_LAM_FACTOR · σ · ‖A‖_F/√n`` (see :func:`tv_default_lam`). Measured: the best λ of a
#: √2-step grid, on random ellipses simulated on a 2× finer grid, was 0.63–0.74 × ``σ̂ · c``
#: (``σ̂`` the RMS of ``A x − y``) for parallel and fan beam, 64² and 128², 30–90 angles, pixel
#: sizes 1 and 0.5, and 1–5 % Gaussian noise; the 128², 30-angle, 2.5 % case gives λ = 2, the
#: value the "ellipses" protocol's search chose.
TV_LAM_FACTOR = 0.7


def _gradient(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Forward differences over the last ``ndim`` axes, stacked at dimension ``-ndim - 1``."""
    parts = []
    for axis in range(-ndim, 0):
        diff = torch.diff(x, dim=axis)
        pad = [0, 0] * (-axis - 1) + [0, 1]  # zero last difference: Neumann boundary
        parts.append(torch.nn.functional.pad(diff, pad))
    return torch.stack(parts, dim=-ndim - 1)


def _divergence(q: torch.Tensor, ndim: int) -> torch.Tensor:
    """``-∇ᵀ q`` for ``q`` of shape ``(*batch, ndim, *spatial)``."""
    out = None
    for i, axis in enumerate(range(-ndim, 0)):
        qi = q.select(-ndim - 1, i)
        n = qi.shape[axis]
        inner = qi.narrow(axis, 0, n - 1)  # the last entry does not enter ∇ᵀ (Neumann)
        pad = [0, 0] * (-axis - 1)
        # div[j] = q[j] - q[j-1] with q[-1] = q[n-1] = 0
        term = torch.nn.functional.pad(inner, [*pad, 0, 1]) - torch.nn.functional.pad(
            inner, [*pad, 1, 0]
        )
        out = term if out is None else out + term
    return out


def _check_spatial(x: torch.Tensor, ndim: int, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < ndim:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} needs a tensor with at least {ndim} dimensions, got {got}")


def gradient2d(x: torch.Tensor) -> torch.Tensor:
    r"""Image gradient by forward differences with Neumann boundary.

    .. math:: (\nabla x)_{0,i,j} = x_{i+1,j} - x_{i,j},\quad
              (\nabla x)_{1,i,j} = x_{i,j+1} - x_{i,j},

    with the last difference along each axis set to 0. :math:`\|\nabla\|^2 \le 8`.

    Parameters
    ----------
    x : torch.Tensor
        Images ``(*batch, H, W)``.

    Returns
    -------
    torch.Tensor
        ``(*batch, 2, H, W)``: the row (``i``) and column (``j``) differences.

    Example
    -------
    >>> gradient2d(torch.tensor([[0.0, 1.0], [2.0, 4.0]]))
    tensor([[[2., 3.],
             [0., 0.]],
    <BLANKLINE>
            [[1., 0.],
             [2., 0.]]])
    """
    _check_spatial(x, 2, "gradient2d")
    return _gradient(x, 2)


def divergence2d(q: torch.Tensor) -> torch.Tensor:
    r"""Divergence, the negative adjoint of :func:`gradient2d`: div = -∇ᵀ.

    .. math:: (\operatorname{div} q)_{i,j} = (q_{0,i,j} - q_{0,i-1,j})
              + (q_{1,i,j} - q_{1,i,j-1}),

    with :math:`q_{0,-1,j} = q_{0,H-1,j} = 0` (and likewise for columns), so that
    :math:`\langle \nabla x, q\rangle = -\langle x, \operatorname{div} q\rangle` for every ``q``.

    Parameters
    ----------
    q : torch.Tensor
        Vector fields ``(*batch, 2, H, W)``.

    Returns
    -------
    torch.Tensor
        ``(*batch, H, W)``.

    Example
    -------
    >>> divergence2d(gradient2d(torch.tensor([[0.0, 1.0], [2.0, 4.0]])))
    tensor([[ 3.,  2.],
            [ 0., -5.]])
    """
    _check_spatial(q, 3, "divergence2d")
    if q.shape[-3] != 2:
        raise ValueError(f"divergence2d needs q of shape (*batch, 2, H, W), got {tuple(q.shape)}")
    return _divergence(q, 2)


def gradient3d(x: torch.Tensor) -> torch.Tensor:
    r"""Volume gradient by forward differences with Neumann boundary, :math:`\|\nabla\|^2 \le 12`.

    Parameters
    ----------
    x : torch.Tensor
        Volumes ``(*batch, D, H, W)``.

    Returns
    -------
    torch.Tensor
        ``(*batch, 3, D, H, W)``: differences along ``D``, ``H`` and ``W``.

    Example
    -------
    >>> gradient3d(torch.zeros(2, 4, 5, 6)).shape
    torch.Size([2, 3, 4, 5, 6])
    """
    _check_spatial(x, 3, "gradient3d")
    return _gradient(x, 3)


def divergence3d(q: torch.Tensor) -> torch.Tensor:
    r"""Divergence in 3D, :math:`-\nabla^T` for :func:`gradient3d`.

    Parameters
    ----------
    q : torch.Tensor
        Vector fields ``(*batch, 3, D, H, W)``.

    Returns
    -------
    torch.Tensor
        ``(*batch, D, H, W)``.

    Example
    -------
    >>> divergence3d(torch.zeros(3, 4, 5, 6)).shape
    torch.Size([4, 5, 6])
    """
    _check_spatial(q, 4, "divergence3d")
    if q.shape[-4] != 3:
        raise ValueError(
            f"divergence3d needs q of shape (*batch, 3, D, H, W), got {tuple(q.shape)}"
        )
    return _divergence(q, 3)


def tv_ndim(op: OperatorLike) -> int:
    """The number of dimensions of ``op``'s domain, or a ``ValueError`` unless it is 2 or 3
    (TV needs images or volumes).

    Example
    -------
    >>> from operators import IdentityOperator
    >>> tv_ndim(IdentityOperator((4, 4, 4)))
    3
    """
    ndim = len(tuple(op.domain_shape))
    if ndim not in (2, 3):
        raise ValueError(
            f"TV needs a 2D or 3D domain, but op.domain_shape is {tuple(op.domain_shape)}"
        )
    return ndim


def _pointwise_norm(q: torch.Tensor, ndim: int) -> torch.Tensor:
    """``|q|`` at each pixel, over the component dimension ``-ndim - 1``."""
    return torch.sqrt((q * q).sum(dim=-ndim - 1))


def tv_objective(x: torch.Tensor, y: torch.Tensor, op: OperatorLike, lam: float) -> torch.Tensor:
    r"""The objective of :func:`tv_pdhg`, per batch element.

    .. math:: \tfrac12\|A x - y\|_2^2 + λ \sum_{\text{pixels}} |(\nabla x)_{\text{pixel}}|_2

    (isotropic TV, forward differences, Neumann boundary; the non-negativity constraint is not
    included: evaluate it at feasible ``x``).

    Parameters
    ----------
    x : torch.Tensor
        Images ``(*batch, *op.domain_shape)``.
    y : torch.Tensor
        Measurements ``(*batch, *op.range_shape)``.
    op : LinearOperator
        Forward operator with a 2D or 3D domain.
    lam : float
        Regularisation weight λ ≥ 0.

    Returns
    -------
    torch.Tensor
        Objective values of shape ``batch``.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> tv_objective(torch.eye(2), torch.zeros(2, 2), IdentityOperator((2, 2)), lam=1.0)
    tensor(4.4142)
    """
    lam = check_positive("lam", lam, allow_zero=True)
    ndim = tv_ndim(op)
    batch_shape = check_measurements(y, op)
    domain_shape = tuple(op.domain_shape)
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != (*batch_shape, *domain_shape):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(
            f"x must have shape (*batch, *op.domain_shape) = {(*batch_shape, *domain_shape)}, "
            f"got {got}"
        )
    data = 0.5 * sq_norm(op(x) - y, len(tuple(op.range_shape)))
    tv = _pointwise_norm(_gradient(x, ndim), ndim).sum(dim=tuple(range(-ndim, 0)))
    return data + lam * tv


def data_norm(
    op: OperatorLike, *, op_norm: float | None = None, device: torch.device | str | None = None
) -> float:
    """``‖A‖`` for step sizes: ``op_norm`` if given (checked), else ``op.norm()``.

    A :class:`~operators.LinearOperator` caches its norm, so the power iteration runs once per
    operator; it is run on ``device`` (the data's). When it takes a noticeable time, its value and
    duration are logged (at WARNING after :data:`NORM_NOTICE_SECONDS`), with the ``op_norm=`` to
    pass next time to skip it.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> data_norm(IdentityOperator((3, 3)), op_norm=2.0), round(data_norm(IdentityOperator(3)), 6)
    (2.0, 1.0)
    """
    if op_norm is not None:
        return check_positive("op_norm", op_norm)
    start = time.perf_counter()
    value = operator_norm(op, device=device, hint="pass op_norm= (or the step sizes)")
    seconds = time.perf_counter() - start
    if seconds > 0.1:  # a cached norm takes microseconds: this one was computed
        level = logging.WARNING if seconds > NORM_NOTICE_SECONDS else logging.INFO
        log.log(
            level,
            "computed ||A|| = %.6g of %s by power iteration in %.1f s (cached on this operator; "
            "pass op_norm=%.6g to TV or tv_pdhg to skip it in another run)",
            value,
            type(op).__name__,
            seconds,
            value,
        )
    return value


def rms_column_norm(op: OperatorLike, *, n_probes: int = 4, seed: int = 0) -> float:
    """``‖A‖_F / √n``, the root-mean-square norm of ``A``'s columns (``n`` = domain size),
    estimated from ``n_probes`` random ±1 images (Hutchinson: ``E‖A z‖² = ‖A‖_F²``); one
    batched application of ``op``. For a ray transform 4 probes are within about 5 % (measured,
    16² to 128²), plenty for a λ scale.

    Example
    -------
    >>> from operators import MatrixOperator
    >>> round(rms_column_norm(MatrixOperator(3.0 * torch.eye(5))), 6)
    3.0
    """
    n_probes = check_n_iter(n_probes)
    dtype = torch.float64 if torch.float64 in getattr(op, "dtypes", ()) else torch.float32
    gen = torch.Generator().manual_seed(seed)
    shape = (max(n_probes, 1), *tuple(op.domain_shape))
    z = torch.randint(0, 2, shape, generator=gen).to(dtype).mul_(2).sub_(1)
    with torch.no_grad():
        return math.sqrt(float(op(z).square().sum()) / z.numel())


def tv_default_lam(op: OperatorLike, *, noise_std: float, n_probes: int = 4) -> float:
    r"""A default λ for :func:`tv_pdhg` with data of white-noise level ``noise_std``:
    :math:`λ = 0.7\,σ\,\|A\|_F/\sqrt n` (:data:`TV_LAM_FACTOR`, :func:`rms_column_norm`).

    Why this scale: at the optimum the data-term gradient :math:`A^T(Ax - y)`, whose noise part
    has a standard deviation :math:`σ\|a_j\|` per pixel, balances the TV subgradient, bounded
    by a multiple of λ. So the best λ scales with the noise (×2 noise → ×2 λ) and with the
    operator (×2 operator, hence ×2 data and noise → ×4 λ), not with the image size. The factor
    0.7 was measured on CT (:data:`TV_LAM_FACTOR`); other operators and images may want another
    (the PAT "vessels" protocol's tuned λ, 5e-4, is 0.28 times this default): tune on validation
    data with :func:`recon.runs.tuning.tune_tv`, whose default grid spans ⅛ to 4 times it.

    ``noise_std`` is the standard deviation of the noise in ``y`` (per entry), e.g. 2.5 % of
    mean ``|y|`` for the "ellipses" protocol.

    Example
    -------
    >>> from operators import MatrixOperator
    >>> round(tv_default_lam(MatrixOperator(2.0 * torch.eye(4)), noise_std=0.5), 6)
    0.7
    """
    noise_std = check_positive("noise_std", noise_std)
    return TV_LAM_FACTOR * noise_std * rms_column_norm(op, n_probes=n_probes)


def tv_pdhg(
    y: torch.Tensor,
    op: OperatorLike,
    *,
    lam: float,
    n_iter: int,
    nonneg: bool = True,
    x0: torch.Tensor | None = None,
    tau: float | None = None,
    sigma: float | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
    return_objective: bool = False,
    op_norm: float | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Total-variation regularised least squares by the primal-dual hybrid gradient method.

    Solves

    .. math:: \min_x \tfrac12\|A x - y\|_2^2 + λ\,\mathrm{TV}(x) \;(+\, ι_{x \ge 0}),\qquad
              \mathrm{TV}(x) = \sum_{\text{pixels}} |(\nabla x)_{\text{pixel}}|_2,

    by Chambolle–Pock (2011, Alg. 1, θ = 1) with :math:`K = [A; \nabla]`, duals ``p`` (data) and
    ``q`` (gradient):

    .. math::

        p &\leftarrow \frac{p + σ (A\bar x - y)}{1 + σ}
            \quad(\text{prox of } σ F_1^*,\ F_1 = \tfrac12\|\cdot - y\|^2)\\
        q &\leftarrow \frac{q + σ\nabla\bar x}{\max(1, |q + σ\nabla\bar x| / λ)}
            \quad(\text{projection onto the } λ\text{-ball, pixelwise})\\
        x^+ &\leftarrow \max\big(0,\ x - τ (A^T p - \operatorname{div} q)\big),\qquad
        \bar x \leftarrow 2x^+ - x,\quad x \leftarrow x^+.

    Steps: :math:`\|K\| \le \sqrt{\|A\|^2 + 8}` in 2D (``+ 12`` in 3D), and by default
    :math:`τ = σ = 0.99/\|K\|`; given steps must satisfy :math:`τσ\|K\|^2 \le 1`. Every batch
    element is an independent problem, but the operator is applied to the whole batch at once.

    Parameters
    ----------
    y : torch.Tensor
        Measurements ``(*batch, *op.range_shape)``.
    op : LinearOperator
        Forward operator with a 2D or 3D domain (and a ``norm()`` unless both steps are given).
    lam : float
        Regularisation weight λ ≥ 0 (0 gives (non-negative) least squares). Its scale is the
        noise's times the operator's: :func:`tv_default_lam` gives a default from the noise
        level.
    n_iter : int
        Number of iterations.
    nonneg : bool
        Constrain ``x ≥ 0`` (default).
    x0 : torch.Tensor, optional
        Initial primal iterate; zeros by default. The duals start at zero.
    tau, sigma : float, optional
        Primal and dual step sizes. By default, block-diagonal steps: ``σ_A = 1/‖A‖`` for the data
        dual, ``σ_∇ = 1/‖∇‖`` for the TV dual and ``τ = 0.99/(‖A‖ + ‖∇‖)``. Given both, one scalar
        ``σ`` serves both duals (as in ODL's ``pdhg``) and ``τσ‖K‖² ≤ 1`` is checked; given one,
        the other is ``0.99² / (‖K‖² · given)``.
    callback : callable, optional
        ``callback(k, x)`` after iteration ``k``.
    return_objective : bool
        Also return :func:`tv_objective` after every iteration (one more operator call each).
    op_norm : float, optional
        ``‖A‖`` if known, to skip the power iteration of ``op.norm()`` (cached per operator, so
        it runs once per operator and process; logged when it takes a while, see
        :func:`data_norm`). An underestimate may make PDHG diverge.

    Returns
    -------
    torch.Tensor or (torch.Tensor, torch.Tensor)
        ``x`` of shape ``(*batch, *op.domain_shape)``, and with ``return_objective`` the objective
        values of shape ``(n_iter, *batch)``.

    Raises
    ------
    ValueError
        For misshapen or non-finite ``y`` or ``x0``, negative ``lam`` or ``n_iter``, non-positive
        steps or steps with :math:`τσ\|K\|^2 > 1`, or a domain that is not 2D or 3D.

    Example
    -------
    >>> import operators
    >>> from data_tools.phantoms import shepp_logan
    >>> op = operators.RayTransform(operators.Parallel2D((32, 32), n_angles=20), backend="astra")
    >>> x, objective = tv_pdhg(op(shepp_logan(32)), op, lam=0.1, n_iter=50,
    ...                        return_objective=True)
    >>> x.shape, objective.shape
    (torch.Size([32, 32]), torch.Size([50]))
    """
    lam = check_positive("lam", lam, allow_zero=True)
    n_iter = check_n_iter(n_iter)
    ndim = tv_ndim(op)
    batch_shape = check_measurements(y, op)
    domain_shape = tuple(op.domain_shape)
    x = initial_guess(x0, y, batch_shape, domain_shape)

    grad_norm = math.sqrt(4 * ndim)  # ‖∇‖ ≤ √(4·ndim) for forward differences
    if tau is None and sigma is None:
        # Block-diagonal dual steps (Pock & Chambolle 2011): σ_A = 1/‖A‖ for the data block,
        # σ_∇ = 1/‖∇‖ for the TV block, τ = 0.99/(‖A‖ + ‖∇‖), so that
        # τ (σ_A ‖A‖² + σ_∇ ‖∇‖²) = 0.99 < 1. A ray transform's norm (≈ 60 at 128², 30 angles)
        # dwarfs ‖∇‖ ≈ 2.8; one scalar σ would leave the TV dual nearly frozen.
        a_norm = data_norm(op, op_norm=op_norm, device=y.device)
        sigma_data, sigma_tv = 1.0 / a_norm, 1.0 / grad_norm
        tau = 0.99 / (a_norm + grad_norm)
    elif tau is None or sigma is None:
        k_norm = math.sqrt(data_norm(op, op_norm=op_norm, device=y.device) ** 2 + grad_norm**2)
        if tau is None:
            sigma = check_positive("sigma", sigma)
            tau = 0.99**2 / (k_norm**2 * sigma)
        else:
            tau = check_positive("tau", tau)
            sigma = 0.99**2 / (k_norm**2 * tau)
        sigma_data = sigma_tv = sigma
    else:
        tau, sigma = check_positive("tau", tau), check_positive("sigma", sigma)
        norm = getattr(op, "norm", None)
        if op_norm is not None or callable(norm):
            k_norm = math.sqrt(data_norm(op, op_norm=op_norm, device=y.device) ** 2 + grad_norm**2)
            if tau * sigma * k_norm**2 > 1.0:
                raise ValueError(
                    f"tau * sigma * ||K||^2 = {tau * sigma * k_norm**2:.4g} > 1 "
                    f"(||K|| ≈ {k_norm:.4g}): PDHG may diverge; use smaller steps"
                )
        sigma_data = sigma_tv = sigma
    x_bar = x
    p = torch.zeros_like(y)
    q = torch.zeros((*batch_shape, ndim, *domain_shape), dtype=y.dtype, device=y.device)
    objectives = []
    for k in range(n_iter):
        # dual ascent, then the proximal maps of F* (data term and λ-ball)
        p = (p + sigma_data * (op(x_bar) - y)) / (1 + sigma_data)
        if lam > 0:
            q = q + sigma_tv * _gradient(x_bar, ndim)
            q = q / (_pointwise_norm(q, ndim) / lam).clamp_min(1.0).unsqueeze(-ndim - 1)
        # primal descent and the prox of G (projection onto x >= 0)
        x_new = x - tau * (op.T(p) - _divergence(q, ndim))
        if nonneg:
            x_new = x_new.clamp_min(0)
        x_bar = 2 * x_new - x  # over-relaxation, θ = 1
        x = x_new
        check_finite_iterate("tv_pdhg", k, x, "use steps with tau * sigma * ||K||^2 <= 1")
        if callback is not None:
            callback(k, x)
        if return_objective:
            objectives.append(tv_objective(x, y, op, lam=lam))
    x = x.clone() if n_iter == 0 else x
    if return_objective:
        empty = torch.zeros((0, *batch_shape), dtype=y.dtype, device=y.device)
        return x, torch.stack(objectives) if objectives else empty
    return x


def smoothness_gradient(x: torch.Tensor, *, ndim: int = 2) -> torch.Tensor:
    r"""Gradient of :math:`S(x) = \tfrac12\|\nabla x\|^2`: :math:`\nabla^T\nabla x = -\Delta x`.

    :math:`\nabla` is the forward-difference gradient with Neumann boundary of
    :func:`gradient2d` (``gradient3d``) and :math:`\nabla^T = -\operatorname{div}`
    its exact adjoint, so the result is exactly the gradient of ``S`` (a 5-point, 7-point in 3D,
    negative Laplacian in the interior).

    Parameters
    ----------
    x : torch.Tensor
        Images ``(*batch, H, W)`` (``ndim=2``) or volumes ``(*batch, D, H, W)`` (``ndim=3``).
    ndim : {2, 3}
        Spatial dimensions.

    Returns
    -------
    torch.Tensor
        Same shape as ``x``.

    Example
    -------
    >>> x = torch.zeros(1, 5, 5)
    >>> x[0, 2, 2] = 1.0
    >>> stencil = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])
    >>> torch.equal(smoothness_gradient(x)[0, 1:4, 1:4], stencil)
    True
    """
    if check_ndim(ndim) == 2:
        return -divergence2d(gradient2d(x))
    return -divergence3d(gradient3d(x))
