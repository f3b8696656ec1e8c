r"""The plug-and-play algorithms with fixed parameters: PGD, ADMM, HQS (DPIR's schedule), RED.

Each is a plain function with a visible loop over the steps of :mod:`recon.solvers.splitting`
(the same steps :class:`~recon.pnp.UnfoldedPnP` unrolls with learned parameters). Every step size
is relative to :math:`\|A\|^2` (``op.norm()``): ``step`` is :math:`\tau\|A\|^2`, ``rho`` is
:math:`\rho/\|A\|^2`, ``lam`` is :math:`\lambda/\|A\|^2`; noise levels ``sigma`` are in the units
of the image. They stop after ``n_iter`` iterations or when the relative change
:math:`\max_b \|x_{k+1} - x_k\| / \|x_k\|` falls below ``tol``, call ``callback(k, x)`` after
every iteration, and raise :class:`~recon.solvers.DivergenceError` when an iterate or a
denoiser output is not finite, or an iterate's norm exceeds ``divergence_factor`` times
:math:`\max(\|x_0\|, \|y\|/\|A\|)`.

Example
-------
>>> from operators import MatrixOperator
>>> op = MatrixOperator(torch.randn(40, 64), domain_shape=(8, 8), range_shape=(40,))
>>> smooth = lambda x, sigma: torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
>>> x = pnp_pgd(op(torch.ones(2, 8, 8)), op, smooth, sigma=0.1, n_iter=20)
>>> x.shape
torch.Size([2, 8, 8])
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from operators import OperatorLike
from recon.checks import check_choice, check_int, check_n_iter, check_positive
from recon.solvers.splitting import (
    INNER_SOLVERS,
    Denoiser,
    admm_step,
    check_denoiser,
    data_prox,
    denoise,
    hqs_step,
    pgd_step,
    start_iteration,
)

__all__ = ["RED_MODES", "dpir_schedule", "pnp_admm", "pnp_hqs", "pnp_pgd", "red"]

Callback = Callable[[int, torch.Tensor], None]

#: Forms of RED.
RED_MODES: tuple[str, ...] = ("gradient", "fixed_point")


def dpir_schedule(sigma_start: float, sigma_end: float, n_iter: int) -> list[float]:
    r"""DPIR's noise levels: ``n_iter`` values log-spaced from ``sigma_start`` to ``sigma_end``.

    .. math:: \sigma_k = \sigma_{\mathrm{start}}\,
              (\sigma_{\mathrm{end}} / \sigma_{\mathrm{start}})^{k / (n - 1)},\quad k = 0..n-1.

    Example
    -------
    >>> [round(s, 3) for s in dpir_schedule(0.2, 0.02, 3)]
    [0.2, 0.063, 0.02]
    """
    start = check_positive("sigma_start", sigma_start)
    end = check_positive("sigma_end", sigma_end)
    n = check_int("n_iter", n_iter, minimum=1)
    if n == 1:
        return [end]
    return [start * (end / start) ** (k / (n - 1)) for k in range(n)]


def pnp_pgd(
    y: torch.Tensor,
    op: OperatorLike,
    denoiser: Denoiser,
    *,
    sigma: float,
    n_iter: int,
    step: float = 1.0,
    x0: torch.Tensor | None = None,
    tol: float | None = None,
    divergence_factor: float | None = 1e3,
    callback: Callback | None = None,
    return_objective: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Plug-and-play proximal gradient (forward-backward splitting).

    .. math:: x_{k+1} = D_\sigma\big(z_k\big),\qquad z_k = x_k - \tau A^T(Ax_k - y),
              \qquad \tau = \mathtt{step} / \|A\|^2.

    With :math:`D_\sigma` the identity this is the Landweber iteration with step :math:`\tau`.
    With a gradient-step denoiser whose :math:`\nabla g_\sigma` is :math:`L`-Lipschitz, :math:`L <
    1` (:class:`models.GSDenoiser`), :math:`D_\sigma = \operatorname{prox}_{\phi_\sigma}` and
    this is the proximal gradient method on

    .. math:: F(x) = \tau\, \tfrac12\|Ax - y\|^2 + \phi_\sigma(x),\qquad
              \phi_\sigma(x_{k+1}) = g_\sigma(z_k) - \tfrac12\|z_k - x_{k+1}\|^2,

    which decreases monotonically for ``step`` ≤ 1, by at least
    :math:`\tfrac12(1 - \mathtt{step})\|x_{k+1} - x_k\|^2` per iteration (Hurault et al. 2022b).
    Two operator applications per iteration, plus one at the start.

    Parameters
    ----------
    y : torch.Tensor
        Measurements ``(*batch, *op.range_shape)``.
    op : LinearOperator
        Forward operator with ``norm()``.
    denoiser : callable
        ``denoiser(x, sigma)`` on images ``(N, 1, *op.domain_shape)``.
    sigma : float
        Noise level handed to the denoiser (image units).
    n_iter : int
        Maximum number of iterations.
    step : float
        :math:`\tau\|A\|^2`; the gradient step is stable for ``step < 2``.
    x0 : torch.Tensor, optional
        Initial iterate; zeros by default.
    tol : float, optional
        Stop when the largest relative change of an iterate falls below ``tol``.
    divergence_factor : float or None
        Raise :class:`~recon.solvers.DivergenceError` when :math:`\|x_k\|` exceeds this multiple of
        :math:`\max(\|x_0\|, \|y\|/\|A\|)`; ``None`` checks only for NaN/infinite values.
    callback : callable, optional
        ``callback(k, x)`` after iteration ``k``.
    return_objective : bool
        Also return :math:`F(x_k)` for ``k = 1, 2, …`` (shape ``(n_done, *batch)``); needs a
        denoiser with a ``potential(x, sigma)`` method (:class:`models.GSDenoiser`).

    Returns
    -------
    torch.Tensor or (torch.Tensor, torch.Tensor)
        ``x`` ``(*batch, *op.domain_shape)``, and the objective values with ``return_objective``.

    Raises
    ------
    ValueError
        For invalid measurements or arguments.
    DivergenceError
        When an iterate or a denoiser output is not finite, or an iterate blows up.

    Example
    -------
    >>> from operators import MatrixOperator
    >>> from recon.solvers import landweber
    >>> op = MatrixOperator(torch.randn(30, 16, dtype=torch.float64), domain_shape=(4, 4))
    >>> y = torch.randn(30, dtype=torch.float64)
    >>> x = pnp_pgd(y, op, lambda x, sigma: x, sigma=0.0, n_iter=5, step=1.0)
    >>> torch.allclose(x, landweber(y, op, n_iter=5))
    True
    """
    n_iter = check_n_iter(n_iter)
    x, monitor = start_iteration("PnP-PGD", y, op, x0, tol=tol, divergence_factor=divergence_factor)
    a_norm = monitor.a_norm
    check_denoiser(denoiser, module=False)
    sigma = check_positive("sigma", sigma, allow_zero=True)
    tau = check_positive("step", step) / a_norm**2
    potential = getattr(denoiser, "potential", None)
    if return_objective and not callable(potential):
        raise ValueError(
            "return_objective needs a gradient-step denoiser with a potential(x, sigma) method "
            "(models.GSDenoiser)"
        )
    domain, n_range = monitor.domain_shape, len(tuple(op.range_shape))
    residual = op(x) - y
    objectives = []
    for k in range(n_iter):
        z, x_new = pgd_step(
            x, residual, op, tau=tau, denoiser=denoiser, sigma=sigma, monitor=monitor, k=k
        )
        residual = op(x_new) - y
        if return_objective:
            with torch.no_grad():
                g = potential(z.reshape(-1, 1, *domain), sigma).reshape(x.shape[: -len(domain)])
                moved = (z - x_new).square().sum(dim=tuple(range(-len(domain), 0)))
                data = residual.square().sum(dim=tuple(range(-n_range, 0)))
                objectives.append(tau * 0.5 * data + g - 0.5 * moved)
        stop = monitor.converged(x_new, x)
        x = x_new
        if callback is not None:
            callback(k, x)
        if stop:
            break
    x = x.clone() if n_iter == 0 else x
    if return_objective:
        empty = y.new_zeros((0, *x.shape[: x.ndim - len(domain)]))
        return x, torch.stack(objectives) if objectives else empty
    return x


