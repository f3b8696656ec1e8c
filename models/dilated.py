r"""A small residual CNN with dilated convolutions: a wide receptive field at a low cost.

The correction networks of a learned operator :math:`A_q = F_q \circ \tilde A \circ H_f` run
inside every iteration of a reconstruction, so they must cost far less than the accurate model
they replace (a 64² PAT time stepper is ~0.2 GFLOP per image). Stacking 3×3 convolutions with
dilations ``(1, 3, 9)`` covers 29 pixels with three hidden layers of 8 channels (about 1,300
multiply-adds per pixel); a U-Net of the same reach costs 3–6× more. PReLU activations let the
network represent the (near-)linear maps a model correction mostly is.

.. math:: N(x) = x + W_{\text{out}} * \sigma(W_L *_{d_L} \cdots \sigma(W_1 *_{d_1} x))
    \; [+\, K * x]

The optional linear path ``K * x`` (``linear_kernel=k``: one k×k convolution, no bias) gives the
network an exact linear filter; the PReLU stack only approximates one, and Adam fits it slowly.

Example
-------
>>> import torch
>>> net = DilatedCNN(channels=8, dilations=(1, 3, 9))
>>> net(torch.zeros(2, 1, 16, 32)).shape
torch.Size([2, 1, 16, 32])
>>> net.zero_last()
>>> x = torch.randn(1, 1, 8, 8)
>>> torch.equal(net(x), x)          # residual with a zero last layer: the identity
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from models.blocks import make_activation
from models.checks import check_ndim, check_positive_int

__all__ = ["CircularPad", "DilatedCNN", "from_blocks", "frozen_prelu", "to_blocks"]

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_CHANNELS_LAST = {2: torch.channels_last, 3: torch.channels_last_3d}


class DilatedCNN(nn.Module):
    """Residual CNN of dilated 3×3 convolutions.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out; the residual connection needs them equal.
    channels : int
        Hidden channels.
    dilations : sequence of int
        One hidden layer per entry, with that dilation (receptive field ``1 + 2·Σ d + 2``).
    activation : str
        Hidden activation (see :func:`models.blocks.make_activation`), ``prelu`` by default.
    residual : bool
        Return ``x + net(x)``.
    normalize : bool
        Scale equivariance: apply the layers to ``x / s`` and rescale, ``N(x) = x + s·net(x/s)``
        with ``s`` the root mean square of each sample (so ``N(αx) = αN(x)`` for ``α > 0``, as
        for the linear models a correction approximates). Inputs of any scale (sinograms in mm,
        small residuals) then meet the layers at unit scale; without it, training on data of
        scale ~20 stalled (measured on CT).
    ndim : {2, 3}
        Spatial dimensions.
    coordinates : bool
        Give the first layer ``ndim`` extra input channels holding each pixel's coordinates in
        ``[-1, 1]`` ("CoordConv"), so the network can apply position-dependent corrections that a
        translation-invariant CNN cannot: a model mismatch in PAT data grows with time (the best
        gain per time sample goes from 0.99 to 1.5 between an accurate and a regridding model).
    linear_kernel : int
        Size of the optional linear path ``K * x`` added to the output (odd, ≥ 1; ``0``, the
        default, leaves it out). It starts at zero and :meth:`zero_last` zeroes it too. A model
        correction is mostly a linear filter: in a forward-only fit of the 64² CT pair
        (``experiment=correction_ct_fan/forward``, 400 Adam steps) a 5×5 path cut the model error to
        0.0105 from 0.0119 without it (``Ã``: 0.0121).
    unshuffle : int or sequence of int
        Run the hidden layers on a grid coarser by these factors (one per spatial axis, or one
        for all), losslessly: ``(C, H, W) → (C·f_H·f_W, H/f_H, W/f_W)`` by moving each
        ``f_H × f_W`` block into channels ("pixel unshuffle", the input with its coordinate
        channels), and back after the last convolution, which then has
        ``out_channels·f_H·f_W`` outputs. With ``channels`` scaled by ``√(f_H f_W)`` the cost
        per input pixel stays the same, the receptive field grows by the factors, and the
        convolutions are wider, which oneDNN runs faster on CPU (a 64×128 PAT sinogram: 16
        channels at full resolution 2.5 ms, 32 channels unshuffled by (2, 2) 1.9 ms; 1 thread).
        The spatial sizes of the input must be multiples of the factors. Default 1: none.
    periodic : bool or sequence of bool
        Spatial axes to treat as periodic (one flag per axis, or one for all): every
        convolution pads them circularly instead of with zeros. For a sinogram whose angles
        cover the full circle the first and last views are neighbours, and a correction that
        moves data between views (the fan's rays against the parallel ones) needs them: in the
        CT parallel-approximation pair the adjoint networks' error fell from 0.402 to 0.386
        with the angle axis periodic (``experiment=correction_ct_parallel/adjoint``).
        Default ``False``: zero padding on every axis.
    channels_last : bool
        Keep the weights and the hidden activations in the channels-last memory layout, which
        oneDNN runs 1.4–1.8× faster for these dilated convolutions on CPU (forward and backward,
        8–32 channels, measured); the output has the input's layout. The numbers are the same
        either way up to float rounding.

    Attributes
    ----------
    out_conv : torch.nn.Module
        The final (undilated) convolution; :meth:`zero_last` zeroes it.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: int = 8,
        dilations: Sequence[int] = (1, 3, 9),
        activation: str = "prelu",
        residual: bool = True,
        normalize: bool = False,
        ndim: int = 2,
        coordinates: bool = False,
        linear_kernel: int = 0,
        unshuffle: int | Sequence[int] = 1,
        periodic: bool | Sequence[bool] = False,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.ndim = check_ndim(ndim)
        in_channels = check_positive_int("in_channels", in_channels)
        out_channels = check_positive_int("out_channels", out_channels)
        channels = check_positive_int("channels", channels)
        dilations = tuple(dilations)
        if not dilations:
            raise ValueError("dilations must name at least one hidden layer")
        for d in dilations:
            check_positive_int("dilation", d)
        if not isinstance(residual, bool):
            raise ValueError(f"residual must be True or False, got {residual!r}")
        if residual and in_channels != out_channels:
            raise ValueError(
                f"a residual network needs in_channels == out_channels, got {in_channels} "
                f"and {out_channels}"
            )
        if not isinstance(coordinates, bool):
            raise ValueError(f"coordinates must be True or False, got {coordinates!r}")
        self.coordinates = coordinates
        if isinstance(unshuffle, int) and not isinstance(unshuffle, bool):
            unshuffle = (unshuffle,) * self.ndim
        factors = tuple(unshuffle)
        if len(factors) != self.ndim:
            raise ValueError(
                f"unshuffle needs one factor per spatial axis ({self.ndim}) or one int, "
                f"got {unshuffle!r}"
            )
        for f in factors:
            check_positive_int("unshuffle factor", f)
        self.unshuffle: tuple[int, ...] = factors
        self.periodic = _check_periodic(periodic, self.ndim)
        block = math.prod(factors)
        layers: list[nn.Module] = []
        previous = (in_channels + (self.ndim if coordinates else 0)) * block
        for d in dilations:
            layers += [
                *self._padded_conv(previous, channels, 3, dilation=d),
                make_activation(activation, channels),
            ]
            previous = channels
        *pad, self.out_conv = self._padded_conv(previous, out_channels * block, 3)
        self.hidden = nn.Sequential(*layers, *pad)
        if not isinstance(linear_kernel, int) or isinstance(linear_kernel, bool):
            raise ValueError(f"linear_kernel must be an int, got {linear_kernel!r}")
        if linear_kernel < 0 or (linear_kernel and linear_kernel % 2 == 0):
            raise ValueError(
                f"linear_kernel must be 0 (no linear path) or an odd size ≥ 1, got {linear_kernel}"
            )
        self.linear_kernel = linear_kernel
        self.linear: nn.Module | None = None
        if linear_kernel:
            *pad, conv = self._padded_conv(in_channels, out_channels, linear_kernel, bias=False)
            nn.init.zeros_(conv.weight)
            self.linear = nn.Sequential(*pad, conv) if pad else conv
        self.in_channels, self.out_channels = in_channels, out_channels
        self.channels, self.dilations, self.residual = channels, dilations, residual
        if not isinstance(normalize, bool):
            raise ValueError(f"normalize must be True or False, got {normalize!r}")
        self.normalize = normalize
        if not isinstance(channels_last, bool):
            raise ValueError(f"channels_last must be True or False, got {channels_last!r}")
        self.memory_format = _CHANNELS_LAST[self.ndim] if channels_last else None
        if self.memory_format is not None:
            self.to(memory_format=self.memory_format)
        self.compute_dtype: torch.dtype | None = None  # see compute_in
        self.io_dtype: torch.dtype | None = None

    def _padded_conv(
        self, c_in: int, c_out: int, kernel: int, *, dilation: int = 1, bias: bool = True
    ) -> list[nn.Module]:
        """A convolution that keeps the size, padding the periodic axes circularly (a
        :class:`CircularPad` before it) and the others with zeros (its own padding)."""
        amount = dilation * (kernel // 2)
        padding = tuple(0 if p else amount for p in self.periodic)
        conv = _CONV[self.ndim](c_in, c_out, kernel, padding=padding, dilation=dilation, bias=bias)
        if not any(self.periodic) or amount == 0:
            return [conv]
        return [CircularPad(self.periodic, amount), conv]

    def compute_in(self, dtype: torch.dtype) -> DilatedCNN:
        """Run the hidden and output convolutions in ``dtype`` (inference only), keeping the
        input, the output, the activations, the normalisation and the linear path in the
        parameters' present dtype. Returns ``self``, frozen (``requires_grad=False``, ``eval()``).

        On CPUs with AVX512-BF16 or AMX (and on GPUs) ``torch.bfloat16`` runs the convolutions
        about 2× faster (measured: a 24-channel 3×3 convolution on 10×32×64, one thread, 2.44 →
        1.23 ms); ``torch.autocast`` gains nothing here, as it casts the weights on every call.
        The output's rounding error is ~2⁻⁹ of the network's correction. On inputs that
        require grad (a linearised adjoint: a vector-Jacobian product through the network) the
        PReLUs run as :func:`frozen_prelu`, whose input gradient is ~3× cheaper than PReLU's.

        >>> net = DilatedCNN(channels=4, dilations=(1, 2)).compute_in(torch.bfloat16)
        >>> net(torch.randn(1, 1, 8, 8)).dtype
        torch.float32
        """
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"compute_in needs a floating-point torch.dtype, got {dtype!r}")
        if self.io_dtype is None:
            self.io_dtype = self.out_conv.weight.dtype
        for layer in (*self.hidden, self.out_conv):
            if isinstance(layer, (nn.Conv2d, nn.Conv3d)):
                layer.to(dtype)
        self.compute_dtype = dtype
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply to ``x`` of shape ``(B, in_channels, *spatial)``."""
        if x.ndim != self.ndim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"DilatedCNN expects input of shape (B, {self.in_channels}, "
                f"{'H, W' if self.ndim == 2 else 'D, H, W'}), got {tuple(x.shape)}"
            )
        if any(n % f for n, f in zip(x.shape[2:], self.unshuffle, strict=True)):
            raise ValueError(
                f"DilatedCNN(unshuffle={self.unshuffle}) needs spatial sizes that are multiples "
                f"of the factors, got {tuple(x.shape[2:])}"
            )
        if self.normalize:
            scale = x.detach().flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-12)
            scale = scale.reshape(-1, *([1] * (x.ndim - 1)))
            out = scale * self._layers(x / scale)
        else:
            out = self._layers(x)
        if self.linear is not None:
            out = out + self.linear(x)
        return x + out if self.residual else out

    def _layers(self, h: torch.Tensor) -> torch.Tensor:
        if self.coordinates:
            axes = [torch.linspace(-1, 1, n, dtype=h.dtype, device=h.device) for n in h.shape[2:]]
            grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))
            h = torch.cat([h, grid.expand(h.shape[0], *grid.shape)], dim=1)
        h = to_blocks(h, self.unshuffle)
        dtype = h.dtype
        if self.memory_format is not None:
            h = h.contiguous(memory_format=self.memory_format)
        if self.compute_dtype is None:
            h = self.out_conv(self.hidden(h))
        else:  # each layer in its parameters' dtype: convolutions in compute_dtype, activations
            for layer in (*self.hidden, self.out_conv):  # in io_dtype (bfloat16 PReLU is ~20×
                param = next(layer.parameters(), None)  # slower than a round trip to float32)
                h = h if param is None else h.to(param.dtype)
                if isinstance(layer, nn.PReLU) and h.requires_grad:  # a vector-Jacobian product
                    h = frozen_prelu(h, layer.weight)  # follows: PReLU's backward is ~3× dearer
                else:  # (without one, PReLU's single pass is the cheaper)
                    h = layer(h)
        return from_blocks(h, self.unshuffle).to(dtype).contiguous()

    def zero_last(self) -> None:
        """Zero the last convolution and the linear path: a residual net is then the identity."""
        with torch.no_grad():
            self.out_conv.weight.zero_()
            if self.out_conv.bias is not None:
                self.out_conv.bias.zero_()
            if self.linear is not None:
                self._linear_conv().weight.zero_()

    def _linear_conv(self) -> nn.Module:
        linear = self.linear
        return linear[-1] if isinstance(linear, nn.Sequential) else linear

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, dilations={self.dilations}, residual={self.residual}, "
            f"normalize={self.normalize}, coordinates={self.coordinates}, "
            f"linear_kernel={self.linear_kernel}"
            + (f", unshuffle={self.unshuffle}" if math.prod(self.unshuffle) > 1 else "")
            + (f", periodic={self.periodic}" if any(self.periodic) else "")
            + (f", compute_dtype={self.compute_dtype}" if self.compute_dtype is not None else "")
        )


class CircularPad(nn.Module):
    """Pad the axes flagged in ``periodic`` by ``amount`` on each side with the values from the
    other end (any amount, even more than the axis' length); leave the others.

    >>> CircularPad((True, False), 2)(torch.arange(3.0).reshape(1, 1, 3, 1)).flatten().tolist()
    [1.0, 2.0, 0.0, 1.0, 2.0, 0.0, 1.0]
    """

    def __init__(self, periodic: Sequence[bool], amount: int) -> None:
        super().__init__()
        self.periodic = tuple(periodic)
        self.amount = check_positive_int("amount", amount)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        first = h.ndim - len(self.periodic)
        for axis, flag in enumerate(self.periodic, start=first):
            if flag:
                n = h.shape[axis]
                index = torch.arange(-self.amount, n + self.amount, device=h.device) % n
                h = h.index_select(axis, index)
        return h

    def extra_repr(self) -> str:
        return f"periodic={self.periodic}, amount={self.amount}"


def _check_periodic(periodic: bool | Sequence[bool], ndim: int) -> tuple[bool, ...]:
    flags = (periodic,) * ndim if isinstance(periodic, bool) else tuple(periodic)
    if len(flags) != ndim or not all(isinstance(f, bool) for f in flags):
        raise ValueError(
            f"periodic needs True/False per spatial axis ({ndim}) or one for all, got {periodic!r}"
        )
    return flags


def frozen_prelu(h: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
    r"""PReLU with per-channel ``slopes`` :math:`a_c` (fixed), written as
    :math:`a_c h + (1 - a_c)\,\mathrm{relu}(h)`, for inference and for gradients in the input.

    Equal to :func:`torch.nn.functional.prelu` up to rounding, but its backward pass is two
    elementwise products instead of PReLU's kernel, which also reduces the slopes' gradient
    (measured on 10×24×32×64 channels-last float32, 2 threads: forward and input gradient 1.8 →
    0.5 ms). :meth:`DilatedCNN.compute_in` uses it, so the linearised adjoint of a learned
    operator (a vector-Jacobian product through its networks) gets cheaper.

    >>> h, a = torch.randn(2, 3, 4, 4), torch.rand(3)
    >>> torch.allclose(frozen_prelu(h, a), nn.functional.prelu(h, a))
    True
    """
    a = slopes.reshape(1, -1, *([1] * (h.ndim - 2))).to(h.dtype)
    return torch.addcmul(h * a, 1 - a, torch.relu(h))


def to_blocks(h: torch.Tensor, factors: tuple[int, ...]) -> torch.Tensor:
    """``(B, C, n_1, …, n_d) → (B, C·Πf, n_1/f_1, …, n_d/f_d)``: each block of ``f_1 × … × f_d``
    pixels becomes channels (channel index ``c·Πf + offset``, offsets in C order).

    In 2D with equal factors it is :func:`torch.nn.functional.pixel_unshuffle`; it works for
    any number of axes and a factor per axis (sizes divisible by them).

    >>> x = torch.randn(1, 2, 4, 6)
    >>> to_blocks(x, (2, 3)).shape, torch.equal(from_blocks(to_blocks(x, (2, 3)), (2, 3)), x)
    (torch.Size([1, 12, 2, 2]), True)
    """
    if math.prod(factors) == 1:
        return h
    b, c, *sizes = h.shape
    d = len(sizes)
    split = [b, c]
    for n, f in zip(sizes, factors, strict=True):
        split += [n // f, f]
    h = h.reshape(split)
    # (b, c, n1, f1, n2, f2, ...) -> (b, c, f1, f2, ..., n1, n2, ...)
    order = [0, 1, *(3 + 2 * i for i in range(d)), *(2 + 2 * i for i in range(d))]
    return h.permute(order).reshape(
        b, c * math.prod(factors), *(n // f for n, f in zip(sizes, factors, strict=True))
    )


def from_blocks(h: torch.Tensor, factors: tuple[int, ...]) -> torch.Tensor:
    """The inverse of :func:`to_blocks`: ``(B, C·Πf, m_1, …, m_d) → (B, C, m_1 f_1, …, m_d f_d)``.

    >>> from_blocks(torch.zeros(1, 8, 3, 3), (2, 2)).shape
    torch.Size([1, 2, 6, 6])
    """
    if math.prod(factors) == 1:
        return h
    b, cf, *coarse = h.shape
    d = len(coarse)
    c = cf // math.prod(factors)
    h = h.reshape(b, c, *factors, *coarse)
    # (b, c, f1, ..., fd, n1, ..., nd) -> (b, c, n1, f1, n2, f2, ...)
    order = [0, 1]
    for i in range(d):
        order += [2 + d + i, 2 + i]
    return h.permute(order).reshape(b, c, *(n * f for n, f in zip(coarse, factors, strict=True)))
