"""``CountingOperator``: wraps an operator and counts how many images it was applied to.

Used by the evaluation to report operator applications per image. Forward and adjoint
applications are counted separately; a batch of ``B`` images counts ``B``.

Example
-------
>>> import torch
>>> from operators import MatrixOperator
>>> A = CountingOperator(MatrixOperator(torch.eye(3)))
>>> _ = A.T(A(torch.ones(4, 3)))
>>> A.forward_count, A.adjoint_count
(4, 4)
"""

from __future__ import annotations

import torch

from operators.base import LinearOperator


def _passed_through(name: str) -> property:
    def get(self):
        try:
            return getattr(self.op, name)
        except AttributeError:
            raise AttributeError(f"{type(self.op).__name__} has no {name}") from None

    return property(get, doc=f"The wrapped operator's ``{name}``.")


class CountingOperator(LinearOperator):
    """``op`` with counters ``forward_count`` and ``adjoint_count`` (images processed).

    ``norm()`` is delegated to ``op`` and not counted. The physics that analytic methods read is
    passed through when ``op`` has it: ``geometry`` (CT: FBP, FDK) and ``grid``, ``medium``,
    ``time``, ``sensor`` (photoacoustics: the Fourier line-sensor inversion).
    """

    native_autograd = True

    geometry = _passed_through("geometry")
    grid = _passed_through("grid")
    medium = _passed_through("medium")
    time = _passed_through("time")
    sensor = _passed_through("sensor")

    def __init__(self, op: LinearOperator) -> None:
        super().__init__(op.domain_shape, op.range_shape, dtypes=op.dtypes)
        self.op = op
        self.forward_count = 0
        self.adjoint_count = 0

    def reset(self) -> None:
        """Set both counters to zero."""
        self.forward_count = 0
        self.adjoint_count = 0

    @property
    def total(self) -> int:
        """Forward plus adjoint applications."""
        return self.forward_count + self.adjoint_count

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        self.forward_count += x.shape[0]
        return self.op._apply_flat(x)

    def _rmatvec(self, y: torch.Tensor) -> torch.Tensor:
        self.adjoint_count += y.shape[0]
        return self.op.T._apply_flat(y)

    def norm(
        self,
        *,
        n_iter: int = 100,
        rtol: float = 1e-6,
        seed: int = 0,
        device: torch.device | str | None = None,
        recompute: bool = False,
    ) -> float:
        """The wrapped operator's norm (not counted as applications)."""
        return self.op.norm(n_iter=n_iter, rtol=rtol, seed=seed, device=device, recompute=recompute)
