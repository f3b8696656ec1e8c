r"""Smoothed total variation: a differentiable TV for gradient methods, its gradient, the
objective :math:`\tfrac12\|Ax - y\|^2 + \lambda\,\mathrm{TV}_\varepsilon(x)` and the Lipschitz
bound of its gradient.

Learned mirror descent and its baselines (:mod:`recon.mirror`) and TV descent with learned
operators (:mod:`recon.correction`) minimise it; the non-smooth TV of :func:`tv_pdhg` is its
limit :math:`\varepsilon \to 0`.

Example
-------
>>> import torch
>>> from operators import IdentityOperator
>>> f, op = SmoothedTV(lam=0.5, eps=0.1), IdentityOperator((3, 3))
>>> value, grad = f.value_and_gradient(torch.zeros(3, 3), torch.ones(3, 3), op)
>>> float(value), float(grad.sum())
(4.5, -9.0)
>>> tv_lipschitz(1.0, 2, lam=0.5, eps=0.1)  # 1 + 4 · 2 · 0.5 / 0.1
41.0
"""

from __future__ import annotations

import torch

from operators import OperatorLike
from recon.checks import check_ndim, check_positive
from recon.solvers.common import operator_norm, sq_norm
from recon.solvers.tv import divergence2d, divergence3d, gradient2d, gradient3d, tv_ndim

__all__ = ["SmoothedTV", "smoothed_tv", "smoothed_tv_gradient", "tv_lipschitz"]

_GRADIENT = {2: gradient2d, 3: gradient3d}
_DIVERGENCE = {2: divergence2d, 3: divergence3d}


def smoothed_tv(x: torch.Tensor, *, eps: float, ndim: int = 2) -> torch.Tensor:
    r"""Smoothed isotropic total variation, per batch element.

    .. math:: \mathrm{TV}_\varepsilon(x) = \sum_{\text{pixels}}
              \Big(\sqrt{|(\nabla x)_{\text{pixel}}|^2 + \varepsilon^2} - \varepsilon\Big),

    with the forward-difference gradient of :func:`~recon.solvers.gradient2d` (Neumann
    boundary). It is convex and :math:`C^\infty`, its gradient is
    :math:`(4\,\mathrm{ndim}/\varepsilon)`-Lipschitz, and
    :math:`0 \le \mathrm{TV}(x) - \mathrm{TV}_\varepsilon(x) \le \varepsilon \cdot \#\text{pixels}`.

    Parameters
    ----------
    x : torch.Tensor
        Images ``(*batch, H, W)`` (``ndim=2``) or volumes ``(*batch, D, H, W)``.
    eps : float
        Smoothing :math:`\varepsilon > 0`.
    ndim : {2, 3}
        Spatial dimensions.

    Returns
    -------
    torch.Tensor
        Shape ``batch``.

    Example
    -------
    >>> step = torch.tensor([[0.0, 0.0, 1.0, 1.0]])  # one jump of height 1
    >>> round(float(smoothed_tv(step, eps=1e-6)), 5)
    1.0
    """
    eps = check_positive("eps", eps)
    ndim = check_ndim(ndim)
    q = _GRADIENT[ndim](x)
    magnitude = torch.sqrt(q.square().sum(dim=-ndim - 1) + eps * eps) - eps
    return magnitude.sum(dim=tuple(range(-ndim, 0)))


def smoothed_tv_gradient(x: torch.Tensor, *, eps: float, ndim: int = 2) -> torch.Tensor:
    r"""Gradient of :func:`smoothed_tv`:
    :math:`-\operatorname{div}\big(\nabla x / \sqrt{|\nabla x|^2 + \varepsilon^2}\big)`.

    Parameters
    ----------
    x : torch.Tensor
        Images ``(*batch, H, W)`` or volumes ``(*batch, D, H, W)``.
    eps : float
        Smoothing :math:`\varepsilon > 0`.
    ndim : {2, 3}
        Spatial dimensions.

    Returns
    -------
    torch.Tensor
        Same shape as ``x``.

    Example
    -------
    >>> x = torch.randn(2, 6, 7, dtype=torch.float64, requires_grad=True)
    >>> smoothed_tv(x, eps=0.1).sum().backward()
    >>> torch.allclose(smoothed_tv_gradient(x.detach(), eps=0.1), x.grad)
    True
    """
    eps = check_positive("eps", eps)
    ndim = check_ndim(ndim)
    q = _GRADIENT[ndim](x)
    scale = torch.rsqrt(q.square().sum(dim=-ndim - 1, keepdim=True) + eps * eps)
    return -_DIVERGENCE[ndim](q * scale)


