r"""DnCNN (Zhang et al. 2017): a residual denoising CNN, optionally Lipschitz-constrained.

The network :math:`N_\theta` predicts the noise, and the denoiser subtracts it:

.. math:: D_\theta(x) = x - N_\theta(x),\qquad
          N_\theta = W_{d} \circ \mathrm{ReLU} \circ \mathrm{BN} \circ W_{d-1} \circ \dots
          \circ \mathrm{ReLU} \circ W_1,

with ``depth`` 3×3 convolutions (``channels`` channels inside; batch normalisation in the middle
layers). With ``sigma_input=True`` the noise level is a second input channel (as in FFDNet), so
one network serves a range of noise levels and the plug-and-play schedules can steer it.

With ``spectral_norm=True`` every convolution is constrained to an operator norm of at most
:math:`L^{1/d}` (:func:`models.denoising.conv_spectral_norm`), so the residual :math:`N_\theta` is
:math:`L`-Lipschitz in ``x`` (ReLU is 1-Lipschitz; biases do not count) and
:math:`\|D(x) - D(z)\| \le (1 + L)\|x - z\|`. With :math:`L < 1` this is the "real spectral
normalisation" of Ryu et al. (2019), under which PnP-ADMM and PnP-PGD provably converge for a
strongly convex data term. Batch normalisation is not Lipschitz-bounded, so it cannot be combined
with ``spectral_norm``.

References: K. Zhang, W. Zuo, Y. Chen, D. Meng, L. Zhang, "Beyond a Gaussian denoiser: residual
learning of deep CNN for image denoising", IEEE TIP 26(7), 2017. E. Ryu et al., "Plug-and-play
methods provably converge with properly trained denoisers", ICML 2019.

Example
-------
>>> import torch
>>> net = DnCNN(channels=16, depth=5)
>>> net(torch.rand(2, 1, 32, 32), 0.1).shape
torch.Size([2, 1, 32, 32])
"""

from __future__ import annotations

import torch
from torch import nn

from models.blocks import ConvBlock, conv_layer
from models.checks import check_ndim, check_positive_int
from models.denoising import conv_spectral_norm, noise_level_map

__all__ = ["DnCNN"]


class DnCNN(nn.Module):
    r"""Residual denoiser :math:`D(x) = x - N_\theta(x)` (Zhang et al. 2017).

    ``forward(x, sigma=None)`` takes noisy images ``(B, in_channels, *spatial)`` (any spatial
    size) and the noise level (a number or one value per image), which is ignored unless
    ``sigma_input=True``; it returns the denoised images of the same shape.

    Parameters
    ----------
    in_channels : int
        Image channels (in and out).
    channels : int
        Channels of the hidden layers (64 in the paper).
    depth : int
        Number of convolutions, ≥ 2 (17 in the paper for Gaussian denoising).
    norm : {"batch", "instance", None}
        Normalisation of the middle layers (batch in the paper).
    activation : str
        Activation after every convolution but the last (one of
        :data:`models.blocks.ACTIVATIONS`).
    sigma_input : bool
        Feed the noise level as an extra constant input channel
        (:func:`models.denoising.noise_level_map`); then ``sigma`` is required.
    spectral_norm : bool
        Constrain every convolution to norm :math:`\le` ``lipschitz ** (1 / depth)``; needs
        ``norm=None``.
    lipschitz : float
        Lipschitz bound of the residual :math:`N_\theta` under ``spectral_norm``.
    spectral_size : int
        Image size of the spectral normalisation's power iteration.
    ndim : {2, 3}
        Spatial dimensions.

    Raises
    ------
    ValueError
        For invalid sizes or names, ``spectral_norm`` with a normalisation, a missing ``sigma``
        when ``sigma_input=True``, or an input of the wrong shape.

    Example
    -------
    >>> net = DnCNN(channels=8, depth=4, norm=None, spectral_norm=True, lipschitz=0.9)
    >>> x = torch.rand(3, 1, 20, 24)
    >>> net(x).shape
    torch.Size([3, 1, 20, 24])
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        channels: int = 64,
        depth: int = 17,
        norm: str | None = "batch",
        activation: str = "relu",
        sigma_input: bool = False,
        spectral_norm: bool = False,
        lipschitz: float = 1.0,
        spectral_size: int = 32,
        ndim: int = 2,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.channels = check_positive_int("channels", channels)
        self.depth = check_positive_int("depth", depth, minimum=2)
        self.ndim = check_ndim(ndim)
        for name, value in (("sigma_input", sigma_input), ("spectral_norm", spectral_norm)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be a bool, got {value!r}")
        if spectral_norm and norm not in (None, "none"):
            raise ValueError(
                f"spectral_norm=True bounds the Lipschitz constant, which normalisation layers "
                f"break: pass norm=None (got norm={norm!r})"
            )
        self.sigma_input = sigma_input
        self.spectral_norm = spectral_norm
        self.lipschitz = float(lipschitz)
        first_in = in_channels + (1 if sigma_input else 0)
        layers: list[nn.Module] = [
            ConvBlock(
                in_channels=first_in,
                out_channels=channels,
                activation=activation,
                bias=True,
                ndim=ndim,
            )
        ]
        for _ in range(depth - 2):
            layers.append(
                ConvBlock(
                    in_channels=channels,
                    out_channels=channels,
                    norm=norm,
                    activation=activation,
                    ndim=ndim,
                )
            )
        layers.append(conv_layer(channels, in_channels, ndim=ndim))
        self.body = nn.Sequential(*layers)
        if spectral_norm:
            per_layer = self.lipschitz ** (1.0 / depth)
            for module in self.body.modules():
                if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                    conv_spectral_norm(module, lipschitz=per_layer, size=spectral_size)

    def residual(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        r"""The predicted noise :math:`N_\theta(x)`, so that ``forward(x) = x - residual(x)``.

        Example
        -------
        >>> net = DnCNN(channels=4, depth=3)
        >>> x = torch.rand(1, 1, 8, 8)
        >>> torch.allclose(net(x), x - net.residual(x))
        True
        """
        if x.ndim != self.ndim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"DnCNN expects images of shape (B, {self.in_channels}, "
                f"{', '.join('HW' if self.ndim == 2 else 'DHW')}), got {tuple(x.shape)}"
            )
        if self.sigma_input:
            if sigma is None:
                raise ValueError("this DnCNN has sigma_input=True: pass the noise level sigma")
            x = torch.cat([x, noise_level_map(x, sigma)], dim=1)
        return self.body(x)

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        """Denoise ``x`` ``(B, in_channels, *spatial)``; ``sigma`` is used with ``sigma_input``."""
        return x - self.residual(x, sigma)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, channels={self.channels}, depth={self.depth}, "
            f"sigma_input={self.sigma_input}, spectral_norm={self.spectral_norm}, "
            f"lipschitz={self.lipschitz}, ndim={self.ndim}"
        )
