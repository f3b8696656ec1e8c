r"""Shared pieces of the denoisers: the noise-level map and spectral normalisation of convolutions.

Every denoiser of :mod:`models` is called as ``denoiser(x, sigma)`` with noisy images ``x`` of
shape ``(B, C, *spatial)`` and the noise standard deviation ``sigma`` (in the units of ``x``): a
number, or a tensor of shape ``()`` or ``(B,)``. :func:`noise_level_map` turns ``sigma`` into the
constant extra input channel of the noise-level-aware networks (FFDNet, DRUNet).

:func:`conv_spectral_norm` bounds the operator norm of a convolution *as a linear map between
images* (not of its reshaped weight matrix, which is what :func:`torch.nn.utils.spectral_norm`
normalises and which can underestimate the operator norm by up to the kernel size). With
:math:`W` the convolution, power iteration on :math:`W^T W` (the adjoint of a convolution is a
transposed convolution and vice versa, for any stride and padding) estimates :math:`\|W\|_2` at a
reference image size, and the weight used in the forward pass is

.. math:: \tilde W = W / \max\big(1, \|W\|_2 / L\big),

so that :math:`\|\tilde W\|_2 \le L`. As in Miyato et al. (2018) and Ryu et al. (2019), one power
iteration per training forward pass keeps the estimate up to date; it is a lower estimate of the
true norm that converges from below. With zero padding, the norm at a reference size ``N`` is a
lower bound of the norm on larger images, which grows towards the supremum of the convolution's
transfer function; with 3×3 kernels and ``N = 32`` the difference is below a few per cent.

References: T. Miyato, T. Kataoka, M. Koyama, Y. Yoshida, "Spectral normalization for generative
adversarial networks", ICLR 2018. E. Ryu, J. Liu, S. Wang, X. Chen, Z. Wang, W. Yin, "Plug-and-play
methods provably converge with properly trained denoisers", ICML 2019.

Example
-------
>>> import torch
>>> from torch import nn
>>> _ = torch.manual_seed(0)  # the power iterations start from random images
>>> conv = conv_spectral_norm(nn.Conv2d(1, 4, 3, padding=1), lipschitz=0.5, size=16)
>>> bool(conv_operator_norm(conv, (1, 16, 16)) <= 0.5 + 1e-4)
True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

__all__ = ["conv_operator_norm", "conv_spectral_norm", "noise_level_map"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def noise_level_map(x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """The noise level as a constant image: ``(B, 1, *spatial)`` filled with each image's sigma.

    Parameters
    ----------
    x : torch.Tensor
        Images ``(B, C, *spatial)``; the map takes their batch size, device and dtype.
    sigma : float or torch.Tensor
        A number, or a tensor of shape ``()``, ``(B,)`` or ``(B, 1, 1, ...)``. Must be finite and
        non-negative.

    Returns
    -------
    torch.Tensor
        ``(B, 1, *spatial)``; differentiable in ``sigma`` when it is a tensor.

    Raises
    ------
    ValueError
        If ``sigma`` is negative, not finite, or its shape does not fit the batch.

    Example
    -------
    >>> noise_level_map(torch.zeros(2, 1, 3, 3), torch.tensor([0.1, 0.2]))[:, 0, 0, 0]
    tensor([0.1000, 0.2000])
    """
    batch, spatial = x.shape[0], x.shape[2:]
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.numel() not in (1, batch):
        raise ValueError(
            f"sigma must be a number or hold one value per image ({batch}), got shape "
            f"{tuple(s.shape)}"
        )
    if not torch.isfinite(s).all() or (s < 0).any():
        raise ValueError(f"sigma must be finite and non-negative, got {s.detach().flatten()[:4]}")
    s = s.reshape(-1, *([1] * (1 + len(spatial))))
    return s.expand(batch, 1, *spatial)


def _functional(layer: nn.Module):
    """``(apply, adjoint)``: the layer's linear part (no bias) and its adjoint, given the weight.

    ``apply(v, weight)`` maps inputs to outputs; ``adjoint(z, weight, input_shape)`` maps outputs
    back (a transposed convolution for a convolution and vice versa; ``output_padding`` restores
    the input size). Explicit adjoints are much faster than autograd's input gradient on CPU.
    """
    n = len(layer.kernel_size)
    conv = (F.conv1d, F.conv2d, F.conv3d)[n - 1]
    conv_t = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[n - 1]
    stride, dilation, groups = layer.stride, layer.dilation, layer.groups
    if isinstance(layer, _CONVS):
        if layer.padding_mode != "zeros":
            raise ValueError(f"only zero padding is supported, got {layer.padding_mode!r}")
        padding = layer.padding
        if isinstance(padding, str):
            raise ValueError("give the convolution's padding as numbers, not 'same'/'valid'")

        def apply(v: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
            return conv(v, weight, None, stride, padding, dilation, groups)

        def adjoint(z: torch.Tensor, weight: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
            k = weight.shape[2:]
            extra = [
                size - ((m - 1) * s - 2 * p + d * (kk - 1) + 1)
                for size, m, s, p, d, kk in zip(
                    shape[2:], z.shape[2:], stride, padding, dilation, k, strict=True
                )
            ]
            return conv_t(z, weight, None, stride, padding, extra, groups, dilation)

        return apply, adjoint
    if isinstance(layer, _TRANSPOSED):

        def apply_t(v: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
            return conv_t(
                v, weight, None, stride, layer.padding, layer.output_padding, groups, dilation
            )

        def adjoint_t(z: torch.Tensor, weight: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
            return conv(z, weight, None, stride, layer.padding, dilation, groups)

        return apply_t, adjoint_t
    raise ValueError(
        f"expected a convolution or transposed convolution, got {type(layer).__name__}"
    )


def _power_step(apply, adjoint, u: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """One normalised power-iteration step ``WᵀW u / ‖WᵀW u‖``."""
    u = adjoint(apply(u, weight), weight, u.shape)
    return u / torch.linalg.vector_norm(u).clamp_min(1e-30)


class _ConvSpectralNorm(nn.Module):
    """Parametrisation ``weight -> weight / max(1, ‖W‖₂ / L)`` with power iteration on ``WᵀW``."""

    def __init__(
        self, layer: nn.Module, *, lipschitz: float, size: Sequence[int], n_power_iterations: int
    ) -> None:
        super().__init__()
        self.apply_linear, self.adjoint = _functional(layer)
        self.lipschitz = float(lipschitz)
        self.n_power_iterations = int(n_power_iterations)
        u = torch.randn(1, layer.in_channels, *size, dtype=layer.weight.dtype)
        self.register_buffer("u", u / torch.linalg.vector_norm(u))
        with torch.no_grad():
            self._power_iteration(layer.weight.detach(), 100)

    def _power_iteration(self, weight: torch.Tensor, n_iter: int) -> None:
        u = self.u.to(weight)
        for _ in range(n_iter):
            u = _power_step(self.apply_linear, self.adjoint, u, weight.detach())
        self.u.copy_(u)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.training and self.n_power_iterations > 0:
            with torch.no_grad():
                self._power_iteration(weight, self.n_power_iterations)
        sigma = torch.linalg.vector_norm(self.apply_linear(self.u.to(weight), weight))
        return weight / torch.clamp(sigma / self.lipschitz, min=1.0)


def conv_spectral_norm(
    layer: nn.Module,
    *,
    lipschitz: float = 1.0,
    size: int | Sequence[int] = 32,
    n_power_iterations: int = 1,
) -> nn.Module:
    r"""Constrain a convolution's operator norm to at most ``lipschitz`` (in place; returns it).

    The weight becomes :math:`W / \max(1, \|W\|_2 / L)`, with :math:`\|W\|_2` estimated by power
    iteration on :math:`W^T W` applied to images of spatial size ``size`` (100 iterations when
    the parametrisation is registered, then ``n_power_iterations`` per forward pass in training
    mode; none in eval mode). The bias is left alone: it does not change the Lipschitz constant.

    Parameters
    ----------
    layer : torch.nn.Module
        A ``Conv{1,2,3}d`` (zero padding) or ``ConvTranspose{1,2,3}d``.
    lipschitz : float
        The bound ``L > 0``.
    size : int or sequence of int
        Spatial size of the power iteration's images (an int is used for every dimension).
    n_power_iterations : int
        Power iterations per training forward pass (≥ 0).

    Returns
    -------
    torch.nn.Module
        ``layer``, with a :mod:`torch.nn.utils.parametrize` parametrisation of its weight.

    Raises
    ------
    ValueError
        For another kind of layer, a non-zero padding mode, or invalid numbers.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> conv = conv_spectral_norm(nn.Conv2d(8, 8, 3, padding=1, bias=False), size=16)
    >>> bool(conv_operator_norm(conv, (8, 16, 16)) <= 1.0 + 1e-3)  # power iteration: from below
    True
    """
    if not isinstance(layer, _CONVS + _TRANSPOSED):
        raise ValueError(f"expected a convolution, got {type(layer).__name__}")
    if not (isinstance(lipschitz, (int, float)) and not isinstance(lipschitz, bool)) or not (
        lipschitz > 0
    ):
        raise ValueError(f"lipschitz must be a positive number, got {lipschitz!r}")
    n = len(layer.kernel_size)
    size = (size,) * n if isinstance(size, int) else tuple(int(s) for s in size)
    if len(size) != n or any(s < 1 for s in size):
        raise ValueError(f"size must be a positive int or {n} positive ints, got {size!r}")
    if isinstance(n_power_iterations, bool) or not isinstance(n_power_iterations, int):
        raise ValueError(f"n_power_iterations must be an int >= 0, got {n_power_iterations!r}")
    if n_power_iterations < 0:
        raise ValueError(f"n_power_iterations must be an int >= 0, got {n_power_iterations!r}")
    parametrize.register_parametrization(
        layer,
        "weight",
        _ConvSpectralNorm(
            layer, lipschitz=lipschitz, size=size, n_power_iterations=n_power_iterations
        ),
    )
    return layer


def conv_operator_norm(
    layer: nn.Module, input_shape: Sequence[int], *, n_iter: int = 200, seed: int = 0
) -> float:
    r"""The operator norm :math:`\|W\|_2` of a convolution's linear part on inputs of a given shape.

    Power iteration on :math:`W^T W` from a seeded random start (explicit adjoint),
    independent of any parametrisation's own estimate; the bias is ignored.

    Parameters
    ----------
    layer : torch.nn.Module
        A convolution or transposed convolution (possibly spectrally normalised).
    input_shape : sequence of int
        ``(C, *spatial)`` of one input image.
    n_iter : int
        Power iterations.
    seed : int
        Seed of the random start.

    Returns
    -------
    float
        The estimate (from below; exact in the limit).

    Example
    -------
    >>> conv = nn.Conv2d(1, 1, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = conv.weight.fill_(-3.0)
    >>> round(conv_operator_norm(conv, (1, 4, 4)), 6)
    3.0
    """
    apply, adjoint = _functional(layer)
    was_training = layer.training
    layer.eval()  # read a parametrised weight without advancing its power iteration
    weight = layer.weight.detach()
    layer.train(was_training)
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(1, *input_shape, generator=gen, dtype=weight.dtype).to(weight.device)
    u = u / torch.linalg.vector_norm(u)
    with torch.no_grad():
        for _ in range(n_iter):
            u = _power_step(apply, adjoint, u, weight)
        return float(torch.linalg.vector_norm(apply(u, weight)))
