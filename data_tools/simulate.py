"""Simulated CT measurements from a finer grid than the reconstruction grid.

Measuring a phantom with the same discrete operator that a reconstruction method inverts is the
*inverse crime*: the data are exactly in the range of the model and results look better than they
are. :func:`simulate` renders the phantom at ``factor`` times the resolution, measures it there
with an accurate :class:`~operators.RayTransform` on the same physical geometry
(:func:`fine_geometry`), and returns the ground truth averaged back onto the reconstruction grid
(:func:`downsample`). ``factor=1`` is the inverse crime, useful for tests.

Example
-------
>>> import torch
>>> from operators import Parallel2D
>>> from data_tools.phantoms import random_ellipse_params, render_random_ellipses
>>> params = random_ellipse_params(4, generator=torch.Generator().manual_seed(0))
>>> geometry = Parallel2D((64, 64), n_angles=30, n_detectors=91)
>>> x, y = simulate(lambda shape: render_random_ellipses(params, shape), geometry)
>>> x.shape, y.shape
(torch.Size([4, 64, 64]), torch.Size([4, 30, 91]))
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import torch

from data_tools.noise import NoiseModel
from operators import FanBeam2D, Parallel2D, RayTransform

__all__ = ["cached_ray_transform", "downsample", "fine_geometry", "simulate"]

Geometry2D = Parallel2D | FanBeam2D


def _check_factor(factor: int) -> int:
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive int, got {factor!r}")
    return factor


def fine_geometry(geometry: Geometry2D, factor: int) -> Geometry2D:
    """The same 2D geometry on a grid ``factor`` times finer.

    The image shape is multiplied and the pixel size divided by ``factor``, so the physical extent
    of the image, the detector and the angles are unchanged.

    Parameters
    ----------
    geometry : Parallel2D or FanBeam2D
        The reconstruction geometry.
    factor : int
        Refinement factor (1 returns ``geometry`` itself).

    Returns
    -------
    Parallel2D or FanBeam2D
        The finer geometry, of the same type.

    Raises
    ------
    ValueError
        If ``factor`` is not a positive int or ``geometry`` is not a 2D CT geometry.

    Examples
    --------
    >>> g = fine_geometry(Parallel2D((128, 128), n_angles=30, n_detectors=183), 2)
    >>> g.image_shape, g.pixel_size, g.range_shape
    ((256, 256), 0.5, (30, 183))
    """
    factor = _check_factor(factor)
    if not isinstance(geometry, (Parallel2D, FanBeam2D)):
        raise ValueError(f"geometry must be Parallel2D or FanBeam2D, got {type(geometry).__name__}")
    if factor == 1:
        return geometry
    height, width = geometry.image_shape
    return dataclasses.replace(
        geometry,
        image_shape=(height * factor, width * factor),
        pixel_size=geometry.pixel_size / factor,
    )


def downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Average-pool the trailing two dimensions by ``factor``.

    Each output pixel is the mean of a ``factor × factor`` block, i.e. the mean value of the fine
    image over the coarse pixel: the ground truth that matches data measured on the fine grid.

    Parameters
    ----------
    x : torch.Tensor
        Images ``(*batch, H, W)`` with ``H`` and ``W`` divisible by ``factor``.
    factor : int
        Pooling factor (1 returns ``x`` itself).

    Returns
    -------
    torch.Tensor
        ``(*batch, H // factor, W // factor)``, same dtype and device.

    Raises
    ------
    ValueError
        If ``factor`` is not a positive int, ``x`` has fewer than two dimensions, or its trailing
        dimensions are not divisible by ``factor``.

    Examples
    --------
    >>> downsample(torch.arange(16.0).reshape(4, 4), 2)
    tensor([[ 2.5000,  4.5000],
            [10.5000, 12.5000]])
    """
    factor = _check_factor(factor)
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError("x must be a tensor with at least two dimensions (*batch, H, W)")
    height, width = x.shape[-2:]
    if height % factor or width % factor:
        raise ValueError(f"image shape {(height, width)} is not divisible by factor {factor}")
    if factor == 1:
        return x
    blocks = x.reshape(*x.shape[:-2], height // factor, factor, width // factor, factor)
    return blocks.mean(dim=(-3, -1))


@functools.lru_cache(maxsize=16)
def _ray_transform(geometry: Geometry2D, backend: str) -> RayTransform:
    return RayTransform(geometry, backend=backend)


def cached_ray_transform(geometry: Geometry2D, *, backend: str = "auto") -> RayTransform:
    """A :class:`~operators.RayTransform` built once per ``(geometry, backend)`` and reused.

    Geometries are frozen dataclasses, so equal geometries share one operator (and its system
    matrix). Up to 16 operators are kept.

    Parameters
    ----------
    geometry : Parallel2D or FanBeam2D
        The geometry.
    backend : str, optional
        Backend name, see :func:`operators.available_backends`.

    Returns
    -------
    RayTransform
        The shared operator.

    Examples
    --------
    >>> g = Parallel2D((32, 32), n_angles=10)
    >>> cached_ray_transform(g) is cached_ray_transform(Parallel2D((32, 32), n_angles=10))
    True
    """
    return _ray_transform(geometry, backend)


def simulate(
    phantom: Callable[[tuple[int, int]], torch.Tensor] | torch.Tensor,
    geometry: Geometry2D,
    *,
    factor: int = 2,
    noise: NoiseModel | None = None,
    generator: torch.Generator | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Simulate CT data on a grid ``factor`` times finer than the reconstruction grid.

    1. Render the phantom on the fine grid: ``fine = phantom(fine_geometry(geometry,
       factor).image_shape)``, or take ``phantom`` itself if it is a tensor of that shape.
    2. Measure ``y = A_fine(fine)`` with the ray transform of the fine geometry (same detector,
       angles and physical extent; cached per geometry, see :func:`cached_ray_transform`).
    3. Add noise: ``y = noise(y, generator=generator)`` if ``noise`` is given.
    4. Return ``x = downsample(fine, factor)``, the ground truth on the reconstruction grid.

    With ``factor=1`` the data are ``A x`` exactly: the inverse crime, for tests only.

    Parameters
    ----------
    phantom : callable or torch.Tensor
        Either ``phantom(shape) -> tensor (*batch, H, W)`` that renders the same object at any
        resolution (e.g. ``lambda s: render_random_ellipses(params, s)``), or a tensor already on
        the fine grid, ``(*batch, H·factor, W·factor)``.
    geometry : Parallel2D or FanBeam2D
        The reconstruction geometry.
    factor : int, optional
        Refinement of the simulation grid (default 2).
    noise : callable, optional
        Noise model called as ``noise(y, generator=generator)``, e.g.
        :class:`~data_tools.noise.GaussianNoise`; default no noise.
    generator : torch.Generator, optional
        Passed to ``noise``.
    backend : str, optional
        Ray-transform backend for the fine geometry (default ``"auto"``).

    Returns
    -------
    x : torch.Tensor
        Ground truth ``(*batch, H, W)`` on the reconstruction grid.
    y : torch.Tensor
        Data ``(*batch, n_angles, n_detectors)``.

    Raises
    ------
    ValueError
        If ``factor`` is invalid or the phantom's shape does not match the fine grid.

    Examples
    --------
    >>> from data_tools.noise import GaussianNoise
    >>> from data_tools.phantoms import shepp_logan
    >>> g = Parallel2D((64, 64), n_angles=30, n_detectors=91)
    >>> x, y = simulate(shepp_logan, g, noise=GaussianNoise(relative=0.05),
    ...                 generator=torch.Generator().manual_seed(0))
    >>> x.shape, y.shape
    (torch.Size([64, 64]), torch.Size([30, 91]))
    """
    fine = fine_geometry(geometry, factor)
    if isinstance(phantom, torch.Tensor):
        image = phantom
    elif callable(phantom):
        image = phantom(fine.image_shape)
        if not isinstance(image, torch.Tensor):
            raise ValueError(f"phantom(shape) must return a tensor, got {type(image).__name__}")
    else:
        raise ValueError(f"phantom must be a callable or a tensor, got {type(phantom).__name__}")
    if image.ndim < 2 or tuple(image.shape[-2:]) != fine.image_shape:
        raise ValueError(
            f"the phantom must be (*batch, {fine.image_shape[0]}, {fine.image_shape[1]}) on the "
            f"fine grid (factor {factor}), got {tuple(image.shape)}"
        )
    y = cached_ray_transform(fine, backend=backend)(image)
    if noise is not None:
        y = noise(y, generator=generator)
    return downsample(image, factor), y
