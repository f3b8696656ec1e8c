r"""Input-convex neural networks (Amos, Xu & Kolter 2017), convolutional and strongly convex.

:class:`ICNN` maps images ``(B, C, H, W)`` (or volumes ``(B, C, D, H, W)``) to one scalar per
image, :math:`\psi(x)`, that is convex in the input by construction:

.. math::

    z_1 &= \sigma(W_0 x + b_0), \\
    z_{l+1} &= \sigma\big(V_l^{+} * z_l + W_l x + b_l\big), \qquad l = 1, …, L-1, \\
    \psi(x) &= \sum_{\text{pixels}} a^{+} \cdot z_L
              + \tfrac12\|C x\|_2^2 + \frac{s}{2}\,\|x\|_2^2 .

The hidden path (:math:`V_l^{+}`, :math:`a^{+}`) has non-negative weights, parametrised as
:math:`\operatorname{softplus}` (:math:`V_l^+`) or squares (:math:`a^+`) of unconstrained raw
weights, so no optimiser step can make them negative and nothing is clipped after the fact; the
skip connections :math:`W_l x` from the
input have free signs; :math:`\sigma` is convex and non-decreasing (softplus, ELU or leaky ReLU).
A non-negative combination of convex functions and a convex non-decreasing function of a convex
function are convex, so every :math:`z_l` is convex in :math:`x`, and so is :math:`\psi`.

The quadratic terms: :math:`\tfrac{s}{2}\|x\|^2` makes :math:`\psi` :math:`s`-strongly convex
(``strong_convexity``, fixed),

.. math:: \langle \nabla\psi(x) - \nabla\psi(y), x - y\rangle \ge s\,\|x - y\|_2^2,

and the optional learnable :math:`\tfrac12\|C x\|^2` (:math:`C` a convolution with free
weights, ``quadratic_kernel``, ``quadratic_channels``) adds a learned positive semi-definite
convolution :math:`C^T C` to :math:`\nabla\psi`: a linear preconditioner. :math:`C` starts as
:math:`\sqrt q` times the identity (and small noise in its extra channels), :math:`q` =
``quadratic``. With a small ``output_scale`` the network term starts small, so an untrained
:class:`ICNN` is nearly :math:`\tfrac{s + q}{2}\|x\|^2`: a mirror map whose gradient is nearly a
multiple of the identity, with a known inverse.

:class:`Quadratic` is the exact quadratic :math:`\tfrac{c}{2}\|x\|^2` (the Euclidean mirror
map), and :func:`input_gradient` evaluates :math:`\nabla\psi(x)` by automatic differentiation,
also under :func:`torch.no_grad` and, with ``create_graph=True``, differentiably in the
network's parameters.

Reference: B. Amos, L. Xu, J. Z. Kolter, "Input convex neural networks", ICML 2017.

Example
-------
>>> import torch
>>> psi = ICNN(channels=8, n_layers=3, strong_convexity=0.1)
>>> x = torch.randn(2, 1, 16, 16)
>>> psi(x).shape, input_gradient(psi, x).shape
(torch.Size([2]), torch.Size([2, 1, 16, 16]))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from models.blocks import _check_ndim, _check_positive_int, conv_layer

__all__ = ["ICNN_ACTIVATIONS", "ICNN", "NonNegativeConv", "Quadratic", "input_gradient"]

#: Convex, non-decreasing activations accepted by :class:`ICNN`.
ICNN_ACTIVATIONS: tuple[str, ...] = ("softplus", "elu", "leaky_relu")

_CONV_FUNCTIONS = {2: F.conv2d, 3: F.conv3d}


def _check_non_negative(name: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be a finite {kind} number, got {value}")
    return value


def _inverse_softplus(value: torch.Tensor) -> torch.Tensor:
    """``ρ`` with ``softplus(ρ) = value`` for ``value > 0``."""
    return value + torch.log(-torch.expm1(-value))


def _activation(name: object) -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in ICNN_ACTIVATIONS:
        raise ValueError(
            f"unknown ICNN activation {name!r}; choose one of {', '.join(ICNN_ACTIVATIONS)} "
            "(convex and non-decreasing)"
        )
    if name == "softplus":
        return F.softplus
    if name == "elu":
        return F.elu  # α = 1: e^u - 1 for u < 0, u after; C¹, convex, non-decreasing
    return lambda u: F.leaky_relu(u, negative_slope=0.2)


def input_gradient(
    potential: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    create_graph: bool = False,
) -> torch.Tensor:
    r""":math:`\nabla\psi(x)` of a potential with one scalar per batch element.

    Computes :math:`\nabla_x \sum_b \psi(x_b)` by automatic differentiation; batch elements
    are independent, so this is :math:`\nabla\psi(x_b)` for every ``b``. Works inside
    :func:`torch.no_grad` (the graph is built locally). With ``create_graph=True`` the result is
    differentiable in ``x`` and in the potential's parameters (for training through it);
    otherwise it is detached.

    Parameters
    ----------
    potential : callable
        ``potential(x) -> (B,)``, e.g. an :class:`ICNN`.
    x : torch.Tensor
        Inputs ``(B, ...)``.
    create_graph : bool
        Keep the graph of the gradient (second derivatives, training).

    Returns
    -------
    torch.Tensor
        Same shape as ``x``.

    Example
    -------
    >>> x = torch.tensor([[1.0, -2.0]])
    >>> input_gradient(Quadratic(scale=3.0), x)
    tensor([[ 3., -6.]])
    """
    with torch.enable_grad():
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        value = potential(x).sum()
        (grad,) = torch.autograd.grad(value, x, create_graph=create_graph)
    return grad


class NonNegativeConv(nn.Module):
    r"""A convolution without bias whose weights are :math:`\operatorname{softplus}(\rho) \ge 0`
    (or :math:`\rho^2`).

    The raw weights :math:`\rho` are the parameters; :attr:`weight` is always non-negative,
    whatever an optimiser does to :math:`\rho`. Weights start uniform in
    ``(0, 2 · gain / fan_in]`` (mean ``gain / fan_in``: on average, the layer averages its input).
    "Same" zero padding for odd kernels.

    The two parametrisations differ in how fast small weights move under Adam, whose steps in
    :math:`\rho` have a fixed size: a softplus weight far below 1 changes by a fixed *fraction*
    per step (:math:`\operatorname{softplus}(\rho) \approx e^\rho`), a squared one by an
    amount that grows with it, so a weight started small (a network term started near zero) can
    grow within a training run.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.
    kernel_size : int
        Odd kernel size.
    dilation : int
        Dilation of the kernel.
    gain : float
        Scale of the initial weights.
    parametrisation : {"softplus", "square"}
        :math:`\operatorname{softplus}(\rho)` or :math:`\rho^2`.
    ndim : {2, 3}
        Spatial dimensions.

    Example
    -------
    >>> conv = NonNegativeConv(4, 2)
    >>> with torch.no_grad():
    ...     _ = conv.raw_weight.fill_(-50.0)
    >>> bool((conv.weight >= 0).all()), conv(torch.ones(1, 4, 5, 5)).shape
    (True, torch.Size([1, 2, 5, 5]))
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        dilation: int = 1,
        gain: float = 1.0,
        parametrisation: str = "softplus",
        ndim: int = 2,
    ) -> None:
        super().__init__()
        if parametrisation not in ("softplus", "square"):
            raise ValueError(
                f"parametrisation must be 'softplus' or 'square', got {parametrisation!r}"
            )
        self.parametrisation = parametrisation
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("out_channels", out_channels)
        _check_positive_int("kernel_size", kernel_size)
        _check_positive_int("dilation", dilation)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
        gain = _check_non_negative("gain", gain, positive=True)
        self.ndim = _check_ndim(ndim)
        self.dilation = dilation
        self.padding = dilation * (kernel_size // 2)
        shape = (out_channels, in_channels, *([kernel_size] * self.ndim))
        fan_in = in_channels * kernel_size**self.ndim
        initial = torch.rand(shape).mul_(2 * gain / fan_in).clamp_min_(1e-6 * gain / fan_in)
        raw = _inverse_softplus(initial) if parametrisation == "softplus" else initial.sqrt()
        self.raw_weight = nn.Parameter(raw)

    @property
    def weight(self) -> torch.Tensor:
        """The non-negative weights :math:`\\operatorname{softplus}(\\rho)` (or :math:`\\rho^2`)."""
        if self.parametrisation == "square":
            return self.raw_weight.square()
        return F.softplus(self.raw_weight)

    def extra_repr(self) -> str:
        out_channels, in_channels, kernel = self.raw_weight.shape[:3]
        return (
            f"{in_channels}, {out_channels}, kernel_size={kernel}, dilation={self.dilation}, "
            f"parametrisation={self.parametrisation!r}, ndim={self.ndim}"
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        conv = _CONV_FUNCTIONS[self.ndim]
        return conv(z, self.weight, padding=self.padding, dilation=self.dilation)


class ICNN(nn.Module):
    r"""A convolutional, strongly convex input-convex network :math:`\psi: (B, C, …) \to (B,)`.

    See the module docstring for the equations. Layer ``l`` has ``channels`` channels and kernels
    of size ``kernel_size`` with dilation ``dilations[l]`` (a growing dilation widens the
    receptive field of :math:`\nabla\psi` at no extra cost).

    Parameters
    ----------
    in_channels : int
        Channels of the input.
    channels : int
        Channels of every hidden layer.
    n_layers : int
        Number of hidden layers :math:`L \ge 1`.
    kernel_size : int
        Odd kernel size of the convolutions.
    dilations : sequence of int, optional
        One dilation per hidden layer (default all 1).
    activation : {"softplus", "elu", "leaky_relu"}
        Convex, non-decreasing activation :math:`\sigma`.
    strong_convexity : float
        :math:`s \ge 0`, the guaranteed strong-convexity constant (fixed).
    quadratic : float
        :math:`q \ge 0`: the learnable quadratic :math:`\tfrac12\|Cx\|^2` starts as
        :math:`\tfrac{q}{2}\|x\|^2`; ``0`` for no learnable quadratic term.
    quadratic_kernel : int
        Odd kernel size of :math:`C` (1: a learnable multiple of the identity).
    quadratic_channels : int, optional
        Output channels of :math:`C` (default ``in_channels``; at least ``in_channels``).
    output_scale : float
        Mean initial weight of :math:`a^+` times ``channels`` (small: the network term starts
        small next to the quadratic; :math:`a^+` is squared raw weights, so it can grow).
    ndim : {2, 3}
        Spatial dimensions.

    Attributes
    ----------
    input_layers : torch.nn.ModuleList
        :math:`W_0, …, W_{L-1}` (free signs, with bias).
    hidden_layers : torch.nn.ModuleList
        :math:`V_1^+, …, V_{L-1}^+` (:class:`NonNegativeConv`).
    output_layer : NonNegativeConv
        :math:`a^+`, a 1×1 non-negative convolution to one channel (``"square"``).
    quadratic_layer : torch.nn.Module or None
        :math:`C` (``None`` when ``quadratic == 0``).

    Raises
    ------
    ValueError
        For invalid sizes, an unknown activation, or negative ``strong_convexity``/``quadratic``.
    TypeError
        For unknown keyword arguments (e.g. a typo in a config).

    Example
    -------
    >>> torch.manual_seed(0) and None
    >>> psi = ICNN(channels=4, n_layers=2, strong_convexity=0.5).double()
    >>> x, d = torch.randn(2, 1, 8, 8).double(), torch.randn(2, 1, 8, 8).double()
    >>> gx, gd = input_gradient(psi, x), input_gradient(psi, x + d)
    >>> bool(((gd - gx) * d).sum(dim=(1, 2, 3)).ge(0.5 * d.square().sum(dim=(1, 2, 3))).all())
    True
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        channels: int = 16,
        n_layers: int = 3,
        kernel_size: int = 3,
        dilations: Sequence[int] | None = None,
        activation: str = "softplus",
        strong_convexity: float = 0.1,
        quadratic: float = 0.0,
        quadratic_kernel: int = 1,
        quadratic_channels: int | None = None,
        output_scale: float = 0.001,
        ndim: int = 2,
    ) -> None:
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("channels", channels)
        _check_positive_int("n_layers", n_layers)
        self.ndim = _check_ndim(ndim)
        if dilations is None:
            dilations = [1] * n_layers
        dilations = [int(d) for d in dilations]
        if len(dilations) != n_layers:
            raise ValueError(
                f"dilations needs one entry per hidden layer ({n_layers}), got {dilations}"
            )
        self.activation_name = activation
        self.sigma = _activation(activation)
        self.strong_convexity = _check_non_negative("strong_convexity", strong_convexity)
        quadratic = _check_non_negative("quadratic", quadratic)
        output_scale = _check_non_negative("output_scale", output_scale, positive=True)
        self.in_channels, self.channels, self.n_layers = in_channels, channels, n_layers
        self.kernel_size, self.dilations = kernel_size, tuple(dilations)

        def skip(dilation: int) -> nn.Module:
            conv = conv_layer(in_channels, channels, kernel_size=kernel_size, ndim=self.ndim)
            conv.dilation = (dilation,) * self.ndim
            conv.padding = (dilation * (kernel_size // 2),) * self.ndim
            return conv

        self.input_layers = nn.ModuleList(skip(d) for d in dilations)
        self.hidden_layers = nn.ModuleList(
            NonNegativeConv(channels, channels, kernel_size=kernel_size, dilation=d, ndim=self.ndim)
            for d in dilations[1:]
        )
        self.output_layer = NonNegativeConv(
            channels, 1, kernel_size=1, gain=output_scale, parametrisation="square", ndim=self.ndim
        )
        self.quadratic_layer = None
        if quadratic > 0:
            if quadratic_channels is None:
                quadratic_channels = in_channels
            _check_positive_int("quadratic_channels", quadratic_channels, minimum=in_channels)
            self.quadratic_layer = conv_layer(
                in_channels,
                quadratic_channels,
                kernel_size=quadratic_kernel,
                bias=False,
                ndim=self.ndim,
            )
            with torch.no_grad():  # √q · identity, and small noise in the extra channels
                weight = self.quadratic_layer.weight
                weight.normal_(0.0, 0.01 * math.sqrt(quadratic / weight[0].numel()))
                weight[:in_channels] = 0.0
                centre = (quadratic_kernel // 2,) * self.ndim
                for c in range(in_channels):
                    weight[(c, c, *centre)] = math.sqrt(quadratic)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`\\psi(x)` for ``x`` of shape ``(B, in_channels, *spatial)``; returns ``(B,)``."""
        if x.ndim != self.ndim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ICNN expects input of shape (B, {self.in_channels}, *{self.ndim} spatial dims), "
                f"got {tuple(x.shape)}"
            )
        z = self.sigma(self.input_layers[0](x))
        for hidden, skip in zip(self.hidden_layers, self.input_layers[1:], strict=True):
            z = self.sigma(hidden(z) + skip(x))
        value = self.output_layer(z).flatten(1).sum(1)
        if self.strong_convexity > 0:
            value = value + 0.5 * self.strong_convexity * x.flatten(1).square().sum(1)
        if self.quadratic_layer is not None:
            value = value + 0.5 * self.quadratic_layer(x).flatten(1).square().sum(1)
        return value

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, channels={self.channels}, "
            f"n_layers={self.n_layers}, kernel_size={self.kernel_size}, "
            f"dilations={list(self.dilations)}, activation={self.activation_name!r}, "
            f"strong_convexity={self.strong_convexity}, ndim={self.ndim}"
        )


class Quadratic(nn.Module):
    r"""The quadratic potential :math:`\psi(x) = \tfrac{c}{2}\|x\|_2^2` per batch element.

    :math:`\nabla\psi(x) = c\,x` and :math:`\nabla\psi^*(z) = z / c`: the mirror map of
    Euclidean geometry (``scale=1``), with an exactly known inverse (``Quadratic(1 / c)``).
    No parameters.

    Parameters
    ----------
    scale : float
        :math:`c > 0`.

    Example
    -------
    >>> Quadratic(scale=2.0)(torch.ones(3, 1, 2, 2))
    tensor([4., 4., 4.])
    """

    def __init__(self, *, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = _check_non_negative("scale", scale, positive=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.scale * x.flatten(1).square().sum(1)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
