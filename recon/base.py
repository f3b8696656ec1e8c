"""The reconstructor contract: ``x = recon(y, op)``.

Every reconstructor, classical or learned, is a :class:`torch.nn.Module` whose ``forward(y, op)``
maps measurements ``y`` of shape ``(*batch, *op.range_shape)`` to an image or volume of shape
``(*batch, *op.domain_shape)`` on the device and in the dtype of ``y``. Batch elements are
independent problems. Classical reconstructors hold no parameters; learned ones hold their
networks. Constructors take keyword-only arguments so that a typo in a Hydra config raises.
Implementations call :func:`check_measurements` first, so NaN, infinite or misshapen
measurements raise a ``ValueError`` instead of propagating into the result.

Example
-------
>>> import torch
>>> class Adjoint(Reconstructor):
...     def forward(self, y, op):
...         check_measurements(y, op)
...         return op.T(y)
>>> from operators import MatrixOperator
>>> op = MatrixOperator(torch.eye(3))
>>> Adjoint()(torch.ones(2, 3), op).shape
torch.Size([2, 3])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from operators.base import as_torch

__all__ = ["Reconstructor", "check_measurements", "flatten_measurements", "weight_dtype"]


def check_measurements(
    y: torch.Tensor, op: Any, *, dtype: torch.dtype | None = None
) -> tuple[int, ...]:
    """Validate measurements against an operator and return their batch shape.

    Parameters
    ----------
    y : torch.Tensor
        Measurements, expected of shape ``(*batch, *op.range_shape)``, floating point and finite.
    op : LinearOperator
        Anything with a ``range_shape`` attribute.
    dtype : torch.dtype, optional
        The dtype ``y`` must have: a network's weight dtype (convolutions do not mix them).

    Returns
    -------
    tuple of int
        The leading batch shape of ``y`` (``()`` for a single measurement).

    Raises
    ------
    ValueError
        If ``y`` is not a tensor, is not floating point (or not ``dtype``), does not end in
        ``op.range_shape`` (the message names both shapes), holds no measurement (an empty
        batch) or holds NaN or infinite values.

    Example
    -------
    >>> import torch
    >>> from operators import MatrixOperator
    >>> check_measurements(torch.zeros(4, 2, 5), MatrixOperator(torch.ones(5, 3)))
    (4, 2)
    """
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"y must be a torch.Tensor, got {type(y).__name__}")
    range_shape = tuple(op.range_shape)
    n_range = len(range_shape)
    if y.ndim < n_range or tuple(y.shape[y.ndim - n_range :]) != range_shape:
        raise ValueError(
            f"y has shape {tuple(y.shape)}, but the operator's range_shape is {range_shape}: "
            "y must have shape (*batch, *op.range_shape)"
        )
    if not y.is_floating_point():
        raise ValueError(f"y must be a floating-point tensor, got {y.dtype}")
    if dtype is not None and y.dtype != dtype:
        raise ValueError(
            f"y is {y.dtype}, but this network's weights are {dtype}: pass y.to({dtype}) "
            f"(or convert the network with .to({y.dtype}))"
        )
    if y.numel() == 0:
        raise ValueError(
            f"y has shape {tuple(y.shape)}: an empty batch; pass at least one measurement"
        )
    if not torch.isfinite(y).all():
        raise ValueError("y contains NaN or infinite values")
    return tuple(y.shape[: y.ndim - n_range])


def flatten_measurements(
    y: torch.Tensor, op: Any, ndim: int, *, dtype: torch.dtype | None = None
) -> tuple[tuple[int, ...], torch.Tensor]:
    """Validate ``y`` for a network with ``ndim``-dimensional convolutions; return its batch shape
    and ``y`` as ``(N, 1, *op.range_shape)``, the layout networks take.

    Raises ``ValueError`` (besides those of :func:`check_measurements`) when the operator's domain
    or range does not have ``ndim`` dimensions; ``dtype`` is the network's weight dtype.

    Example
    -------
    >>> import torch
    >>> from operators import IdentityOperator
    >>> batch, flat = flatten_measurements(torch.zeros(2, 3, 4, 4), IdentityOperator((4, 4)), 2)
    >>> batch, tuple(flat.shape)
    ((2, 3), (6, 1, 4, 4))
    """
    batch_shape = check_measurements(y, op, dtype=dtype)
    domain_shape, range_shape = tuple(op.domain_shape), tuple(op.range_shape)
    if len(domain_shape) != ndim or len(range_shape) != ndim:
        raise ValueError(
            f"this network was built with ndim={ndim} convolutions, but the operator maps "
            f"{domain_shape} to {range_shape}: both shapes need {ndim} dimensions"
        )
    return batch_shape, y.reshape(-1, 1, *range_shape)


def weight_dtype(module: nn.Module) -> torch.dtype | None:
    """The dtype of ``module``'s first floating-point parameter (``None`` if it has none).

    Example
    -------
    >>> weight_dtype(nn.Linear(2, 2).double())
    torch.float64
    """
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), None)


class Reconstructor(nn.Module):
    """Base class of reconstructors: ``forward(y, op) -> x``.

    Subclasses implement :meth:`forward` and call :func:`check_measurements` on ``y`` first.

    Calling a reconstructor with a numpy array (or another array-like) runs it on the array as a
    CPU tensor and returns a numpy array; tensors in give tensors out.

    Example
    -------
    >>> import numpy as np
    >>> from operators import IdentityOperator
    >>> class Halve(Reconstructor):
    ...     def forward(self, y, op):
    ...         check_measurements(y, op)
    ...         return y / 2
    >>> Halve()(np.ones((2, 3)), IdentityOperator((3,)))
    array([[0.5, 0.5, 0.5],
           [0.5, 0.5, 0.5]])
    """

    def __call__(self, y: Any, op: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(y, torch.Tensor):
            return super().__call__(y, op, *args, **kwargs)
        tensor, converted = as_torch(y)
        out = super().__call__(tensor, op, *args, **kwargs)
        if converted and isinstance(out, torch.Tensor):
            return out.detach().cpu().numpy()
        return out

    def forward(self, y: torch.Tensor, op: Any) -> torch.Tensor:
        """Map ``y`` of shape ``(*batch, *op.range_shape)`` to ``(*batch, *op.domain_shape)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(y, op)")
