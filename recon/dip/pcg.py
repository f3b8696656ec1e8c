r"""Preconditioned conjugate gradients for many right-hand sides, and a randomised Nyström
preconditioner: the linear algebra of the linearised DIP at scale.

:func:`pcg` solves :math:`K x = b` for a batch of right-hand sides ``(B, m)`` with a matrix-free
symmetric positive definite ``K`` and an optional preconditioner :math:`\approx K^{-1}`.
:class:`NystromPreconditioner` approximates :math:`K = M + \mu I` (``M`` positive semi-definite,
e.g. :math:`AJ\Sigma_\theta J^TA^T`) by :math:`U\Lambda U^T + \mu I` from one sketch of ``M``
(Frangella, Tropp and Udell, "Randomized Nyström preconditioning", SIAM J. Matrix Anal. Appl.
44(2), 2023).

:func:`recon.solvers.cg_normal` has neither a preconditioner nor a tolerance, hence these.

Example
-------
>>> import torch
>>> m = torch.diag(torch.tensor([100.0, 10.0, 1.0, 0.0], dtype=torch.float64))
>>> mu = torch.tensor(0.1, dtype=torch.float64)
>>> pre = NystromPreconditioner.build(lambda v: v @ m, 4, 3, shift=lambda: mu, dtype=m.dtype)
>>> sorted(round(float(x), 6) for x in pre.lam)
[1.0, 10.0, 100.0]
>>> b = torch.ones(2, 4, dtype=torch.float64)
>>> x, info = pcg(lambda v: v @ m + mu * v, b, precond=pre.inverse, tol=1e-10)
>>> info.n_iter  # the preconditioner is exact here: one step
1
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from recon.checks import check_int, check_positive
from recon.solvers.common import DivergenceError, safe_div

__all__ = ["CGInfo", "Matvec", "NystromPreconditioner", "pcg"]

#: A batched linear map ``(B, m) -> (B, m)``.
Matvec = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class CGInfo:
    """What :func:`pcg` did: iterations and the final relative residual of each system."""

    n_iter: int
    residual: torch.Tensor


def pcg(
    matvec: Matvec,
    b: torch.Tensor,
    *,
    precond: Matvec | None = None,
    tol: float = 1e-6,
    max_iter: int = 100,
    x0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, CGInfo]:
    r"""Preconditioned conjugate gradients for :math:`K x = b`, several systems at once.

    ``b`` is ``(B, m)``: ``B`` right-hand sides, each with its own step sizes; ``matvec`` and
    ``precond`` (:math:`\approx K^{-1}`) act on ``(B, m)``. It stops when every relative residual
    :math:`\lVert b - Kx\rVert / \lVert b\rVert` (the recursively updated one) is below ``tol``
    or after ``max_iter``.

    Raises
    ------
    DivergenceError
        If an iterate turns NaN or infinite (``K`` not positive definite).

    Example
    -------
    >>> K = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    >>> x, info = pcg(lambda v: v @ K, torch.tensor([[1.0, 2.0]], dtype=torch.float64))
    >>> x, info.n_iter  # (1/11, 7/11) in two steps
    (tensor([[0.0909, 0.6364]], dtype=torch.float64), 2)
    """
    tol = check_positive("tol", tol, allow_zero=True)
    max_iter = check_int("max_iter", max_iter, minimum=0)
    if not isinstance(b, torch.Tensor) or b.ndim != 2:
        raise ValueError(f"b must be (B, m), got {getattr(b, 'shape', type(b).__name__)}")
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - matvec(x) if x0 is not None else b.clone()
    b_norm = b.norm(dim=1)
    z = r if precond is None else precond(r)
    p = z
    rz = (r * z).sum(dim=1)
    k = 0
    for k in range(max_iter):  # noqa: B007
        if bool((r.norm(dim=1) <= tol * b_norm).all()):
            break
        q = matvec(p)
        alpha = safe_div(rz, (p * q).sum(dim=1))[:, None]
        x = x + alpha * p
        r = r - alpha * q
        z = r if precond is None else precond(r)
        rz_next = (r * z).sum(dim=1)
        p = z + safe_div(rz_next, rz)[:, None] * p
        rz = rz_next
        if not bool(torch.isfinite(x).all()):
            raise DivergenceError(f"pcg: iterate {k} is not finite; is the matrix SPD?")
    else:
        k = max_iter
    return x, CGInfo(n_iter=k, residual=safe_div(r.norm(dim=1), b_norm))


class NystromPreconditioner:
    r"""Randomised Nyström preconditioner :math:`P = U\Lambda U^T + \mu I` for
    :math:`K = M + \mu I` (Frangella, Tropp and Udell 2023).

    :math:`U\Lambda U^T` is the rank-``r`` Nyström approximation of the positive semi-definite
    :math:`M` from ``r`` products with a random orthonormal sketch; :math:`\mu` is read at each
    use, so only :math:`M` goes stale. :meth:`inverse` applies :math:`P^{-1}` (Woodbury),
    :meth:`sample` draws from :math:`\mathcal N(0, P)`.

    Parameters
    ----------
    u : torch.Tensor
        Orthonormal columns ``(m, r)``.
    lam : torch.Tensor
        Eigenvalues ``(r,)``, non-negative.
    shift : callable
        Returns the current :math:`\mu` (a scalar tensor).
    """

    def __init__(self, u: torch.Tensor, lam: torch.Tensor, shift: Callable[[], torch.Tensor]):
        self.u, self.lam, self.shift = u, lam, shift

    @classmethod
    def build(
        cls,
        psd_mv: Matvec,
        size: int,
        rank: int,
        *,
        shift: Callable[[], torch.Tensor],
        dtype: torch.dtype,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> NystromPreconditioner:
        """Sketch the positive semi-definite ``psd_mv`` (``(B, size) -> (B, size)``) at rank
        ``min(rank, size)`` from one batched product with a random orthonormal ``(size, rank)``
        matrix; ``shift()`` gives :math:`\\mu` at each use."""
        rank = min(check_int("rank", rank, minimum=1), check_int("size", size, minimum=1))
        omega = torch.randn(size, rank, generator=generator, dtype=dtype, device=device)
        omega = torch.linalg.qr(omega).Q
        sketch = psd_mv(omega.T).T  # (size, rank)
        nu = torch.finfo(sketch.dtype).eps * math.sqrt(size) * sketch.norm()  # stabilising shift
        for _ in range(8):  # rounding can leave the shifted core indefinite: raise the shift
            y = sketch + nu * omega
            core = omega.T @ y
            chol, info = torch.linalg.cholesky_ex(0.5 * (core + core.T))
            if int(info) == 0:
                break
            nu = 10 * nu
        else:
            raise ValueError("the Nyström sketch is not positive definite: is psd_mv PSD?")
        b = torch.linalg.solve_triangular(chol, y.T, upper=False).T  # Y C^{-T}
        u, s, _ = torch.linalg.svd(b, full_matrices=False)
        return cls(u, (s**2 - nu).clamp_min(0), shift)

    def inverse(self, v: torch.Tensor) -> torch.Tensor:
        r""":math:`P^{-1} v` for ``v`` ``(B, m)``."""
        mu = self.shift()
        coef = (v @ self.u) * (1 / (self.lam + mu) - 1 / mu)
        return v / mu + coef @ self.u.T

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        r"""``n`` draws from :math:`\mathcal N(0, P)`, ``(n, m)``."""
        kw = {"generator": generator, "dtype": self.u.dtype, "device": self.u.device}
        low = torch.randn(n, len(self.lam), **kw) * self.lam.sqrt()
        return low @ self.u.T + self.shift().sqrt() * torch.randn(n, len(self.u), **kw)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The factors ``u`` and ``lam`` (to resume a fit exactly)."""
        return {"u": self.u, "lam": self.lam}