def pnp_admm(
    y: torch.Tensor,
    op: OperatorLike,
    denoiser: Denoiser,
    *,
    sigma: float,
    n_iter: int,
    rho: float = 1.0,
    inner_iter: int = 5,
    inner: str = "cg",
    x0: torch.Tensor | None = None,
    tol: float | None = None,
    divergence_factor: float | None = 1e3,
    callback: Callback | None = None,
) -> torch.Tensor:
    r"""Plug-and-play ADMM (scaled form, Venkatakrishnan et al. 2013).

    With :math:`\rho = \mathtt{rho}\,\|A\|^2`, :math:`z_0 = x_0`, :math:`u_0 = 0`:

    .. math::

        x_{k+1} &= \arg\min_x \tfrac12\|Ax - y\|^2 + \tfrac\rho2\|x - (z_k - u_k)\|^2
                 \quad(\text{``inner\_iter'' CG or gradient steps, warm started}),\\
        z_{k+1} &= D_\sigma(x_{k+1} + u_k),\\
        u_{k+1} &= u_k + x_{k+1} - z_{k+1}.

    If :math:`D_\sigma` is the exact proximal map of :math:`\tfrac\mu2\|\cdot\|^2` scaled by
    :math:`1/\rho` (:math:`D(v) = \rho v / (\rho + \mu)`) and the sub-problem is solved exactly,
    this is ADMM on :math:`\tfrac12\|Ax - y\|^2 + \tfrac\mu2\|x\|^2` and converges to
    :math:`(A^TA + \mu I)^{-1}A^Ty`. Returns :math:`z`, the denoised iterate.
    ``2 · inner_iter`` operator applications per iteration.

    Parameters
    ----------
    y, op, denoiser, sigma, n_iter, x0, tol, divergence_factor, callback
        As in :func:`pnp_pgd` (``callback(k, z)``).
    rho : float
        Penalty :math:`\rho / \|A\|^2`.
    inner_iter : int
        Iterations of the data sub-problem (≥ 1).
    inner : {"cg", "gradient"}
        CGLS on :math:`[A; \sqrt\rho I]` or gradient steps of size :math:`1/(\|A\|^2 + \rho)`.

    Returns
    -------
    torch.Tensor
        ``(*batch, *op.domain_shape)``.

    Raises
    ------
    ValueError, DivergenceError
        As :func:`pnp_pgd`.

    Example
    -------
    >>> from operators import MatrixOperator
    >>> op = MatrixOperator(torch.randn(30, 16, dtype=torch.float64))
    >>> y = torch.randn(30, dtype=torch.float64)
    >>> mu, rho = 2.0, 1.0 * op.norm() ** 2
    >>> x = pnp_admm(y, op, lambda v, s: rho * v / (rho + mu), sigma=0.1, n_iter=300,
    ...              inner_iter=16)
    >>> exact = torch.linalg.solve(op.matrix.T @ op.matrix + mu * torch.eye(16), op.matrix.T @ y)
    >>> torch.allclose(x, exact, atol=1e-8)
    True
    """
    n_iter = check_n_iter(n_iter)
    x, monitor = start_iteration(
        "PnP-ADMM", y, op, x0, tol=tol, divergence_factor=divergence_factor
    )
    a_norm = monitor.a_norm
    check_denoiser(denoiser, module=False)
    sigma = check_positive("sigma", sigma, allow_zero=True)
    rho = check_positive("rho", rho) * a_norm**2
    inner_iter = check_int("inner_iter", inner_iter, minimum=1)
    inner = check_choice("inner solver", inner, INNER_SOLVERS)
    z, u = x, torch.zeros_like(x)
    for k in range(n_iter):
        x, z_new, u = admm_step(
            x, z, u, y=y, op=op, rho=rho, denoiser=denoiser, sigma=sigma,
            inner_iter=inner_iter, inner=inner, monitor=monitor, k=k,
        )  # fmt: skip
        stop = monitor.converged(z_new, z)
        z = z_new
        if callback is not None:
            callback(k, z)
        if stop:
            break
    return z.clone() if n_iter == 0 else z


