r"""A Wasserstein GAN with gradient penalty (WGAN-GP) for square one-channel images.

- :class:`Generator`: :math:`G: \mathbb R^k \to \mathbb R^{S \times S}`, the
  :class:`~models.autoencoder.ConvDecoder` (linear layer to 4×4 maps, nearest-neighbour
  upsampling and 3×3 convolutions), fed with :math:`z \sim N(0, I)`.
- :class:`Critic`: :math:`D: \mathbb R^{S \times S} \to \mathbb R`, the
  :class:`~models.autoencoder.ConvEncoder` with one output, without batch normalisation (the
  gradient penalty is taken per sample, which batch statistics would couple).
- :class:`GAN`: both in one module, so that one checkpoint holds them; it exposes the generator
  interface of :mod:`recon.generative` (``latent_dim``, ``generate(z)``).
- :func:`gradient_penalty`: :math:`E_{\hat x}\big[(\|\nabla_{\hat x} D(\hat x)\|_2 - 1)^2\big]`
  at random points :math:`\hat x = εx + (1-ε)\tilde x` between real and generated images.

The critic minimises :math:`E[D(\tilde x)] - E[D(x)] + λ_{GP}\,\mathrm{GP}` and the generator
:math:`-E[D(G(z))]` (Gulrajani et al. 2017, Alg. 1: ``n_critic = 5``, ``λ_GP = 10``, Adam with
``lr = 1e-4``, ``β = (0, 0.9)``); ``recon.training.tasks.AdversarialTask`` trains it with the
one Trainer, one optimiser per group (``recon-train experiment=generative/gan``).

Reference: I. Gulrajani, F. Ahmed, M. Arjovsky, V. Dumoulin, A. Courville, "Improved training of
Wasserstein GANs", NeurIPS 2017.

Example
-------
>>> import torch
>>> gan = GAN(generator=Generator(image_size=32, latent_dim=16, channels=8),
...           critic=Critic(image_size=32, channels=8))
>>> fake = gan.generate(torch.randn(3, 16))
>>> fake.shape, gan.critic(fake).shape
(torch.Size([3, 1, 32, 32]), torch.Size([3]))
"""

from __future__ import annotations

import torch
from torch import nn

from models.autoencoder import ConvDecoder, ConvEncoder
from models.checks import check_latent_dim, check_positive_int, image_levels, normalise_name

__all__ = ["GAN", "Critic", "Generator", "gradient_penalty"]


class Generator(nn.Module):
    """The GAN generator: latent vectors ``(B, latent_dim)`` to images ``(B, 1, S, S)``.

    Parameters
    ----------
    image_size : int
        ``S = 4 · 2**n`` (64 or 128 in the benchmarks).
    latent_dim : int
        Length of ``z``; samples use ``z ~ N(0, I)``.
    channels, max_channels : int
        Channels at full resolution, doubled per level down to 4×4, capped at ``max_channels``.
    norm : {"batch", "instance", None}
        Normalisation of the hidden layers (batch norm as in DCGAN by default).
    activation : str or None
        One of :data:`models.blocks.ACTIVATIONS`.
    output_activation : {"sigmoid", None}
        ``None``: linear output.

    Example
    -------
    >>> g = Generator(image_size=64, latent_dim=100, channels=16)
    >>> g(torch.randn(2, 100)).shape
    torch.Size([2, 1, 64, 64])
    """

    def __init__(
        self,
        *,
        image_size: int = 64,
        latent_dim: int = 128,
        channels: int = 32,
        max_channels: int = 256,
        norm: str | None = "batch",
        activation: str | None = "relu",
        output_activation: str | None = None,
    ) -> None:
        super().__init__()
        image_levels(image_size)
        self.image_size = int(image_size)
        self.latent_dim = check_latent_dim(latent_dim)
        self.net = ConvDecoder(
            image_size=image_size,
            latent_dim=latent_dim,
            channels=channels,
            max_channels=max_channels,
            norm=norm,
            activation=activation,
            output_activation=output_activation,
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, latent_dim={self.latent_dim}"


class Critic(nn.Module):
    """The WGAN critic: images ``(B, 1, S, S)`` to scores ``(B,)`` (no batch normalisation).

    Parameters
    ----------
    image_size : int
        ``S = 4 · 2**n``.
    channels, max_channels : int
        Channels at full resolution, doubled per stride-2 level, capped at ``max_channels``.
    norm : {"instance", None}
        Normalisation of the strided layers. ``"batch"`` is refused: it mixes the samples of a
        batch, and the gradient penalty is defined per sample.
    activation : str or None
        One of :data:`models.blocks.ACTIVATIONS`.

    Example
    -------
    >>> Critic(image_size=64, channels=16)(torch.rand(5, 1, 64, 64)).shape
    torch.Size([5])
    """

    def __init__(
        self,
        *,
        image_size: int = 64,
        channels: int = 32,
        max_channels: int = 256,
        norm: str | None = None,
        activation: str | None = "leaky_relu",
    ) -> None:
        super().__init__()
        norm = normalise_name("norm", norm, ("batch", "instance", "none"))
        if norm == "batch":
            raise ValueError(
                "the WGAN-GP critic cannot use batch normalisation (the gradient penalty is per "
                "sample); use norm='instance' or None"
            )
        self.image_size = check_positive_int("image_size", image_size, minimum=8)
        self.net = ConvEncoder(
            image_size=image_size,
            out_features=1,
            channels=channels,
            max_channels=max_channels,
            norm=norm,
            activation=activation,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, 0]

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}"


