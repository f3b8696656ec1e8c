"""Simulated CT and photoacoustic measurements from a finer grid than the reconstruction grid.

Measuring a phantom with the same discrete operator that a reconstruction method inverts is the
*inverse crime*: the data are exactly in the range of the model and results look better than they
are. :func:`simulate` renders the phantom at ``factor`` times the resolution, measures it there
with an accurate :class:`~operators.RayTransform` on the same physical geometry
(:func:`fine_geometry`), and returns the ground truth averaged back onto the reconstruction grid
(:func:`downsample`). ``factor=1`` is the inverse crime, useful for tests.
:func:`simulate_pat` does the same for photoacoustics: the k-space time stepper on a finer grid
(:func:`fine_pat_operator`) with the same sensors and sample times.

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

import numpy as np
import torch

from data_tools.noise import NoiseModel
from operators import (
    FanBeam2D,
    KSpaceWave,
    Medium,
    Parallel2D,
    PATGrid,
    RayTransform,
    SensorMask,
    SensorPoints,
    TimeGrid,
)

__all__ = [
    "cached_ray_transform",
    "downsample",
    "fine_geometry",
    "fine_pat_operator",
    "simulate",
    "simulate_pat",
]

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


# --------------------------------------------------------------------------- photoacoustics
def _refine_map(value: float | np.ndarray, factor: int) -> float | np.ndarray:
    """A medium map on the fine grid: each coarse value repeated ``factor`` times per axis."""
    if isinstance(value, float):
        return value
    for axis in range(value.ndim):
        value = np.repeat(value, factor, axis=axis)
    return value


def fine_pat_operator(op: KSpaceWave, factor: int, *, time_factor: int = 1) -> KSpaceWave:
    """The same photoacoustic experiment as ``op`` on a grid ``factor`` times finer.

    The grid has ``factor`` times the points per axis and ``1/factor`` the spacing: each coarse
    pixel is split into ``factor^ndim`` fine ones, so the physical extent is that of the coarse
    pixels. Sensors keep their physical positions (mask sensors become points at their grid
    positions, in the same order). Medium maps repeat each coarse value over its fine cells. The
    time step is ``dt / time_factor`` with ``(n_t − 1)·time_factor + 1`` samples, so every coarse
    sample time is a fine one. A PML inside the grid keeps its thickness in mm (``factor`` times
    the points); one outside the grid gets the automatic size (``pml_size=0`` stays 0).

    Parameters
    ----------
    op : KSpaceWave
        The coarse (reconstruction) operator.
    factor : int
        Refinement of the grid (1 returns an operator equal to ``op``'s set-up).
    time_factor : int
        Refinement of the time step (default 1: the k-space scheme is exact in time in a
        homogeneous medium, and ``dt`` stays below the fine grid's temporal Nyquist limit for
        ``cfl ≤ 0.5``; pass ``factor`` to keep the CFL number in heterogeneous media).

    Raises
    ------
    ValueError
        If ``op`` is not a :class:`~operators.KSpaceWave` or a factor is not a positive int.

    Examples
    --------
    >>> from operators import PATGrid, SensorPoints, TimeGrid
    >>> grid = PATGrid((32, 32), spacing=0.1)
    >>> A = KSpaceWave(grid, time=TimeGrid(dt=2e-8, n_t=50), sensor=SensorPoints.circle(1.4, 16))
    >>> fine = fine_pat_operator(A, 2, time_factor=2)
    >>> fine.grid.shape, fine.grid.spacing, fine.time.n_t, fine.range_shape
    ((64, 64), (0.05, 0.05), 99, (16, 99))
    """
    factor = _check_factor(factor)
    if isinstance(time_factor, bool) or not isinstance(time_factor, int) or time_factor < 1:
        raise ValueError(f"time_factor must be a positive int, got {time_factor!r}")
    if not isinstance(op, KSpaceWave):
        raise ValueError(
            f"op must be a KSpaceWave (the time stepper) to simulate on a finer grid, got "
            f"{type(op).__name__}"
        )
    grid = op.grid
    fine_grid = PATGrid(
        tuple(n * factor for n in grid.shape), tuple(s / factor for s in grid.spacing)
    )
    medium = Medium(
        sound_speed=_refine_map(op.medium.sound_speed, factor),
        density=_refine_map(op.medium.density, factor),
    )
    sensor = op.sensor
    if isinstance(sensor, SensorMask):
        idx = np.nonzero(sensor.mask)
        sensor = SensorPoints(np.stack([grid.coordinates(d)[i] for d, i in enumerate(idx)], -1))
    time = TimeGrid(dt=op.time.dt / time_factor, n_t=(op.time.n_t - 1) * time_factor + 1)
    if op.pml_inside:
        pml_size = tuple(m * factor for m in op.pml_size)
    else:
        pml_size = 0 if not any(op.pml_size) else None
    return KSpaceWave(
        fine_grid,
        medium=medium,
        time=time,
        sensor=sensor,
        pml_size=pml_size,
        pml_alpha=op.pml_alpha,
        pml_inside=op.pml_inside,
        c_ref=op.c_ref,
    )


def _block_mean(x: torch.Tensor, factor: int, ndim: int) -> torch.Tensor:
    """Mean over ``factor``-blocks of the trailing ``ndim`` axes."""
    shape = x.shape[x.ndim - ndim :]
    split = [v for n in shape for v in (n // factor, factor)]
    blocks = x.reshape(*x.shape[: x.ndim - ndim], *split)
    return blocks.mean(dim=tuple(range(x.ndim - ndim + 1, x.ndim + ndim, 2)))


def _repeat(x: torch.Tensor, factor: int, ndim: int) -> torch.Tensor:
    """Nearest-neighbour upsampling of the trailing ``ndim`` axes (each value over its block)."""
    for axis in range(x.ndim - ndim, x.ndim):
        x = x.repeat_interleave(factor, dim=axis)
    return x


def simulate_pat(
    phantom: Callable[[tuple[int, ...]], torch.Tensor] | torch.Tensor,
    op: KSpaceWave,
    *,
    factor: int = 2,
    time_factor: int = 1,
    noise: NoiseModel | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Simulate photoacoustic data on a grid ``factor`` times finer than ``op``'s, for ``op``.

    The time stepper on the fine grid (:func:`fine_pat_operator`: same sensors, same physical
    extent, same sample times) measures the initial pressure, and the data are returned at
    ``op``'s sensors and sample times, shape ``op.range_shape``. Reconstructing them with ``op``
    does not commit the inverse crime: they hold the sub-pixel detail of the fine image and the
    fine grid's propagation and sensor interpolation, which ``op`` does not model.

    The fine initial pressure is:

    - ``phantom(fine_shape)`` for a callable that renders the object at any grid;
    - a tensor of the fine shape ``(*batch, N·factor, …)`` as it is;
    - a tensor of ``op``'s shape ``(*batch, N, …)`` upsampled to the fine grid, every pixel's
      value repeated over its ``factor^ndim`` fine cells (the pixel as a uniform square).

    The ground truth returned is the mean of the fine image over each coarse pixel (for a coarse
    tensor: the tensor itself).

    Parameters
    ----------
    phantom : callable or torch.Tensor
        See above.
    op : KSpaceWave
        The reconstruction operator (2D or 3D, any sensor and medium).
    factor : int
        Refinement of the grid (default 2; 1 simulates with ``op`` itself: the inverse crime).
    time_factor : int
        Refinement of the time step, see :func:`fine_pat_operator` (default 1).
    noise : callable, optional
        Noise model called as ``noise(y, generator=generator)``.
    generator : torch.Generator, optional
        Passed to ``noise``.

    Returns
    -------
    x : torch.Tensor
        Ground truth ``(*batch, *op.domain_shape)``.
    y : torch.Tensor
        Data ``(*batch, *op.range_shape)``.

    Raises
    ------
    ValueError
        If ``op`` is not a :class:`~operators.KSpaceWave`, a factor is invalid, or the phantom's
        shape matches neither grid.

    Examples
    --------
    >>> from operators import PATGrid, SensorPoints, TimeGrid
    >>> grid = PATGrid((16, 16), spacing=0.1)
    >>> A = KSpaceWave(grid, time=TimeGrid(dt=2e-8, n_t=40), sensor=SensorPoints.circle(0.7, 8))
    >>> x, y = simulate_pat(torch.rand(2, 16, 16), A)
    >>> x.shape, y.shape
    (torch.Size([2, 16, 16]), torch.Size([2, 8, 40]))
    """
    factor = _check_factor(factor)
    fine = fine_pat_operator(op, factor, time_factor=time_factor)
    coarse_shape, fine_shape = tuple(op.grid.shape), tuple(fine.grid.shape)
    nd = len(coarse_shape)
    if isinstance(phantom, torch.Tensor):
        image = phantom
    elif callable(phantom):
        image = phantom(fine_shape)
        if not isinstance(image, torch.Tensor):
            raise ValueError(f"phantom(shape) must return a tensor, got {type(image).__name__}")
    else:
        raise ValueError(f"phantom must be a callable or a tensor, got {type(phantom).__name__}")
    trailing = tuple(image.shape[image.ndim - nd :]) if image.ndim >= nd else ()
    if trailing == fine_shape:
        truth = _block_mean(image, factor, nd)
    elif trailing == coarse_shape and isinstance(phantom, torch.Tensor):
        truth, image = image, _repeat(image, factor, nd)
    else:
        raise ValueError(
            f"the phantom must be (*batch, *{coarse_shape}) on the grid of op or "
            f"(*batch, *{fine_shape}) on the fine grid (factor {factor}), got "
            f"{tuple(image.shape)}"
        )
    y = fine(image)[..., ::time_factor]
    if noise is not None:
        y = noise(y, generator=generator)
    return truth, y
