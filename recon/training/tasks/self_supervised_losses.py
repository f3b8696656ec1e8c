r"""Self-supervised losses: learning a reconstructor from measurements alone.

All act on a reconstructor ``f`` with the contract ``f(y, op) -> x`` and measurements ``y`` of
shape ``(B, 1, *op.range_shape)``; none of them sees a ground truth.

- :func:`measurement_consistency`: :math:`\tfrac1m\|A f(y) - y\|^2` (MC), the baseline. Alone it
  cannot fix the null space of ``A`` (any ``f(y) = A^\dagger y + n``, ``n ∈ ker A``, is optimal).
- :class:`GaussianSURE`: Stein's unbiased risk estimate of the *clean* measurement error
  :math:`\tfrac1m\|A f(y) - A x\|^2` for :math:`y = Ax + \varepsilon`,
  :math:`\varepsilon \sim N(0, \sigma^2 I)`:

  .. math:: \tfrac1m\|h(y) - y\|^2 - \sigma^2 + \tfrac{2\sigma^2}{m}\,\nabla\!\cdot h(y),
            \qquad h = A f,

  with the divergence by one Monte-Carlo probe :math:`b \sim N(0, I)`,
  :math:`\nabla\!\cdot h(y) \approx b^T (h(y + \tau b) - h(y)) / \tau`. The step is
  :math:`\tau` = ``tau`` · σ: small enough for the finite difference to be the derivative of a
  piecewise-linear (ReLU) network almost surely, large enough for float32 (0.01 σ: the relative
  rounding error of the difference is about ``1e-7 |h| / (τ |J b|)``).
- :class:`PoissonGaussianSURE`: the same for :math:`z = \gamma\,\mathrm{Poisson}(u/\gamma) +
  N(0, \sigma^2)` (Le Montagner et al. 2014; Chen et al. 2022, REI):

  .. math:: \tfrac1m\|h(z) - z\|^2 - \sigma^2 - \tfrac{\gamma}{m}\mathbf 1^T z
            + \tfrac2m \sum_i (\gamma z_i + \sigma^2)\,\partial_i h_i(z)
            - \tfrac{2\gamma\sigma^2}{m}\sum_i \partial_i^2 h_i(z),

  the first derivatives by a Gaussian probe, the second by a Rademacher probe and a central
  difference. For post-log CT data (:class:`~data_tools.noise.PoissonNoise`) it works on the
  transmissions :math:`z = e^{-\mu y}` (counts over :math:`N_0`: :math:`\gamma = 1/N_0`).
- :class:`ImageTransforms`: the group of the equivariant-imaging loss (rotations, right-angle
  rotations, their reflections, circular shifts), drawn per image.

Example
-------
>>> import torch
>>> from operators import IdentityOperator
>>> class Keep(torch.nn.Module):
...     def forward(self, y, op):
...         return y
>>> y = torch.randn(2, 1, 4, 4)
>>> float(measurement_consistency(Keep(), y, IdentityOperator((4, 4))))
0.0
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from recon.solvers.common import operator_norm

__all__ = [
    "GROUPS",
    "GaussianSURE",
    "ImageTransforms",
    "PoissonGaussianSURE",
    "measurement_consistency",
    "rotate_images",
]

#: The transformation groups of :class:`ImageTransforms`.
GROUPS = ("rotations", "rot90", "reflections", "shifts")


def _scale(op: Any, normalize: bool) -> float:
    """``1/‖A‖`` with ``normalize`` (residuals on the image's scale), else 1."""
    return 1.0 / operator_norm(op, hint="set normalize_operator=false") if normalize else 1.0


def measurement_consistency(
    model: nn.Module, y: torch.Tensor, op: Any, *, normalize_operator: bool = False
) -> torch.Tensor:
    r"""Mean squared measurement residual :math:`\tfrac1m\|A f(y) - y\|^2` over the batch
    (divided by :math:`\|A\|^2` with ``normalize_operator``)."""
    scale = _scale(op, normalize_operator)
    return ((op(model(y, op)) - y) * scale).square().mean()


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return value


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values`` (scalar or ``(B,)``) shaped to broadcast against ``like`` ``(B, ...)``."""
    values = torch.as_tensor(values, dtype=like.dtype, device=like.device)
    return values.reshape(-1, *([1] * (like.ndim - 1))) if values.ndim else values


@dataclasses.dataclass(frozen=True, kw_only=True)
class GaussianSURE:
    """SURE for Gaussian measurement noise (see the module docstring).

    Parameters
    ----------
    sigma : float, optional
        Noise standard deviation, in the units of ``y``.
    relative : float, optional
        Instead of ``sigma``: the noise of :class:`~data_tools.noise.GaussianNoise` ``(relative=…)``
        (σ = ``relative`` · mean ``|y|`` per sample; the mean of the noisy ``y`` stands in for the
        clean one, which the noise barely moves).
    tau : float
        Finite-difference step of the divergence, relative to σ.
    normalize_operator : bool
        Divide residuals by ``‖A‖`` (the loss on the image's scale).

    Example
    -------
    >>> import torch
    >>> from operators import IdentityOperator
    >>> class Zero(torch.nn.Module):
    ...     def forward(self, y, op):
    ...         return torch.zeros_like(y)
    >>> sure = GaussianSURE(sigma=0.5)   # f = 0: no divergence, SURE = mean(y²) − σ²
    >>> round(float(sure(Zero(), torch.ones(2, 1, 8, 8), IdentityOperator((8, 8)))), 4)
    0.75
    """

    sigma: float | None = None
    relative: float | None = None
    tau: float = 0.01
    normalize_operator: bool = False

    def __post_init__(self) -> None:
        if (self.sigma is None) == (self.relative is None):
            raise ValueError("GaussianSURE needs exactly one of sigma or relative")
        if self.sigma is not None:
            _positive("sigma", self.sigma)
        if self.relative is not None:
            _positive("relative", self.relative)
        _positive("tau", self.tau)

    def noise_std(self, y: torch.Tensor) -> torch.Tensor:
        """σ per sample, ``(B,)``."""
        if self.sigma is not None:
            return y.new_full((y.shape[0],), float(self.sigma))
        return float(self.relative) * y.detach().abs().flatten(1).mean(1)

    def __call__(
        self,
        model: nn.Module,
        y: torch.Tensor,
        op: Any,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The batch mean of the per-sample SURE of ``h = A f`` at ``y``."""
        scale = _scale(op, self.normalize_operator)
        sigma = _per_sample(self.noise_std(y), y)
        h = op(model(y, op))
        b = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        tau = self.tau * sigma
        h_probe = op(model(y + tau * b, op))
        m = y[0].numel()
        residual = (h - y).square().flatten(1).sum(1) / m
        divergence = (b * (h_probe - h) / tau).flatten(1).sum(1)
        s2 = sigma.flatten()
        return ((residual - s2**2 + 2 * s2**2 * divergence / m) * scale**2).mean()


@dataclasses.dataclass(frozen=True, kw_only=True)
class PoissonGaussianSURE:
    r"""SURE for mixed Poisson–Gaussian noise (see the module docstring).

    With ``photons`` (and ``mu_max``) it applies to post-log CT data ``y`` as
    :class:`~data_tools.noise.PoissonNoise` makes them: the loss is computed on the
    transmissions :math:`z = e^{-\mu y}` (:math:`\gamma = 1/N_0`, σ = ``sigma``, usually 0), and
    ``h(z) = exp(-μ A f(y(z)))``. Without ``photons`` the measurements are ``z`` themselves.

    Parameters
    ----------
    gamma : float
        Poisson gain (ignored with ``photons``, which sets ``gamma = 1/photons``).
    sigma : float
        Gaussian standard deviation (≥ 0).
    tau : float
        Finite-difference step, relative to the mean of ``|z|`` per sample.
    photons, mu_max : float, optional
        The post-log model of :func:`data_tools.noise.poisson_noise`.

    Example
    -------
    >>> import torch
    >>> from operators import IdentityOperator
    >>> class Zero(torch.nn.Module):
    ...     def forward(self, y, op):
    ...         return torch.zeros_like(y)
    >>> z = torch.full((1, 1, 10, 10), 4.0)      # f = 0: SURE = mean(z²) − γ·mean(z)
    >>> sure = PoissonGaussianSURE(gamma=0.5, sigma=0.0)
    >>> round(float(sure(Zero(), z, IdentityOperator((10, 10)))), 4)
    14.0
    """

    gamma: float = 1.0
    sigma: float = 0.0
    tau: float = 0.01
    photons: float | None = None
    mu_max: float = 1.0

    def __post_init__(self) -> None:
        _positive("gamma", self.gamma)
        if not (float(self.sigma) >= 0 and math.isfinite(float(self.sigma))):
            raise ValueError(f"sigma must be a finite number ≥ 0, got {self.sigma}")
        _positive("tau", self.tau)
        if self.photons is not None:
            _positive("photons", self.photons)
        _positive("mu_max", self.mu_max)

    def _estimate(self, model: nn.Module, z: torch.Tensor, op: Any) -> torch.Tensor:
        if self.photons is None:
            return op(model(z, op))
        y = -torch.log(z.clamp_min(0.1 / float(self.photons))) / self.mu_max
        return torch.exp(-self.mu_max * op(model(y, op)))

    def __call__(
        self,
        model: nn.Module,
        y: torch.Tensor,
        op: Any,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The batch mean of the per-sample SURE at the measurements ``y``."""
        gamma = 1.0 / float(self.photons) if self.photons is not None else float(self.gamma)
        z = torch.exp(-self.mu_max * y) if self.photons is not None else y
        s2 = float(self.sigma) ** 2
        tau = _per_sample(self.tau * z.detach().abs().flatten(1).mean(1).clamp_min(1e-12), z)
        m = z[0].numel()
        h = self._estimate(model, z, op)
        b1 = torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
        first = b1 * (gamma * z + s2) * (self._estimate(model, z + tau * b1, op) - h) / tau
        loss = (h - z).square().flatten(1).sum(1) / m - s2 - gamma * z.flatten(1).mean(1)
        loss = loss + 2 * first.flatten(1).sum(1) / m
        if s2 > 0:
            signs = torch.randint(0, 2, z.shape, generator=generator, device=z.device)
            b2 = (2 * signs - 1).to(z.dtype)
            plus = self._estimate(model, z + tau * b2, op)
            minus = self._estimate(model, z - tau * b2, op)
            second = b2 * (plus + minus - 2 * h) / tau**2
            loss = loss - 2 * gamma * s2 * second.flatten(1).sum(1) / m
        return loss.mean()


def rotate_images(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate each image of ``x`` ``(B, C, H, W)`` by ``angles`` ``(B,)`` radians (counter-
    clockwise, about the centre; bilinear, zero outside).

    Example
    -------
    >>> x = torch.zeros(1, 1, 5, 5); x[0, 0, 2, 4] = 1.0           # right of the centre
    >>> rotate_images(x, torch.tensor([math.pi / 2]))[0, 0].argmax().item()  # now above it
    2
    """
    cos, sin = torch.cos(angles), torch.sin(angles)
    zero = torch.zeros_like(cos)
    # grid_sample maps output coordinates to input ones: the inverse rotation
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class ImageTransforms:
    """Random group actions on images ``(B, C, H, W)``, one element per image, for the
    equivariant-imaging loss.

    Groups: ``"rotations"`` (any angle, uniform; bilinear), ``"rot90"`` (quarter turns),
    ``"reflections"`` (the 7 non-identity elements of the square's dihedral group: quarter turns
    and mirror images), ``"shifts"`` (circular shifts by up to half the size). Apart from the
    identity, which is never drawn, each element is equally likely.

    Example
    -------
    >>> t = ImageTransforms("rot90")
    >>> x = torch.arange(4.0).reshape(1, 1, 2, 2)
    >>> sorted(t(x, generator=torch.Generator().manual_seed(0)).flatten().tolist())
    [0.0, 1.0, 2.0, 3.0]
    """

    def __init__(self, group: str = "rotations") -> None:
        if group not in GROUPS:
            raise ValueError(f"unknown transformation group {group!r}; choose from {GROUPS}")
        self.group = group

    def __call__(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(
                f"ImageTransforms needs images (B, C, H, W), got shape {tuple(x.shape)}"
            )
        n = x.shape[0]

        def draw(high: int, low: int = 1) -> list[int]:
            return torch.randint(low, high, (n,), generator=generator).tolist()

        if self.group == "rotations":
            u = torch.rand(n, generator=generator, dtype=torch.float64)
            return rotate_images(x, (2 * math.pi * u).to(x.device, x.dtype))
        if self.group == "shifts":
            h, w = x.shape[-2:]
            rows, cols = draw(h // 2 + 1, 0), draw(w // 2 + 1, 0)
            return torch.stack(
                [
                    torch.roll(xi, (r, c), dims=(-2, -1))
                    for xi, r, c in zip(x, rows, cols, strict=True)
                ]
            )
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"group {self.group!r} needs square images, got {tuple(x.shape[-2:])}")
        turns = draw(4) if self.group == "rot90" else draw(8)
        out = []
        for xi, k in zip(x, turns, strict=True):
            xi = torch.rot90(xi, k % 4, dims=(-2, -1))
            out.append(torch.flip(xi, dims=(-1,)) if k >= 4 else xi)
        return torch.stack(out)
