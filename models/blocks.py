"""Small convolutional building blocks shared by the U-Net and the unrolled networks.

Everything here is a plain :class:`torch.nn.Module` acting on ``(B, C, H, W)`` (``ndim=2``) or
``(B, C, D, H, W)`` (``ndim=3``) tensors, with no physics inside:

- :class:`ConvBlock`: convolution → optional normalisation → optional activation.
- :class:`ResidualBlock`: ``x + body(x)`` with two convolutions (He et al. 2016).
- :class:`ConvNet`: a few :class:`ConvBlock` s and a final plain convolution, the per-iteration
  network of learned gradient and learned primal-dual (Adler & Öktem 2017, 2018).

Normalisations are named ``"batch"``, ``"instance"`` or ``None``/``"none"``; activations
``"relu"``, ``"leaky_relu"``, ``"prelu"``, ``"elu"``, ``"gelu"``, ``"silu"``, ``"tanh"`` or
``None``/``"none"``. Unknown names raise ``ValueError`` listing the choices.

Example
-------
>>> import torch
>>> block = ConvBlock(in_channels=1, out_channels=8, norm="batch", activation="relu")
>>> block(torch.zeros(2, 1, 16, 16)).shape
torch.Size([2, 8, 16, 16])
"""

from __future__ import annotations

import torch
from torch import nn

from models.checks import check_ndim, check_positive_int, normalise_name

__all__ = [
    "ACTIVATIONS",
    "NORMS",
    "ConvBlock",
    "ConvNet",
    "ResidualBlock",
    "conv_layer",
    "make_activation",
    "make_norm",
]

#: Normalisation names accepted by the blocks (``None`` means no normalisation).
NORMS: tuple[str, ...] = ("batch", "instance", "none")

#: Activation names accepted by the blocks (``None`` means the identity).
ACTIVATIONS: tuple[str, ...] = (
    "relu",
    "leaky_relu",
    "prelu",
    "elu",
    "gelu",
    "silu",
    "tanh",
    "none",
)

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_BATCH_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_INSTANCE_NORM = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}


def make_norm(name: str | None, channels: int, *, ndim: int = 2) -> nn.Module:
    """A normalisation layer by name: ``"batch"``, ``"instance"`` (affine) or ``None``.

    Parameters
    ----------
    name : {"batch", "instance", None}
        ``None`` (or ``"none"``) gives :class:`torch.nn.Identity`.
    channels : int
        Number of channels normalised.
    ndim : {2, 3}
        Spatial dimensions.

    Example
    -------
    >>> type(make_norm("instance", 4, ndim=3)).__name__
    'InstanceNorm3d'
    """
    name = normalise_name("norm", name, NORMS)
    ndim = check_ndim(ndim)
    if name == "batch":
        return _BATCH_NORM[ndim](channels)
    if name == "instance":
        return _INSTANCE_NORM[ndim](channels, affine=True)
    return nn.Identity()


def make_activation(name: str | None, channels: int = 1) -> nn.Module:
    """An activation layer by name; ``"prelu"`` learns one slope per channel.

    Parameters
    ----------
    name : str or None
        One of :data:`ACTIVATIONS`; ``None`` (or ``"none"``) gives :class:`torch.nn.Identity`.
    channels : int
        Channels of the input (used by ``"prelu"`` only).

    Example
    -------
    >>> make_activation("prelu", 8)
    PReLU(num_parameters=8)
    """
    name = normalise_name("activation", name, ACTIVATIONS)
    if name == "prelu":
        return nn.PReLU(num_parameters=channels)
    layers = {
        "relu": nn.ReLU,
        "leaky_relu": nn.LeakyReLU,
        "elu": nn.ELU,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
        "tanh": nn.Tanh,
        "none": nn.Identity,
    }
    return layers[name]()


def conv_layer(
    in_channels: int,
    out_channels: int,
    *,
    kernel_size: int = 3,
    bias: bool = True,
    ndim: int = 2,
) -> nn.Module:
    """A ``ndim``-D convolution with "same" zero padding (odd ``kernel_size``).

    Example
    -------
    >>> conv_layer(2, 4, kernel_size=3)(torch.zeros(1, 2, 5, 7)).shape
    torch.Size([1, 4, 5, 7])
    """
    check_positive_int("in_channels", in_channels)
    check_positive_int("out_channels", out_channels)
    check_positive_int("kernel_size", kernel_size)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
    return _CONV[check_ndim(ndim)](
        in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bool(bias)
    )


