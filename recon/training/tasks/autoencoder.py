r"""Autoencoders and variational autoencoders on clean images: the generators of
:mod:`recon.generative`.

:class:`AutoencoderTask` minimises the mean squared error :math:`\tfrac1{Bn}\sum_b\|x_b -
D(E(x_b))\|^2`, :class:`VAETask` the negative ELBO per pixel; both validate with
``(reconstruction, x)`` (eval mode: a VAE decodes its posterior mean) and log a grid of decoded
``N(0, I)`` codes (``samples``, :meth:`images`). The measurements of ``(x, y)`` batches are not
used. ``recon-train experiment=generative/ae`` (or ``vae``) trains them.

Example
-------
>>> import torch
>>> from models import Autoencoder
>>> ae = Autoencoder(image_size=16, latent_dim=4, channels=4)
>>> loss = AutoencoderTask().loss(ae, (torch.rand(2, 1, 16, 16), None), step=1)
>>> loss.shape, bool(loss > 0)
(torch.Size([]), True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.autoencoder import VAEOutput, kl_standard_normal
from recon.checks import check_int, check_positive
from recon.generative import decode_samples
from recon.training.images import sample_grid
from recon.training.tasks.base import Task, image_batch

__all__ = ["AutoencoderTask", "VAETask", "sample_images"]


def sample_images(model: nn.Module, n_samples: int) -> dict[str, np.ndarray]:
    """``{"samples": grid}`` of ``n_samples`` decoded codes ``z ~ N(0, I)`` (fixed seed), or
    nothing for ``n_samples = 0``: the :meth:`~recon.training.tasks.Task.images` of the
    generator tasks.

    Example
    -------
    >>> from models import VariationalAutoencoder
    >>> vae = VariationalAutoencoder(image_size=16, latent_dim=4, channels=4)
    >>> sample_images(vae, 8)["samples"].shape  # 2 rows of 4
    (34, 70)
    """
    if n_samples == 0:
        return {}
    return {"samples": sample_grid(decode_samples(model, n_samples=n_samples))}


class AutoencoderTask(Task):
    r"""Train an autoencoder: loss :math:`\tfrac1{Bn}\sum_b\|x_b - D(E(x_b))\|^2` (MSE).

    Parameters
    ----------
    op
        Unused: ``recon-train`` hands every task the operator; an autoencoder learns from the
        images alone.
    n_samples : int
        Decoded ``N(0, I)`` codes in the ``samples`` grid (0: none).

    Example
    -------
    >>> from models import Autoencoder
    >>> ae = Autoencoder(image_size=16, latent_dim=4, channels=4).eval()
    >>> estimate, truth = AutoencoderTask().predict(ae, (torch.rand(2, 1, 16, 16),))
    >>> estimate.shape == truth.shape
    True
    """

    def __init__(self, *, op: Any = None, n_samples: int = 16) -> None:
        del op
        self.n_samples = check_int("n_samples", n_samples, minimum=0)

    def loss(self, model: nn.Module, batch: Any, *, step: int) -> torch.Tensor:
        x = image_batch(batch)
        out = model(x)
        if isinstance(out, VAEOutput):
            raise ValueError("AutoencoderTask got a VAE; use VAETask")
        return F.mse_loss(out, x)

    def predict(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(reconstruction, x)``; a VAE in eval mode decodes its posterior mean."""
        x = image_batch(batch)
        out = model(x)
        return (out.reconstruction if isinstance(out, VAEOutput) else out), x

    def images(self, model: nn.Module) -> dict[str, np.ndarray]:
        """The ``samples`` grid of decoded ``N(0, I)`` codes (:func:`sample_images`)."""
        return sample_images(model, self.n_samples)


class VAETask(AutoencoderTask):
    r"""Train a variational autoencoder: the negative ELBO per pixel, up to a constant.

    .. math:: \frac1{Bn}\sum_b \Big(\frac{\|x_b - D(z_b)\|^2}{2s^2}
              + β\,\mathrm{KL}(q(z|x_b)\,\|\,N(0, I))\Big),\qquad z_b \sim q(z|x_b),

    i.e. :math:`-\mathrm{ELBO}/n` (:func:`models.autoencoder.gaussian_elbo`) without the constant
    :math:`\tfrac n2\log(2πs^2)`, with ``n`` pixels per image and decoder noise ``s``.
    Validation as :class:`AutoencoderTask`.

    Parameters
    ----------
    op
        Unused.
    noise_std : float
        The decoder's standard deviation ``s`` (images in [0, 1]: about 0.1).
    beta : float
        Weight of the KL term (1: the ELBO).
    n_samples : int
        Decoded ``N(0, I)`` codes in the ``samples`` grid (0: none).

    Example
    -------
    >>> from models import VariationalAutoencoder
    >>> vae = VariationalAutoencoder(image_size=16, latent_dim=4, channels=4)
    >>> VAETask(noise_std=0.1).loss(vae, torch.rand(2, 1, 16, 16), step=1).item() > 0
    True
    """

    def __init__(
        self, *, op: Any = None, noise_std: float = 0.1, beta: float = 1.0, n_samples: int = 16
    ) -> None:
        super().__init__(op=op, n_samples=n_samples)
        self.noise_std = check_positive("noise_std", noise_std)
        self.beta = check_positive("beta", beta, allow_zero=True)

    def loss(self, model: nn.Module, batch: Any, *, step: int) -> torch.Tensor:
        x = image_batch(batch)
        out = model(x)
        if not isinstance(out, VAEOutput):
            raise ValueError(f"VAETask needs a model returning VAEOutput, got {type(out).__name__}")
        squared = (x - out.reconstruction).square().flatten(1).sum(1)
        kl = kl_standard_normal(out.mean, out.logvar)
        return (squared / (2 * self.noise_std**2) + self.beta * kl).mean() / x[0].numel()
