"""Linear operators as differentiable PyTorch modules.

A :class:`LinearOperator` maps tensors of shape ``(*batch, *domain_shape)`` to
``(*batch, *range_shape)``. It knows its adjoint (``op.T``, cached, with ``op.T.T is op``),
composes with ``@``, scales with ``*`` and adds with ``+``/``-``. Gradients flow through every
operator: ``x.grad`` after ``op(x).backward(y)`` is ``op.T(y)``.

Subclasses implement two methods on a *flat batch* (one leading dimension):

- ``_matvec(x)``: ``(B, *domain_shape) -> (B, *range_shape)``
- ``_rmatvec(y)``: ``(B, *range_shape) -> (B, *domain_shape)``, the adjoint.

Numpy arrays (and nested lists) are accepted too and give numpy arrays back, computed on the CPU
through the same torch path (see :meth:`LinearOperator.forward`).

Operators whose ``_matvec`` is not differentiable torch code (ASTRA, ODL, ...) leave
``native_autograd = False``; they are then run through one :class:`torch.autograd.Function` whose
backward applies the adjoint. Operators written in torch set ``native_autograd = True`` and autograd
traces them directly.

Example
-------
>>> import torch
>>> from operators import MatrixOperator
>>> A = MatrixOperator(torch.randn(5, 3, dtype=torch.float64))
>>> x = torch.randn(2, 3, dtype=torch.float64)
>>> (A.T @ A)(x).shape
torch.Size([2, 3])
>>> A.T.T is A
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

Shape = tuple[int, ...]


@runtime_checkable
class OperatorLike(Protocol):
    """What reconstructors use of an operator, for type hints: a :class:`LinearOperator` is one.

    ``op(x)`` maps ``(*batch, *domain_shape)`` to ``(*batch, *range_shape)`` and ``op.T`` is the
    adjoint. Users' own operators need nothing more (plus ``norm()`` where a step size is derived).

    Example
    -------
    >>> isinstance(IdentityOperator((2, 2)), OperatorLike)
    True
    """

    domain_shape: tuple[int, ...]
    range_shape: tuple[int, ...]

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    @property
    def T(self) -> Callable[[torch.Tensor], torch.Tensor]: ...


_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_HALF_DTYPES = (torch.float16, torch.bfloat16)


def as_shape(shape: int | Sequence[int], *, name: str = "shape") -> Shape:
    """Return ``shape`` as a tuple of positive ints, raising ``ValueError`` otherwise.

    Accepts an int (one dimension) or any sequence of ints (lists from Hydra configs too).
    """
    if isinstance(shape, int):
        shape = (shape,)
    try:
        out = tuple(int(s) for s in shape)
    except TypeError as err:
        raise ValueError(f"{name} must be an int or a sequence of ints, got {shape!r}") from err
    if any(s <= 0 for s in out) or any(int(s) != s for s in shape):
        raise ValueError(f"{name} must contain positive integers, got {tuple(shape)!r}")
    return out


def as_torch(x) -> tuple[torch.Tensor, bool]:
    """``(x as a tensor, whether it was not one)``: numpy arrays and array-likes become CPU tensors.

    Tensors pass through unchanged. Floating numpy arrays keep their dtype (memory is shared when
    it can be); integer and boolean arrays and nested lists of numbers become float32, the
    default of operators. Complex or non-numeric input raises ``TypeError``.

    Example
    -------
    >>> as_torch(np.zeros((2, 3)))[0].dtype, as_torch([1, 2])[0].dtype
    (torch.float64, torch.float32)
    """
    if isinstance(x, torch.Tensor):
        return x, False
    try:
        array = np.asarray(x)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"expected a torch.Tensor or a numpy array, got {type(x).__name__}"
        ) from error
    if array.dtype.kind not in "fiub":
        raise TypeError(
            f"expected real numbers (a torch.Tensor or a numpy array), got {type(x).__name__} of "
            f"dtype {array.dtype}"
        )
    if array.dtype.kind != "f":
        array = array.astype(np.float32)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if not array.flags.writeable:  # torch.from_numpy warns on read-only memory
        array = array.copy()
    return torch.from_numpy(np.ascontiguousarray(array)), True


class _ApplyLinear(torch.autograd.Function):
    """Applies a non-torch linear operator; the backward pass applies its adjoint.

    The backward calls ``op.T`` through the same mechanism, so second derivatives work too.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, op: LinearOperator) -> torch.Tensor:
        ctx.op = op
        with torch.no_grad():
            return op._matvec(x)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        return ctx.op.T._apply_flat(grad_out.contiguous()), None


