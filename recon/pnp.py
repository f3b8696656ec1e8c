r"""Plug-and-play reconstruction: proximal algorithms whose prior step is a learned denoiser.

For the data term :math:`f(x) = \tfrac12\|Ax - y\|^2` and a denoiser :math:`D_\sigma` (any
callable ``denoiser(x, sigma)`` on images ``(N, 1, *op.domain_shape)``, e.g.
:class:`models.DnCNN`, :class:`models.DRUNet`, :class:`models.GSDenoiser`), the proximal map of
the unknown regulariser is replaced by the denoiser (Venkatakrishnan et al. 2013):

- :func:`pnp_pgd`, proximal gradient: :math:`x_{k+1} = D_\sigma\big(x_k - \tau A^T(Ax_k - y)\big)`.
- :func:`pnp_admm`: :math:`x_{k+1} = \operatorname{prox}_{f/\rho}(z_k - u_k)`,
  :math:`z_{k+1} = D_\sigma(x_{k+1} + u_k)`, :math:`u_{k+1} = u_k + x_{k+1} - z_{k+1}`.
- :func:`pnp_hqs`, half-quadratic splitting with DPIR's decreasing noise levels
  (:func:`dpir_schedule`): :math:`x_k = \operatorname{prox}_{f/\alpha_k}(z_{k-1})`,
  :math:`z_k = D_{\sigma_k}(x_k)`.
- :func:`red`, regularisation by denoising: the gradient :math:`x - D_\sigma(x)` of
  :math:`\tfrac12 x^T(x - D_\sigma(x))` in a gradient or a fixed-point iteration.

The data sub-problem :math:`\operatorname{prox}_{f/\alpha}(v) = \arg\min_x \tfrac12\|Ax - y\|^2 +
\tfrac\alpha2\|x - v\|^2` is solved inexactly by :func:`recon.classical.cgls` on the stacked system
:math:`[A; \sqrt\alpha I]\,x \approx [y; \sqrt\alpha v]` (``inner_iter`` iterations, warm started),
or by ``inner_iter`` gradient steps. Every step size is relative to :math:`\|A\|^2`
(``op.norm()``), so the same settings work across operators and units: ``step`` is
:math:`\tau\|A\|^2`, ``rho`` is :math:`\rho/\|A\|^2`, ``lam`` is :math:`\lambda/\|A\|^2`. Noise
levels ``sigma`` are in the units of the image.

All functions work on any batch ``y`` of shape ``(*batch, *op.range_shape)`` and any operator
with ``op(x)``, ``op.T(y)``, ``op.norm()``; they stop after ``n_iter`` iterations or when the
relative change :math:`\max_b \|x_{k+1} - x_k\| / \|x_k\|` falls below ``tol``; they call
``callback(k, x)`` after every iteration; and they raise :class:`DivergenceError` when an iterate
or a denoiser output is not finite, or an iterate's norm exceeds ``divergence_factor`` times
:math:`\max(\|x_0\|, \|y\|/\|A\|)` (a lower bound of the norm of any :math:`x` with
:math:`Ax = y`).

:class:`PnPPGD`, :class:`PnPADMM`, :class:`PnPHQS` and :class:`RED` wrap them as reconstructors
(``forward(y, op) -> x``) for configs; :class:`UnfoldedPnP` unrolls the same iterations with
trainable per-iteration noise levels and step sizes (the TFPnP idea, trained end to end by the
shared :class:`~recon.training.Trainer`). :func:`denoising_objective` and
:func:`denoising_predict` train the denoisers themselves (``recon-train
experiment=ellipses_pnp``).

References: S. V. Venkatakrishnan, C. A. Bouman, B. Wohlberg, "Plug-and-play priors for model
based reconstruction", GlobalSIP 2013. K. Zhang, Y. Li, W. Zuo, L. Zhang, L. Van Gool, R. Timofte,
"Plug-and-play image restoration with deep denoiser prior" (DPIR), IEEE TPAMI 2022. Y. Romano,
M. Elad, P. Milanfar, "The little engine that could: regularization by denoising (RED)", SIAM J.
Imaging Sci. 10(4), 2017. K. Wei, A. Aviles-Rivero, J. Liang, Y. Fu, C.-B. Schönlieb, H. Huang,
"Tuning-free plug-and-play proximal algorithm for inverse imaging problems" (TFPnP), ICML 2020.
S. Hurault, A. Leclaire, N. Papadakis, "Proximal denoiser for convergent plug-and-play
optimization with nonconvex regularization", ICML 2022.

Example
-------
>>> import torch
>>> from operators import MatrixOperator
>>> op = MatrixOperator(torch.randn(40, 64), domain_shape=(8, 8), range_shape=(40,))
>>> smooth = lambda x, sigma: torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
>>> x = pnp_pgd(op(torch.ones(2, 8, 8)), op, smooth, sigma=0.1, n_iter=20)
>>> x.shape
torch.Size([2, 8, 8])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from operators import LinearOperator
from recon.base import Reconstructor, check_measurements
from recon.classical import _check_n_iter, _initial_guess, _LinearOperatorLike, cgls, fbp
from recon.training import Batch, Objective, Predict

__all__ = [
    "ALGORITHMS",
    "INITS",
    "RED",
    "DivergenceError",
    "PnPADMM",
    "PnPHQS",
    "PnPPGD",
    "UnfoldedPnP",
    "denoising_objective",
    "denoising_predict",
    "denoising_task",
    "dpir_schedule",
    "pnp_admm",
    "pnp_hqs",
    "pnp_pgd",
    "red",
]

#: A denoiser: ``denoiser(x, sigma)`` on images ``(N, 1, *spatial)``, sigma a number or tensor.
Denoiser = Callable[[torch.Tensor, Any], torch.Tensor]
Callback = Callable[[int, torch.Tensor], None]

#: Iterations :class:`UnfoldedPnP` can unroll.
ALGORITHMS: tuple[str, ...] = ("pgd", "admm", "hqs")
#: Initial iterates of the reconstructors: zeros or the Hann-filtered FBP.
INITS: tuple[str, ...] = ("zero", "fbp")
#: Solvers of the data sub-problem.
INNER_SOLVERS: tuple[str, ...] = ("cg", "gradient")
#: Forms of RED.
RED_MODES: tuple[str, ...] = ("gradient", "fixed_point")


class DivergenceError(FloatingPointError):
    """A plug-and-play iteration produced NaN/infinite values or its iterates blew up.

    Example
    -------
    >>> issubclass(DivergenceError, FloatingPointError)
    True
    """


# --------------------------------------------------------------------------- checks, helpers
def _check_number(name: str, value: object, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be a finite {kind} number, got {value}")
    return value


def _check_optional(name: str, value: object) -> float | None:
    return None if value is None else _check_number(name, value)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
    return str(value)


def _check_int(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_denoiser(denoiser: object, *, module: bool) -> None:
    if module and not isinstance(denoiser, nn.Module):
        raise ValueError(
            f"denoiser must be a torch.nn.Module (called as denoiser(x, sigma)), got "
            f"{type(denoiser).__name__}"
        )
    if not callable(denoiser):
        raise ValueError(f"denoiser must be callable as denoiser(x, sigma), got {denoiser!r}")


def _op_norm(op: _LinearOperatorLike, device: torch.device) -> float:
    norm = getattr(op, "norm", None)
    if not callable(norm):
        raise ValueError(
            f"{type(op).__name__} has no norm() method; plug-and-play step sizes are relative "
            "to ||A||"
        )
    value = float(norm(device=device) if isinstance(op, LinearOperator) else norm())
    if not value > 0:
        raise ValueError(f"the operator's norm is {value}; cannot scale the step sizes")
    return value


def _norms(v: torch.Tensor, n_trailing: int) -> torch.Tensor:
    """Euclidean norms over the trailing ``n_trailing`` dimensions (detached)."""
    return torch.linalg.vector_norm(v.detach(), dim=tuple(range(-n_trailing, 0)))


def dpir_schedule(sigma_start: float, sigma_end: float, n_iter: int) -> list[float]:
    r"""DPIR's noise levels: ``n_iter`` values log-spaced from ``sigma_start`` to ``sigma_end``.

    .. math:: \sigma_k = \sigma_{\mathrm{start}}\,
              (\sigma_{\mathrm{end}} / \sigma_{\mathrm{start}})^{k / (n - 1)},\quad k = 0..n-1.

    Example
    -------
    >>> [round(s, 3) for s in dpir_schedule(0.2, 0.02, 3)]
    [0.2, 0.063, 0.02]
    """
    start = _check_number("sigma_start", sigma_start)
    end = _check_number("sigma_end", sigma_end)
    n = _check_int("n_iter", n_iter, minimum=1)
    if n == 1:
        return [end]
    return [start * (end / start) ** (k / (n - 1)) for k in range(n)]


class _Stacked(LinearOperator):
    r""":math:`[A; \sqrt\alpha I]` with a flat range ``(m + n,)``: CGLS on it solves the prox."""

    native_autograd = True

    def __init__(self, op: _LinearOperatorLike, sqrt_alpha: float | torch.Tensor) -> None:
        domain, range_ = tuple(op.domain_shape), tuple(op.range_shape)
        self.m, self.n = math.prod(range_), math.prod(domain)
        dtypes = getattr(op, "dtypes", (torch.float32, torch.float64))
        super().__init__(domain, self.m + self.n, dtypes=dtypes)
        self.op, self.sqrt_alpha, self.inner_range = op, sqrt_alpha, range_

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        return torch.cat([self.op(x).reshape(b, self.m), self.sqrt_alpha * x.reshape(b, self.n)], 1)

    def _rmatvec(self, w: torch.Tensor) -> torch.Tensor:
        b = w.shape[0]
        data = self.op.T(w[:, : self.m].reshape(b, *self.inner_range))
        return data + self.sqrt_alpha * w[:, self.m :].reshape(data.shape)


def _data_prox(
    y: torch.Tensor,
    op: _LinearOperatorLike,
    v: torch.Tensor,
    alpha: float | torch.Tensor,
    x_start: torch.Tensor,
    *,
    n_iter: int,
    solver: str,
    a_norm: float,
) -> torch.Tensor:
    r"""Inexact :math:`\arg\min_x \tfrac12\|Ax - y\|^2 + \tfrac\alpha2\|x - v\|^2`.

    Warm started at ``x_start``; ``solver`` is ``"cg"`` (CGLS on the stacked system) or
    ``"gradient"``.
    """
    if solver == "cg":
        sqrt_alpha = alpha.sqrt() if isinstance(alpha, torch.Tensor) else math.sqrt(alpha)
        stacked = _Stacked(op, sqrt_alpha)
        batch = y.shape[: y.ndim - len(tuple(op.range_shape))]
        rhs = torch.cat(
            [y.reshape(*batch, stacked.m), (sqrt_alpha * v).reshape(*batch, stacked.n)], -1
        )
        return cgls(rhs, stacked, n_iter=n_iter, x0=x_start)
    eta = 1.0 / (a_norm**2 + alpha)  # 1/L of the sub-problem's gradient
    x = x_start
    for _ in range(n_iter):
        x = x - eta * (op.T(op(x) - y) + alpha * (x - v))
    return x


class _Monitor:
    """Divergence detection and the relative-change stopping rule of one run."""

    def __init__(
        self,
        name: str,
        x0: torch.Tensor,
        y: torch.Tensor,
        op: _LinearOperatorLike,
        a_norm: float,
        *,
        divergence_factor: float | None,
        tol: float | None,
    ) -> None:
        self.name, self.tol, self.factor = name, tol, divergence_factor
        self.n_domain = len(tuple(op.domain_shape))
        reference = _norms(y, len(tuple(op.range_shape))) / a_norm
        self.reference = torch.maximum(reference, _norms(x0, self.n_domain))

    def denoised(self, k: int, out: torch.Tensor, expected_shape: tuple[int, ...]) -> None:
        if tuple(out.shape) != expected_shape:
            raise ValueError(
                f"{self.name}: the denoiser returned shape {tuple(out.shape)} for input "
                f"{expected_shape}; it must keep the shape"
            )
        if not torch.isfinite(out).all():
            raise DivergenceError(
                f"{self.name}: the denoiser returned NaN or infinite values at iteration {k + 1}"
                "; check the denoiser (and its checkpoint) on this input"
            )

    def check(self, k: int, x: torch.Tensor) -> None:
        if not torch.isfinite(x).all():
            raise DivergenceError(
                f"{self.name} diverged: iterate {k + 1} contains NaN or infinite values; "
                "reduce the step size or raise the noise level sigma"
            )
        if self.factor is None:
            return
        norms = _norms(x, self.n_domain)
        limit = self.factor * self.reference
        bad = (norms > limit) & (self.reference > 0)
        if bad.any():
            i = int(bad.flatten().nonzero()[0])
            raise DivergenceError(
                f"{self.name} diverged: at iteration {k + 1}, ||x|| = "
                f"{float(norms.flatten()[i]):.4g} exceeds divergence_factor "
                f"({self.factor:g}) x max(||x0||, ||y||/||A||) = {float(limit.flatten()[i]):.4g}; "
                "reduce the step size or raise sigma (or pass divergence_factor=None)"
            )

    def converged(self, x_new: torch.Tensor, x_old: torch.Tensor) -> bool:
        if self.tol is None:
            return False
        change = _norms(x_new - x_old, self.n_domain)
        scale = _norms(x_old, self.n_domain).clamp_min(torch.finfo(x_old.dtype).tiny)
        return bool((change / scale).max() < self.tol)


def _denoise(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigma: float | torch.Tensor,
    domain_shape: tuple[int, ...],
    monitor: _Monitor,
    k: int,
) -> torch.Tensor:
    """Apply the denoiser to ``x`` ``(*batch, *domain)`` as images ``(N, 1, *domain)``."""
    images = x.reshape(-1, 1, *domain_shape)
    out = denoiser(images, sigma)
    monitor.denoised(k, out, tuple(images.shape))
    return out.reshape(x.shape)


def _setup(
    name: str,
    y: torch.Tensor,
    op: _LinearOperatorLike,
    n_iter: int,
    x0: torch.Tensor | None,
    tol: float | None,
    divergence_factor: float | None,
) -> tuple[tuple[int, ...], torch.Tensor, float, _Monitor]:
    n_iter = _check_n_iter(n_iter)
    batch_shape = check_measurements(y, op)
    tol = _check_optional("tol", tol)
    divergence_factor = _check_optional("divergence_factor", divergence_factor)
    x = _initial_guess(x0, y, batch_shape, tuple(op.domain_shape))
    a_norm = _op_norm(op, y.device)
    monitor = _Monitor(name, x, y, op, a_norm, divergence_factor=divergence_factor, tol=tol)
    return tuple(op.domain_shape), x, a_norm, monitor


# --------------------------------------------------------------------------- algorithms
def pnp_pgd(
    y: torch.Tensor,
    op: _LinearOperatorLike,
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
        Raise :class:`DivergenceError` when :math:`\|x_k\|` exceeds this multiple of
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
    >>> from recon.classical import landweber
    >>> op = MatrixOperator(torch.randn(30, 16, dtype=torch.float64), domain_shape=(4, 4))
    >>> y = torch.randn(30, dtype=torch.float64)
    >>> x = pnp_pgd(y, op, lambda x, sigma: x, sigma=0.0, n_iter=5, step=1.0)
    >>> torch.allclose(x, landweber(y, op, n_iter=5))
    True
    """
    domain, x, a_norm, monitor = _setup("PnP-PGD", y, op, n_iter, x0, tol, divergence_factor)
    _check_denoiser(denoiser, module=False)
    sigma = _check_number("sigma", sigma, positive=False)
    tau = _check_number("step", step) / a_norm**2
    potential = getattr(denoiser, "potential", None)
    if return_objective and not callable(potential):
        raise ValueError(
            "return_objective needs a gradient-step denoiser with a potential(x, sigma) method "
            "(models.GSDenoiser)"
        )
    n_range = len(tuple(op.range_shape))
    residual = op(x) - y
    objectives = []
    for k in range(n_iter):
        z = x - tau * op.T(residual)
        x_new = _denoise(denoiser, z, sigma, domain, monitor, k)
        monitor.check(k, x_new)
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
    op: _LinearOperatorLike,
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
    domain, x, a_norm, monitor = _setup("PnP-ADMM", y, op, n_iter, x0, tol, divergence_factor)
    _check_denoiser(denoiser, module=False)
    sigma = _check_number("sigma", sigma, positive=False)
    rho = _check_number("rho", rho) * a_norm**2
    inner_iter = _check_int("inner_iter", inner_iter, minimum=1)
    inner = _check_choice("inner solver", inner, INNER_SOLVERS)
    z, u = x, torch.zeros_like(x)
    for k in range(n_iter):
        x = _data_prox(y, op, z - u, rho, x, n_iter=inner_iter, solver=inner, a_norm=a_norm)
        z_new = _denoise(denoiser, x + u, sigma, domain, monitor, k)
        monitor.check(k, z_new)
        u = u + x - z_new
        stop = monitor.converged(z_new, z)
        z = z_new
        if callback is not None:
            callback(k, z)
        if stop:
            break
    return z.clone() if n_iter == 0 else z


