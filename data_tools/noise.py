"""Measurement noise models: Gaussian relative to the mean (or max) ``|y|``, and post-log Poisson
counts.

Functions act per sample over the trailing ``ndim`` dimensions, so a batch of sinograms
``(B, 1, n_angles, n_detectors)`` with ``ndim=2`` gets one noise level per sample. All randomness
comes from an optional ``torch.Generator`` (torch's global generator without one), so the same
generator state gives the same noise.

The small classes :class:`GaussianNoise`, :class:`PoissonNoise` and :class:`NoNoise` hold the
settings for configs (Hydra instantiates them with keyword arguments) and are called as
``noise(y, generator=g)``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, Protocol, runtime_checkable

import torch

__all__ = [
    "GaussianNoise",
    "NoNoise",
    "NoiseModel",
    "PoissonNoise",
    "gaussian_noise",
    "poisson_noise",
]

#: LoDoPaB-CT's attenuation scale (1/m): its sinograms are line integrals divided by this.
LODOPAB_MU_MAX = 81.35858
#: LoDoPaB-CT's mean photon count per detector pixel without attenuation.
LODOPAB_PHOTONS = 4096

#: What :func:`gaussian_noise`'s level is relative to: the mean or the maximum of ``|y|``.
REFERENCES = ("mean", "max")


def _check_input(y: torch.Tensor, ndim: int) -> None:
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"y must be a torch.Tensor, got {type(y).__name__}")
    if not y.dtype.is_floating_point:
        raise ValueError(f"y must have a floating dtype, got {y.dtype}")
    if isinstance(ndim, bool) or not isinstance(ndim, int) or not 1 <= ndim <= y.ndim:
        raise ValueError(f"ndim must be an int in [1, y.ndim={y.ndim}], got {ndim!r}")
    if not bool(torch.isfinite(y).all()):
        raise ValueError("y must be finite (it holds NaN or inf)")


def _check_nonnegative(name: str, value: float) -> float:
    value = float(value)
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a non-negative finite number, got {value}")
    return value


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return value


def _check_generator(generator: torch.Generator | None, y: torch.Tensor) -> None:
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if generator.device.type != y.device.type:
        raise ValueError(f"generator is on {generator.device} but y is on {y.device}")


def _check_reference(reference: str) -> str:
    if reference not in REFERENCES:
        raise ValueError(f"reference must be 'mean' or 'max', got {reference!r}")
    return reference


def _check_ndim(ndim: int) -> int:
    if isinstance(ndim, bool) or not isinstance(ndim, int) or ndim < 1:
        raise ValueError(f"ndim must be a positive int, got {ndim!r}")
    return ndim


def gaussian_noise(
    y: torch.Tensor,
    *,
    relative: float = 0.025,
    ndim: int = 2,
    reference: Literal["mean", "max"] = "mean",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Additive white Gaussian noise with a level relative to the mean (or max) absolute value.

    Returns :math:`y + \sigma\,\varepsilon` with :math:`\varepsilon \sim N(0, 1)` i.i.d. and, per
    sample, :math:`\sigma = \text{relative} \cdot \operatorname{mean}|y|` over the trailing
    ``ndim`` dimensions. This is dival's "ellipses" noise (``relative=0.025``, i.e. 2.5 %); the
    "adler" benchmark uses 5 %. With ``reference="max"``,
    :math:`\sigma = \text{relative} \cdot \max|y|` instead: the usual convention for
    photoacoustic time series (1 % of the peak signal), whose mean is dominated by silence.

    Parameters
    ----------
    y : torch.Tensor
        Clean data ``(*batch, *sample)`` with ``ndim`` sample dimensions; floating, finite.
    relative : float, optional
        Noise level as a fraction of the mean ``|y|`` (default 0.025); 0 returns a copy of ``y``.
    ndim : int, optional
        Number of trailing dimensions that make one sample (default 2: a 2D sinogram).
    reference : {"mean", "max"}, optional
        The statistic of ``|y|`` (per sample) that ``relative`` multiplies (default "mean").
    generator : torch.Generator, optional
        Source of randomness, on ``y``'s device; default torch's global generator.

    Returns
    -------
    torch.Tensor
        Noisy data, same shape, dtype and device as ``y``.

    Raises
    ------
    ValueError
        If ``y`` is not a finite floating tensor, ``relative`` is negative or not finite,
        ``ndim`` is not in ``[1, y.ndim]`` or ``reference`` is not "mean" or "max".

    Examples
    --------
    >>> y = torch.ones(2, 1, 30, 183)
    >>> noisy = gaussian_noise(y, relative=0.05, generator=torch.Generator().manual_seed(0))
    >>> round(float((noisy - y).std()), 2)
    0.05
    >>> pulse = torch.zeros(1, 64, 128); pulse[0, :, 10] = 2.0      # PAT-like: mostly silence
    >>> noisy = gaussian_noise(pulse, relative=0.01, reference="max",
    ...                        generator=torch.Generator().manual_seed(0))
    >>> round(float((noisy - pulse).std()), 3)                       # 1 % of max |y| = 0.02
    0.02
    """
    relative = _check_nonnegative("relative", relative)
    _check_reference(reference)
    _check_input(y, ndim)
    _check_generator(generator, y)
    dims = tuple(range(-ndim, 0))
    if reference == "max":
        sigma = relative * y.abs().amax(dim=dims, keepdim=True)
    else:
        sigma = relative * y.abs().mean(dim=dims, keepdim=True)
    eps = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    return y + sigma * eps


