"""The classical solvers as reconstructors for configs: ``x = FBP()(y, op)``.

They hold no parameters; each validates ``y`` and calls its solver in :mod:`recon.solvers` or
:mod:`recon.classical.analytic`.
"""

from __future__ import annotations

import torch

from operators import OperatorLike
from operators.base import as_torch
from recon.base import Reconstructor, check_measurements
from recon.checks import check_n_iter, check_positive
from recon.classical.analytic import check_filter, check_short_scan, fbp, fdk
from recon.solvers.linear import cgls, landweber, sirt
from recon.solvers.tv import tv_pdhg

__all__ = ["CGLS", "FBP", "FDK", "SIRT", "TV", "Landweber"]


class FBP(Reconstructor):
    """:func:`fbp` as a reconstructor: ``FBP(filter="hann")(y, op)``.

    ``short_scan`` (Parker weights for fan-beam short scans: None detects them) is passed on to
    :func:`fbp`. A numpy ``y`` gives a numpy image, a tensor a tensor.

    Example
    -------
    >>> FBP(filter="hann", frequency_scaling=0.8)
    FBP(filter='hann', frequency_scaling=0.8, padding=True)
    >>> FBP(short_scan=False)
    FBP(filter='ram-lak', frequency_scaling=1.0, padding=True, short_scan=False)
    """

    def __init__(
        self,
        *,
        filter: str = "ram-lak",
        frequency_scaling: float = 1.0,
        padding: bool = True,
        short_scan: bool | None = None,
    ) -> None:
        super().__init__()
        self.filter, self.frequency_scaling = check_filter(filter, frequency_scaling)
        self.padding = bool(padding)
        self.short_scan = check_short_scan(short_scan)

    def forward(self, y: torch.Tensor, op: OperatorLike) -> torch.Tensor:
        check_measurements(as_torch(y)[0], op)
        return fbp(
            y,
            op,
            filter=self.filter,
            frequency_scaling=self.frequency_scaling,
            padding=self.padding,
            short_scan=self.short_scan,
        )

    def extra_repr(self) -> str:
        short = "" if self.short_scan is None else f", short_scan={self.short_scan}"
        return (
            f"filter={self.filter!r}, frequency_scaling={self.frequency_scaling}, "
            f"padding={self.padding}{short}"
        )


class FDK(FBP):
    """:func:`fdk` as a reconstructor: ``FDK()(y, op)`` for cone-beam operators.

    Example
    -------
    >>> FDK(filter="shepp-logan")
    FDK(filter='shepp-logan', frequency_scaling=1.0, padding=True)
    """

    def forward(self, y: torch.Tensor, op: OperatorLike) -> torch.Tensor:
        check_measurements(as_torch(y)[0], op)
        return fdk(
            y,
            op,
            filter=self.filter,
            frequency_scaling=self.frequency_scaling,
            padding=self.padding,
            short_scan=self.short_scan,
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
    """:func:`tv_pdhg` as a reconstructor: ``TV(lam=2.0)(y, op)``.

    Parameters
    ----------
    lam
        Regularisation weight λ ≥ 0; required, because its scale is the data's: it grows with
        the noise level ``σ`` of ``y`` and with the operator. A default for a noise level is
        ``tv_default_lam(op, noise_std=σ)`` (:func:`recon.solvers.tv.tv_default_lam`:
        ``0.7 · σ · ‖A‖_F/√n``; ≈ 2 for the "ellipses" protocol, 128² with 30 angles and 2.5 %
        noise). With validation pairs, ``recon.runs.tuning.tune_tv(op, y_val, x_val)`` returns a
        ``TV`` with the best λ of a grid around that default, as ``recon-eval search=true`` does.
    n_iter
        PDHG iterations.
    nonneg
        Constrain ``x ≥ 0``.
    op_norm
        ``‖A‖`` if known, so that no power iteration runs. Otherwise ``op.norm()`` is used,
        which an operator computes once and caches (a power iteration: seconds for a large
        operator, logged with the value to pass here next time).

    Example
    -------
    >>> TV(lam=0.05, n_iter=200)
    TV(lam=0.05, n_iter=200, nonneg=True)
    >>> TV(lam=2.0, op_norm=60.9)
    TV(lam=2.0, n_iter=300, nonneg=True, op_norm=60.9)
    """

    def __init__(
        self,
        *,
        lam: float,
        n_iter: int = 300,
        nonneg: bool = True,
        op_norm: float | None = None,
    ) -> None:
        super().__init__()
        self.lam = check_positive("lam", lam, allow_zero=True)
        self.n_iter = check_n_iter(n_iter)
        self.nonneg = bool(nonneg)
        self.op_norm = None if op_norm is None else check_positive("op_norm", op_norm)

    def forward(self, y: torch.Tensor, op: OperatorLike) -> torch.Tensor:
        check_measurements(y, op)
        return tv_pdhg(
            y, op, lam=self.lam, n_iter=self.n_iter, nonneg=self.nonneg, op_norm=self.op_norm
        )

    def extra_repr(self) -> str:
        norm = "" if self.op_norm is None else f", op_norm={self.op_norm}"
        return f"lam={self.lam}, n_iter={self.n_iter}, nonneg={self.nonneg}{norm}"