def pnp_hqs(
    y: torch.Tensor,
    op: _LinearOperatorLike,
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
    domain, z, a_norm, monitor = _setup("PnP-HQS", y, op, n_iter, x0, tol, divergence_factor)
    _check_denoiser(denoiser, module=False)
    lam = _check_number("lam", lam)
    inner_iter = _check_int("inner_iter", inner_iter, minimum=1)
    inner = _check_choice("inner solver", inner, INNER_SOLVERS)
    sigmas = dpir_schedule(sigma_start, sigma_end, max(n_iter, 1))
    x = z
    for k in range(n_iter):
        alpha = lam * a_norm**2 * (sigmas[-1] / sigmas[k]) ** 2
        x = _data_prox(y, op, z, alpha, x, n_iter=inner_iter, solver=inner, a_norm=a_norm)
        z_new = _denoise(denoiser, x, sigmas[k], domain, monitor, k)
        monitor.check(k, z_new)
        stop = monitor.converged(z_new, z)
        z = z_new
        if callback is not None:
            callback(k, z)
        if stop:
            break
    return z.clone() if n_iter == 0 else z


def red(
    y: torch.Tensor,
    op: _LinearOperatorLike,
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
    domain, x, a_norm, monitor = _setup("RED", y, op, n_iter, x0, tol, divergence_factor)
    _check_denoiser(denoiser, module=False)
    sigma = _check_number("sigma", sigma, positive=False)
    lam = _check_number("lam", lam) * a_norm**2
    mode = _check_choice("RED mode", mode, RED_MODES)
    mu = _check_number("step", step) / (a_norm**2 + 2 * lam)
    inner_iter = _check_int("inner_iter", inner_iter, minimum=1)
    for k in range(n_iter):
        denoised = _denoise(denoiser, x, sigma, domain, monitor, k)
        if mode == "gradient":
            x_new = x - mu * (op.T(op(x) - y) + lam * (x - denoised))
        else:
            x_new = _data_prox(
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


# --------------------------------------------------------------------------- reconstructors
class _PnPReconstructor(Reconstructor):
    """A fixed denoiser (kept in eval mode), an initial iterate, the stopping settings."""

    def __init__(
        self,
        denoiser: nn.Module,
        *,
        n_iter: int,
        init: str,
        tol: float | None,
        divergence_factor: float | None,
    ) -> None:
        super().__init__()
        _check_denoiser(denoiser, module=True)
        self.denoiser = denoiser.eval()
        self.n_iter = _check_n_iter(n_iter)
        self.init = _check_choice("init", init, INITS)
        self.tol = _check_optional("tol", tol)
        self.divergence_factor = _check_optional("divergence_factor", divergence_factor)

    def train(self, mode: bool = True) -> _PnPReconstructor:
        """Set the mode, but keep the denoiser in eval mode (its batch statistics are fixed)."""
        super().train(mode)
        self.denoiser.eval()
        return self

    def _start(self, y: torch.Tensor, op: _LinearOperatorLike) -> torch.Tensor | None:
        check_measurements(y, op)
        if self.init == "fbp":
            return fbp(y, op, filter="hann")
        return None

    def _common(self) -> dict[str, Any]:
        return {"n_iter": self.n_iter, "tol": self.tol, "divergence_factor": self.divergence_factor}


class PnPPGD(_PnPReconstructor):
    r""":func:`pnp_pgd` as a reconstructor: :math:`x_{k+1} = D_\sigma(x_k - \tau A^T(Ax_k - y))`.

    Parameters
    ----------
    denoiser : torch.nn.Module
        ``denoiser(x, sigma)``; kept in eval mode (a trained one from
        :func:`recon.train.load_trained`).
    sigma : float
        Noise level handed to the denoiser.
    n_iter : int
        Maximum iterations.
    step : float
        :math:`\tau\|A\|^2`.
    init : {"zero", "fbp"}
        Initial iterate: zeros or the Hann FBP (needs a 2D :class:`~operators.RayTransform`).
    tol, divergence_factor : float or None
        Stopping and divergence settings of :func:`pnp_pgd`.

    Example
    -------
    >>> from models.dncnn import DnCNN
    >>> recon = PnPPGD(denoiser=DnCNN(channels=8, depth=3), sigma=0.05, n_iter=30)
    >>> recon.extra_repr()
    "sigma=0.05, step=1.0, n_iter=30, init='zero', tol=None"
    """

    def __init__(
        self,
        *,
        denoiser: nn.Module,
        sigma: float,
        n_iter: int = 50,
        step: float = 1.0,
        init: str = "zero",
        tol: float | None = None,
        divergence_factor: float | None = 1e3,
    ) -> None:
        super().__init__(
            denoiser, n_iter=n_iter, init=init, tol=tol, divergence_factor=divergence_factor
        )
        self.sigma = _check_number("sigma", sigma, positive=False)
        self.step = _check_number("step", step)

    def forward(self, y: torch.Tensor, op: _LinearOperatorLike) -> torch.Tensor:
        return pnp_pgd(
            y, op, self.denoiser, sigma=self.sigma, step=self.step, x0=self._start(y, op),
            **self._common(),
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"sigma={self.sigma}, step={self.step}, n_iter={self.n_iter}, init={self.init!r}, "
            f"tol={self.tol}"
        )


class PnPADMM(_PnPReconstructor):
    r""":func:`pnp_admm` as a reconstructor.

    Parameters
    ----------
    denoiser, sigma, n_iter, init, tol, divergence_factor
        As :class:`PnPPGD`.
    rho : float
        Penalty :math:`\rho/\|A\|^2`.
    inner_iter : int
        Iterations of the data sub-problem.
    inner : {"cg", "gradient"}
        Its solver.

    Example
    -------
    >>> from models.dncnn import DnCNN
    >>> PnPADMM(denoiser=DnCNN(channels=8, depth=3), sigma=0.05, rho=0.5).rho
    0.5
    """

    def __init__(
        self,
        *,
        denoiser: nn.Module,
        sigma: float,
        n_iter: int = 30,
        rho: float = 1.0,
        inner_iter: int = 5,
        inner: str = "cg",
        init: str = "zero",
        tol: float | None = None,
        divergence_factor: float | None = 1e3,
    ) -> None:
        super().__init__(
            denoiser, n_iter=n_iter, init=init, tol=tol, divergence_factor=divergence_factor
        )
        self.sigma = _check_number("sigma", sigma, positive=False)
        self.rho = _check_number("rho", rho)
        self.inner_iter = _check_int("inner_iter", inner_iter, minimum=1)
        self.inner = _check_choice("inner solver", inner, INNER_SOLVERS)

    def forward(self, y: torch.Tensor, op: _LinearOperatorLike) -> torch.Tensor:
        return pnp_admm(
            y, op, self.denoiser, sigma=self.sigma, rho=self.rho, inner_iter=self.inner_iter,
            inner=self.inner, x0=self._start(y, op), **self._common(),
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"sigma={self.sigma}, rho={self.rho}, n_iter={self.n_iter}, "
            f"inner_iter={self.inner_iter}, inner={self.inner!r}, init={self.init!r}"
        )


class PnPHQS(_PnPReconstructor):
    r""":func:`pnp_hqs` as a reconstructor (DPIR's schedule).

    Parameters
    ----------
    denoiser, n_iter, init, tol, divergence_factor
        As :class:`PnPPGD`; the denoiser must use its noise level.
    sigma_start, sigma_end : float
        First and last noise level of the log-spaced schedule.
    lam : float
        Weight of the prior relative to :math:`\|A\|^2`.
    inner_iter : int
        Iterations of the data sub-problem.
    inner : {"cg", "gradient"}
        Its solver.

    Example
    -------
    >>> from models.drunet import DRUNet
    >>> PnPHQS(denoiser=DRUNet(channels=8, depth=2, n_blocks=1), n_iter=8).sigma_end
    0.02
    """

    def __init__(
        self,
        *,
        denoiser: nn.Module,
        n_iter: int = 8,
        sigma_start: float = 0.2,
        sigma_end: float = 0.02,
        lam: float = 0.23,
        inner_iter: int = 5,
        inner: str = "cg",
        init: str = "zero",
        tol: float | None = None,
        divergence_factor: float | None = 1e3,
    ) -> None:
        super().__init__(
            denoiser, n_iter=n_iter, init=init, tol=tol, divergence_factor=divergence_factor
        )
        self.sigma_start = _check_number("sigma_start", sigma_start)
        self.sigma_end = _check_number("sigma_end", sigma_end)
        self.lam = _check_number("lam", lam)
        self.inner_iter = _check_int("inner_iter", inner_iter, minimum=1)
        self.inner = _check_choice("inner solver", inner, INNER_SOLVERS)

    def forward(self, y: torch.Tensor, op: _LinearOperatorLike) -> torch.Tensor:
        return pnp_hqs(
            y, op, self.denoiser, sigma_start=self.sigma_start, sigma_end=self.sigma_end,
            lam=self.lam, inner_iter=self.inner_iter, inner=self.inner, x0=self._start(y, op),
            **self._common(),
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"sigma_start={self.sigma_start}, sigma_end={self.sigma_end}, lam={self.lam}, "
            f"n_iter={self.n_iter}, inner_iter={self.inner_iter}, init={self.init!r}"
        )


class RED(_PnPReconstructor):
    r""":func:`red` as a reconstructor.

    Parameters
    ----------
    denoiser, sigma, n_iter, init, tol, divergence_factor
        As :class:`PnPPGD`.
    lam : float
        Regularisation weight :math:`\lambda/\|A\|^2`.
    mode : {"gradient", "fixed_point"}
        The iteration.
    step : float
        Relative gradient step (``mode="gradient"``).
    inner_iter : int
        CG iterations per step (``mode="fixed_point"``).

    Example
    -------
    >>> from models.dncnn import DnCNN
    >>> RED(denoiser=DnCNN(channels=8, depth=3), sigma=0.05, mode="fixed_point").mode
    'fixed_point'
    """

    def __init__(
        self,
        *,
        denoiser: nn.Module,
        sigma: float,
        n_iter: int = 50,
        lam: float = 0.1,
        mode: str = "gradient",
        step: float = 1.0,
        inner_iter: int = 5,
        init: str = "zero",
        tol: float | None = None,
        divergence_factor: float | None = 1e3,
    ) -> None:
        super().__init__(
            denoiser, n_iter=n_iter, init=init, tol=tol, divergence_factor=divergence_factor
        )
        self.sigma = _check_number("sigma", sigma, positive=False)
        self.lam = _check_number("lam", lam)
        self.mode = _check_choice("RED mode", mode, RED_MODES)
        self.step = _check_number("step", step)
        self.inner_iter = _check_int("inner_iter", inner_iter, minimum=1)

    def forward(self, y: torch.Tensor, op: _LinearOperatorLike) -> torch.Tensor:
        return red(
            y, op, self.denoiser, sigma=self.sigma, lam=self.lam, mode=self.mode, step=self.step,
            inner_iter=self.inner_iter, x0=self._start(y, op), **self._common(),
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"sigma={self.sigma}, lam={self.lam}, mode={self.mode!r}, step={self.step}, "
            f"n_iter={self.n_iter}, init={self.init!r}"
        )


# --------------------------------------------------------------------------- learned schedule
class UnfoldedPnP(Reconstructor):
    r"""PnP iterations unrolled with trainable per-iteration noise levels and step sizes.

    The TFPnP idea (Wei et al. 2020) trained end to end: ``n_iter`` iterations of PnP-PGD,
    PnP-ADMM or PnP-HQS, where iteration :math:`k` has its own noise level
    :math:`\sigma_k = e^{s_k}` and step parameter :math:`w_k = e^{t_k}` (:math:`\tau_k\|A\|^2`
    for ``"pgd"``, :math:`\rho_k/\|A\|^2` for ``"admm"``, :math:`\alpha_k/\|A\|^2` for ``"hqs"``),
    with :math:`s, t` learned by back-propagating a reconstruction loss through all iterations
    (:func:`recon.training.supervised_objective`). The log-parametrisation keeps them positive.

    Initialisation reproduces the hand-tuned algorithm, so training starts from it: the levels
    follow :func:`dpir_schedule` (``sigma_start`` to ``sigma_end``; constant when they are
    equal), and the steps are ``step`` (pgd), ``rho`` (admm), or
    :math:`\mathtt{lam}(\sigma_{\mathrm{end}}/\sigma_k)^2` (hqs). Untrained,
    ``UnfoldedPnP(algorithm="hqs", ...)`` returns exactly what :class:`PnPHQS` returns.

    The denoiser is frozen by default (its parameters get ``requires_grad=False`` and it stays in
    eval mode); ``train_denoiser=True`` fine-tunes it together with the schedule.

    Parameters
    ----------
    denoiser : torch.nn.Module
        ``denoiser(x, sigma)``, noise-level aware (the schedule steers it through ``sigma``).
    algorithm : {"pgd", "admm", "hqs"}
        The unrolled iteration.
    n_iter : int
        Unrolled iterations (≥ 1).
    sigma_start, sigma_end : float
        Initial noise-level schedule.
    step : float, optional
        Initial :math:`\tau\|A\|^2` (pgd only; default 1).
    rho : float, optional
        Initial :math:`\rho/\|A\|^2` (admm only; default 1).
    lam : float, optional
        Initial prior weight of the HQS schedule (hqs only; default 0.23).
    inner_iter : int
        CG iterations of the data sub-problem (admm, hqs).
    train_denoiser : bool
        Fine-tune the denoiser too.
    init : {"zero", "fbp"}
        Initial iterate.
    divergence_factor : float or None
        As in :func:`pnp_pgd`.

    Attributes
    ----------
    log_sigma, log_step : torch.nn.Parameter
        :math:`s` and :math:`t`, of shape ``(n_iter,)``.

    Raises
    ------
    ValueError
        For invalid values, or ``step``/``rho``/``lam`` given for another algorithm.

    Example
    -------
    >>> from models.drunet import DRUNet
    >>> net = UnfoldedPnP(denoiser=DRUNet(channels=4, depth=1, n_blocks=1), algorithm="hqs",
    ...                   n_iter=4, sigma_start=0.1, sigma_end=0.01)
    >>> [round(s, 4) for s in net.sigmas().tolist()]
    [0.1, 0.0464, 0.0215, 0.01]
    >>> sum(p.numel() for p in net.parameters() if p.requires_grad)
    8
    """

    def __init__(
        self,
        *,
        denoiser: nn.Module,
        algorithm: str = "hqs",
        n_iter: int = 8,
        sigma_start: float = 0.2,
        sigma_end: float = 0.02,
        step: float | None = None,
        rho: float | None = None,
        lam: float | None = None,
        inner_iter: int = 5,
        train_denoiser: bool = False,
        init: str = "zero",
        divergence_factor: float | None = 1e3,
    ) -> None:
        super().__init__()
        _check_denoiser(denoiser, module=True)
        self.algorithm = _check_choice("algorithm", algorithm, ALGORITHMS)
        self.n_iter = _check_int("n_iter", n_iter, minimum=1)
        self.inner_iter = _check_int("inner_iter", inner_iter, minimum=1)
        self.init = _check_choice("init", init, INITS)
        self.divergence_factor = _check_optional("divergence_factor", divergence_factor)
        if not isinstance(train_denoiser, bool):
            raise ValueError(f"train_denoiser must be a bool, got {train_denoiser!r}")
        self.train_denoiser = train_denoiser
        own = {"pgd": "step", "admm": "rho", "hqs": "lam"}[self.algorithm]
        given = {"step": step, "rho": rho, "lam": lam}
        wrong = sorted(k for k, v in given.items() if v is not None and k != own)
        if wrong:
            raise ValueError(
                f"{', '.join(wrong)} do(es) not apply to algorithm={self.algorithm!r} "
                f"(its step parameter is {own!r})"
            )
        sigmas = torch.tensor(dpir_schedule(sigma_start, sigma_end, n_iter), dtype=torch.float64)
        if self.algorithm == "pgd":
            steps = torch.full((n_iter,), _check_number("step", 1.0 if step is None else step))
        elif self.algorithm == "admm":
            steps = torch.full((n_iter,), _check_number("rho", 1.0 if rho is None else rho))
        else:
            weight = _check_number("lam", 0.23 if lam is None else lam)
            steps = weight * (sigmas[-1] / sigmas) ** 2
        self.log_sigma = nn.Parameter(sigmas.log().float())
        self.log_step = nn.Parameter(steps.double().log().float())
        self.denoiser = denoiser
        if not train_denoiser:
            self.denoiser.requires_grad_(False)
            self.denoiser.eval()

    def train(self, mode: bool = True) -> UnfoldedPnP:
        """Set the mode; a frozen denoiser stays in eval mode."""
        super().train(mode)
        if not self.train_denoiser:
            self.denoiser.eval()
        return self

    def sigmas(self) -> torch.Tensor:
        r"""The noise levels :math:`\sigma_k`, ``(n_iter,)``.

        Example
        -------
        >>> from models.drunet import DRUNet
        >>> net = UnfoldedPnP(denoiser=DRUNet(channels=4, depth=1, n_blocks=1), algorithm="pgd",
        ...                   n_iter=3, sigma_start=0.05, sigma_end=0.05)
        >>> net.sigmas().tolist() == [net.sigmas()[0].item()] * 3
        True
        """
        return self.log_sigma.exp()

    def steps(self) -> torch.Tensor:
        r"""The step parameters :math:`w_k` (relative to :math:`\|A\|^2`), ``(n_iter,)``.

        Example
        -------
        >>> from models.drunet import DRUNet
        >>> net = UnfoldedPnP(denoiser=DRUNet(channels=4, depth=1, n_blocks=1), algorithm="pgd",
        ...                   n_iter=2, step=0.5)
        >>> [round(w, 6) for w in net.steps().tolist()]
        [0.5, 0.5]
        """
        return self.log_step.exp()

    def forward(self, y: torch.Tensor, op: _LinearOperatorLike) -> torch.Tensor:
        """Map ``y`` ``(*batch, *op.range_shape)`` to ``(*batch, *op.domain_shape)``."""
        batch_shape = check_measurements(y, op)
        domain = tuple(op.domain_shape)
        start = fbp(y, op, filter="hann") if self.init == "fbp" else None
        x = _initial_guess(start, y, batch_shape, domain)
        a_norm = _op_norm(op, y.device)
        name = f"UnfoldedPnP({self.algorithm})"
        monitor = _Monitor(
            name, x, y, op, a_norm, divergence_factor=self.divergence_factor, tol=None
        )
        sigmas, steps = self.sigmas().to(y.dtype), self.steps().to(y.dtype)
        z, u = x, torch.zeros_like(x)
        for k in range(self.n_iter):
            if self.algorithm == "pgd":
                tau = steps[k] / a_norm**2
                v = x - tau * op.T(op(x) - y)
                z = x = _denoise(self.denoiser, v, sigmas[k], domain, monitor, k)
            elif self.algorithm == "admm":
                rho = steps[k] * a_norm**2
                x = _data_prox(y, op, z - u, rho, x, n_iter=self.inner_iter, solver="cg",
                               a_norm=a_norm)  # fmt: skip
                z = _denoise(self.denoiser, x + u, sigmas[k], domain, monitor, k)
                u = u + x - z
            else:
                alpha = steps[k] * a_norm**2
                x = _data_prox(y, op, z, alpha, x, n_iter=self.inner_iter, solver="cg",
                               a_norm=a_norm)  # fmt: skip
                z = _denoise(self.denoiser, x, sigmas[k], domain, monitor, k)
            monitor.check(k, z)
        return z

    def extra_repr(self) -> str:
        return (
            f"algorithm={self.algorithm!r}, n_iter={self.n_iter}, inner_iter={self.inner_iter}, "
            f"train_denoiser={self.train_denoiser}, init={self.init!r}"
        )


# --------------------------------------------------------------------------- denoiser training
def _clean_images(batch: Batch) -> torch.Tensor:
    """The clean images of a batch ``(x, y)`` or ``(x,)``: ``x`` of shape ``(B, C, *spatial)``."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and len(batch) in (1, 2):
        return batch[0]
    raise ValueError(
        "the denoising objective needs batches (x, y) or (x,) of clean images x, got "
        f"{type(batch).__name__}"
    )


def _random_patches(x: torch.Tensor, size: int) -> torch.Tensor:
    """One random ``size``-wide patch per image (positions from torch's global RNG)."""
    spatial = x.shape[2:]
    if any(size > n for n in spatial):
        raise ValueError(f"patch_size {size} is larger than the images {tuple(spatial)}")
    patches = []
    for image in x:
        corner = [int(torch.randint(0, n - size + 1, ())) for n in spatial]
        index = tuple(slice(c, c + size) for c in corner)
        patches.append(image[(slice(None), *index)])
    return torch.stack(patches)


def denoising_objective(
    *,
    sigma_min: float = 0.0,
    sigma_max: float = 0.2,
    patch_size: int | None = None,
    jacobian_weight: float = 0.0,
    jacobian_target: float = 0.9,
    jacobian_iter: int = 5,
) -> Objective:
    r"""The training loss of a denoiser on clean images with random noise levels.

    For a batch of clean images :math:`x_b` (the ``x`` of ``(x, y)`` pairs; ``y`` is unused),
    optionally cut to one random ``patch_size`` patch each, draw
    :math:`\sigma_b \sim U[\sigma_{\min}, \sigma_{\max}]` and :math:`n_b \sim N(0, I)` and return

    .. math:: \frac1{B}\sum_b \frac{1}{|x_b|}\|D_\theta(x_b + \sigma_b n_b, \sigma_b) - x_b\|^2
              \;+\; w\,\frac1B\sum_b \max\big(0,\ \|\nabla^2 g_{\sigma_b}(x_b + \sigma_b n_b)\|
              - c\big),

    the second term only with ``jacobian_weight`` :math:`w > 0` (for a
    :class:`models.GSDenoiser`; Hurault et al. 2022's penalty pushing the Lipschitz constant of
    :math:`\nabla g` below :math:`c` < 1, estimated by ``jacobian_iter`` power iterations).
    Randomness comes from torch's global RNG, which the trainer seeds and checkpoints.

    Parameters
    ----------
    sigma_min, sigma_max : float
        Range of the noise levels (image units), ``0 ≤ sigma_min ≤ sigma_max``.
    patch_size : int, optional
        Train on random square patches of this size (faster; the networks are convolutional).
    jacobian_weight : float
        Weight :math:`w` of the Lipschitz penalty (0: none).
    jacobian_target : float
        Its threshold :math:`c`.
    jacobian_iter : int
        Power iterations of its estimate.

    Returns
    -------
    callable
        ``objective(model, batch) -> scalar``, for :class:`recon.training.Trainer`.

    Example
    -------
    >>> from models.dncnn import DnCNN
    >>> _ = torch.manual_seed(0)
    >>> objective = denoising_objective(sigma_max=0.1)
    >>> loss = objective(DnCNN(channels=4, depth=3), (torch.rand(2, 1, 8, 8),))
    >>> loss.ndim, bool(loss > 0)
    (0, True)
    """
    sigma_min = _check_number("sigma_min", sigma_min, positive=False)
    sigma_max = _check_number("sigma_max", sigma_max, positive=False)
    if sigma_max < sigma_min:
        raise ValueError(f"sigma_max ({sigma_max}) must be >= sigma_min ({sigma_min})")
    if patch_size is not None:
        patch_size = _check_int("patch_size", patch_size, minimum=1)
    jacobian_weight = _check_number("jacobian_weight", jacobian_weight, positive=False)
    jacobian_target = _check_number("jacobian_target", jacobian_target)
    jacobian_iter = _check_int("jacobian_iter", jacobian_iter, minimum=1)

    def objective(model: nn.Module, batch: Batch) -> torch.Tensor:
        x = _clean_images(batch)
        if patch_size is not None:
            x = _random_patches(x, patch_size)
        sigma = sigma_min + (sigma_max - sigma_min) * torch.rand(x.shape[0]).to(x)
        noisy = x + sigma.reshape(-1, *[1] * (x.ndim - 1)) * torch.randn_like(x)
        loss = F.mse_loss(model(noisy, sigma), x)
        if jacobian_weight > 0:
            module = getattr(model, "module", model)  # DistributedDataParallel wraps it
            if not hasattr(module, "hessian_norm"):
                raise ValueError(
                    "jacobian_weight > 0 needs a gradient-step denoiser (models.GSDenoiser)"
                )
            norms = module.hessian_norm(noisy, sigma, n_iter=jacobian_iter, create_graph=True)
            loss = loss + jacobian_weight * F.relu(norms - jacobian_target).mean()
        return loss

    return objective


def denoising_predict(*, sigma: float = 0.05, seed: int = 0) -> Predict:
    r"""The validation predictor of a denoiser: ``(D(x + σn, σ), x)`` with fixed seeded noise.

    The noise :math:`n` of a batch comes from a generator seeded with ``seed`` at every call, so
    the validation PSNR of a fixed set is deterministic.

    Parameters
    ----------
    sigma : float
        Validation noise level (image units).
    seed : int
        Seed of the noise.

    Returns
    -------
    callable
        ``predict(model, batch) -> (estimate, truth)``.

    Example
    -------
    >>> identity = lambda x, sigma: x
    >>> x = torch.zeros(2, 1, 8, 8)
    >>> estimate, truth = denoising_predict(sigma=0.1)(identity, (x, None))
    >>> round(float(estimate.std()), 1)
    0.1
    """
    sigma = _check_number("sigma", sigma, positive=False)
    seed = _check_int("seed", seed, minimum=0)

    def predict(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        x = _clean_images(batch)
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
        return model(x + sigma * noise, torch.full((x.shape[0],), sigma).to(x)), x

    return predict


def denoising_task(
    *,
    op: Any = None,
    sigma_min: float = 0.0,
    sigma_max: float = 0.2,
    sigma_val: float = 0.05,
    patch_size: int | None = None,
    jacobian_weight: float = 0.0,
    jacobian_target: float = 0.9,
    jacobian_iter: int = 5,
) -> tuple[Objective, Predict]:
    """:func:`denoising_objective` and :func:`denoising_predict` for ``recon-train``'s
    ``objective`` config (``conf/objective/denoising.yaml``).

    ``recon-train`` hands every objective the operator; denoising does not use it. The other
    parameters are those of the two functions (``sigma_val`` is the validation noise level).

    Example
    -------
    >>> objective, predict = denoising_task(sigma_max=0.1, sigma_val=0.05)
    >>> callable(objective) and callable(predict)
    True
    """
    del op  # denoisers are trained on images alone
    objective = denoising_objective(
        sigma_min=sigma_min,
        sigma_max=sigma_max,
        patch_size=patch_size,
        jacobian_weight=jacobian_weight,
        jacobian_target=jacobian_target,
        jacobian_iter=jacobian_iter,
    )
    return objective, denoising_predict(sigma=sigma_val)