def pnp_hqs(
    y: torch.Tensor,
    op: OperatorLike,
    denoiser: Denoiser,
    *,
    n_iter: int,
    sigma_start: float = 0.2,
    sigma_end: float = 0.02,
    lam: float = 0.23,
    inner_iter: int = 5,
    inner: str = "cg",
    x0: torch.Tensor | None = None,
    tol: float | None = None,
    divergence_factor: float | None = 1e3,
    callback: Callback | None = None,
) -> torch.Tensor:
    r"""Plug-and-play half-quadratic splitting with DPIR's decreasing noise levels.

    With :math:`\sigma_k` log-spaced from ``sigma_start`` to ``sigma_end`` (:func:`dpir_schedule`)
    and :math:`\alpha_k = \mathtt{lam}\,\|A\|^2 (\sigma_{\mathrm{end}} / \sigma_k)^2` (DPIR's
    :math:`\alpha_k = \lambda\sigma_n^2/\sigma_k^2`, with the data noise :math:`\sigma_n`
    expressed through the last level), starting from :math:`z_0 = x_0`:

    .. math::

        x_k &= \arg\min_x \tfrac12\|Ax - y\|^2 + \tfrac{\alpha_k}2\|x - z_{k-1}\|^2
              \quad(\text{``inner\_iter'' CG or gradient steps, warm started}),\\
        z_k &= D_{\sigma_k}(x_k).

    Large early noise levels let the denoiser impose the prior where the data say little; the
    weight of the data grows as :math:`\sigma_k` decreases. Returns :math:`z`. Needs a
    noise-level-aware denoiser (:class:`models.DRUNet`, :class:`models.GSDenoiser`, or
    :class:`models.DnCNN` with ``sigma_input=True``).

    Parameters
    ----------
    y, op, denoiser, x0, tol, divergence_factor, callback
        As in :func:`pnp_pgd` (``callback(k, z)``).
    n_iter : int
        Number of iterations (the schedule's length); ``tol`` may stop earlier.
    sigma_start, sigma_end : float
        First and last noise level (image units).
    lam : float
        Weight :math:`\lambda` of the prior relative to :math:`\|A\|^2` (DPIR: 0.23).
    inner_iter : int
        Iterations of the data sub-problem.
    inner : {"cg", "gradient"}
        Its solver.

    Returns
    -------
    torch.Tensor
        ``(*batch, *op.domain_shape)``.

    Raises
    ------
    ValueError, DivergenceError
        As :func:`pnp_pgd`.

    Example
    -------
    >>> from operators import MatrixOperator
    >>> op = MatrixOperator(torch.randn(30, 16, dtype=torch.float64), domain_shape=(4, 4))
    >>> x = pnp_hqs(torch.randn(3, 30, dtype=torch.float64), op, lambda x, s: x, n_iter=4)
    >>> x.shape
    torch.Size([3, 4, 4])
    """
    n_iter = check_n_iter(n_iter)
    z, monitor = start_iteration("PnP-HQS", y, op, x0, tol=tol, divergence_factor=divergence_factor)
    a_norm = monitor.a_norm
    check_denoiser(denoiser, module=False)
    lam = check_positive("lam", lam)
    inner_iter = check_int("inner_iter", inner_iter, minimum=1)
    inner = check_choice("inner solver", inner, INNER_SOLVERS)
    sigmas = dpir_schedule(sigma_start, sigma_end, max(n_iter, 1))
    x = z
    for k in range(n_iter):
        alpha = lam * a_norm**2 * (sigmas[-1] / sigmas[k]) ** 2
        x, z_new = hqs_step(
            x, z, y=y, op=op, alpha=alpha, denoiser=denoiser, sigma=sigmas[k],
            inner_iter=inner_iter, inner=inner, monitor=monitor, k=k,
        )  # fmt: skip
        stop = monitor.converged(z_new, z)
        z = z_new
        if callback is not None:
            callback(k, z)
        if stop:
            break
    return z.clone() if n_iter == 0 else z


