r"""TV descent with any operator: accelerated projected gradient descent on
:math:`\tfrac12\|A x - y\|^2 + \lambda\,\mathrm{TV}_\varepsilon(x)`, :math:`x \ge 0`, where
:math:`A` is a :class:`~operators.LinearOperator` (gradient :math:`A^T(Ax - y)`) or a learned
operator (its :meth:`~operators.learned.LearnedOperator.gradient`). The iteration is
:func:`recon.solvers.fista`.

Example
-------
>>> import torch
>>> from operators import MatrixOperator
>>> A = MatrixOperator(torch.eye(4).reshape(4, 4))
>>> x = tv_descent(torch.ones(2, 4), A, lam=0.0, n_iter=50, nonneg=False)
>>> torch.allclose(x, torch.ones(2, 4), atol=1e-4)
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from recon.base import Reconstructor, check_measurements
from recon.checks import check_bool, check_n_iter, check_optional_positive, check_positive
from recon.solvers import fista, nonneg_projection, smoothed_tv_gradient, tv_lipschitz, tv_ndim
from recon.solvers.common import initial_guess, operator_norm

__all__ = ["TVDescent", "data_gradient", "tv_descent"]


def data_gradient(op: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Gradient of :math:`\tfrac12\|A x - y\|^2` in ``x``.

    :math:`A^T(Ax - y)` for a linear operator; for a learned (non-linear) operator its own
    ``gradient(x, y)`` (the linearised or the learned adjoint of the residual).

    Example
    -------
    >>> from operators import IdentityOperator
    >>> data_gradient(IdentityOperator(2), torch.ones(2), torch.zeros(2))
    tensor([1., 1.])
    """
    gradient = getattr(op, "gradient", None)
    if callable(gradient):
        return gradient(x, y)
    return op.T(op(x) - y)


def tv_descent(
    y: torch.Tensor,
    op: Any,
    *,
    lam: float,
    eps: float = 0.01,
    n_iter: int = 100,
    lipschitz: float | None = None,
    nonneg: bool = True,
    x0: torch.Tensor | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    r"""Accelerated projected gradient descent (FISTA) on
    :math:`f(x) = \tfrac12\|A x - y\|^2 + \lambda\,\mathrm{TV}_\varepsilon(x)`, optionally
    with :math:`x \ge 0`.

    .. math:: x_{k+1} = P\big(z_k - \tfrac1L \nabla f(z_k)\big), \quad
              z_{k+1} = x_{k+1} + \tfrac{t_k - 1}{t_{k+1}}(x_{k+1} - x_k),

    :math:`L = \|A\|^2 + 8\lambda/\varepsilon` (2D; 12 in 3D) unless ``lipschitz`` is given.
    With a learned operator (not linear) this is the projected gradient scheme of Lunz et al.,
    whose gradient comes from ``op.gradient``; pass ``lipschitz`` computed from the accurate
    model (:func:`~recon.solvers.tv_lipschitz`) so every model takes the same steps. Iterates
    that overflow raise :class:`~recon.solvers.DivergenceError`.

    Parameters
    ----------
    y : torch.Tensor
        Data ``(*batch, *op.range_shape)``.
    op
        A :class:`~operators.LinearOperator` or a :class:`~operators.learned.LearnedOperator`.
    lam, eps : float
        TV weight :math:`\lambda \ge 0` and smoothing :math:`\varepsilon > 0`.
    n_iter : int
        Iterations.
    lipschitz : float, optional
        :math:`L`; by default from ``op.norm()``.
    nonneg : bool
        Project onto :math:`x \ge 0`.
    x0 : torch.Tensor, optional
        Start (default zeros).
    callback : callable, optional
        ``callback(k, x_k)`` after every iteration.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> y = torch.tensor([[-1.0, 2.0]])
    >>> tv_descent(y, IdentityOperator(2), lam=0.0, eps=1.0, n_iter=5, lipschitz=1.0)
    tensor([[0., 2.]])
    """
    batch_shape = check_measurements(y, op)
    lam = check_positive("lam", lam, allow_zero=True)
    eps = check_positive("eps", eps)
    n_iter = check_n_iter(n_iter)
    nonneg = check_bool("nonneg", nonneg)
    domain_shape = tuple(op.domain_shape)
    ndim = tv_ndim(op) if lam > 0 else len(domain_shape)
    if lipschitz is None:
        norm = operator_norm(op, hint="pass lipschitz explicitly")
        lipschitz = tv_lipschitz(norm**2, ndim, lam, eps)
    step = 1.0 / check_positive("lipschitz", lipschitz)
    x = initial_guess(x0, y, batch_shape, domain_shape)

    def gradient(z: torch.Tensor) -> torch.Tensor:
        grad = data_gradient(op, z, y)
        if lam > 0:
            flat = z.reshape(-1, *domain_shape)
            grad = grad + lam * smoothed_tv_gradient(flat, eps=eps, ndim=ndim).reshape(z.shape)
        return grad

    return fista(
        x,
        gradient,
        step=step,
        n_iter=n_iter,
        prox=nonneg_projection if nonneg else None,
        callback=callback,
        name="tv_descent",
    )


class TVDescent(Reconstructor):
    r"""Reconstructor for :func:`tv_descent`: smoothed-TV regularised least squares, ``x ≥ 0``,
    by accelerated projected gradient descent, with a linear or a learned operator.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> TVDescent(lam=0.0, n_iter=3, lipschitz=1.0)(torch.ones(1, 2), IdentityOperator(2))
    tensor([[1., 1.]])
    """

    def __init__(
        self,
        *,
        lam: float,
        eps: float = 0.01,
        n_iter: int = 100,
        lipschitz: float | None = None,
        nonneg: bool = True,
    ) -> None:
        super().__init__()
        self.lam = check_positive("lam", lam, allow_zero=True)
        self.eps = check_positive("eps", eps)
        self.n_iter = check_n_iter(n_iter)
        self.lipschitz = check_optional_positive("lipschitz", lipschitz)
        self.nonneg = check_bool("nonneg", nonneg)

    def forward(self, y: torch.Tensor, op: Any) -> torch.Tensor:
        """Map ``y`` ``(*batch, *op.range_shape)`` to ``(*batch, *op.domain_shape)``."""
        return tv_descent(
            y,
            op,
            lam=self.lam,
            eps=self.eps,
            n_iter=self.n_iter,
            lipschitz=self.lipschitz,
            nonneg=self.nonneg,
        )

    def extra_repr(self) -> str:
        return (
            f"lam={self.lam}, eps={self.eps}, n_iter={self.n_iter}, "
            f"lipschitz={self.lipschitz}, nonneg={self.nonneg}"
        )
