r"""DRUNet (Zhang et al. 2021, DPIR): a residual U-Net denoiser with a noise-level input channel.

The input is the noisy image and the constant noise-level map :math:`\sigma` stacked as channels;
the output is the denoised image:

.. math:: D_\theta(x, \sigma) = \mathrm{DRUNet}_\theta\big([x,\ \sigma \mathbf 1]\big).

Architecture (DPIR's, with the level count and widths as parameters): a 3×3 head convolution;
per level ``n_blocks`` residual blocks :math:`h \mapsto h + W_2\,\mathrm{act}(W_1 h)` and a 2×2
strided convolution down to the next level (the width doubles per level, from ``channels``);
``n_blocks`` residual blocks at the bottom; on the way up, the encoder's output of the level is
*added* (not concatenated, unlike :class:`models.UNet`), then a 2×2 transposed convolution and
``n_blocks`` residual blocks; the head's output is added before the 3×3 tail convolution. No
normalisation and, by default, no biases. DPIR's network is ``channels=64, depth=3,
n_blocks=4`` (3.3·10⁷ parameters).

With a smooth ``activation`` (``"elu"``, ``"silu"``) the network is twice differentiable, as the
gradient-step denoiser (:class:`models.GSDenoiser`) needs.

Reference: K. Zhang, Y. Li, W. Zuo, L. Zhang, L. Van Gool, R. Timofte, "Plug-and-play image
restoration with deep denoiser prior", IEEE TPAMI 44(10), 2022.

Example
-------
>>> import torch
>>> net = DRUNet(channels=8, depth=2, n_blocks=1)
>>> net(torch.rand(2, 1, 30, 34), torch.tensor([0.05, 0.1])).shape
torch.Size([2, 1, 30, 34])
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from models.blocks import ConvBlock, conv_layer
from models.checks import check_ndim, check_positive_int
from models.denoising import conv_spectral_norm, noise_level_map

__all__ = ["DRUNet"]

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_TRANSPOSED = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


class _ResBlock(nn.Module):
    """``h + W₂ act(W₁ h)`` (DPIR's residual block: no activation after the sum)."""

    def __init__(self, channels: int, activation: str, bias: bool, ndim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvBlock(
                in_channels=channels,
                out_channels=channels,
                activation=activation,
                bias=bias,
                ndim=ndim,
            ),
            conv_layer(channels, channels, bias=bias, ndim=ndim),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.body(h)


class DRUNet(nn.Module):
    r"""Noise-level-aware residual U-Net denoiser (DPIR's DRUNet).

    ``forward(x, sigma)`` maps noisy images ``(B, in_channels, *spatial)`` of any size (padded by
    replication to a multiple of ``2**depth`` and cropped back) and their noise level ``sigma``
    (a number or one value per image, in the units of ``x``) to denoised images of the same shape.

    Parameters
    ----------
    in_channels : int
        Image channels (in and out; the noise map comes on top).
    channels : int
        Width of the top level; level ``l`` has ``channels · 2**l``.
    depth : int
        Number of 2× downsamplings (≥ 0).
    n_blocks : int
        Residual blocks per level and at the bottom (≥ 1).
    activation : str
        Activation inside the residual blocks (one of :data:`models.blocks.ACTIVATIONS`);
        ``"relu"`` as DPIR, a smooth one (``"elu"``) for gradient-step denoisers.
    bias : bool
        Biases in the convolutions (DPIR: none).
    residual : bool
        Return :math:`x + \mathrm{DRUNet}(x, \sigma)`: the network predicts the (negative) noise,
        as DnCNN does. Not in DPIR, but an untrained network is then close to the identity, which
        trains much faster from scratch on a small budget.
    spectral_norm : bool
        Constrain every convolution (and transposed convolution) to operator norm ≤ 1
        (:func:`models.denoising.conv_spectral_norm`). The skip connections add up, so this bounds
        each layer, not the whole network by 1.
    spectral_size : int
        Image size of the spectral normalisation's power iteration.
    ndim : {2, 3}
        Spatial dimensions.

    Raises
    ------
    ValueError
        For invalid sizes or names, or an input of the wrong shape.

    Example
    -------
    >>> net = DRUNet(channels=16, depth=3, n_blocks=2)
    >>> sum(p.numel() for p in net.parameters())
    1063344
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        channels: int = 64,
        depth: int = 3,
        n_blocks: int = 4,
        activation: str = "relu",
        bias: bool = False,
        residual: bool = False,
        spectral_norm: bool = False,
        spectral_size: int = 32,
        ndim: int = 2,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.channels = check_positive_int("channels", channels)
        self.depth = check_positive_int("depth", depth, minimum=0)
        self.n_blocks = check_positive_int("n_blocks", n_blocks)
        self.ndim = check_ndim(ndim)
        for name, value in (
            ("bias", bias),
            ("residual", residual),
            ("spectral_norm", spectral_norm),
        ):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be a bool, got {value!r}")
        self.activation = activation
        self.residual = residual
        self.spectral_norm = spectral_norm
        widths = [channels * 2**level for level in range(depth + 1)]

        def blocks(width: int) -> list[nn.Module]:
            return [_ResBlock(width, activation, bias, ndim) for _ in range(n_blocks)]

        self.head = conv_layer(in_channels + 1, widths[0], bias=bias, ndim=ndim)
        self.down = nn.ModuleList(
            nn.Sequential(
                *blocks(widths[level]),
                _CONV[ndim](widths[level], widths[level + 1], 2, stride=2, bias=bias),
            )
            for level in range(depth)
        )
        self.bottom = nn.Sequential(*blocks(widths[depth]))
        self.up = nn.ModuleList(
            nn.Sequential(
                _TRANSPOSED[ndim](widths[level + 1], widths[level], 2, stride=2, bias=bias),
                *blocks(widths[level]),
            )
            for level in reversed(range(depth))
        )
        self.tail = conv_layer(widths[0], in_channels, bias=bias, ndim=ndim)
        if spectral_norm:
            for module in self.modules():
                if isinstance(module, (*_CONV.values(), *_TRANSPOSED.values())):
                    conv_spectral_norm(module, lipschitz=1.0, size=spectral_size)

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Denoise ``x`` ``(B, in_channels, *spatial)`` at noise level ``sigma``."""
        if x.ndim != self.ndim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"DRUNet expects images of shape (B, {self.in_channels}, "
                f"{', '.join('HW' if self.ndim == 2 else 'DHW')}), got {tuple(x.shape)}"
            )
        spatial = x.shape[2:]
        multiple = 2**self.depth
        pads = [(-n) % multiple for n in spatial]
        h = torch.cat([x, noise_level_map(x, sigma)], dim=1)
        if any(pads):
            # F.pad takes (last_lo, last_hi, second_last_lo, ...); only the high sides are padded
            h = F.pad(h, [p for extra in reversed(pads) for p in (0, extra)], mode="replicate")

        h = self.head(h)
        skips = [h]
        for down in self.down:
            h = down(h)
            skips.append(h)
        h = self.bottom(h)
        for up in self.up:  # DPIR adds each level's encoder output before going up
            h = up(h + skips.pop())
        out = self.tail(h + skips.pop())
        if any(pads):
            out = out[(slice(None), slice(None), *(slice(0, n) for n in spatial))]
        return x + out if self.residual else out

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, channels={self.channels}, depth={self.depth}, "
            f"n_blocks={self.n_blocks}, activation={self.activation!r}, "
            f"residual={self.residual}, spectral_norm={self.spectral_norm}, ndim={self.ndim}"
        )