def red(
    y: torch.Tensor,
    op: OperatorLike,
    denoiser: Denoiser,
    *,
    sigma: float,
    n_iter: int,
    lam: float = 0.1,
    mode: str = "gradient",
    step: float = 1.0,
    inner_iter: int = 5,
    x0: torch.Tensor | None = None,
    tol: float | None = None,
    divergence_factor: float | None = 1e3,
    callback: Callback | None = None,
) -> torch.Tensor:
    r"""Regularisation by denoising (Romano, Elad, Milanfar 2017).

    RED minimises :math:`\tfrac12\|Ax - y\|^2 + \tfrac\lambda2\, x^T(x - D_\sigma(x))`, whose
    gradient is :math:`A^T(Ax - y) + \lambda(x - D_\sigma(x))` when :math:`D_\sigma` is locally
    homogeneous with a symmetric Jacobian. With :math:`\lambda = \mathtt{lam}\,\|A\|^2`:

    - ``mode="gradient"`` (steepest descent), :math:`\mu = \mathtt{step} / (\|A\|^2 + 2\lambda)`:

      .. math:: x_{k+1} = x_k - \mu\big(A^T(Ax_k - y) + \lambda(x_k - D_\sigma(x_k))\big).

    - ``mode="fixed_point"``: :math:`x_{k+1} = (A^TA + \lambda I)^{-1}(A^Ty + \lambda
      D_\sigma(x_k))`, by ``inner_iter`` CG iterations warm started at :math:`x_k`.

    With :math:`D_\sigma = c\,I` both converge to :math:`(A^TA + \lambda(1 - c)I)^{-1}A^Ty`.

    Parameters
    ----------
    y, op, denoiser, sigma, n_iter, x0, tol, divergence_factor, callback
        As in :func:`pnp_pgd`.
    lam : float
        Regularisation weight :math:`\lambda / \|A\|^2`.
    mode : {"gradient", "fixed_point"}
        The iteration.
    step : float
        Gradient step relative to :math:`1/(\|A\|^2 + 2\lambda)` (``mode="gradient"``).
    inner_iter : int
        CG iterations per step (``mode="fixed_point"``).

    Returns
    -------
    torch.Tensor
        ``(*batch, *op.domain_shape)``.

    Raises
    ------
    ValueError, DivergenceError
        As :func:`pnp_pgd`.

    Example
    -------
    >>> from operators import MatrixOperator
    >>> op = MatrixOperator(torch.randn(30, 16, dtype=torch.float64))
    >>> y = torch.randn(30, dtype=torch.float64)
    >>> x = red(y, op, lambda x, s: 0.5 * x, sigma=0.1, n_iter=50, lam=0.2, mode="fixed_point")
    >>> M, lam = op.matrix, 0.2 * op.norm() ** 2
    >>> exact = torch.linalg.solve(M.T @ M + lam * 0.5 * torch.eye(16), M.T @ y)
    >>> torch.allclose(x, exact, atol=1e-8)
    True
    """
    n_iter = check_n_iter(n_iter)
    x, monitor = start_iteration("RED", y, op, x0, tol=tol, divergence_factor=divergence_factor)
    a_norm = monitor.a_norm
    check_denoiser(denoiser, module=False)
    sigma = check_positive("sigma", sigma, allow_zero=True)
    lam = check_positive("lam", lam) * a_norm**2
    mode = check_choice("RED mode", mode, RED_MODES)
    mu = check_positive("step", step) / (a_norm**2 + 2 * lam)
    inner_iter = check_int("inner_iter", inner_iter, minimum=1)
    for k in range(n_iter):
        denoised = denoise(denoiser, x, sigma, monitor=monitor, k=k)
        if mode == "gradient":
            x_new = x - mu * (op.T(op(x) - y) + lam * (x - denoised))
        else:
            x_new = data_prox(
                y, op, denoised, lam, x, n_iter=inner_iter, solver="cg", a_norm=a_norm
            )
        monitor.check(k, x_new)
        stop = monitor.converged(x_new, x)
        x = x_new
        if callback is not None:
            callback(k, x)
        if stop:
            break
    return x.clone() if n_iter == 0 else x
