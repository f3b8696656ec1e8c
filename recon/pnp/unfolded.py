r"""Plug-and-play iterations unrolled with learned per-iteration noise levels and step sizes.

:class:`UnfoldedPnP` runs the steps of :mod:`recon.solvers.splitting` (the same ones as the
fixed-parameter algorithms of :mod:`recon.pnp.algorithms`) with parameters trained end to end by
the shared :class:`~recon.training.Trainer` (``recon-train experiment=ellipses/pnp_unfolded``).

Example
-------
>>> import torch
>>> from models.drunet import DRUNet
>>> from operators import Parallel2D, RayTransform
>>> op = RayTransform(Parallel2D((16, 16), n_angles=6), backend="matrix")
>>> net = UnfoldedPnP(denoiser=DRUNet(channels=4, depth=1, n_blocks=1), n_iter=2, inner_iter=2)
>>> net(op(torch.ones(1, 16, 16)), op).shape
torch.Size([1, 16, 16])
"""

from __future__ import annotations

import torch
from torch import nn

from operators import OperatorLike
from recon.base import Reconstructor
from recon.checks import (
    check_bool,
    check_choice,
    check_int,
    check_optional_positive,
    check_positive,
)
from recon.pnp.algorithms import dpir_schedule
from recon.pnp.reconstructors import INITS, initial_iterate
from recon.solvers.splitting import admm_step, check_denoiser, hqs_step, pgd_step, start_iteration

__all__ = ["ALGORITHMS", "UnfoldedPnP"]

#: Iterations :class:`UnfoldedPnP` can unroll.
ALGORITHMS: tuple[str, ...] = ("pgd", "admm", "hqs")