class ConvBlock(nn.Sequential):
    """Convolution → normalisation → activation, keeping the spatial size.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.
    kernel_size : int
        Odd kernel size; the padding keeps the spatial size ("same").
    norm : {"batch", "instance", None}
        Normalisation after the convolution.
    activation : str or None
        One of :data:`ACTIVATIONS`.
    bias : bool, optional
        Bias of the convolution; by default only without batch normalisation, whose shift makes
        the bias redundant.
    ndim : {2, 3}
        Spatial dimensions: ``(B, C, H, W)`` or ``(B, C, D, H, W)``.

    Attributes
    ----------
    conv, norm, activation : torch.nn.Module
        The three stages (``norm``/``activation`` are :class:`~torch.nn.Identity` when absent).

    Example
    -------
    >>> block = ConvBlock(in_channels=3, out_channels=16, activation="prelu")
    >>> block(torch.zeros(1, 3, 10, 12)).shape
    torch.Size([1, 16, 10, 12])
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        norm: str | None = None,
        activation: str | None = "relu",
        bias: bool | None = None,
        ndim: int = 2,
    ) -> None:
        norm_name = normalise_name("norm", norm, NORMS)
        if bias is None:
            bias = norm_name != "batch"
        super().__init__()
        self.conv = conv_layer(
            in_channels, out_channels, kernel_size=kernel_size, bias=bias, ndim=ndim
        )
        self.norm = make_norm(norm_name, out_channels, ndim=ndim)
        self.activation = make_activation(activation, out_channels)


class ResidualBlock(nn.Module):
    r"""Residual block :math:`x \mapsto \sigma(x + N(W_2\, \sigma(N(W_1 x))))` (He et al. 2016).

    Two same-size convolutions with ``channels`` channels; the identity skip needs equal input and
    output channels. Reference: K. He, X. Zhang, S. Ren, J. Sun, "Deep residual learning for image
    recognition", CVPR 2016.

    Parameters
    ----------
    channels : int
        Channels in and out.
    kernel_size : int
        Odd kernel size.
    norm : {"batch", "instance", None}
        Normalisation after each convolution.
    activation : str or None
        One of :data:`ACTIVATIONS`; applied inside the body and after the sum.
    ndim : {2, 3}
        Spatial dimensions.

    Example
    -------
    >>> block = ResidualBlock(channels=8, norm="instance")
    >>> block(torch.zeros(2, 8, 9, 9)).shape
    torch.Size([2, 8, 9, 9])
    """

    def __init__(
        self,
        *,
        channels: int,
        kernel_size: int = 3,
        norm: str | None = None,
        activation: str | None = "relu",
        ndim: int = 2,
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvBlock(
                in_channels=channels,
                out_channels=channels,
                kernel_size=kernel_size,
                norm=norm,
                activation=activation,
                ndim=ndim,
            ),
            ConvBlock(
                in_channels=channels,
                out_channels=channels,
                kernel_size=kernel_size,
                norm=norm,
                activation=None,
                ndim=ndim,
            ),
        )
        self.activation = make_activation(activation, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(x + self.body(x))


class ConvNet(nn.Module):
    """A plain CNN: ``n_layers - 1`` :class:`ConvBlock` s and a final convolution (no activation).

    This is the small network applied in every iteration of learned gradient and learned
    primal-dual: three 3×3 layers, 32 hidden channels, PReLU (Adler & Öktem 2018, §4).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.
    hidden_channels : int
        Channels of the hidden layers.
    n_layers : int
        Number of convolutions (≥ 1).
    kernel_size : int
        Odd kernel size of every layer.
    activation : str or None
        Activation of the hidden layers (one of :data:`ACTIVATIONS`).
    norm : {"batch", "instance", None}
        Normalisation of the hidden layers.
    ndim : {2, 3}
        Spatial dimensions.

    Attributes
    ----------
    last : torch.nn.Module
        The final convolution (see :meth:`zero_last`).

    Example
    -------
    >>> net = ConvNet(in_channels=7, out_channels=5, hidden_channels=32, activation="prelu")
    >>> net(torch.zeros(2, 7, 16, 16)).shape
    torch.Size([2, 5, 16, 16])
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        hidden_channels: int = 32,
        n_layers: int = 3,
        kernel_size: int = 3,
        activation: str | None = "prelu",
        norm: str | None = None,
        ndim: int = 2,
    ) -> None:
        super().__init__()
        check_positive_int("n_layers", n_layers)
        hidden = []
        channels = in_channels
        for _ in range(n_layers - 1):
            hidden.append(
                ConvBlock(
                    in_channels=channels,
                    out_channels=hidden_channels,
                    kernel_size=kernel_size,
                    norm=norm,
                    activation=activation,
                    ndim=ndim,
                )
            )
            channels = hidden_channels
        self.hidden = nn.Sequential(*hidden)
        self.last = conv_layer(channels, out_channels, kernel_size=kernel_size, ndim=ndim)

    def zero_last(self) -> None:
        """Set the final convolution's weight and bias to zero, so the network outputs zero.

        Example
        -------
        >>> net = ConvNet(in_channels=2, out_channels=3)
        >>> net.zero_last()
        >>> net(torch.randn(1, 2, 8, 8)).abs().max().item()
        0.0
        """
        with torch.no_grad():
            self.last.weight.zero_()
            if self.last.bias is not None:
                self.last.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.hidden(x))