class GAN(nn.Module):
    """A generator and its critic in one module (one checkpoint, one ``load_state_dict``).

    ``generate(z)`` and ``latent_dim`` make it a generator for :mod:`recon.generative`;
    ``forward(z)`` is the generator too.

    Parameters
    ----------
    generator : Generator
    critic : Critic
        Of the same ``image_size``.

    Example
    -------
    >>> gan = GAN(generator=Generator(image_size=16, latent_dim=4, channels=4),
    ...           critic=Critic(image_size=16, channels=4))
    >>> gan.latent_dim, gan(torch.zeros(1, 4)).shape
    (4, torch.Size([1, 1, 16, 16]))
    """

    def __init__(self, *, generator: Generator, critic: Critic) -> None:
        super().__init__()
        if not isinstance(generator, nn.Module) or not isinstance(critic, nn.Module):
            raise ValueError("generator and critic must be torch.nn.Modules")
        g_size, c_size = getattr(generator, "image_size", None), getattr(critic, "image_size", None)
        if g_size != c_size:
            raise ValueError(
                f"the generator makes {g_size}² images but the critic expects {c_size}²"
            )
        self.generator = generator
        self.critic = critic
        self.latent_dim = int(generator.latent_dim)
        self.image_size = int(g_size)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``G(z)`` of latent vectors ``(B, latent_dim)``."""
        return self.generator(z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)


def gradient_penalty(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""The WGAN-GP gradient penalty, differentiable in the critic's parameters.

    .. math::

        \mathrm{GP} = \frac1B \sum_{b=1}^B \big(\|\nabla_{\hat x} D(\hat x_b)\|_2 - 1\big)^2,
        \qquad \hat x_b = ε_b x_b + (1 - ε_b)\tilde x_b,\quad ε_b \sim U[0, 1].

    For a linear critic :math:`D(x) = \langle w, x\rangle + c` the gradient is ``w`` everywhere,
    so the penalty is :math:`(\|w\|_2 - 1)^2` whatever the points.

    Parameters
    ----------
    critic : torch.nn.Module
        Maps ``(B, *image)`` to ``(B,)`` (or ``(B, 1)``) scores, each depending on its sample only.
    real, fake : torch.Tensor
        Real and generated samples of one shape ``(B, *image)``; ``fake`` is detached.
    generator : torch.Generator, optional
        For the mixing weights ``ε`` (on the samples' device).

    Returns
    -------
    torch.Tensor
        Scalar.

    Example
    -------
    >>> critic = nn.Sequential(nn.Flatten(), nn.Linear(4, 1, bias=False))
    >>> with torch.no_grad():
    ...     _ = critic[1].weight.fill_(1.0)  # w = (1, 1, 1, 1), ‖w‖ = 2
    >>> gradient_penalty(critic, torch.rand(3, 1, 2, 2), torch.rand(3, 1, 2, 2)).item()
    1.0
    """
    if real.shape != fake.shape:
        raise ValueError(
            f"real and fake samples differ in shape: {tuple(real.shape)}, {tuple(fake.shape)}"
        )
    shape = (real.shape[0],) + (1,) * (real.ndim - 1)
    eps = torch.rand(shape, generator=generator, dtype=real.dtype, device=real.device)
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(mixed)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1.0).square().mean()
