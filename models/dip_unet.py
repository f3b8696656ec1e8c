r"""The deep-image-prior U-Net: an encoder–decoder with narrow skip connections (Ulyanov et al.).

The "skip" network of the deep image prior (Ulyanov, Vedaldi, Lempitsky 2018), in the form used
for CT by Baguer, Leuschner and Schmidt (2020) and by the linearised-Laplace DIP of Antorán et
al. (2022): ``scales`` levels of ``channels`` channels each (the same at every level by
default). Unlike :class:`models.UNet` (max pooling, full skip concatenation, channels doubling)
it

- downsamples by a stride-2 3×3 convolution, then a 3×3 convolution, per level;
- upsamples bilinearly and concatenates only ``skip_channels`` channels of the encoder's
  features (a 1×1 convolution squeezes them; 0 drops the skip), which keeps the network from
  passing the input straight through: what the deep image prior relies on;
- uses group normalisation (per sample, so a batch of images behaves as images one by one,
  and ``torch.func.vmap`` over per-image weights works) or none, and leaky ReLU (slope 0.2);
- ends in a 1×1 convolution, optionally followed by a sigmoid (images in [0, 1]) whose input
  is clamped to ``±sigmoid_clamp`` so that it never saturates.

Every 3×3 and 1×1 convolution is a plain :class:`torch.nn.Conv2d`, so priors over the filters
(the linearised Laplace of :mod:`recon.dip`) can find them by type and kernel size.

References: D. Ulyanov, A. Vedaldi, V. Lempitsky, "Deep image prior", CVPR 2018. D. Otero
Baguer, J. Leuschner, M. Schmidt, "Computed tomography reconstruction using deep image prior
and learned reconstruction methods", Inverse Problems 36, 2020. J. Antorán, R. Barbano,
J. Leuschner, J. M. Hernández-Lobato, B. Jin, "Uncertainty estimation for computational imaging
with deep image prior via linearised Laplace", arXiv 2203.00479.

Example
-------
>>> import torch
>>> net = DIPUNet(channels=8, scales=3, skip_channels=2)
>>> net(torch.zeros(2, 1, 20, 28)).shape
torch.Size([2, 1, 20, 28])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from models.checks import check_positive_int, normalise_name

__all__ = ["DIP_NORMS", "DIP_OUTPUTS", "DIPUNet"]

#: Normalisations of :class:`DIPUNet` (``None`` means none).
DIP_NORMS: tuple[str, ...] = ("group", "none")
#: Output maps of :class:`DIPUNet`.
DIP_OUTPUTS: tuple[str, ...] = ("linear", "sigmoid")

_SLOPE = 0.2  # leaky ReLU slope of the DIP networks


def _per_scale(name: str, value: int | Sequence[int], scales: int, *, minimum: int) -> list[int]:
    """``value`` repeated to ``scales`` entries, or a sequence of that length, all ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        values = [value] * scales
    elif isinstance(value, Sequence) and not isinstance(value, str):
        values = list(value)
        if len(values) != scales:
            raise ValueError(
                f"{name} needs one entry per scale ({scales}), got {len(values)}: {values}"
            )
    else:
        raise ValueError(f"{name} must be an int or a list of ints, got {value!r}")
    return [check_positive_int(name, v, minimum=minimum) for v in values]


def _norm(kind: str, channels: int, groups: int) -> nn.Module:
    """Group normalisation into ``gcd(groups, channels)`` groups, or the identity."""
    if kind == "none":
        return nn.Identity()
    return nn.GroupNorm(math.gcd(groups, channels), channels)


