r"""The steps of splitting methods whose prior step is a denoiser, each written once.

The fixed-parameter plug-and-play algorithms (:func:`recon.pnp.pnp_pgd`, :func:`recon.pnp.pnp_admm`,
:func:`recon.pnp.pnp_hqs`, :func:`recon.pnp.red`) and the unrolled ones with learned parameters
(:class:`recon.pnp.UnfoldedPnP`) loop over the same steps:

- :func:`gradient_step`: :math:`x - \tau A^T r` with the residual :math:`r = Ax - y`;
- :func:`data_prox`: :math:`\operatorname{prox}_{f/\alpha}(v) = \arg\min_x \tfrac12\|Ax - y\|^2
  + \tfrac\alpha2\|x - v\|^2`, inexactly, by :func:`recon.solvers.cgls` on the stacked system
  :math:`[A; \sqrt\alpha I]\,x \approx [y; \sqrt\alpha v]` or by gradient steps, warm started;
- :func:`denoise`: a denoiser ``denoiser(x, sigma)`` applied to ``(*batch, *domain)`` iterates
  as images ``(N, 1, *domain)``, its output checked;
- :func:`pgd_step`, :func:`admm_step`, :func:`hqs_step`: one iteration of PnP-PGD, PnP-ADMM
  (scaled form) and half-quadratic splitting, the new iterate checked;
- :class:`IterationMonitor`: divergence detection (NaN/infinite values, or a norm beyond
  ``divergence_factor`` times :math:`\max(\|x_0\|, \|y\|/\|A\|)`) and the relative-change
  stopping rule, made by :func:`start_iteration` with the initial iterate and :math:`\|A\|`.

The step parameters (``tau``, ``rho``, ``alpha``) may be numbers or 0-d tensors (learned ones).

Example
-------
>>> import torch
>>> from operators import IdentityOperator
>>> op = IdentityOperator((2, 2))
>>> y = torch.ones(2, 2)
>>> x, monitor = start_iteration("demo", y, op, None, tol=None, divergence_factor=None)
>>> half = lambda v, sigma: 0.5 * v
>>> z, x = pgd_step(x, op(x) - y, op, tau=1.0, denoiser=half, sigma=0.1, monitor=monitor, k=0)
>>> z[0, 0].item(), x[0, 0].item()
(1.0, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from operators import LinearOperator, OperatorLike
from recon.base import check_measurements
from recon.checks import check_optional_positive
from recon.solvers.common import (
    DivergenceError,
    check_finite_iterate,
    initial_guess,
    operator_norm,
)
from recon.solvers.linear import cgls

__all__ = [
    "INNER_SOLVERS",
    "Denoiser",
    "IterationMonitor",
    "admm_step",
    "check_denoiser",
    "data_prox",
    "denoise",
    "gradient_step",
    "hqs_step",
    "pgd_step",
    "start_iteration",
]

#: A denoiser: ``denoiser(x, sigma)`` on images ``(N, 1, *spatial)``, sigma a number or tensor.
Denoiser = Callable[[torch.Tensor, Any], torch.Tensor]
#: A step parameter: a number, or a 0-d tensor when it is learned.
Scalar = float | torch.Tensor

#: Solvers of the data sub-problem (:func:`data_prox`).
INNER_SOLVERS: tuple[str, ...] = ("cg", "gradient")

_NORM_HINT = "plug-and-play step sizes are relative to ||A||"


def check_denoiser(denoiser: object, *, module: bool) -> None:
    """Raise ``ValueError`` unless ``denoiser`` is callable (and, with ``module``, an
    ``nn.Module``).

    Example
    -------
    >>> check_denoiser(lambda x, sigma: x, module=True)
    Traceback (most recent call last):
    ...
    ValueError: denoiser must be a torch.nn.Module (called as denoiser(x, sigma)), got function
    """
    if module and not isinstance(denoiser, nn.Module):
        raise ValueError(
            f"denoiser must be a torch.nn.Module (called as denoiser(x, sigma)), got "
            f"{type(denoiser).__name__}"
        )
    if not callable(denoiser):
        raise ValueError(f"denoiser must be callable as denoiser(x, sigma), got {denoiser!r}")


def _norms(v: torch.Tensor, n_trailing: int) -> torch.Tensor:
    """Euclidean norms over the trailing ``n_trailing`` dimensions (detached)."""
    return torch.linalg.vector_norm(v.detach(), dim=tuple(range(-n_trailing, 0)))


class IterationMonitor:
    r"""Divergence detection and the relative-change stopping rule of one run.

    Parameters
    ----------
    name : str
        The algorithm's name, for the messages.
    x0 : torch.Tensor
        The initial iterate ``(*batch, *op.domain_shape)``.
    y : torch.Tensor
        The measurements ``(*batch, *op.range_shape)``.
    op : LinearOperator
        The forward operator.
    a_norm : float
        :math:`\|A\|`.
    divergence_factor : float or None
        Raise :class:`~recon.solvers.common.DivergenceError` when an iterate's norm exceeds this
        multiple of :math:`\max(\|x_0\|, \|y\|/\|A\|)`; ``None``: only NaN/infinite values.
    tol : float or None
        :meth:`converged` once the largest relative change falls below ``tol``; ``None``: never.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> op = IdentityOperator((3,))
    >>> monitor = IterationMonitor("demo", torch.zeros(3), torch.ones(3), op, 1.0,
    ...                            divergence_factor=10.0, tol=0.1)
    >>> monitor.check(0, torch.full((3,), 20.0))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    recon.solvers.common.DivergenceError: demo diverged: at iteration 1, ||x|| = 34.64 exceeds ...
    >>> monitor.converged(torch.full((3,), 1.05), torch.ones(3))
    True
    """

    def __init__(
        self,
        name: str,
        x0: torch.Tensor,
        y: torch.Tensor,
        op: OperatorLike,
        a_norm: float,
        *,
        divergence_factor: float | None,
        tol: float | None,
    ) -> None:
        self.name, self.tol, self.factor, self.a_norm = name, tol, divergence_factor, a_norm
        self.domain_shape = tuple(op.domain_shape)
        self.n_domain = len(self.domain_shape)
        reference = _norms(y, len(tuple(op.range_shape))) / a_norm
        self.reference = torch.maximum(reference, _norms(x0, self.n_domain))

    def check_denoised(self, k: int, out: torch.Tensor, expected_shape: tuple[int, ...]) -> None:
        """Raise unless the denoiser's output at iteration ``k`` kept the shape and is finite."""
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
        """Raise :class:`~recon.solvers.common.DivergenceError` if iterate ``k`` is not finite or
        blew up."""
        check_finite_iterate(self.name, k, x, "reduce the step size or raise the noise level sigma")
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
        r"""Whether the largest relative change :math:`\|x_{new} - x_{old}\| / \|x_{old}\|` of the
        batch is below ``tol``."""
        if self.tol is None:
            return False
        change = _norms(x_new - x_old, self.n_domain)
        scale = _norms(x_old, self.n_domain).clamp_min(torch.finfo(x_old.dtype).tiny)
        return bool((change / scale).max() < self.tol)