def poisson_noise(
    y: torch.Tensor,
    *,
    photons: float = LODOPAB_PHOTONS,
    mu_max: float = LODOPAB_MU_MAX,
    ndim: int = 2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Photon-count (Poisson) noise on normalised line integrals, as in LoDoPaB-CT.

    ``y`` holds line integrals divided by ``mu_max`` (LoDoPaB's convention: the attenuation is
    ``mu_max · y``). The detector counts are

    .. math::

        N \sim \operatorname{Poisson}\bigl(N_0\, e^{-\mu_\max y}\bigr), \qquad
        N \leftarrow 0.1 \text{ where } N = 0,

    with :math:`N_0` = ``photons``, and the returned post-log data are
    :math:`-\log(N / N_0) / \mu_\max`. At high counts the noise is close to Gaussian with standard
    deviation :math:`1 / (\mu_\max \sqrt{N_0 e^{-\mu_\max y}})`. ``ndim`` does not change the model
    (it is elementwise); it is checked like the other noise models' so configs can swap them.

    Parameters
    ----------
    y : torch.Tensor
        Normalised line integrals; floating, finite.
    photons : float, optional
        Mean photon count per detector element without attenuation (LoDoPaB: 4096).
    mu_max : float, optional
        Normalisation of ``y`` (LoDoPaB: 81.35858).
    ndim : int, optional
        Number of trailing dimensions that make one sample (default 2).
    generator : torch.Generator, optional
        Source of randomness, on ``y``'s device; default torch's global generator.

    Returns
    -------
    torch.Tensor
        Noisy post-log data, same shape, dtype and device as ``y``.

    Raises
    ------
    ValueError
        If ``y`` is not a finite floating tensor, or ``photons`` or ``mu_max`` is not a positive
        finite number.

    Examples
    --------
    >>> y = torch.full((1, 1000), 0.01, dtype=torch.float64)
    >>> noisy = poisson_noise(y, generator=torch.Generator().manual_seed(0), ndim=1)
    >>> expected_std = 1 / (81.35858 * (4096 * math.exp(-81.35858 * 0.01)) ** 0.5)
    >>> abs(float(noisy.std()) / expected_std - 1) < 0.1
    True
    """
    photons = _check_positive("photons", photons)
    mu_max = _check_positive("mu_max", mu_max)
    _check_input(y, ndim)
    _check_generator(generator, y)
    # Counts in float64: float32 loses integers above 2**24 and its exp underflows sooner.
    rate = photons * torch.exp(-mu_max * y.to(torch.float64))
    counts = torch.poisson(rate, generator=generator)
    counts = torch.where(counts == 0, 0.1, counts)
    return (-torch.log(counts / photons) / mu_max).to(y.dtype)


@runtime_checkable
class NoiseModel(Protocol):
    """What :func:`data_tools.simulate.simulate` calls: ``noise(y, generator=g) -> tensor``."""

    def __call__(
        self, y: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class GaussianNoise:
    """Config-able :func:`gaussian_noise`: relative Gaussian noise per sample.

    Parameters
    ----------
    relative : float, optional
        Noise level as a fraction of the mean (or max) ``|y|`` per sample (default 0.025).
    ndim : int, optional
        Number of trailing dimensions that make one sample (default 2).
    reference : {"mean", "max"}, optional
        ``σ = relative · mean|y|`` (default, dival's convention) or ``relative · max|y|``
        (photoacoustics: ``GaussianNoise(relative=0.01, reference="max")`` is 1 % of the peak).

    Examples
    --------
    >>> noise = GaussianNoise(relative=0.05)
    >>> y = torch.ones(4, 1, 30, 183)
    >>> noise(y, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4, 1, 30, 183])
    >>> GaussianNoise(relative=0.01, reference="max")
    GaussianNoise(relative=0.01, ndim=2, reference='max')
    """

    relative: float = 0.025
    ndim: int = 2
    reference: Literal["mean", "max"] = "mean"

    def __post_init__(self) -> None:
        object.__setattr__(self, "relative", _check_nonnegative("relative", self.relative))
        _check_ndim(self.ndim)
        _check_reference(self.reference)

    def __call__(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return ``y`` with noise added; see :func:`gaussian_noise`."""
        return gaussian_noise(
            y,
            relative=self.relative,
            ndim=self.ndim,
            reference=self.reference,
            generator=generator,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class PoissonNoise:
    """Config-able :func:`poisson_noise`: LoDoPaB-CT's post-log photon-count noise.

    Parameters
    ----------
    photons : float, optional
        Mean photon count per detector element without attenuation (default 4096).
    mu_max : float, optional
        Normalisation of the line integrals (default 81.35858).
    ndim : int, optional
        Number of trailing dimensions that make one sample (default 2).

    Examples
    --------
    >>> noise = PoissonNoise(photons=1e4)
    >>> noise(torch.zeros(2, 30, 183), generator=torch.Generator().manual_seed(0)).shape
    torch.Size([2, 30, 183])
    """

    photons: float = LODOPAB_PHOTONS
    mu_max: float = LODOPAB_MU_MAX
    ndim: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "photons", _check_positive("photons", self.photons))
        object.__setattr__(self, "mu_max", _check_positive("mu_max", self.mu_max))
        _check_ndim(self.ndim)

    def __call__(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return noisy post-log data; see :func:`poisson_noise`."""
        return poisson_noise(
            y, photons=self.photons, mu_max=self.mu_max, ndim=self.ndim, generator=generator
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class NoNoise:
    """The noise-free model: returns ``y`` unchanged (the generator is ignored).

    Examples
    --------
    >>> y = torch.ones(3)
    >>> NoNoise()(y) is y
    True
    """

    def __call__(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return ``y`` itself."""
        return y
