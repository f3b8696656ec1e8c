r"""Input-convex neural networks (Amos, Xu & Kolter 2017), convolutional and strongly convex.

:class:`ICNN` maps images ``(B, C, H, W)`` (or volumes ``(B, C, D, H, W)``) to one scalar per
image, :math:`\psi(x)`, that is convex in the input by construction:

.. math::

    z_1 &= \sigma(W_0 x + b_0), \\
    z_{l+1} &= \sigma\big(V_l^{+} * z_l + W_l x + b_l\big), \qquad l = 1, …, L-1, \\
    \psi(x) &= \sum_{\text{pixels}} a^{+} \cdot z_L
              + \tfrac12\|C x\|_2^2 + \tfrac12\langle x, M x\rangle
              + \frac{s}{2}\,\|x\|_2^2 .

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
``quadratic``. The optional :math:`\tfrac12\langle x, Mx\rangle` (``spectral``,
:class:`SpectralQuadratic`) is a learned positive-definite *global* convolution, diagonal in the
Fourier basis of a fixed image grid (``spectral_shape``): a preconditioner with the support of
the whole image, such as the ramp-like filters that invert a ray transform's normal operator,
which no small kernel :math:`C` can represent. With a small ``output_scale`` the network term
starts small, so an untrained :class:`ICNN` is nearly :math:`\tfrac{s + q + m_0}{2}\|x\|^2`: a
mirror map whose gradient is nearly a multiple of the identity, with a known inverse.

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

import abc
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from models.blocks import conv_layer
from models.checks import check_ndim, check_positive_int

__all__ = [
    "ICNN_ACTIVATIONS",
    "ICNN",
    "NonNegativeConv",
    "InverseSpectralQuadratic",
    "Quadratic",
    "SpectralQuadratic",
    "input_gradient",
]

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
        check_positive_int("in_channels", in_channels)
        check_positive_int("out_channels", out_channels)
        check_positive_int("kernel_size", kernel_size)
        check_positive_int("dilation", dilation)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
        gain = _check_non_negative("gain", gain, positive=True)
        self.ndim = check_ndim(ndim)
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
    spectral : float
        :math:`m_0 \ge 0`: the learnable Fourier-diagonal quadratic
        :math:`\tfrac12\langle x, Mx\rangle` (:class:`SpectralQuadratic`) starts as
        :math:`\tfrac{m_0}{2}\|x\|^2`; ``0`` (default) for none.
    spectral_shape : sequence of int, optional
        The spatial shape of the inputs, needed when ``spectral > 0`` (the multiplier has one
        value per frequency of this grid; other shapes are refused).
    spectral_rate : float
        :math:`\kappa > 0` of :class:`SpectralQuadratic`: the multiplier is
        :math:`m_0 e^{\kappa\rho}`, so an optimiser step moves its logarithm :math:`\kappa`
        times as far as a network weight.
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
    spectral_layer : SpectralQuadratic or None
        :math:`\tfrac12\langle x, Mx\rangle` (``None`` when ``spectral == 0``).

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
        spectral: float = 0.0,
        spectral_shape: Sequence[int] | None = None,
        spectral_rate: float = 1.0,
        ndim: int = 2,
    ) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("channels", channels)
        check_positive_int("n_layers", n_layers)
        self.ndim = check_ndim(ndim)
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
            check_positive_int("quadratic_channels", quadratic_channels, minimum=in_channels)
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
        self.spectral_layer = None
        if _check_non_negative("spectral", spectral) > 0:
            if spectral_shape is None:
                raise ValueError(
                    "spectral > 0 needs spectral_shape, the spatial shape of the inputs "
                    "(e.g. the operator's image_shape)"
                )
            self.spectral_layer = SpectralQuadratic(
                spectral_shape, init=spectral, rate=spectral_rate, ndim=self.ndim
            )

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
        if self.spectral_layer is not None:
            value = value + self.spectral_layer(x)
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


class _FourierDiagonalQuadratic(nn.Module, abc.ABC):
    """½⟨x, Mx⟩ with M diagonal in the Fourier basis of a fixed grid; subclasses give m(ω)."""

    shape: tuple[int, ...]
    ndim: int

    @abc.abstractmethod
    def multiplier(self) -> torch.Tensor:
        """m(ω) > 0, of shape ``shape``, in ``torch.fft.fftn``'s frequency order."""

    @property
    def _dims(self) -> tuple[int, ...]:
        return tuple(range(-self.ndim, 0))

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != self.ndim + 2 or tuple(x.shape[-self.ndim :]) != self.shape:
            raise ValueError(
                f"{type(self).__name__} was built for inputs (B, C, *{list(self.shape)}), got "
                f"{tuple(x.shape)}"
            )

    def _filter(self, x: torch.Tensor, multiplier: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.fftn(x, dim=self._dims, norm="ortho")
        return torch.fft.ifftn(multiplier * spectrum, dim=self._dims, norm="ortho").real

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\tfrac12\langle x, Mx\rangle` per batch element, ``(B,)``."""
        self._check(x)
        spectrum = torch.fft.fftn(x, dim=self._dims, norm="ortho")
        weighted = self.multiplier() * (spectrum.real.square() + spectrum.imag.square())
        return 0.5 * weighted.flatten(1).sum(1)

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\nabla\psi(x) = Mx` (without autograd)."""
        self._check(x)
        return self._filter(x, self.multiplier())

    def inverse_gradient(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\nabla\psi^*(z) = M^{-1}z`."""
        self._check(z)
        return self._filter(z, 1.0 / self.multiplier())


class SpectralQuadratic(_FourierDiagonalQuadratic):
    r"""A learned Fourier-diagonal quadratic :math:`\psi(x) = \tfrac12\langle x, Mx\rangle`.

    :math:`M = \mathcal F^{-1} \operatorname{diag}(m)\, \mathcal F` with the orthonormal
    discrete Fourier transform :math:`\mathcal F` over the spatial axes of a fixed grid
    (``shape``; the same :math:`M` for every channel) and a multiplier

    .. math:: m(\omega) = m_0 \exp\big(\tfrac{\kappa}{2}(\rho(\omega) + \rho(-\omega))\big)
              > 0,

    symmetric in :math:`\omega`, so :math:`M` is a real, symmetric, positive-definite periodic
    convolution: :math:`\psi` is strongly convex with :math:`\nabla\psi(x) = Mx`,
    :math:`\nabla\psi^*(z) = M^{-1}z` (:meth:`inverse_gradient`). Its reach is the whole image,
    so it can learn a global preconditioner such as a ramp-like filter (the normal operator
    :math:`A^TA` of a parallel-beam ray transform is close to the filter :math:`1/|\omega|`).
    :math:`\rho` starts at 0 (:math:`M = m_0 I`); the rate :math:`\kappa` scales how fast
    an optimiser moves :math:`\log m`.

    Parameters
    ----------
    shape : sequence of int
        The spatial shape of the inputs (``ndim`` entries).
    init : float
        :math:`m_0 > 0`.
    rate : float
        :math:`\kappa > 0`.
    ndim : {2, 3}
        Spatial dimensions.

    Attributes
    ----------
    log_multiplier : torch.nn.Parameter
        :math:`\rho`, of shape ``shape``.

    Example
    -------
    >>> q = SpectralQuadratic((8, 8), init=2.0)
    >>> x = torch.randn(3, 1, 8, 8)
    >>> torch.allclose(input_gradient(q, x), 2 * x, atol=1e-5), q(x).shape
    (True, torch.Size([3]))
    """

    def __init__(
        self, shape: Sequence[int], *, init: float = 1.0, rate: float = 1.0, ndim: int = 2
    ) -> None:
        super().__init__()
        self.ndim = check_ndim(ndim)
        shape = tuple(int(n) for n in shape)
        if len(shape) != self.ndim or min(shape) < 1:
            raise ValueError(f"shape must be {self.ndim} positive sizes, got {list(shape)}")
        self.shape = shape
        self.init = _check_non_negative("init", init, positive=True)
        self.rate = _check_non_negative("rate", rate, positive=True)
        self.log_multiplier = nn.Parameter(torch.zeros(shape))

    def multiplier(self) -> torch.Tensor:
        r""":math:`m(\omega)`, of shape ``shape``, in ``torch.fft.fftn``'s frequency order."""
        rho = self.log_multiplier
        mirrored = torch.roll(torch.flip(rho, self._dims), (1,) * self.ndim, self._dims)
        return self.init * torch.exp(0.5 * self.rate * (rho + mirrored))

    def extra_repr(self) -> str:
        return f"shape={list(self.shape)}, init={self.init}, rate={self.rate}, ndim={self.ndim}"


class InverseSpectralQuadratic(_FourierDiagonalQuadratic):
    r"""The conjugate of :math:`\tfrac12\langle x, (M + cI)x\rangle` for a
    :class:`SpectralQuadratic` :math:`M`: :math:`\tfrac12\langle z, (M + cI)^{-1}z\rangle`.

    It shares :math:`M`'s parameters (``quadratic`` is a registered submodule, so the state
    dict names them twice and an optimiser sees them once), so its gradient inverts
    :math:`x \mapsto (M + cI)x` exactly however :math:`M` is trained. Learned mirror descent ties
    the inverse map's quadratic to the mirror map's this way (``tie_spectral``).

    Parameters
    ----------
    quadratic : SpectralQuadratic
        :math:`M`.
    shift : float
        :math:`c \ge 0` (e.g. the mirror map's strong convexity).

    Example
    -------
    >>> q = SpectralQuadratic((8, 8), init=2.0)
    >>> x = torch.randn(3, 1, 8, 8)
    >>> inverse = InverseSpectralQuadratic(q, shift=0.5)
    >>> torch.allclose(input_gradient(inverse, q.gradient(x) + 0.5 * x), x, atol=1e-5)
    True
    """

    def __init__(self, quadratic: SpectralQuadratic, *, shift: float = 0.0) -> None:
        super().__init__()
        if not isinstance(quadratic, SpectralQuadratic):
            raise ValueError(f"quadratic must be a SpectralQuadratic, got {type(quadratic)}")
        self.quadratic = quadratic
        self.shift = _check_non_negative("shift", shift)
        self.shape, self.ndim = quadratic.shape, quadratic.ndim

    def multiplier(self) -> torch.Tensor:
        r""":math:`1 / (m(\omega) + c)`."""
        return 1.0 / (self.quadratic.multiplier() + self.shift)

    def extra_repr(self) -> str:
        return f"shift={self.shift}"