def start_iteration(
    name: str,
    y: torch.Tensor,
    op: OperatorLike,
    x0: torch.Tensor | None,
    *,
    tol: float | None,
    divergence_factor: float | None,
) -> tuple[torch.Tensor, IterationMonitor]:
    r"""Check ``y`` and the settings; return the initial iterate (``x0`` or zeros) and the run's
    :class:`IterationMonitor` (which holds :math:`\|A\|` as ``a_norm``).

    Example
    -------
    >>> from operators import IdentityOperator
    >>> x, monitor = start_iteration("demo", torch.ones(2, 3), IdentityOperator((3,)), None,
    ...                              tol=None, divergence_factor=1e3)
    >>> x.shape, round(monitor.a_norm, 6)
    (torch.Size([2, 3]), 1.0)
    """
    batch_shape = check_measurements(y, op)
    tol = check_optional_positive("tol", tol)
    divergence_factor = check_optional_positive("divergence_factor", divergence_factor)
    x = initial_guess(x0, y, batch_shape, tuple(op.domain_shape))
    a_norm = operator_norm(op, device=y.device, hint=_NORM_HINT)
    monitor = IterationMonitor(name, x, y, op, a_norm, divergence_factor=divergence_factor, tol=tol)
    return x, monitor


def denoise(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigma: Scalar,
    *,
    monitor: IterationMonitor,
    k: int,
) -> torch.Tensor:
    """Apply the denoiser to ``x`` ``(*batch, *domain)`` as images ``(N, 1, *domain)``; its
    output is checked by ``monitor`` (iteration ``k``).

    Example
    -------
    >>> from operators import IdentityOperator
    >>> x, monitor = start_iteration("demo", torch.ones(3, 4), IdentityOperator((4,)), None,
    ...                              tol=None, divergence_factor=None)
    >>> denoise(lambda v, s: v[..., :2], x, 0.1, monitor=monitor, k=0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: demo: the denoiser returned shape (3, 1, 2) for input (3, 1, 4); it must keep ...
    """
    images = x.reshape(-1, 1, *monitor.domain_shape)
    out = denoiser(images, sigma)
    monitor.check_denoised(k, out, tuple(images.shape))
    return out.reshape(x.shape)


class _Stacked(LinearOperator):
    r""":math:`[A; \sqrt\alpha I]` with a flat range ``(m + n,)``: CGLS on it solves the prox."""

    native_autograd = True

    def __init__(self, op: OperatorLike, sqrt_alpha: Scalar) -> None:
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


