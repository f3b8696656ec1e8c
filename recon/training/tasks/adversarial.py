r"""A Wasserstein GAN with gradient penalty (WGAN-GP; Gulrajani et al. 2017, Alg. 1), trained by
the one :class:`~recon.training.Trainer` with two optimiser groups, the critic and the generator.

One training step of :class:`AdversarialTask` is ``n_critic`` critic updates, then one generator
update. The trainer's batch of ``trainer.batch_size = n_critic × b`` real images is split into
``n_critic`` chunks of ``b`` (:func:`torch.tensor_split`: the last, smaller batch of an epoch
gives chunks of nearly equal size), one per critic update: draw codes :math:`z \sim N(0, I)` and
minimise

.. math:: E[D(G(z))] - E[D(x)] + λ_{GP}\,\mathrm{GP}

over the critic (:func:`models.gan.gradient_penalty`), then minimise :math:`-E[D(G(z))]` over the
generator with ``b`` new codes. Each loss is backpropagated and stepped by the trainer before the
next one is computed, so ``trainer.max_steps`` counts generator steps, the checkpoints hold both
optimisers (``optimizer={"critic": ..., "generator": ...}``; Adam with ``lr = 1e-4``,
``betas = (0, 0.9)``, a constant rate and no gradient clipping in the paper) and a resumed run
continues exactly. The trainer logs ``train/loss_critic``, ``train/loss_generator`` and, from
:meth:`AdversarialTask.scalars`, ``train/gradient_penalty`` and ``train/wasserstein``
(:math:`E D(x) - E D(G(z))`, the critic's estimate of the distance); the ``samples`` grid of
decoded codes replaces validation, which a GAN does not have. Single process only: a
:class:`models.GAN` is called through its parts, which torch.distributed would not synchronise.

Reference: I. Gulrajani, F. Ahmed, M. Arjovsky, V. Dumoulin, A. Courville, "Improved training of
Wasserstein GANs", NeurIPS 2017.

Example
-------
>>> import tempfile, torch
>>> from functools import partial
>>> from models import GAN, Critic, Generator
>>> from recon.training import Trainer
>>> gan = GAN(generator=Generator(image_size=8, latent_dim=2, channels=4),
...           critic=Critic(image_size=8, channels=4))
>>> adam = partial(torch.optim.Adam, lr=1e-4, betas=(0.0, 0.9))
>>> trainer = Trainer(gan, train_data=torch.utils.data.TensorDataset(torch.rand(16, 1, 8, 8)),
...                   val_data=None, task=AdversarialTask(n_critic=2),
...                   optimizer={"critic": adam, "generator": adam}, out_dir=tempfile.mkdtemp(),
...                   max_steps=2, batch_size=8, grad_clip=None, progress=False)
>>> trainer.fit()["step"]
2
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from models.gan import GAN, gradient_penalty
from recon.checks import check_int, check_positive
from recon.training.tasks.autoencoder import sample_images
from recon.training.tasks.base import Task, image_batch

__all__ = ["AdversarialTask"]


class AdversarialTask(Task):
    """WGAN-GP for a :class:`models.GAN`: ``n_critic`` critic updates, then one generator update,
    per training step (see the module docstring).

    Parameters
    ----------
    op
        Unused: ``recon-train`` hands every task the operator; the GAN learns from the images.
    n_critic : int
        Critic updates per generator update; each takes its own ``1/n_critic`` of the batch, so
        ``trainer.batch_size`` is ``n_critic`` times the critic's batch.
    gp_weight : float
        λ_GP ≥ 0, the weight of the gradient penalty.
    n_samples : int
        Decoded ``N(0, I)`` codes in the ``samples`` grid (0: none).

    Example
    -------
    >>> from models import GAN, Critic, Generator
    >>> gan = GAN(generator=Generator(image_size=8, latent_dim=2, channels=4),
    ...           critic=Critic(image_size=8, channels=4))
    >>> task = AdversarialTask(n_critic=2)
    >>> [group for group, _ in task.updates(gan, (torch.rand(4, 1, 8, 8),), step=1)]
    ['critic', 'critic', 'generator']
    >>> sorted(task.scalars())
    ['gradient_penalty', 'wasserstein']
    """

    def __init__(
        self, *, op: Any = None, n_critic: int = 5, gp_weight: float = 10.0, n_samples: int = 16
    ) -> None:
        del op
        self.n_critic = check_int("n_critic", n_critic, minimum=1)
        self.gp_weight = check_positive("gp_weight", gp_weight, allow_zero=True)
        self.n_samples = check_int("n_samples", n_samples, minimum=0)
        self._penalty: torch.Tensor | None = None
        self._wasserstein: torch.Tensor | None = None

    def parameter_groups(self, model: nn.Module) -> dict[str, list[nn.Parameter]]:
        """``{"critic": ..., "generator": ...}``: the parameters of the GAN's two parts."""
        gan = _gan(model)
        return {
            "critic": list(gan.critic.parameters()),
            "generator": list(gan.generator.parameters()),
        }

    def updates(self, model: nn.Module, batch: Any, *, step: int) -> Iterator[tuple[str, Any]]:
        """``n_critic`` ``("critic", loss)`` pairs, each on its own chunk of the batch, then
        ``("generator", loss)``."""
        gan = _gan(model)
        real = image_batch(batch)
        if len(real) < self.n_critic:
            raise ValueError(
                f"a batch of {len(real)} images cannot give n_critic={self.n_critic} critic "
                "batches: trainer.batch_size must be n_critic times the critic's batch"
            )
        chunks = torch.tensor_split(real, self.n_critic)
        for chunk in chunks:
            with torch.no_grad():
                fake = gan.generator(self._codes(gan, len(chunk), chunk.device))
            d_real, d_fake = gan.critic(chunk).mean(), gan.critic(fake).mean()
            penalty = gradient_penalty(gan.critic, chunk, fake)
            self._penalty, self._wasserstein = penalty.detach(), (d_real - d_fake).detach()
            yield "critic", d_fake - d_real + self.gp_weight * penalty
        fake = gan.generator(self._codes(gan, len(chunks[0]), real.device))
        yield "generator", -gan.critic(fake).mean()

    def scalars(self) -> dict[str, float]:
        """``gradient_penalty`` and ``wasserstein`` (:math:`E D(x) - E D(G(z))`) of the last
        critic update."""
        if self._penalty is None or self._wasserstein is None:
            return {}
        return {"gradient_penalty": float(self._penalty), "wasserstein": float(self._wasserstein)}

    def images(self, model: nn.Module) -> dict[str, np.ndarray]:
        """The ``samples`` grid of generated images of fixed codes."""
        return sample_images(_gan(model), self.n_samples)

    @staticmethod
    def _codes(gan: GAN, n: int, device: torch.device) -> torch.Tensor:
        return torch.randn(n, gan.latent_dim, device=device)


def _gan(model: nn.Module) -> GAN:
    if isinstance(model, nn.parallel.DistributedDataParallel):
        raise ValueError(
            "AdversarialTask trains on one process: the critic and generator of a models.GAN are "
            "called directly, which DistributedDataParallel would not synchronise"
        )
    if not isinstance(model, GAN):
        raise ValueError(f"AdversarialTask needs a models.GAN, got {type(model).__name__}")
    return model