def _conv_unit(c_in: int, c_out: int, *, kernel: int, stride: int, norm: str, groups: int):
    """Convolution → normalisation → leaky ReLU; the convolution has no bias before a
    normalisation (which would remove most of it, leaving Adam to chase rounding noise)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=norm == "none"),
        _norm(norm, c_out, groups),
        nn.LeakyReLU(_SLOPE),
    )


class DIPUNet(nn.Module):
    """The deep-image-prior U-Net: equal-width levels, strided-convolution downsampling, narrow
    skips, group normalisation and a linear or sigmoid output.

    Inputs whose sizes are not multiples of ``2**(scales - 1)`` are padded by repeating the edge
    (evenly on both sides) and the output is cropped back, so it has the input's spatial shape.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of input and output.
    channels : int or list of int
        Channels of every level (one int), or one entry per level, finest first.
    scales : int
        Number of levels (``scales - 1`` downsamplings); 1 gives a plain two-convolution CNN.
    skip_channels : int or list of int
        Channels each skip connection carries (0 drops it), per level, finest first; the
        coarsest level has no skip, so its entry is unused.
    norm : {"group", None}
        Group normalisation after every convolution but the last, or none.
    groups : int
        Groups of the group normalisation (the greatest common divisor with the channels is
        used, so any width works).
    output : {"linear", "sigmoid"}
        The final map: the 1×1 convolution's value, or its sigmoid.
    sigmoid_clamp : float
        With ``output="sigmoid"``: the pre-sigmoid values are clamped to this magnitude.

    Attributes
    ----------
    inc : torch.nn.Sequential
        The first 3×3 convolution unit.
    down, up_convs : torch.nn.ModuleList
        Encoder levels (finest first) and decoder levels (coarsest first).
    skips : torch.nn.ModuleDict
        The 1×1 skip units by level (``"0"`` the finest); a level without skip has none.
    out_conv : torch.nn.Conv2d
        The final 1×1 convolution.

    Raises
    ------
    ValueError
        For non-positive sizes, lists of the wrong length or unknown names.

    Example
    -------
    >>> net = DIPUNet(channels=[8, 16, 16], scales=3, skip_channels=[4, 4, 0], output="sigmoid")
    >>> y = net(torch.randn(1, 1, 32, 32))
    >>> y.shape, bool(((y > 0) & (y < 1)).all())
    (torch.Size([1, 1, 32, 32]), True)
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: int | Sequence[int] = 32,
        scales: int = 4,
        skip_channels: int | Sequence[int] = 4,
        norm: str | None = "group",
        groups: int = 4,
        output: str = "linear",
        sigmoid_clamp: float = 15.0,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.scales = check_positive_int("scales", scales)
        self.channels = _per_scale("channels", channels, scales, minimum=1)
        self.skip_channels = _per_scale("skip_channels", skip_channels, scales, minimum=0)
        self.norm = normalise_name("norm", norm, DIP_NORMS)
        groups = check_positive_int("groups", groups)
        self.output = normalise_name("output", output, DIP_OUTPUTS)
        if (
            isinstance(sigmoid_clamp, bool)
            or not isinstance(sigmoid_clamp, (int, float))
            or not 0 < sigmoid_clamp < math.inf
        ):
            raise ValueError(
                f"sigmoid_clamp must be a finite positive number, got {sigmoid_clamp!r}"
            )
        self.sigmoid_clamp = float(sigmoid_clamp)

        c, s = self.channels, self.skip_channels
        unit = {"norm": self.norm, "groups": groups}
        self.inc = _conv_unit(in_channels, c[0], kernel=3, stride=1, **unit)
        self.down = nn.ModuleList(
            nn.Sequential(
                _conv_unit(c[level - 1], c[level], kernel=3, stride=2, **unit),
                _conv_unit(c[level], c[level], kernel=3, stride=1, **unit),
            )
            for level in range(1, scales)
        )
        self.skips = nn.ModuleDict(
            {
                str(level): _conv_unit(c[level], s[level], kernel=1, stride=1, **unit)
                for level in range(scales - 1)
                if s[level] > 0
            }
        )
        self.up_convs = nn.ModuleList(
            nn.Sequential(
                _conv_unit(c[level + 1] + s[level], c[level], kernel=3, stride=1, **unit),
                _conv_unit(c[level], c[level], kernel=3, stride=1, **unit),
            )
            for level in reversed(range(scales - 1))
        )
        self.out_conv = nn.Conv2d(c[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the network to ``x`` of shape ``(B, in_channels, H, W)``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"DIPUNet expects input of shape (B, {self.in_channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        spatial = x.shape[2:]
        multiple = 2 ** (self.scales - 1)
        pads = [(-n) % multiple for n in spatial]
        if any(pads):
            pad_arg = [p for extra in reversed(pads) for p in (extra // 2, extra - extra // 2)]
            x = F.pad(x, pad_arg, mode="replicate")

        features = [self.inc(x)]
        for block in self.down:
            features.append(block(features[-1]))
        h = features.pop()
        for level, block in zip(reversed(range(self.scales - 1)), self.up_convs, strict=True):
            skip = features[level]
            h = F.interpolate(h, size=skip.shape[2:], mode="bilinear", align_corners=False)
            if str(level) in self.skips:
                h = torch.cat([h, self.skips[str(level)](skip)], dim=1)
            h = block(h)
        out = self.out_conv(h)
        if self.output == "sigmoid":
            out = torch.sigmoid(out.clamp(-self.sigmoid_clamp, self.sigmoid_clamp))

        if any(pads):
            crop = tuple(
                slice(extra // 2, extra // 2 + n) for extra, n in zip(pads, spatial, strict=True)
            )
            out = out[(slice(None), slice(None), *crop)]
        return out

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"channels={self.channels}, scales={self.scales}, "
            f"skip_channels={self.skip_channels}, norm={self.norm!r}, output={self.output!r}"
        )