def tv_lipschitz(norm_squared: float, ndim: int, lam: float, eps: float) -> float:
    r"""Lipschitz constant of the gradient of :math:`\tfrac12\|Ax - y\|^2 + \lambda
    \mathrm{TV}_\varepsilon(x)` on ``ndim``-dimensional images:
    :math:`L = \|A\|^2 + 4\,d\,\lambda/\varepsilon` (``norm_squared`` is :math:`\|A\|^2`).

    Pass it as :func:`recon.correction.tv_descent`'s ``lipschitz`` with the accurate model's
    norm so that every model (``A``, ``Ã``, ``A_q``) takes the same steps.

    Example
    -------
    >>> tv_lipschitz(2.0, 2, lam=0.01, eps=0.1)
    2.8
    """
    return norm_squared + (4 * ndim * lam / eps if lam > 0 else 0.0)


class SmoothedTV:
    r"""The objective :math:`f(x) = \tfrac12\|Ax - y\|_2^2 + \lambda\,\mathrm{TV}_\varepsilon(x)`.

    Callable as ``f(x, y, op)`` (values per batch element), with
    :meth:`gradient` :math:`A^T(Ax - y) + \lambda \nabla\mathrm{TV}_\varepsilon(x)`,
    :meth:`value_and_gradient` (one application of :math:`A` and one of :math:`A^T` for both) and
    :meth:`lipschitz`, the bound :math:`L = \|A\|^2 + 4\,\mathrm{ndim}\,\lambda/\varepsilon`
    (:func:`tv_lipschitz`) on the Lipschitz constant of :math:`\nabla f`. As
    :math:`\varepsilon \to 0` it becomes the objective of :func:`~recon.solvers.tv_objective`
    (without the non-negativity constraint).

    Parameters
    ----------
    lam : float
        :math:`\lambda \ge 0`.
    eps : float
        :math:`\varepsilon > 0`.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> f = SmoothedTV(lam=0.0)
    >>> f(torch.ones(2, 3), torch.zeros(2, 3), IdentityOperator((2, 3)))
    tensor(3.)
    """

    def __init__(self, *, lam: float, eps: float = 0.01) -> None:
        self.lam = check_positive("lam", lam, allow_zero=True)
        self.eps = check_positive("eps", eps)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, op: OperatorLike) -> torch.Tensor:
        value = 0.5 * sq_norm(op(x) - y, len(tuple(op.range_shape)))
        if self.lam > 0:
            value = value + self.lam * smoothed_tv(x, eps=self.eps, ndim=tv_ndim(op))
        return value

    def value_and_gradient(
        self, x: torch.Tensor, y: torch.Tensor, op: OperatorLike
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f(x), ∇f(x))`` with one forward and one adjoint application."""
        residual = op(x) - y
        value = 0.5 * sq_norm(residual, len(tuple(op.range_shape)))
        grad = op.T(residual)
        if self.lam > 0:
            ndim = tv_ndim(op)
            value = value + self.lam * smoothed_tv(x, eps=self.eps, ndim=ndim)
            grad = grad + self.lam * smoothed_tv_gradient(x, eps=self.eps, ndim=ndim)
        return value, grad

    def gradient(self, x: torch.Tensor, y: torch.Tensor, op: OperatorLike) -> torch.Tensor:
        """:math:`\\nabla f(x)`, the shape of ``x``."""
        return self.value_and_gradient(x, y, op)[1]

    def lipschitz(self, op: OperatorLike) -> float:
        """:math:`\\|A\\|^2 + 4\\,\\mathrm{ndim}\\,\\lambda/\\varepsilon` (needs ``op.norm()``)."""
        norm = operator_norm(op, hint="give the step size explicitly")
        ndim = tv_ndim(op) if self.lam > 0 else 0
        return tv_lipschitz(norm**2, ndim, self.lam, self.eps)

    def __repr__(self) -> str:
        return f"SmoothedTV(lam={self.lam}, eps={self.eps})"
