"""Adjoint checks shipped with the library, for our operators and for users' own.

Example
-------
>>> import torch
>>> from operators import MatrixOperator
>>> from operators.testing import check_adjoint, check_autograd
>>> A = MatrixOperator(torch.randn(7, 4, dtype=torch.float64))
>>> check_adjoint(A) < 1e-12 and check_autograd(A) < 1e-12
True
"""

from __future__ import annotations

import torch

from operators.base import LinearOperator


def _pair(op: LinearOperator, dtype: torch.dtype, seed: int, device, batch: tuple[int, ...]):
    if dtype not in op.dtypes:
        dtype = op.dtypes[0]
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((*batch, *op.domain_shape), generator=gen, dtype=dtype).to(device)
    y = torch.randn((*batch, *op.range_shape), generator=gen, dtype=dtype).to(device)
    return x, y


def check_adjoint(
    op: LinearOperator,
    *,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> float:
    """Relative dot-test error ``|<Ax, y> − <x, Aᵀy>| / (‖Ax‖ ‖y‖)`` for random ``x``, ``y``.

    Zero in exact arithmetic when ``op.T`` is the adjoint of ``op``; about the working precision
    otherwise (``~1e-7`` for backends computing in float32). Falls back to the operator's first
    supported dtype if it does not support ``dtype``.
    """
    x, y = _pair(op, dtype, seed, device, ())
    with torch.no_grad():
        ax = op(x)
        aty = op.T(y)
    lhs = torch.sum(ax.double() * y.double())
    rhs = torch.sum(x.double() * aty.double())
    scale = torch.linalg.vector_norm(ax.double()) * torch.linalg.vector_norm(y.double())
    if scale == 0:
        return float(abs(lhs - rhs))
    return float(abs(lhs - rhs) / scale)


def check_autograd(
    op: LinearOperator,
    *,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> float:
    """Relative error between ``x.grad`` after ``op(x).backward(y)`` and ``op.T(y)``.

    Checks that autograd through the operator applies the adjoint: ``‖x.grad − Aᵀy‖ / ‖Aᵀy‖``.
    """
    x, y = _pair(op, dtype, seed, device, ())
    x.requires_grad_(True)
    op(x).backward(y)
    with torch.no_grad():
        expected = op.T(y)
    denom = torch.linalg.vector_norm(expected)
    err = torch.linalg.vector_norm(x.grad - expected)
    return float(err / denom) if denom > 0 else float(err)
