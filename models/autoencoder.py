r"""Convolutional autoencoder (AE) and variational autoencoder (VAE) for square one-channel images.

Both map images ``(B, 1, S, S)`` to latent codes ``(B, latent_dim)`` and back, for any
``S = 4 · 2**n`` (``S ≥ 8``: 64 and 128 for the benchmarks, 16 or 32 in tests):

- :class:`ConvEncoder`: a 3×3 stem at full resolution, then ``n`` stride-2 4×4 convolutions that
  halve the size and double the channels (capped at ``max_channels``) down to 4×4, and a linear
  layer to ``out_features``.
- :class:`ConvDecoder`: the mirror image: a linear layer to ``(C, 4, 4)``, then ``n`` times
  nearest-neighbour 2× upsampling followed by a 3×3 :class:`~models.blocks.ConvBlock` (no
  transposed convolutions, hence no checkerboard artefacts), and a final 3×3 convolution.
- :class:`Autoencoder`: ``x̂ = D(E(x))``, trained on :math:`\|x - \hat x\|^2`.
- :class:`VariationalAutoencoder` (Kingma & Welling 2014): the encoder gives the mean and
  log-variance of :math:`q(z|x) = N(μ(x), \operatorname{diag} σ^2(x))`, the decoder the mean of
  :math:`p(x|z) = N(D(z), s^2 I)`, the prior is :math:`p(z) = N(0, I)`. It is trained on the
  negative evidence lower bound, :func:`gaussian_elbo`.

Every generative model of this package has the same small interface, which the generative
regularisers of :mod:`recon.generative` use: ``latent_dim`` (int), ``generate(z) -> x`` and, for
the autoencoders, ``latent(x) -> z`` (the code of an image: the AE's encoding, the VAE's posterior
mean), used to initialise the latent search.

Reference: D. P. Kingma, M. Welling, "Auto-encoding variational Bayes", ICLR 2014.

Example
-------
>>> import torch
>>> ae = Autoencoder(image_size=32, latent_dim=16, channels=8)
>>> x = torch.rand(2, 1, 32, 32)
>>> ae.latent(x).shape, ae(x).shape
(torch.Size([2, 16]), torch.Size([2, 1, 32, 32]))
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from models.blocks import ConvBlock, conv_layer, make_activation, make_norm
from models.checks import check_latent_dim, check_positive_int, image_levels, normalise_name

__all__ = [
    "OUTPUT_ACTIVATIONS",
    "Autoencoder",
    "ConvDecoder",
    "ConvEncoder",
    "VAEOutput",
    "VariationalAutoencoder",
    "gaussian_elbo",
    "gaussian_log_likelihood",
    "kl_standard_normal",
]

#: Output activations of the decoders (``None``: linear output, any real value).
OUTPUT_ACTIVATIONS: tuple[str, ...] = ("sigmoid", "none")

#: Log-variances of the VAE encoder are clamped to this range (exp(±) stays finite in float32).
LOGVAR_RANGE: tuple[float, float] = (-30.0, 20.0)


def _widths(channels: int, max_channels: int, n: int) -> list[int]:
    """Channels at resolution level ``0..n`` (level ``i`` is ``size / 2**i``)."""
    check_positive_int("channels", channels)
    check_positive_int("max_channels", max_channels)
    return [min(channels * 2**i, max_channels) for i in range(n + 1)]


def _check_images(x: torch.Tensor, channels: int, size: int, who: str) -> None:
    if (
        not isinstance(x, torch.Tensor)
        or x.ndim != 4
        or tuple(x.shape[1:]) != (channels, size, size)
    ):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(
            f"{who} expects images of shape (B, {channels}, {size}, {size}), got {got}"
        )


def _check_codes(z: torch.Tensor, latent_dim: int, who: str) -> None:
    if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != latent_dim:
        got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"{who} expects latent codes of shape (B, {latent_dim}), got {got}")


# --------------------------------------------------------------------------- encoder / decoder
class ConvEncoder(nn.Module):
    """Images ``(B, in_channels, S, S)`` to vectors ``(B, out_features)``.

    A 3×3 :class:`~models.blocks.ConvBlock` at full resolution with ``channels`` channels, then
    ``log2(S/4)`` stride-2 4×4 convolutions (normalisation, activation), each halving the size and
    doubling the channels up to ``max_channels``, and a linear layer from the flattened 4×4 maps.

    Parameters
    ----------
    image_size : int
        ``S = 4 · 2**n`` with ``S ≥ 8``.
    out_features : int
        Length of the output vector.
    in_channels : int
        Image channels.
    channels, max_channels : int
        Channels at full resolution, and their cap.
    norm : {"batch", "instance", None}
        Normalisation after each strided convolution.
    activation : str or None
        One of :data:`models.blocks.ACTIVATIONS`.

    Example
    -------
    >>> ConvEncoder(image_size=16, out_features=5, channels=4)(torch.zeros(3, 1, 16, 16)).shape
    torch.Size([3, 5])
    """

    def __init__(
        self,
        *,
        image_size: int,
        out_features: int,
        in_channels: int = 1,
        channels: int = 32,
        max_channels: int = 256,
        norm: str | None = "batch",
        activation: str | None = "leaky_relu",
    ) -> None:
        super().__init__()
        n = image_levels(image_size)
        check_positive_int("out_features", out_features)
        self.image_size = int(image_size)
        self.in_channels = check_positive_int("in_channels", in_channels)
        widths = _widths(channels, max_channels, n)
        norm = normalise_name("norm", norm, ("batch", "instance", "none"))
        self.stem = ConvBlock(
            in_channels=in_channels, out_channels=widths[0], norm=None, activation=activation
        )
        down = []
        for i in range(1, n + 1):
            down += [
                nn.Conv2d(widths[i - 1], widths[i], 4, stride=2, padding=1, bias=norm != "batch"),
                make_norm(norm, widths[i]),
                make_activation(activation, widths[i]),
            ]
        self.down = nn.Sequential(*down)
        self.linear = nn.Linear(widths[n] * 16, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.in_channels, self.image_size, type(self).__name__)
        return self.linear(self.down(self.stem(x)).flatten(1))


class ConvDecoder(nn.Module):
    """Vectors ``(B, latent_dim)`` to images ``(B, out_channels, S, S)``.

    A linear layer to ``max(channels · 2**n, capped)`` maps of 4×4 and the activation, then per
    level nearest-neighbour 2× upsampling and a 3×3 :class:`~models.blocks.ConvBlock`
    (normalisation, activation), halving the channels down to ``channels``, and a final 3×3
    convolution to ``out_channels``, followed by ``output_activation``.

    Parameters
    ----------
    image_size : int
        ``S = 4 · 2**n`` with ``S ≥ 8``.
    latent_dim : int
        Length of the input vectors.
    out_channels : int
        Image channels.
    channels, max_channels : int
        Channels at full resolution, and their cap.
    norm : {"batch", "instance", None}
        Normalisation in every upsampling block.
    activation : str or None
        One of :data:`models.blocks.ACTIVATIONS`.
    output_activation : {"sigmoid", None}
        ``None`` (default): a linear output, so any image value can be produced; ``"sigmoid"``
        keeps the output in (0, 1).

    Example
    -------
    >>> ConvDecoder(image_size=16, latent_dim=5, channels=4)(torch.zeros(3, 5)).shape
    torch.Size([3, 1, 16, 16])
    """

    def __init__(
        self,
        *,
        image_size: int,
        latent_dim: int,
        out_channels: int = 1,
        channels: int = 32,
        max_channels: int = 256,
        norm: str | None = "batch",
        activation: str | None = "leaky_relu",
        output_activation: str | None = None,
    ) -> None:
        super().__init__()
        n = image_levels(image_size)
        self.image_size = int(image_size)
        self.latent_dim = check_latent_dim(latent_dim)
        self.out_channels = check_positive_int("out_channels", out_channels)
        widths = _widths(channels, max_channels, n)
        self.output_activation = normalise_name(
            "output_activation", output_activation, OUTPUT_ACTIVATIONS
        )
        self.linear = nn.Linear(latent_dim, widths[n] * 16)
        self.linear_activation = make_activation(activation, widths[n])
        self._bottom = widths[n]
        up = []
        for i in range(n, 0, -1):
            up += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                ConvBlock(
                    in_channels=widths[i],
                    out_channels=widths[i - 1],
                    norm=norm,
                    activation=activation,
                ),
            ]
        self.up = nn.Sequential(*up)
        self.out_conv = conv_layer(widths[0], out_channels, kernel_size=3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        _check_codes(z, self.latent_dim, type(self).__name__)
        h = self.linear_activation(self.linear(z).reshape(-1, self._bottom, 4, 4))
        out = self.out_conv(self.up(h))
        return torch.sigmoid(out) if self.output_activation == "sigmoid" else out


# --------------------------------------------------------------------------- autoencoder
class Autoencoder(nn.Module):
    r"""Deterministic convolutional autoencoder :math:`x \mapsto D(E(x))`.

    Trained on :math:`\tfrac1n\|x - D(E(x))\|^2` (``recon.training.tasks.AutoencoderTask``), its
    decoder :math:`D` is the generator :math:`G` of the generative regularisers, and the encoder
    gives their initial latent code.

    Parameters
    ----------
    image_size : int
        Side ``S`` of the square one-channel images, ``4 · 2**n`` (64 or 128 in the benchmarks).
    latent_dim : int
        Length of the code ``z``.
    channels, max_channels : int
        Channels at full resolution, doubled per level down to 4×4 and capped at ``max_channels``.
    norm : {"batch", "instance", None}
        Normalisation of the hidden layers of encoder and decoder.
    activation : str or None
        Activation of the hidden layers (one of :data:`models.blocks.ACTIVATIONS`).
    output_activation : {"sigmoid", None}
        Of the decoder; ``None`` gives a linear output.

    Attributes
    ----------
    encoder : ConvEncoder
    decoder : ConvDecoder

    Example
    -------
    >>> ae = Autoencoder(image_size=64, latent_dim=128, channels=16)
    >>> z = ae.encode(torch.rand(4, 1, 64, 64))
    >>> z.shape, ae.generate(z).shape
    (torch.Size([4, 128]), torch.Size([4, 1, 64, 64]))
    """

    def __init__(
        self,
        *,
        image_size: int = 64,
        latent_dim: int = 128,
        channels: int = 32,
        max_channels: int = 256,
        norm: str | None = "batch",
        activation: str | None = "leaky_relu",
        output_activation: str | None = None,
    ) -> None:
        super().__init__()
        self.image_size = check_positive_int("image_size", image_size, minimum=8)
        self.latent_dim = check_latent_dim(latent_dim)
        self.encoder = ConvEncoder(
            image_size=image_size,
            out_features=self._encoder_features(latent_dim),
            channels=channels,
            max_channels=max_channels,
            norm=norm,
            activation=activation,
        )
        self.decoder = ConvDecoder(
            image_size=image_size,
            latent_dim=latent_dim,
            channels=channels,
            max_channels=max_channels,
            norm=norm,
            activation=activation,
            output_activation=output_activation,
        )

    @staticmethod
    def _encoder_features(latent_dim: int) -> int:
        return latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, latent_dim)`` of images ``(B, 1, S, S)``."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 1, S, S)`` of codes ``(B, latent_dim)``."""
        return self.decoder(z)

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """The code of ``x`` (its encoding): the starting point of a latent search."""
        return self.encode(x)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """The generator :math:`G(z) = D(z)`."""
        return self.decode(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction :math:`D(E(x))`."""
        return self.decode(self.encode(x))

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, latent_dim={self.latent_dim}"


class VAEOutput(NamedTuple):
    """What :meth:`VariationalAutoencoder.forward` returns (all batched)."""

    #: Decoded images ``D(z)``, ``(B, 1, S, S)``.
    reconstruction: torch.Tensor
    #: Posterior means ``μ(x)``, ``(B, latent_dim)``.
    mean: torch.Tensor
    #: Posterior log-variances ``log σ²(x)``, ``(B, latent_dim)``.
    logvar: torch.Tensor


class VariationalAutoencoder(Autoencoder):
    r"""Variational autoencoder with a Gaussian posterior and the prior :math:`N(0, I)`.

    The encoder outputs :math:`(μ(x), \log σ^2(x))` (the log-variance clamped to
    :data:`LOGVAR_RANGE`). In training mode ``forward`` decodes a reparameterised sample
    :math:`z = μ + σ \odot ε`, :math:`ε \sim N(0, I)`; in eval mode it decodes the mean. The
    negative ELBO (:func:`gaussian_elbo`) is the training loss.

    Parameters
    ----------
    image_size, latent_dim, channels, max_channels, norm, activation, output_activation
        As :class:`Autoencoder`.

    Example
    -------
    >>> vae = VariationalAutoencoder(image_size=32, latent_dim=8, channels=8).eval()
    >>> out = vae(torch.rand(2, 1, 32, 32))
    >>> out.reconstruction.shape, out.mean.shape, out.logvar.shape
    (torch.Size([2, 1, 32, 32]), torch.Size([2, 8]), torch.Size([2, 8]))
    >>> torch.equal(vae.generate(out.mean), out.reconstruction)  # eval mode decodes the mean
    True
    """

    @staticmethod
    def _encoder_features(latent_dim: int) -> int:
        return 2 * latent_dim

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        """Posterior mean and log-variance, each ``(B, latent_dim)``."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean :math:`μ(x)`: the starting point of a latent search."""
        return self.encode(x)[0]

    def forward(self, x: torch.Tensor) -> VAEOutput:  # type: ignore[override]
        mean, logvar = self.encode(x)
        if self.training:
            z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        else:
            z = mean
        return VAEOutput(self.decode(z), mean, logvar)


# --------------------------------------------------------------------------- the ELBO
def kl_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    r"""KL divergence of :math:`N(μ, \operatorname{diag} σ^2)` from :math:`N(0, I)`, per sample.

    .. math:: \mathrm{KL} = \tfrac12 \sum_j \big(μ_j^2 + σ_j^2 - 1 - \log σ_j^2\big) \ge 0,

    zero exactly when :math:`μ = 0` and :math:`σ = 1`.

    Parameters
    ----------
    mean, logvar : torch.Tensor
        ``(B, latent_dim)``.

    Returns
    -------
    torch.Tensor
        ``(B,)``.

    Example
    -------
    >>> kl_standard_normal(torch.zeros(2, 3), torch.zeros(2, 3))
    tensor([0., 0.])
    >>> kl_standard_normal(torch.ones(1, 2), torch.zeros(1, 2))  # ½ · (1 + 1)
    tensor([1.])
    """
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


def gaussian_log_likelihood(
    x: torch.Tensor, reconstruction: torch.Tensor, *, noise_std: float
) -> torch.Tensor:
    r"""Log-density of ``x`` under :math:`N(\hat x, s^2 I)`, per sample.

    .. math:: \log p(x | z) = -\frac{\|x - \hat x\|^2}{2 s^2} - \frac n2 \log(2π s^2),

    with ``n`` the number of pixels of one sample.

    Example
    -------
    >>> x = torch.zeros(1, 1, 2, 2)
    >>> abs(float(gaussian_log_likelihood(x, x, noise_std=(2 * torch.pi) ** -0.5)))  # log 1
    0.0
    """
    noise_std = float(noise_std)
    if not (math.isfinite(noise_std) and noise_std > 0):
        raise ValueError(f"noise_std must be positive and finite, got {noise_std}")
    n = x[0].numel()
    squared = (x - reconstruction).square().flatten(1).sum(1)
    return -squared / (2 * noise_std**2) - 0.5 * n * math.log(2 * math.pi * noise_std**2)


def gaussian_elbo(
    x: torch.Tensor,
    reconstruction: torch.Tensor,
    mean: torch.Tensor,
    logvar: torch.Tensor,
    *,
    noise_std: float,
    beta: float = 1.0,
) -> torch.Tensor:
    r"""The evidence lower bound of a Gaussian VAE, per sample, from a one-sample estimate.

    .. math:: \mathrm{ELBO}(x) = \log p(x | z) - β\,\mathrm{KL}(q(z|x)\,\|\,N(0, I)),
              \qquad z \sim q(z | x),

    with :func:`gaussian_log_likelihood` (decoder noise ``noise_std``) and
    :func:`kl_standard_normal`; ``β = 1`` is the true bound, other values the β-VAE objective.

    Parameters
    ----------
    x, reconstruction : torch.Tensor
        Images and the decoding :math:`D(z)` of a posterior sample, ``(B, 1, S, S)``.
    mean, logvar : torch.Tensor
        The posterior's parameters, ``(B, latent_dim)``.
    noise_std : float
        Standard deviation ``s`` of the decoder's Gaussian.
    beta : float
        Weight of the KL term.

    Returns
    -------
    torch.Tensor
        ``(B,)``.

    Example
    -------
    >>> x, m = torch.zeros(1, 1, 4, 4), torch.zeros(1, 3)
    >>> round(float(gaussian_elbo(x, x, m, m, noise_std=1.0)), 4)  # -(16/2) log 2π
    -14.703
    """
    beta = float(beta)
    if not (math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be non-negative and finite, got {beta}")
    likelihood = gaussian_log_likelihood(x, reconstruction, noise_std=noise_std)
    return likelihood - beta * kl_standard_normal(mean, logvar)
