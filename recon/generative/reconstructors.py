"""The generative regularisers as reconstructors (``forward(y, op) -> x``), and the generator
they load.

:class:`HardGenerative`, :class:`SoftGenerative` and :class:`SparseDeviationGenerative` hold a
trained generator and the settings of :func:`~recon.generative.formulations.hard_generative`,
:func:`~recon.generative.formulations.soft_generative` and
:func:`~recon.generative.formulations.sparse_deviation_generative`; ``solve(y, op)`` returns the
whole :class:`~recon.generative.latent.GenerativeResult`. :func:`load_generator` gives them a
trained generator (``conf/recon/generative_*.yaml``).

Example
-------
>>> import torch
>>> from models import Autoencoder
>>> from operators import Parallel2D, RayTransform
>>> op = RayTransform(Parallel2D((16, 16), n_angles=8), backend="matrix")
>>> ae = Autoencoder(image_size=16, latent_dim=8, channels=4)
>>> recon = SoftGenerative(generator=ae, lam=1.0, mu=0.01, n_iter=5, n_restarts=2)
>>> recon(torch.rand(3, 1, 8, 23), op).shape
torch.Size([3, 1, 16, 16])
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from operators import OperatorLike
from recon.base import Reconstructor, check_measurements
from recon.checkpoints import load_trained
from recon.checks import check_choice, check_int, check_n_iter, check_positive
from recon.generative.formulations import (
    hard_generative,
    soft_generative,
    sparse_deviation_generative,
)
from recon.generative.latent import INITS, GenerativeResult, check_generator

__all__ = ["HardGenerative", "SoftGenerative", "SparseDeviationGenerative", "load_generator"]

logger = logging.getLogger(__name__)


def load_generator(*, model: nn.Module, checkpoint: str | Path | None = None) -> nn.Module:
    """A generator for the reconstructors: ``model`` with the weights of ``checkpoint``, eval mode.

    ``checkpoint`` is a file written by :class:`recon.training.Trainer` (``recon-train
    experiment=generative/{ae,vae,gan}``): anything with a ``"model"`` state dict, loaded as data
    only by :func:`recon.checkpoints.load_trained`. With ``checkpoint=None`` the model keeps its
    (untrained) weights and a warning says so: what configs instantiated without a trained run
    get.

    Parameters
    ----------
    model : torch.nn.Module
        An :class:`~models.Autoencoder`, :class:`~models.VariationalAutoencoder` or
        :class:`~models.GAN` (anything with ``latent_dim`` and ``generate``).
    checkpoint : str or Path, optional
        The checkpoint file.

    Raises
    ------
    ValueError
        If ``model`` is not a generator, or the checkpoint holds no ``"model"``.
    FileNotFoundError
        If the checkpoint does not exist.
    recon.checkpoints.UnsafeCheckpointError
        If the file holds objects that only full unpickling could load.

    Example
    -------
    >>> from models import Autoencoder
    >>> load_generator(model=Autoencoder(image_size=16, latent_dim=4, channels=4)).training
    False
    """
    model = check_generator(model)
    if checkpoint is None:
        logger.warning(
            "generator %s has no checkpoint: its weights are untrained", type(model).__name__
        )
        return model.eval()
    return load_trained(model, checkpoint)


# --------------------------------------------------------------------------- reconstructors
class _GenerativeReconstructor(Reconstructor):
    """Shared settings of the three generative reconstructors."""

    def __init__(
        self,
        *,
        generator: nn.Module,
        n_iter: int,
        lr: float,
        n_restarts: int,
        init: str,
        restart_std: float,
        seed: int,
    ) -> None:
        super().__init__()
        self.generator = check_generator(generator)
        self.n_iter = check_n_iter(n_iter)
        self.lr = check_positive("lr", lr)
        self.n_restarts = check_int("n_restarts", n_restarts, minimum=1)
        self.init = check_choice("init", init, INITS)
        self.restart_std = check_positive("restart_std", restart_std, allow_zero=True)
        self.seed = check_int("seed", seed, minimum=0)

    def _common(self) -> dict[str, Any]:
        return {
            "n_iter": self.n_iter,
            "lr": self.lr,
            "n_restarts": self.n_restarts,
            "init": self.init,
            "restart_std": self.restart_std,
            "seed": self.seed,
        }

    def solve(self, y: torch.Tensor, op: OperatorLike) -> GenerativeResult:
        """The full :class:`GenerativeResult` (``forward`` returns its ``x``)."""
        raise NotImplementedError

    def forward(self, y: torch.Tensor, op: OperatorLike) -> torch.Tensor:
        check_measurements(y, op)
        return self.solve(y, op).x

    def extra_repr(self) -> str:
        common = ", ".join(f"{k}={v!r}" for k, v in self._common().items())
        return f"{self._weights()}, {common}"

    def _weights(self) -> str:
        raise NotImplementedError


class HardGenerative(_GenerativeReconstructor):
    r""":func:`hard_generative` as a reconstructor: :math:`x = G(\hat z)`,
    :math:`\hat z = \arg\min_z \|AG(z) - y\|^2 + α\|z\|^2`.

    Parameters
    ----------
    generator : torch.nn.Module
        A trained generator (``latent_dim``, ``generate``; ``latent`` for the encoder start),
        e.g. from :func:`load_generator`.
    alpha : float
        α ≥ 0 (choose it on validation data with :func:`recon.runs.search.grid_search`).
    n_iter, lr, n_restarts, init, restart_std, seed
        As :func:`hard_generative`.

    Example
    -------
    >>> from models import Autoencoder
    >>> recon = HardGenerative(generator=Autoencoder(image_size=16, latent_dim=4, channels=4),
    ...                        alpha=0.1, n_restarts=8)
    >>> recon.alpha, recon.n_restarts, recon.init
    (0.1, 8, 'auto')
    """

    def __init__(
        self,
        *,
        generator: nn.Module,
        alpha: float,
        n_iter: int = 200,
        lr: float = 0.05,
        n_restarts: int = 4,
        init: str = "auto",
        restart_std: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            generator=generator,
            n_iter=n_iter,
            lr=lr,
            n_restarts=n_restarts,
            init=init,
            restart_std=restart_std,
            seed=seed,
        )
        self.alpha = check_positive("alpha", alpha, allow_zero=True)

    def solve(self, y: torch.Tensor, op: OperatorLike) -> GenerativeResult:
        return hard_generative(y, op, self.generator, alpha=self.alpha, **self._common())

    def _weights(self) -> str:
        return f"alpha={self.alpha!r}"


class SoftGenerative(_GenerativeReconstructor):
    r""":func:`soft_generative` as a reconstructor:
    :math:`\min_{x,z}\|Ax - y\|^2 + λ(μ\|z\|^2 + \|x - G(z)\|^2)`.

    Parameters
    ----------
    generator : torch.nn.Module
        A trained generator.
    lam, mu : float
        λ > 0, μ ≥ 0 (choose them on validation data).
    cg_iter : int
        CG steps on ``x`` per iteration.
    n_iter, lr, n_restarts, init, restart_std, seed
        As :func:`soft_generative`.

    Example
    -------
    >>> from models import Autoencoder
    >>> SoftGenerative(generator=Autoencoder(image_size=16, latent_dim=4, channels=4),
    ...                lam=10.0, mu=0.01).cg_iter
    5
    """

    def __init__(
        self,
        *,
        generator: nn.Module,
        lam: float,
        mu: float,
        n_iter: int = 200,
        cg_iter: int = 5,
        lr: float = 0.05,
        n_restarts: int = 4,
        init: str = "auto",
        restart_std: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            generator=generator,
            n_iter=n_iter,
            lr=lr,
            n_restarts=n_restarts,
            init=init,
            restart_std=restart_std,
            seed=seed,
        )
        self.lam = check_positive("lam", lam)
        self.mu = check_positive("mu", mu, allow_zero=True)
        self.cg_iter = check_int("cg_iter", cg_iter, minimum=1)

    def solve(self, y: torch.Tensor, op: OperatorLike) -> GenerativeResult:
        return soft_generative(
            y,
            op,
            self.generator,
            lam=self.lam,
            mu=self.mu,
            cg_iter=self.cg_iter,
            **self._common(),
        )

    def _weights(self) -> str:
        return f"lam={self.lam!r}, mu={self.mu!r}, cg_iter={self.cg_iter}"


class SparseDeviationGenerative(_GenerativeReconstructor):
    r""":func:`sparse_deviation_generative` as a reconstructor: :math:`x = G(\hat z) + \hat u`,
    :math:`(\hat z, \hat u) = \arg\min \|A(G(z) + u) - y\|^2 + λμ\|z\|^2 + λ\|u\|_1`.

    Parameters
    ----------
    generator : torch.nn.Module
        A trained generator.
    lam, mu : float
        λ ≥ 0, μ ≥ 0 (choose them on validation data).
    inner_iter : int
        FISTA steps on ``u`` per iteration.
    n_iter, lr, n_restarts, init, restart_std, seed
        As :func:`sparse_deviation_generative`.

    Example
    -------
    >>> from models import Autoencoder
    >>> SparseDeviationGenerative(generator=Autoencoder(image_size=16, latent_dim=4, channels=4),
    ...                           lam=1.0, mu=0.1).inner_iter
    5
    """

    def __init__(
        self,
        *,
        generator: nn.Module,
        lam: float,
        mu: float,
        n_iter: int = 200,
        inner_iter: int = 5,
        lr: float = 0.05,
        n_restarts: int = 4,
        init: str = "auto",
        restart_std: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            generator=generator,
            n_iter=n_iter,
            lr=lr,
            n_restarts=n_restarts,
            init=init,
            restart_std=restart_std,
            seed=seed,
        )
        self.lam = check_positive("lam", lam, allow_zero=True)
        self.mu = check_positive("mu", mu, allow_zero=True)
        self.inner_iter = check_int("inner_iter", inner_iter, minimum=1)

    def solve(self, y: torch.Tensor, op: OperatorLike) -> GenerativeResult:
        return sparse_deviation_generative(
            y,
            op,
            self.generator,
            lam=self.lam,
            mu=self.mu,
            inner_iter=self.inner_iter,
            **self._common(),
        )

    def _weights(self) -> str:
        return f"lam={self.lam!r}, mu={self.mu!r}, inner_iter={self.inner_iter}"