class UnfoldedPnP(Reconstructor):
    r"""PnP iterations unrolled with trainable per-iteration noise levels and step sizes.

    The TFPnP idea (Wei et al. 2020) trained end to end: ``n_iter`` iterations of PnP-PGD,
    PnP-ADMM or PnP-HQS, where iteration :math:`k` has its own noise level
    :math:`\sigma_k = e^{s_k}` and step parameter :math:`w_k = e^{t_k}` (:math:`\tau_k\|A\|^2`
    for ``"pgd"``, :math:`\rho_k/\|A\|^2` for ``"admm"``, :math:`\alpha_k/\|A\|^2` for ``"hqs"``),
    with :math:`s, t` learned by back-propagating a reconstruction loss through all iterations
    (:func:`recon.training.supervised_objective`). The log-parametrisation keeps them positive.

    Initialisation reproduces the hand-tuned algorithm, so training starts from it: the levels
    follow :func:`dpir_schedule` (``sigma_start`` to ``sigma_end``; constant when they are
    equal), and the steps are ``step`` (pgd), ``rho`` (admm), or
    :math:`\mathtt{lam}(\sigma_{\mathrm{end}}/\sigma_k)^2` (hqs). Untrained,
    ``UnfoldedPnP(algorithm="hqs", ...)`` returns exactly what :class:`PnPHQS` returns.

    The denoiser is frozen by default (its parameters get ``requires_grad=False`` and it stays in
    eval mode); ``train_denoiser=True`` fine-tunes it together with the schedule.

    Parameters
    ----------
    denoiser : torch.nn.Module
        ``denoiser(x, sigma)``, noise-level aware (the schedule steers it through ``sigma``).
    algorithm : {"pgd", "admm", "hqs"}
        The unrolled iteration.
    n_iter : int
        Unrolled iterations (≥ 1).
    sigma_start, sigma_end : float
        Initial noise-level schedule.
    step : float, optional
        Initial :math:`\tau\|A\|^2` (pgd only; default 1).
    rho : float, optional
        Initial :math:`\rho/\|A\|^2` (admm only; default 1).
    lam : float, optional
        Initial prior weight of the HQS schedule (hqs only; default 0.23).
    inner_iter : int
        CG iterations of the data sub-problem (admm, hqs).
    train_denoiser : bool
        Fine-tune the denoiser too.
    init : {"zero", "fbp"}
        Initial iterate.
    divergence_factor : float or None
        As in :func:`pnp_pgd`.

    Attributes
    ----------
    log_sigma, log_step : torch.nn.Parameter
        :math:`s` and :math:`t`, of shape ``(n_iter,)``.

    Raises
    ------
    ValueError
        For invalid values, or ``step``/``rho``/``lam`` given for another algorithm.

    Example
    -------
    >>> from models.drunet import DRUNet
    >>> net = UnfoldedPnP(denoiser=DRUNet(channels=4, depth=1, n_blocks=1), algorithm="hqs",
    ...                   n_iter=4, sigma_start=0.1, sigma_end=0.01)
    >>> [round(s, 4) for s in net.sigmas().tolist()]
    [0.1, 0.0464, 0.0215, 0.01]
    >>> sum(p.numel() for p in net.parameters() if p.requires_grad)
    8
    """

    def __init__(
        self,
        *,
        denoiser: nn.Module,
        algorithm: str = "hqs",
        n_iter: int = 8,
        sigma_start: float = 0.2,
        sigma_end: float = 0.02,
        step: float | None = None,
        rho: float | None = None,
        lam: float | None = None,
        inner_iter: int = 5,
        train_denoiser: bool = False,
        init: str = "zero",
        divergence_factor: float | None = 1e3,
    ) -> None:
        super().__init__()
        check_denoiser(denoiser, module=True)
        self.algorithm = check_choice("algorithm", algorithm, ALGORITHMS)
        self.n_iter = check_int("n_iter", n_iter, minimum=1)
        self.inner_iter = check_int("inner_iter", inner_iter, minimum=1)
        self.init = check_choice("init", init, INITS)
        self.divergence_factor = check_optional_positive("divergence_factor", divergence_factor)
        self.train_denoiser = check_bool("train_denoiser", train_denoiser)
        own = {"pgd": "step", "admm": "rho", "hqs": "lam"}[self.algorithm]
        given = {"step": step, "rho": rho, "lam": lam}
        wrong = sorted(k for k, v in given.items() if v is not None and k != own)
        if wrong:
            raise ValueError(
                f"{', '.join(wrong)} do(es) not apply to algorithm={self.algorithm!r} "
                f"(its step parameter is {own!r})"
            )
        sigmas = torch.tensor(dpir_schedule(sigma_start, sigma_end, n_iter), dtype=torch.float64)
        if self.algorithm == "pgd":
            steps = torch.full((n_iter,), check_positive("step", 1.0 if step is None else step))
        elif self.algorithm == "admm":
            steps = torch.full((n_iter,), check_positive("rho", 1.0 if rho is None else rho))
        else:
            weight = check_positive("lam", 0.23 if lam is None else lam)
            steps = weight * (sigmas[-1] / sigmas) ** 2
        self.log_sigma = nn.Parameter(sigmas.log().float())
        self.log_step = nn.Parameter(steps.double().log().float())
        self.denoiser = denoiser
        if not train_denoiser:
            self.denoiser.requires_grad_(False)
            self.denoiser.eval()

    def train(self, mode: bool = True) -> UnfoldedPnP:
        """Set the mode; a frozen denoiser stays in eval mode."""
        super().train(mode)
        if not self.train_denoiser:
            self.denoiser.eval()
        return self

    def sigmas(self) -> torch.Tensor:
        r"""The noise levels :math:`\sigma_k`, ``(n_iter,)``.

        Example
        -------
        >>> from models.drunet import DRUNet
        >>> net = UnfoldedPnP(denoiser=DRUNet(channels=4, depth=1, n_blocks=1), algorithm="pgd",
        ...                   n_iter=3, sigma_start=0.05, sigma_end=0.05)
        >>> net.sigmas().tolist() == [net.sigmas()[0].item()] * 3
        True
        """
        return self.log_sigma.exp()

    def steps(self) -> torch.Tensor:
        r"""The step parameters :math:`w_k` (relative to :math:`\|A\|^2`), ``(n_iter,)``.

        Example
        -------
        >>> from models.drunet import DRUNet
        >>> net = UnfoldedPnP(denoiser=DRUNet(channels=4, depth=1, n_blocks=1), algorithm="pgd",
        ...                   n_iter=2, step=0.5)
        >>> [round(w, 6) for w in net.steps().tolist()]
        [0.5, 0.5]
        """
        return self.log_step.exp()

    def forward(self, y: torch.Tensor, op: OperatorLike) -> torch.Tensor:
        """Map ``y`` ``(*batch, *op.range_shape)`` to ``(*batch, *op.domain_shape)``."""
        start = initial_iterate(y, op, self.init)
        name = f"UnfoldedPnP({self.algorithm})"
        x, monitor = start_iteration(
            name, y, op, start, tol=None, divergence_factor=self.divergence_factor
        )
        a_norm = monitor.a_norm
        sigmas, steps = self.sigmas().to(y.dtype), self.steps().to(y.dtype)
        z, u = x, torch.zeros_like(x)
        for k in range(self.n_iter):
            denoiser, sigma = self.denoiser, sigmas[k]
            if self.algorithm == "pgd":
                _, x = pgd_step(
                    x, op(x) - y, op, tau=steps[k] / a_norm**2, denoiser=denoiser, sigma=sigma,
                    monitor=monitor, k=k,
                )  # fmt: skip
                z = x
            elif self.algorithm == "admm":
                x, z, u = admm_step(
                    x, z, u, y=y, op=op, rho=steps[k] * a_norm**2, denoiser=denoiser,
                    sigma=sigma, inner_iter=self.inner_iter, inner="cg", monitor=monitor, k=k,
                )  # fmt: skip
            else:
                x, z = hqs_step(
                    x, z, y=y, op=op, alpha=steps[k] * a_norm**2, denoiser=denoiser,
                    sigma=sigma, inner_iter=self.inner_iter, inner="cg", monitor=monitor, k=k,
                )  # fmt: skip
        return z

    def extra_repr(self) -> str:
        return (
            f"algorithm={self.algorithm!r}, n_iter={self.n_iter}, inner_iter={self.inner_iter}, "
            f"train_denoiser={self.train_denoiser}, init={self.init!r}"
        )