class LinearOperator(nn.Module):
    """A linear map between tensor spaces, acting on trailing dimensions, with an exact adjoint.

    Parameters
    ----------
    domain_shape, range_shape
        Trailing shapes of inputs and outputs.
    dtypes
        Floating dtypes the operator accepts. Other floating dtypes raise ``TypeError``;
        integer, boolean and complex inputs always do.
    """

    #: True when ``_matvec``/``_rmatvec`` are differentiable torch code.
    native_autograd: bool = False

    def __init__(
        self,
        domain_shape: int | Sequence[int],
        range_shape: int | Sequence[int],
        *,
        dtypes: Sequence[torch.dtype] = (torch.float32, torch.float64),
    ) -> None:
        super().__init__()
        self.domain_shape: Shape = as_shape(domain_shape, name="domain_shape")
        self.range_shape: Shape = as_shape(range_shape, name="range_shape")
        self.dtypes: tuple[torch.dtype, ...] = tuple(dtypes)
        # Stored outside nn.Module's registry: the adjoint refers back to this operator,
        # and registering it as a submodule would make a cycle in .modules().
        object.__setattr__(self, "_adjoint_cache", None)
        object.__setattr__(self, "_norm_cache", None)

    # ----------------------------------------------------------------- to implement
    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        """Forward map on a flat batch ``(B, *domain_shape)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement _matvec")

    def _rmatvec(self, y: torch.Tensor) -> torch.Tensor:
        """Adjoint map on a flat batch ``(B, *range_shape)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement _rmatvec")

    def _make_adjoint(self) -> LinearOperator:
        """Build the adjoint operator; override when a better structured adjoint exists."""
        return AdjointOperator(self)

    # ----------------------------------------------------------------- public API
    @property
    def T(self) -> LinearOperator:  # noqa: N802 - the mathematical name
        """The adjoint operator, built once; ``op.T.T is op``."""
        adj = self._adjoint_cache
        if adj is None:
            adj = self._make_adjoint()
            object.__setattr__(self, "_adjoint_cache", adj)
            object.__setattr__(adj, "_adjoint_cache", self)
        return adj

    @property
    def adjoint(self) -> LinearOperator:
        """Alias of :attr:`T`."""
        return self.T

    def forward(self, x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Apply the operator to ``x`` of shape ``(*batch, *domain_shape)``.

        Under :func:`torch.autocast` (mixed-precision training) the operator runs with autocast
        off, and a float16/bfloat16 ``x`` it does not accept is cast to float32 first: the
        physics stays exact and ``op.T`` stays its adjoint, while the networks around it run in
        low precision. Outside autocast a dtype outside ``dtypes`` raises ``TypeError``.

        A numpy array (or nested list) gives a numpy array: float32 and float64 keep their dtype,
        integers and booleans are read as float32 (see :func:`as_torch`). It is computed on the
        CPU by the same code as a tensor, and detached (no autograd through numpy).

        Example
        -------
        >>> A = MatrixOperator(torch.eye(2, dtype=torch.float64))
        >>> A(np.array([1.0, 2.0]))
        array([1., 2.])
        """
        if not isinstance(x, torch.Tensor):
            tensor, _ = as_torch(x)
            return self.forward(tensor).detach().cpu().numpy()
        if isinstance(x, torch.Tensor) and torch.is_autocast_enabled(x.device.type):
            if x.dtype in _HALF_DTYPES and x.dtype not in self.dtypes:
                x = x.float()
            with torch.autocast(x.device.type, enabled=False):
                return self.forward(x)
        batch = self._check_input(x, self.domain_shape, "domain")
        flat = x.reshape((-1, *self.domain_shape))
        out = self._apply_flat(flat)
        return out.reshape((*batch, *self.range_shape))

    def _apply_flat(self, x: torch.Tensor) -> torch.Tensor:
        """Apply to a flat batch, routing non-torch backends through the autograd Function."""
        if self.native_autograd:
            return self._matvec(x)
        return _ApplyLinear.apply(x, self)

    def _check_input(self, x: torch.Tensor, shape: Shape, space: str) -> Shape:
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"{type(self).__name__} expects a torch.Tensor or a numpy array, "
                f"got {type(x).__name__}"
            )
        if x.dtype not in self.dtypes:
            kind = (
                "complex"
                if x.is_complex()
                else "floating"
                if x.dtype in _FLOAT_DTYPES
                else "integer/boolean"
            )
            raise TypeError(
                f"{type(self).__name__} does not support {kind} dtype {x.dtype}; "
                f"supported: {', '.join(str(d) for d in self.dtypes)}"
            )
        n = len(shape)
        if tuple(x.shape[x.ndim - n :]) != shape or x.ndim < n:
            raise ValueError(
                f"{type(self).__name__}: expected input of shape "
                f"(*batch, {', '.join(map(str, shape))}) "
                f"(trailing {space} shape {shape}), got {tuple(x.shape)}"
            )
        return tuple(x.shape[: x.ndim - n])

    def norm(
        self,
        *,
        n_iter: int = 100,
        rtol: float = 1e-6,
        seed: int = 0,
        device: torch.device | str | None = None,
        recompute: bool = False,
    ) -> float:
        """Operator norm ``‖A‖₂`` by power iteration on ``AᵀA`` (cached after the first call).

        Stops after ``n_iter`` iterations or when the estimate changes by less than ``rtol``.
        """
        if self._norm_cache is not None and not recompute:
            return self._norm_cache
        dtype = torch.float64 if torch.float64 in self.dtypes else self.dtypes[0]
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(self.domain_shape, generator=gen, dtype=dtype).to(device or "cpu")
        x = x / torch.linalg.vector_norm(x)
        estimate = 0.0
        with torch.no_grad():
            for _ in range(n_iter):
                z = self.T(self(x))
                new = math.sqrt(float(torch.linalg.vector_norm(z)))
                x = z / max(new * new, torch.finfo(dtype).tiny)
                if abs(new - estimate) <= rtol * new:
                    estimate = new
                    break
                estimate = new
        object.__setattr__(self, "_norm_cache", estimate)
        if self._adjoint_cache is not None:
            object.__setattr__(self._adjoint_cache, "_norm_cache", estimate)
        return estimate

    # ----------------------------------------------------------------- algebra
    def __matmul__(self, other: object) -> LinearOperator:
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return ComposedOperator(self, other)

    def __mul__(self, other: object) -> LinearOperator:
        if isinstance(other, LinearOperator):
            raise TypeError("use `A @ B` to compose operators; `*` only scales by a number")
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            return ScaledOperator(float(other), self)
        return NotImplemented

    __rmul__ = __mul__

    def __neg__(self) -> LinearOperator:
        return ScaledOperator(-1.0, self)

    def __add__(self, other: object) -> LinearOperator:
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return SumOperator(self, other)

    def __sub__(self, other: object) -> LinearOperator:
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return SumOperator(self, ScaledOperator(-1.0, other))

    def extra_repr(self) -> str:
        return f"domain_shape={self.domain_shape}, range_shape={self.range_shape}"


def _common_dtypes(*ops: LinearOperator) -> tuple[torch.dtype, ...]:
    return tuple(d for d in ops[0].dtypes if all(d in op.dtypes for op in ops[1:]))


class AdjointOperator(LinearOperator):
    """The adjoint of ``op``, applying ``op._rmatvec``; usually obtained as ``op.T``."""

    def __init__(self, op: LinearOperator) -> None:
        super().__init__(op.range_shape, op.domain_shape, dtypes=op.dtypes)
        self.op = op
        self.native_autograd = op.native_autograd

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        return self.op._rmatvec(x)

    def _rmatvec(self, y: torch.Tensor) -> torch.Tensor:
        return self.op._matvec(y)


class ComposedOperator(LinearOperator):
    """``A @ B``: apply ``B`` then ``A``. Its adjoint is ``B.T @ A.T``.

    Raises ``ValueError`` when ``B.range_shape != A.domain_shape``.
    """

    native_autograd = True

    def __init__(self, outer: LinearOperator, inner: LinearOperator) -> None:
        if inner.range_shape != outer.domain_shape:
            raise ValueError(
                f"cannot compose: the inner operator's range_shape {inner.range_shape} differs "
                f"from the outer operator's domain_shape {outer.domain_shape}"
            )
        super().__init__(inner.domain_shape, outer.range_shape, dtypes=_common_dtypes(outer, inner))
        self.outer = outer
        self.inner = inner

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer._apply_flat(self.inner._apply_flat(x))

    def _rmatvec(self, y: torch.Tensor) -> torch.Tensor:
        return self.inner.T._apply_flat(self.outer.T._apply_flat(y))

    def _make_adjoint(self) -> LinearOperator:
        return ComposedOperator(self.inner.T, self.outer.T)


class ScaledOperator(LinearOperator):
    """``a * A`` for a real number ``a``."""

    native_autograd = True

    def __init__(self, scale: float, op: LinearOperator) -> None:
        super().__init__(op.domain_shape, op.range_shape, dtypes=op.dtypes)
        self.scale = float(scale)
        self.op = op

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.op._apply_flat(x)

    def _rmatvec(self, y: torch.Tensor) -> torch.Tensor:
        return self.scale * self.op.T._apply_flat(y)

    def _make_adjoint(self) -> LinearOperator:
        return ScaledOperator(self.scale, self.op.T)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class SumOperator(LinearOperator):
    """``A + B`` for operators of equal domain and range shapes."""

    native_autograd = True

    def __init__(self, first: LinearOperator, second: LinearOperator) -> None:
        if (first.domain_shape, first.range_shape) != (second.domain_shape, second.range_shape):
            raise ValueError(
                "cannot add operators of different shapes: "
                f"{first.domain_shape} -> {first.range_shape} and "
                f"{second.domain_shape} -> {second.range_shape}"
            )
        super().__init__(
            first.domain_shape, first.range_shape, dtypes=_common_dtypes(first, second)
        )
        self.first = first
        self.second = second

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        return self.first._apply_flat(x) + self.second._apply_flat(x)

    def _rmatvec(self, y: torch.Tensor) -> torch.Tensor:
        return self.first.T._apply_flat(y) + self.second.T._apply_flat(y)

    def _make_adjoint(self) -> LinearOperator:
        return SumOperator(self.first.T, self.second.T)


class IdentityOperator(LinearOperator):
    """The identity on tensors of trailing shape ``shape``."""

    native_autograd = True

    def __init__(self, shape: int | Sequence[int]) -> None:
        super().__init__(shape, shape, dtypes=_FLOAT_DTYPES)

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        return x

    _rmatvec = _matvec

    def _make_adjoint(self) -> LinearOperator:
        return self


class MatrixOperator(LinearOperator):
    """A dense or sparse matrix ``M`` of shape ``(m, n)`` acting on flattened trailing dims.

    ``domain_shape``/``range_shape`` default to ``(n,)``/``(m,)``; any shapes with ``n``/``m``
    elements may be given. Sparse COO/CSR matrices are applied with ``torch.sparse.mm``.
    The matrix follows the input's device and dtype (converted copies are cached).

    Example
    -------
    >>> M = torch.arange(6.0).reshape(2, 3)
    >>> MatrixOperator(M)(torch.ones(3))
    tensor([ 3., 12.])
    """

    native_autograd = True

    def __init__(
        self,
        matrix: torch.Tensor,
        *,
        domain_shape: Sequence[int] | None = None,
        range_shape: Sequence[int] | None = None,
    ) -> None:
        if not isinstance(matrix, torch.Tensor) or matrix.ndim != 2:
            raise ValueError("matrix must be a 2D torch.Tensor")
        m, n = matrix.shape
        domain_shape = as_shape(domain_shape if domain_shape is not None else (n,))
        range_shape = as_shape(range_shape if range_shape is not None else (m,))
        if math.prod(domain_shape) != n or math.prod(range_shape) != m:
            raise ValueError(
                f"matrix of shape {(m, n)} does not fit domain_shape {domain_shape} "
                f"and range_shape {range_shape}"
            )
        super().__init__(domain_shape, range_shape)
        self.matrix = matrix
        self._copies: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def _matrix_like(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.device, x.dtype)
        if key not in self._copies:
            self._copies[key] = self.matrix.to(device=x.device, dtype=x.dtype)
        return self._copies[key]

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        M = self._matrix_like(x)
        flat = x.reshape(x.shape[0], -1)
        out = (
            torch.sparse.mm(M, flat.T).T if M.is_sparse or M.layout != torch.strided else flat @ M.T
        )
        return out.reshape((x.shape[0], *self.range_shape))

    def _rmatvec(self, y: torch.Tensor) -> torch.Tensor:
        M = self._matrix_like(y)
        flat = y.reshape(y.shape[0], -1)
        if M.layout != torch.strided:
            out = torch.sparse.mm(M.t(), flat.T).T
        else:
            out = flat @ M
        return out.reshape((y.shape[0], *self.domain_shape))