def data_prox(
    y: torch.Tensor,
    op: OperatorLike,
    v: torch.Tensor,
    alpha: Scalar,
    x_start: torch.Tensor,
    *,
    n_iter: int,
    solver: str,
    a_norm: float,
) -> torch.Tensor:
    r"""Inexact :math:`\arg\min_x \tfrac12\|Ax - y\|^2 + \tfrac\alpha2\|x - v\|^2`.

    Warm started at ``x_start``; ``solver`` is ``"cg"`` (``n_iter`` iterations of CGLS on the
    stacked system) or ``"gradient"`` (``n_iter`` steps of size :math:`1/(\|A\|^2 + \alpha)`,
    ``a_norm`` being :math:`\|A\|`).

    Example
    -------
    >>> from operators import IdentityOperator
    >>> y, v = torch.full((3,), 4.0), torch.zeros(3)
    >>> data_prox(y, IdentityOperator((3,)), v, 1.0, v, n_iter=1, solver="cg", a_norm=1.0)
    tensor([2., 2., 2.])
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


def gradient_step(
    x: torch.Tensor, residual: torch.Tensor, op: OperatorLike, tau: Scalar
) -> torch.Tensor:
    r"""The gradient step :math:`x - \tau A^T r` on :math:`\tfrac12\|Ax - y\|^2`, given the
    residual :math:`r = Ax - y`.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> gradient_step(torch.ones(2), torch.ones(2), IdentityOperator((2,)), 0.5)
    tensor([0.5000, 0.5000])
    """
    return x - tau * op.T(residual)


def pgd_step(
    x: torch.Tensor,
    residual: torch.Tensor,
    op: OperatorLike,
    *,
    tau: Scalar,
    denoiser: Denoiser,
    sigma: Scalar,
    monitor: IterationMonitor,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""One PnP-PGD iteration :math:`x_{k+1} = D_\sigma(z_k)`,
    :math:`z_k = x_k - \tau A^T(Ax_k - y)`, given the residual :math:`Ax_k - y`.

    Returns ``(z, x_new)``; ``x_new`` is checked by ``monitor``. See the module example.
    """
    z = gradient_step(x, residual, op, tau)
    x_new = denoise(denoiser, z, sigma, monitor=monitor, k=k)
    monitor.check(k, x_new)
    return z, x_new


def admm_step(
    x: torch.Tensor,
    z: torch.Tensor,
    u: torch.Tensor,
    *,
    y: torch.Tensor,
    op: OperatorLike,
    rho: Scalar,
    denoiser: Denoiser,
    sigma: Scalar,
    inner_iter: int,
    inner: str,
    monitor: IterationMonitor,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""One PnP-ADMM iteration (scaled form), returning :math:`(x_{k+1}, z_{k+1}, u_{k+1})`:

    .. math:: x_{k+1} = \operatorname{prox}_{f/\rho}(z_k - u_k)\ (\text{warm started at } x_k),
              \quad z_{k+1} = D_\sigma(x_{k+1} + u_k),\quad u_{k+1} = u_k + x_{k+1} - z_{k+1}.

    :math:`z_{k+1}` is checked by ``monitor``.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> y = torch.full((3,), 4.0)
    >>> x, monitor = start_iteration("demo", y, IdentityOperator((3,)), None, tol=None,
    ...                              divergence_factor=None)
    >>> x, z, u = admm_step(x, x, torch.zeros(3), y=y, op=IdentityOperator((3,)), rho=1.0,
    ...                     denoiser=lambda v, s: v, sigma=0.1, inner_iter=1, inner="cg",
    ...                     monitor=monitor, k=0)
    >>> x.tolist(), u.tolist()
    ([2.0, 2.0, 2.0], [0.0, 0.0, 0.0])
    """
    x = data_prox(y, op, z - u, rho, x, n_iter=inner_iter, solver=inner, a_norm=monitor.a_norm)
    z_new = denoise(denoiser, x + u, sigma, monitor=monitor, k=k)
    monitor.check(k, z_new)
    return x, z_new, u + x - z_new


def hqs_step(
    x: torch.Tensor,
    z: torch.Tensor,
    *,
    y: torch.Tensor,
    op: OperatorLike,
    alpha: Scalar,
    denoiser: Denoiser,
    sigma: Scalar,
    inner_iter: int,
    inner: str,
    monitor: IterationMonitor,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""One half-quadratic splitting iteration, returning :math:`(x_k, z_k)`:

    .. math:: x_k = \operatorname{prox}_{f/\alpha}(z_{k-1})\ (\text{warm started at }
              x_{k-1}),\qquad z_k = D_\sigma(x_k).

    :math:`z_k` is checked by ``monitor``.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> y = torch.full((3,), 4.0)
    >>> x, monitor = start_iteration("demo", y, IdentityOperator((3,)), None, tol=None,
    ...                              divergence_factor=None)
    >>> x, z = hqs_step(x, x, y=y, op=IdentityOperator((3,)), alpha=1.0,
    ...                 denoiser=lambda v, s: 0.5 * v, sigma=0.1, inner_iter=1, inner="cg",
    ...                 monitor=monitor, k=0)
    >>> z.tolist()
    [1.0, 1.0, 1.0]
    """
    x = data_prox(y, op, z, alpha, x, n_iter=inner_iter, solver=inner, a_norm=monitor.a_norm)
    z_new = denoise(denoiser, x, sigma, monitor=monitor, k=k)
    monitor.check(k, z_new)
    return x, z_new
