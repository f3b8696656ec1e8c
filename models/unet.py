r"""The U-Net (Ronneberger et al. 2015), optionally residual as in FBPConvNet (Jin et al. 2017).

Encoder: at every level two 3×3 :class:`~models.blocks.ConvBlock` s, then 2× max pooling; the
channels double from ``channels`` at the top to ``channels · 2**depth`` at the bottom. Decoder:
2× upsampling (bilinear interpolation followed by a 1×1 convolution, or a 2×2 transposed
convolution) to half the channels, concatenation with the encoder's features of the same level
(the skip connection), two 3×3 blocks. A final 1×1 convolution maps to ``out_channels``. With
``residual=True`` the input is added to the output, :math:`x \mapsto x + N(x)`, so the network
learns the correction (the artefacts of FBP in FBPConvNet).

References: O. Ronneberger, P. Fischer, T. Brox, "U-Net: convolutional networks for biomedical
image segmentation", MICCAI 2015. K. H. Jin, M. T. McCann, E. Froustey, M. Unser, "Deep
convolutional neural network for inverse problems in imaging", IEEE TIP 26(9), 2017.

Example
-------
>>> import torch
>>> net = UNet(channels=8, depth=2)
>>> net(torch.zeros(2, 1, 30, 34)).shape
torch.Size([2, 1, 30, 34])
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from models.blocks import ConvBlock, conv_layer
from models.checks import check_ndim, check_positive_int

__all__ = ["UPSAMPLING", "UNet"]

#: Upsampling modes of the decoder ("bilinear" is trilinear for ``ndim=3``).
UPSAMPLING: tuple[str, ...] = ("bilinear", "transpose")

_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
_TRANSPOSED = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_INTERPOLATION = {2: "bilinear", 3: "trilinear"}


class UNet(nn.Module):
    """U-Net with skip concatenation, any input size, and an optional residual connection.

    Inputs whose spatial sizes are not multiples of ``2**depth`` are zero-padded (evenly on both
    sides) before the network and cropped back after it, so the output has the input's shape.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of input and output.
    channels : int
        Channels at the top level; level ``l`` has ``channels · 2**l``.
    depth : int
        Number of 2× downsamplings (0 gives a plain two-block CNN).
    residual : bool
        Add the input to the output (needs ``in_channels == out_channels``).
    norm : {"batch", "instance", None}
        Normalisation in every block.
    activation : str
        Activation in every block (one of :data:`models.blocks.ACTIVATIONS`).
    upsampling : {"bilinear", "transpose"}
        Bilinear interpolation + 1×1 convolution, or 2×2 transposed convolution with stride 2.
    ndim : {2, 3}
        Spatial dimensions: ``(B, C, H, W)`` or ``(B, C, D, H, W)``.

    Attributes
    ----------
    out_conv : torch.nn.Module
        The final 1×1 convolution (zero it and a residual U-Net is the identity).

    Raises
    ------
    ValueError
        For non-positive sizes, unknown names, or ``residual`` with different channel counts.

    Example
    -------
    >>> net = UNet(in_channels=1, out_channels=1, channels=16, depth=3, norm="instance")
    >>> x = torch.randn(4, 1, 64, 64)
    >>> net(x).shape
    torch.Size([4, 1, 64, 64])
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: int = 32,
        depth: int = 4,
        residual: bool = True,
        norm: str | None = "batch",
        activation: str = "relu",
        upsampling: str = "bilinear",
        ndim: int = 2,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.channels = check_positive_int("channels", channels)
        self.depth = check_positive_int("depth", depth, minimum=0)
        self.ndim = check_ndim(ndim)
        if not isinstance(residual, bool):
            raise ValueError(f"residual must be a bool, got {residual!r}")
        if residual and in_channels != out_channels:
            raise ValueError(
                f"residual=True adds the input to the output, so in_channels ({in_channels}) must "
                f"equal out_channels ({out_channels}); pass residual=False otherwise"
            )
        if upsampling not in UPSAMPLING:
            raise ValueError(
                f"unknown upsampling {upsampling!r}; choose one of {', '.join(UPSAMPLING)}"
            )
        self.residual = residual
        self.upsampling = upsampling

        def double(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                ConvBlock(
                    in_channels=c_in,
                    out_channels=c_out,
                    norm=norm,
                    activation=activation,
                    ndim=ndim,
                ),
                ConvBlock(
                    in_channels=c_out,
                    out_channels=c_out,
                    norm=norm,
                    activation=activation,
                    ndim=ndim,
                ),
            )

        widths = [channels * 2**level for level in range(depth + 1)]
        self.encoder = nn.ModuleList(
            [double(in_channels, widths[0])]
            + [double(widths[level - 1], widths[level]) for level in range(1, depth + 1)]
        )
        self.pool = _POOL[ndim](2)
        self.upsamplers = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for level in range(depth, 0, -1):
            wide, narrow = widths[level], widths[level - 1]
            if upsampling == "transpose":
                up: nn.Module = _TRANSPOSED[ndim](wide, narrow, kernel_size=2, stride=2)
            else:
                up = nn.Sequential(
                    nn.Upsample(scale_factor=2, mode=_INTERPOLATION[ndim], align_corners=False),
                    conv_layer(wide, narrow, kernel_size=1, ndim=ndim),
                )
            self.upsamplers.append(up)
            self.decoder.append(double(2 * narrow, narrow))
        self.out_conv = conv_layer(widths[0], out_channels, kernel_size=1, ndim=ndim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the U-Net to ``x`` of shape ``(B, in_channels, *spatial)``."""
        if x.ndim != self.ndim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"UNet expects input of shape (B, {self.in_channels}, "
                f"{', '.join('HW' if self.ndim == 2 else 'DHW')}), got {tuple(x.shape)}"
            )
        spatial = x.shape[2:]
        multiple = 2**self.depth
        pads = [(-n) % multiple for n in spatial]
        # F.pad takes (last_lo, last_hi, second_last_lo, ...): reverse the spatial order.
        pad_arg = [p for extra in reversed(pads) for p in (extra // 2, extra - extra // 2)]
        h = F.pad(x, pad_arg) if any(pads) else x

        skips = []
        for level, block in enumerate(self.encoder):
            if level > 0:
                h = self.pool(h)
            h = block(h)
            skips.append(h)
        skips.pop()  # the bottom level feeds the decoder directly
        for up, block in zip(self.upsamplers, self.decoder, strict=True):
            h = block(torch.cat([skips.pop(), up(h)], dim=1))
        out = self.out_conv(h)

        if any(pads):
            crop = tuple(
                slice(extra // 2, extra // 2 + n) for extra, n in zip(pads, spatial, strict=True)
            )
            out = out[(slice(None), slice(None), *crop)]
        return x + out if self.residual else out

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"channels={self.channels}, depth={self.depth}, residual={self.residual}, "
            f"upsampling={self.upsampling!r}, ndim={self.ndim}"
        )
