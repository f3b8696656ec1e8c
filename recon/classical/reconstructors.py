"""The classical solvers as reconstructors for configs: ``x = FBP()(y, op)``.

They hold no parameters; each validates ``y`` and calls its solver in :mod:`recon.solvers` or
:mod:`recon.classical.analytic`.
"""

from __future__ import annotations

import torch

from operators import OperatorLike
from recon.base import Reconstructor, check_measurements
from recon.checks import check_n_iter, check_positive
from recon.classical.analytic import check_filter, fbp, fdk
from recon.solvers.linear import cgls, landweber, sirt
from recon.solvers.tv import tv_pdhg

__all__ = ["CGLS", "FBP", "FDK", "SIRT", "TV", "Landweber"]


class FBP(Reconstructor):
    """:func:`fbp` as a reconstructor: ``FBP(filter="hann")(y, op)``.

    Example
    -------
    >>> FBP(filter="hann", frequency_scaling=0.8)
    FBP(filter='hann', frequency_scaling=0.8, padding=True)
    """

    def __init__(
        self,
        *,
        filter: str = "ram-lak",
        frequency_scaling: float = 1.0,
        padding: bool = True,
    ) -> None:
        super().__init__()
        self.filter, self.frequency_scaling = check_filter(filter, frequency_scaling)
        self.padding = bool(padding)

    def forward(self, y: torch.Tensor, op: OperatorLike) -> torch.Tensor:
        check_measurements(y, op)
        return fbp(
            y,
            op,
            filter=self.filter,
            frequency_scaling=self.frequency_scaling,
            padding=self.padding,
        )

    def extra_repr(self) -> str:
        return (
            f"filter={self.filter!r}, frequency_scaling={self.frequency_scaling}, "
            f"padding={self.padding}"
        )


class FDK(FBP):
    """:func:`fdk` as a reconstructor: ``FDK()(y, op)`` for cone-beam operators.

    Example
    -------
    >>> FDK(filter="shepp-logan")
    FDK(filter='shepp-logan', frequency_scaling=1.0, padding=True)
    """

    def forward(self, y: torch.Tensor, op: OperatorLike) -> torch.Tensor:
        check_measurements(y, op)
        return fdk(
            y,
            op,
            filter=self.filter,
            frequency_scaling=self.frequency_scaling,
            padding=self.padding,
        )


class Landweber(Reconstructor):
    """:func:`landweber` as a reconstructor.

    Example
    -------
    >>> Landweber(n_iter=50, nonneg=True)
    Landweber(n_iter=50, step=None, nonneg=True)
    """

    def __init__(self, *, n_iter: int = 100, step: float | None = None, nonneg: bool = False):
        super().__init__()
        self.n_iter = check_n_iter(n_iter)
        self.step = None if step is None else check_positive("step", step)
        self.nonneg = bool(nonneg)

    def forward(self, y: torch.Tensor, op: OperatorLike) -> torch.Tensor:
        check_measurements(y, op)
        return landweber(y, op, n_iter=self.n_iter, step=self.step, nonneg=self.nonneg)

    def extra_repr(self) -> str:
        return f"n_iter={self.n_iter}, step={self.step}, nonneg={self.nonneg}"


class SIRT(Reconstructor):
    """:func:`sirt` as a reconstructor.

    Example
    -------
    >>> SIRT(n_iter=200)
    SIRT(n_iter=200, nonneg=False)
    """

    def __init__(self, *, n_iter: int = 100, nonneg: bool = False) -> None:
        super().__init__()
        self.n_iter = check_n_iter(n_iter)
        self.nonneg = bool(nonneg)

    def forward(self, y: torch.Tensor, op: OperatorLike) -> torch.Tensor:
        check_measurements(y, op)
        return sirt(y, op, n_iter=self.n_iter, nonneg=self.nonneg)

    def extra_repr(self) -> str:
        return f"n_iter={self.n_iter}, nonneg={self.nonneg}"


class CGLS(Reconstructor):
    """:func:`cgls` as a reconstructor.

    Example
    -------
    >>> CGLS(n_iter=10)
    CGLS(n_iter=10)
    """

    def __init__(self, *, n_iter: int = 20) -> None:
        super().__init__()
        self.n_iter = check_n_iter(n_iter)

    def forward(self, y: torch.Tensor, op: OperatorLike) -> torch.Tensor:
        check_measurements(y, op)
        return cgls(y, op, n_iter=self.n_iter)

    def extra_repr(self) -> str:
        return f"n_iter={self.n_iter}"


class TV(Reconstructor):
    """:func:`tv_pdhg` as a reconstructor; ``lam`` has no default (it depends on the data scale).

    Example
    -------
    >>> TV(lam=0.05, n_iter=200)
    TV(lam=0.05, n_iter=200, nonneg=True)
    """

    def __init__(self, *, lam: float, n_iter: int = 300, nonneg: bool = True) -> None:
        super().__init__()
        self.lam = check_positive("lam", lam, allow_zero=True)
        self.n_iter = check_n_iter(n_iter)
        self.nonneg = bool(nonneg)

    def forward(self, y: torch.Tensor, op: OperatorLike) -> torch.Tensor:
        check_measurements(y, op)
        return tv_pdhg(y, op, lam=self.lam, n_iter=self.n_iter, nonneg=self.nonneg)

    def extra_repr(self) -> str:
        return f"lam={self.lam}, n_iter={self.n_iter}, nonneg={self.nonneg}"
