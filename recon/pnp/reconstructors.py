r"""The plug-and-play algorithms as reconstructors (``forward(y, op) -> x``) for configs:
:class:`PnPPGD`, :class:`PnPADMM`, :class:`PnPHQS` and :class:`RED` hold a fixed denoiser (kept
in eval mode, e.g. one trained by ``recon-train experiment=ellipses/pnp_denoiser``) and the
settings of :func:`~recon.pnp.pnp_pgd`, :func:`~recon.pnp.pnp_admm`, :func:`~recon.pnp.pnp_hqs`
and :func:`~recon.pnp.red`.

Example
-------
>>> import torch
>>> from models.dncnn import DnCNN
>>> from operators import Parallel2D, RayTransform
>>> op = RayTransform(Parallel2D((16, 16), n_angles=6), backend="matrix")
>>> recon = PnPHQS(denoiser=DnCNN(channels=4, depth=2, sigma_input=True), n_iter=2, init="fbp")
>>> with torch.no_grad():
...     recon(op(torch.ones(2, 16, 16)), op).shape
torch.Size([2, 16, 16])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from operators import OperatorLike
from recon.base import Reconstructor, check_measurements
from recon.checks import (
    check_choice,
    check_int,
    check_n_iter,
    check_optional_positive,
    check_positive,
)
from recon.classical import fbp
from recon.pnp.algorithms import RED_MODES, pnp_admm, pnp_hqs, pnp_pgd, red
from recon.solvers.splitting import INNER_SOLVERS, check_denoiser

__all__ = ["INITS", "RED", "PnPADMM", "PnPHQS", "PnPPGD", "initial_iterate"]

#: Initial iterates of the reconstructors: zeros or the Hann-filtered FBP.
INITS: tuple[str, ...] = ("zero", "fbp")


def initial_iterate(y: torch.Tensor, op: OperatorLike, init: str) -> torch.Tensor | None:
    """The initial iterate ``init`` of a reconstructor: ``None`` (zeros) or the Hann FBP of
    ``y`` (needs a 2D :class:`~operators.RayTransform`); ``y`` is checked first.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> initial_iterate(torch.ones(3), IdentityOperator((3,)), "zero") is None
    True
    """
    check_measurements(y, op)
    if init == "fbp":
        return fbp(y, op, filter="hann")
    return None


class _PnPReconstructor(Reconstructor):
    """A fixed denoiser (kept in eval mode), an initial iterate, the stopping settings."""

    def __init__(
        self,
        denoiser: nn.Module,
        *,
        n_iter: int,
        init: str,
        tol: float | None,
        divergence_factor: float | None,
    ) -> None:
        super().__init__()
        check_denoiser(denoiser, module=True)
        self.denoiser = denoiser.eval()
        self.n_iter = check_n_iter(n_iter)
        self.init = check_choice("init", init, INITS)
        self.tol = check_optional_positive("tol", tol)
        self.divergence_factor = check_optional_positive("divergence_factor", divergence_factor)

    def train(self, mode: bool = True) -> _PnPReconstructor:
        """Set the mode, but keep the denoiser in eval mode (its batch statistics are fixed)."""
        super().train(mode)
        self.denoiser.eval()
        return self

    def _start(self, y: torch.Tensor, op: OperatorLike) -> torch.Tensor | None:
        return initial_iterate(y, op, self.init)

    def _common(self) -> dict[str, Any]:
        return {"n_iter": self.n_iter, "tol": self.tol, "divergence_factor": self.divergence_factor}


class PnPPGD(_PnPReconstructor):
    r""":func:`pnp_pgd` as a reconstructor: :math:`x_{k+1} = D_\sigma(x_k - \tau A^T(Ax_k - y))`.

    Parameters
    ----------
    denoiser : torch.nn.Module
        ``denoiser(x, sigma)``; kept in eval mode (a trained one from
        :func:`recon.checkpoints.load_trained`).
    sigma : float
        Noise level handed to the denoiser.
    n_iter : int
        Maximum iterations.
    step : float
        :math:`\tau\|A\|^2`.
    init : {"zero", "fbp"}
        Initial iterate: zeros or the Hann FBP (needs a 2D :class:`~operators.RayTransform`).
    tol, divergence_factor : float or None
        Stopping and divergence settings of :func:`pnp_pgd`.

    Example
    -------
    >>> from models.dncnn import DnCNN
    >>> recon = PnPPGD(denoiser=DnCNN(channels=8, depth=3), sigma=0.05, n_iter=30)
    >>> recon.extra_repr()
    "sigma=0.05, step=1.0, n_iter=30, init='zero', tol=None"
    """

    def __init__(
        self,
        *,
        denoiser: nn.Module,
        sigma: float,
        n_iter: int = 50,
        step: float = 1.0,
        init: str = "zero",
        tol: float | None = None,
        divergence_factor: float | None = 1e3,
    ) -> None:
        super().__init__(
            denoiser, n_iter=n_iter, init=init, tol=tol, divergence_factor=divergence_factor
        )
        self.sigma = check_positive("sigma", sigma, allow_zero=True)
        self.step = check_positive("step", step)

    def forward(self, y: torch.Tensor, op: OperatorLike) -> torch.Tensor:
        return pnp_pgd(
            y, op, self.denoiser, sigma=self.sigma, step=self.step, x0=self._start(y, op),
            **self._common(),
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"sigma={self.sigma}, step={self.step}, n_iter={self.n_iter}, init={self.init!r}, "
            f"tol={self.tol}"
        )


class PnPADMM(_PnPReconstructor):
    r""":func:`pnp_admm` as a reconstructor.

    Parameters
    ----------
    denoiser, sigma, n_iter, init, tol, divergence_factor
        As :class:`PnPPGD`.
    rho : float
        Penalty :math:`\rho/\|A\|^2`.
    inner_iter : int
        Iterations of the data sub-problem.
    inner : {"cg", "gradient"}
        Its solver.

    Example
    -------
    >>> from models.dncnn import DnCNN
    >>> PnPADMM(denoiser=DnCNN(channels=8, depth=3), sigma=0.05, rho=0.5).rho
    0.5
    """

    def __init__(
        self,
        *,
        denoiser: nn.Module,
        sigma: float,
        n_iter: int = 30,
        rho: float = 1.0,
        inner_iter: int = 5,
        inner: str = "cg",
        init: str = "zero",
        tol: float | None = None,
        divergence_factor: float | None = 1e3,
    ) -> None:
        super().__init__(
            denoiser, n_iter=n_iter, init=init, tol=tol, divergence_factor=divergence_factor
        )
        self.sigma = check_positive("sigma", sigma, allow_zero=True)
        self.rho = check_positive("rho", rho)
        self.inner_iter = check_int("inner_iter", inner_iter, minimum=1)
        self.inner = check_choice("inner solver", inner, INNER_SOLVERS)

    def forward(self, y: torch.Tensor, op: OperatorLike) -> torch.Tensor:
        return pnp_admm(
            y, op, self.denoiser, sigma=self.sigma, rho=self.rho, inner_iter=self.inner_iter,
            inner=self.inner, x0=self._start(y, op), **self._common(),
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"sigma={self.sigma}, rho={self.rho}, n_iter={self.n_iter}, "
            f"inner_iter={self.inner_iter}, inner={self.inner!r}, init={self.init!r}"
        )


class PnPHQS(_PnPReconstructor):
    r""":func:`pnp_hqs` as a reconstructor (DPIR's schedule).

    Parameters
    ----------
    denoiser, n_iter, init, tol, divergence_factor
        As :class:`PnPPGD`; the denoiser must use its noise level.
    sigma_start, sigma_end : float
        First and last noise level of the log-spaced schedule.
    lam : float
        Weight of the prior relative to :math:`\|A\|^2`.
    inner_iter : int
        Iterations of the data sub-problem.
    inner : {"cg", "gradient"}
        Its solver.

    Example
    -------
    >>> from models.drunet import DRUNet
    >>> PnPHQS(denoiser=DRUNet(channels=8, depth=2, n_blocks=1), n_iter=8).sigma_end
    0.02
    """

    def __init__(
        self,
        *,
        denoiser: nn.Module,
        n_iter: int = 8,
        sigma_start: float = 0.2,
        sigma_end: float = 0.02,
        lam: float = 0.23,
        inner_iter: int = 5,
        inner: str = "cg",
        init: str = "zero",
        tol: float | None = None,
        divergence_factor: float | None = 1e3,
    ) -> None:
        super().__init__(
            denoiser, n_iter=n_iter, init=init, tol=tol, divergence_factor=divergence_factor
        )
        self.sigma_start = check_positive("sigma_start", sigma_start)
        self.sigma_end = check_positive("sigma_end", sigma_end)
        self.lam = check_positive("lam", lam)
        self.inner_iter = check_int("inner_iter", inner_iter, minimum=1)
        self.inner = check_choice("inner solver", inner, INNER_SOLVERS)

    def forward(self, y: torch.Tensor, op: OperatorLike) -> torch.Tensor:
        return pnp_hqs(
            y, op, self.denoiser, sigma_start=self.sigma_start, sigma_end=self.sigma_end,
            lam=self.lam, inner_iter=self.inner_iter, inner=self.inner, x0=self._start(y, op),
            **self._common(),
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"sigma_start={self.sigma_start}, sigma_end={self.sigma_end}, lam={self.lam}, "
            f"n_iter={self.n_iter}, inner_iter={self.inner_iter}, init={self.init!r}"
        )


class RED(_PnPReconstructor):
    r""":func:`red` as a reconstructor.

    Parameters
    ----------
    denoiser, sigma, n_iter, init, tol, divergence_factor
        As :class:`PnPPGD`.
    lam : float
        Regularisation weight :math:`\lambda/\|A\|^2`.
    mode : {"gradient", "fixed_point"}
        The iteration.
    step : float
        Relative gradient step (``mode="gradient"``).
    inner_iter : int
        CG iterations per step (``mode="fixed_point"``).

    Example
    -------
    >>> from models.dncnn import DnCNN
    >>> RED(denoiser=DnCNN(channels=8, depth=3), sigma=0.05, mode="fixed_point").mode
    'fixed_point'
    """

    def __init__(
        self,
        *,
        denoiser: nn.Module,
        sigma: float,
        n_iter: int = 50,
        lam: float = 0.1,
        mode: str = "gradient",
        step: float = 1.0,
        inner_iter: int = 5,
        init: str = "zero",
        tol: float | None = None,
        divergence_factor: float | None = 1e3,
    ) -> None:
        super().__init__(
            denoiser, n_iter=n_iter, init=init, tol=tol, divergence_factor=divergence_factor
        )
        self.sigma = check_positive("sigma", sigma, allow_zero=True)
        self.lam = check_positive("lam", lam)
        self.mode = check_choice("RED mode", mode, RED_MODES)
        self.step = check_positive("step", step)
        self.inner_iter = check_int("inner_iter", inner_iter, minimum=1)

    def forward(self, y: torch.Tensor, op: OperatorLike) -> torch.Tensor:
        return red(
            y, op, self.denoiser, sigma=self.sigma, lam=self.lam, mode=self.mode, step=self.step,
            inner_iter=self.inner_iter, x0=self._start(y, op), **self._common(),
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"sigma={self.sigma}, lam={self.lam}, mode={self.mode!r}, step={self.step}, "
            f"n_iter={self.n_iter}, init={self.init!r}"
        )


# --------------------------------------------------------------------------- learned schedule
