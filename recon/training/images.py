"""Image grids for TensorBoard: validation rows ``truth | estimate | |error|`` and sample tiles.

Example
-------
>>> import torch
>>> image_grid(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)).shape
(10, 16)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from data_tools.metrics import ssim
from recon.checks import check_int

__all__ = ["image_grid", "mean_ssim", "sample_grid", "slice2d"]


def image_grid(truth: torch.Tensor, estimate: torch.Tensor, *, gap: int = 2) -> np.ndarray:
    """A float grid in [0, 1]: one row per image, columns ``truth | estimate | |error|``.

    Truth and estimate are windowed on the truth's ``[min, max]`` over all shown images, the
    error on ``[0, max − min]``, so the same images always look the same. Channel 0 is shown; of
    a volume, the middle slice.

    Parameters
    ----------
    truth, estimate : torch.Tensor
        ``(B, C, *image)`` with at least two image dimensions.
    gap : int
        Width of the white separators in pixels.

    Returns
    -------
    numpy.ndarray
        ``(B·H + (B − 1)·gap, 3·W + 2·gap)`` float32 array.

    Example
    -------
    >>> truth = torch.tensor([[[[0.0, 2.0]]]])  # one 1 x 2 image
    >>> image_grid(truth, truth + 1.0, gap=1).round(2).tolist()
    [[0.0, 1.0, 1.0, 0.5, 1.0, 1.0, 0.5, 0.5]]
    """
    t, e = slice2d(truth.detach().double()), slice2d(estimate.detach().double())
    low, high = float(t.min()), float(t.max())
    scale = high - low if high > low else 1.0
    columns = [(t - low) / scale, (e - low) / scale, (e - t).abs() / scale]
    n, (h, w) = len(t), t.shape[-2:]
    grid = torch.ones(n * (h + gap) - gap, 3 * (w + gap) - gap, dtype=torch.float64)
    for j, column in enumerate(columns):
        for i, image in enumerate(column):
            grid[i * (h + gap) : i * (h + gap) + h, j * (w + gap) : j * (w + gap) + w] = image
    return grid.clamp(0, 1).to(torch.float32).numpy()


def slice2d(images: torch.Tensor) -> torch.Tensor:
    """``(B, C, *image)`` -> ``(B, H, W)``: channel 0, middle slice of extra leading dims.

    Example
    -------
    >>> slice2d(torch.zeros(2, 3, 5, 4, 4)).shape
    torch.Size([2, 4, 4])
    """
    images = images[:, 0]
    while images.ndim > 3:
        images = images[:, images.shape[1] // 2]
    return images


def mean_ssim(estimate: torch.Tensor, truth: torch.Tensor, ndim: int) -> torch.Tensor:
    """Per-image SSIM (mean over channels); NaN where the image is too small or has > 3 dims.

    Example
    -------
    >>> x = torch.rand(2, 1, 16, 16)
    >>> mean_ssim(x, x, 2).tolist()
    [1.0, 1.0]
    """
    side = min(truth.shape[2:])
    win = min(7, side if side % 2 else side - 1)
    if ndim > 3 or win < 3:
        return torch.full((truth.shape[0],), math.nan)
    return ssim(estimate, truth, ndim=ndim, win_size=win).flatten(1).mean(1)


def sample_grid(
    images: torch.Tensor,
    *,
    n_columns: int = 4,
    window: tuple[float, float] = (0.0, 1.0),
    gap: int = 2,
) -> np.ndarray:
    """Images ``(B, C, H, W)`` (channel 0 shown) tiled row by row, windowed to [0, 1].

    Parameters
    ----------
    images : torch.Tensor
        ``(B, C, H, W)``.
    n_columns : int
        Images per row.
    window : (float, float)
        Values mapped to 0 and 1 (the training images' range); the rest is clipped.
    gap : int
        Width of the white separators.

    Returns
    -------
    numpy.ndarray
        float32 ``(rows·H + (rows − 1)·gap, cols·W + (cols − 1)·gap)``.

    Example
    -------
    >>> sample_grid(torch.zeros(5, 1, 3, 3), n_columns=2, gap=1).shape
    (11, 7)
    """
    n_columns = check_int("n_columns", n_columns, minimum=1)
    low, high = float(window[0]), float(window[1])
    if not high > low:
        raise ValueError(f"window must be (low, high) with high > low, got {window}")
    images = images.detach().double().cpu()[:, 0]
    b, h, w = images.shape
    cols = min(n_columns, b)
    rows = math.ceil(b / cols)
    grid = torch.ones(rows * (h + gap) - gap, cols * (w + gap) - gap, dtype=torch.float64)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = (
            image - low
        ) / (high - low)
    return grid.clamp(0, 1).to(torch.float32).numpy()
