r"""Random rectangles: images of a few overlapping rotated rectangles (the ``rectangles`` family).

The distribution of Barbano et al.'s experimental-design study and of the bayes_dip code
(``RectanglesDataset``): each image holds ``n_rects`` (3) rectangles, added up, with

- values uniform in ``value_range`` (0.5, 1),
- half side lengths uniform in ``side_range`` (0.1, 0.8) and centres uniform in
  ``centre_range`` (−0.75, 0.75)², in the units of the square ``[-1, 1]²``,
- rotations drawn around one random angle per image (uniform in ``[0, π)``) with the std
  ``angle_std`` (0.05), so the rectangles of an image are nearly parallel.

The image is rendered on the grid of :mod:`data_tools.phantoms.common` with ``supersample`` ×
``supersample`` points per pixel averaged (smooth edges), then divided by its maximum (the
maximum of the sum of rectangles, computed once from the table), so values lie in ``[0, 1]``
with background 0. The table is drawn once and rendered at any shape.

Example
-------
>>> params = rectangle_params(generator=torch.Generator().manual_seed(0))
>>> params.shape  # (value, half side a, half side b, x, y, angle) per rectangle
torch.Size([3, 6])
>>> image = rectangles_image(params, 64)
>>> image.shape, float(image.max()), float(image.min())
(torch.Size([64, 64]), 1.0, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch.nn import functional as F

from data_tools.phantoms.common import check_range, check_shape, make_generator, uniform

__all__ = ["random_rectangles", "rectangle_params", "rectangles_family", "rectangles_image"]

#: Points per axis of the grid on which the normaliser (the image maximum) is found.
_NORMALISER_GRID = 256


def rectangle_params(
    n_rects: int = 3,
    *,
    value_range: Sequence[float] = (0.5, 1.0),
    side_range: Sequence[float] = (0.1, 0.8),
    centre_range: Sequence[float] = (-0.75, 0.75),
    angle_std: float = 0.05,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """One random table of ``n_rects`` rectangles, ``(n_rects, 6)`` float64 rows
    ``(value, half side a, half side b, x, y, angle)`` (see the module docstring).

    Raises
    ------
    ValueError
        For a non-positive count, bad ranges or a negative ``angle_std``.
    """
    if isinstance(n_rects, bool) or not isinstance(n_rects, int) or n_rects < 1:
        raise ValueError(f"n_rects must be a positive int, got {n_rects!r}")
    value_range = check_range("value_range", value_range, low=-math.inf)
    side_range = check_range("side_range", side_range, strict=True)
    centre_range = check_range("centre_range", centre_range, low=-math.inf)
    if isinstance(angle_std, bool) or not isinstance(angle_std, (int, float)) or angle_std < 0:
        raise ValueError(f"angle_std must be a non-negative number, got {angle_std!r}")
    generator = make_generator(generator, seed)
    value = uniform(*value_range, n_rects, generator)
    half_a = uniform(*side_range, n_rects, generator)
    half_b = uniform(*side_range, n_rects, generator)
    x = uniform(*centre_range, n_rects, generator)
    y = uniform(*centre_range, n_rects, generator)
    mode = uniform(0.0, math.pi, 1, generator)
    noise = torch.randn(n_rects, generator=generator, dtype=torch.float64, device=value.device)
    angle = torch.remainder(mode + angle_std * noise, math.pi)
    return torch.stack([value, half_a, half_b, x, y, angle], dim=1)


def _point_values(params: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The sum of the rectangles at the points ``(x, y)`` (broadcast)."""
    image = torch.zeros(torch.broadcast_shapes(x.shape, y.shape), dtype=params.dtype)
    for value, half_a, half_b, cx, cy, angle in params.tolist():
        cos, sin = math.cos(angle), math.sin(angle)
        u = (x - cx) * cos + (y - cy) * sin  # coordinates along the rotated sides
        v = -(x - cx) * sin + (y - cy) * cos
        image = image + value * ((u.abs() <= half_a) & (v.abs() <= half_b)).to(params.dtype)
    return image


def _grid(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres ``x (1, W)`` and ``y (H, 1)`` of the common grid (row 0 at the top)."""
    x = (2 * torch.arange(width, dtype=torch.float64) + 1 - width) / width
    y = (height - 1 - 2 * torch.arange(height, dtype=torch.float64)) / height
    return x[None, :], y[:, None]


def rectangles_image(
    params: torch.Tensor,
    shape: int | Sequence[int],
    *,
    supersample: int = 8,
    normalise: bool = True,
) -> torch.Tensor:
    """Render a rectangle table (:func:`rectangle_params`) as a float32 image ``(H, W)``.

    Each pixel averages ``supersample``² points; with ``normalise`` the image is divided by the
    maximum of the sum of rectangles (found on a fine grid, the same at every ``shape``).

    Example
    -------
    >>> square = torch.tensor([[1.0, 0.5, 0.5, 0.0, 0.0, 0.0]], dtype=torch.float64)
    >>> float(rectangles_image(square, 16).mean())  # a quarter of the square [-1, 1]²
    0.25
    """
    height, width = check_shape(shape)
    if not isinstance(params, torch.Tensor) or params.ndim != 2 or params.shape[1] != 6:
        got = tuple(params.shape) if isinstance(params, torch.Tensor) else type(params).__name__
        raise ValueError(f"params must have shape (n_rects, 6), got {got}")
    if isinstance(supersample, bool) or not isinstance(supersample, int) or supersample < 1:
        raise ValueError(f"supersample must be a positive int, got {supersample!r}")
    params = params.detach().to("cpu", torch.float64)
    x, y = _grid(height * supersample, width * supersample)
    fine = _point_values(params, x, y)
    image = F.avg_pool2d(fine[None, None], supersample)[0, 0]
    if normalise:
        x, y = _grid(_NORMALISER_GRID, _NORMALISER_GRID)
        peak = float(_point_values(params, x, y).max())
        if peak > 0:
            image = (image / peak).clamp(max=1.0)
    return image.to(torch.float32)


def rectangles_family(
    generator: torch.Generator,
) -> Callable[[tuple[int, int]], torch.Tensor]:
    """The registry's ``rectangles`` family: one table from ``generator``, rendered at any
    shape (:func:`rectangles_image`).

    Example
    -------
    >>> render = rectangles_family(torch.Generator().manual_seed(0))
    >>> render((64, 64)).shape
    torch.Size([64, 64])
    """
    params = rectangle_params(generator=generator)
    return lambda shape: rectangles_image(params, shape)


def random_rectangles(
    shape: int | Sequence[int] = 64,
    n: int | None = None,
    *,
    n_rects: int = 3,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """``n`` random rectangle images ``(n, H, W)`` (``(H, W)`` if ``n`` is None).

    Example
    -------
    >>> random_rectangles(32, 2, seed=0).shape
    torch.Size([2, 32, 32])
    """
    generator = make_generator(generator, seed)
    count = 1 if n is None else n
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"n must be a positive int or None, got {n!r}")
    images = torch.stack(
        [
            rectangles_image(rectangle_params(n_rects, generator=generator), shape)
            for _ in range(count)
        ]
    )
    return images[0] if n is None else images
