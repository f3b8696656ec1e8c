r"""Detector artefacts in projections: dead pixels and outliers, and stripes (ring artefacts).

- :func:`remove_outliers` replaces dead, hot or masked pixels by the median of their
  neighbours on the detector, in each projection.
- :func:`remove_rings` removes stripes: a detector column whose gain is off by a constant draws
  a vertical line in the sinogram and a ring in the reconstruction.

Both take a sinogram ``(n_angles, n_detectors)`` or a stack of projections
``(n_angles, rows, cols)``, as numpy arrays or torch tensors, and return the same kind.

Example
-------
>>> rng = np.random.default_rng(0)
>>> sino = 1.0 + 0.01 * rng.standard_normal((20, 64))   # 20 angles, 64 detectors
>>> sino[:, 30] += 0.04                                  # a stripe
>>> sino[4, 50] = 1e6                                    # a hot pixel
>>> clean = remove_rings(remove_outliers(sino))
>>> round(float(clean.max()), 2), round(float(clean[:, 30].mean()), 2)
(1.03, 1.0)
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from data_tools.projections.common import (
    as_float_tensor,
    check_odd_size,
    check_projections,
    local_median,
    to_input_kind,
)

__all__ = ["MAD_TO_SIGMA", "MEAN_ABS_TO_SIGMA", "RING_MODES", "remove_outliers", "remove_rings"]

#: The median absolute deviation of normal noise times this is its standard deviation.
MAD_TO_SIGMA = 1.4826
#: The mean absolute deviation of normal noise times this is its standard deviation.
MEAN_ABS_TO_SIGMA = 1.2533

#: Pixels per projection on which :func:`remove_outliers` estimates the noise level (at least).
SIGMA_SAMPLES = 4096

#: Modes of :func:`remove_rings`.
RING_MODES = ("subtract", "divide")


def _check_threshold(threshold: float | None) -> float | None:
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold <= 0:
        raise ValueError(
            f"threshold must be a positive number (robust standard deviations) or None, "
            f"got {threshold!r}"
        )
    return float(threshold)


def _mask(mask: Any, data: torch.Tensor, detector: tuple[int, ...]) -> torch.Tensor:
    """A boolean mask of ``data``'s shape from one of the detector shape or of the full shape."""
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
    if m.dtype != torch.bool:
        raise TypeError(f"mask must be boolean (True marks a dead pixel), got {m.dtype}")
    if tuple(m.shape) not in (detector, tuple(data.shape)):
        raise ValueError(
            f"mask has shape {tuple(m.shape)}; for data of shape {tuple(data.shape)} it must have "
            f"the detector shape {detector} (the same pixels in every projection) or the data's"
        )
    return m.to(data.device).expand(data.shape)


def remove_outliers(
    data: Any,
    *,
    size: int = 3,
    threshold: float | None = 5.0,
    mask: Any = None,
    return_mask: bool = False,
) -> Any:
    r"""Replace dead, hot and masked pixels by the median of their neighbours on the detector.

    In each projection, windows are ``size`` wide along the detector (sinograms) or
    ``size × size`` on it (stacks of projections). A pixel ``x`` is replaced where

    - ``|x − m| > threshold · σ``, with ``m`` the median of its window and ``σ = 1.4826 · MAD``
      the robust standard deviation of ``x − n`` over that projection (on a grid of at least
      4096 of its pixels), ``n`` the median of the neighbours with the pixel left out (MAD: the
      median absolute deviation from the median;
      where it is 0, as in noiseless data, ``σ = 1.2533 ·`` the mean absolute deviation), or
    - ``mask`` is True (a known dead pixel, e.g. ``flat <= dark``), or
    - ``x`` is NaN or inf.

    A replaced pixel gets the median of its neighbours without the replaced ones (the mean of
    the two middle values for an even count: in a sinogram, of its two neighbours). Works on
    counts, transmissions or line integrals. Median filters keep edges, but a feature one pixel
    wide, or a curve sharper at the pixel scale than ``threshold · σ`` (noiseless data), is taken
    for an outlier and smoothed: raise ``threshold`` (or pass ``None`` to replace only masked
    pixels) if the object has such features.

    Parameters
    ----------
    data : numpy.ndarray or torch.Tensor
        A sinogram ``(n_angles, n_detectors)`` or projections ``(n_angles, rows, cols)``. A single
        projection image is ``image[None]``.
    size : int
        Odd window width, >= 3.
    threshold : float or None
        In robust standard deviations; None detects nothing (only ``mask`` and NaN/inf).
    mask : boolean array or tensor, optional
        Pixels to replace: the detector shape (the same pixels in every projection) or the
        data's shape.
    return_mask : bool
        Also return the boolean mask of the replaced pixels.

    Returns
    -------
    numpy.ndarray or torch.Tensor, or (cleaned, replaced)
        A new array of ``data``'s shape and kind (floating dtypes kept, integers become float32).

    Raises
    ------
    ValueError
        If a window holds only masked pixels (a dead cluster wider than ``size``): the message
        asks for a larger ``size``.

    Example
    -------
    >>> sino = np.tile(np.linspace(1.0, 2.0, 8), (3, 1))
    >>> sino[0, 3], sino[2, 5] = 0.0, 1e9            # a dead and a hot pixel
    >>> clean, replaced = remove_outliers(sino, return_mask=True)
    >>> np.argwhere(replaced).tolist(), bool(np.allclose(clean, np.linspace(1.0, 2.0, 8)))
    ([[0, 3], [2, 5]], True)
    """
    size = check_odd_size(size)
    threshold = _check_threshold(threshold)
    x, was_numpy = as_float_tensor(data, "data", copy=True)
    detector = check_projections(x, "data")
    ndim = len(detector)
    known = ~torch.isfinite(x)
    if mask is not None:
        known |= _mask(mask, x, detector)
    x[known] = float("nan")
    replace = known.clone()
    if threshold is not None:
        # The noise level from the residual against the neighbours (the pixel left out, so it
        # does not pull the median towards itself), on a grid of about SIGMA_SAMPLES pixels per
        # projection (enough for a median); the test against the window's median (the pixel in,
        # so a step edge is no outlier).
        stride = max(1, int((x[0].numel() / SIGMA_SAMPLES) ** (1 / ndim)))
        sample = torch.zeros_like(known)
        sample[(slice(None), *(slice(None, None, stride),) * ndim)] = True
        neighbours = local_median(x, size, ndim=ndim, exclude_centre=True, at=sample)
        residual = (x - neighbours)[sample].view(x.shape[0], -1)
        centre = torch.nanquantile(residual, 0.5, dim=1, keepdim=True)
        deviation = (residual - centre).abs()
        sigma = MAD_TO_SIGMA * torch.nanquantile(deviation, 0.5, dim=1, keepdim=True)
        # Noiseless projections have MAD = 0: fall back to the mean absolute deviation.
        fallback = MEAN_ABS_TO_SIGMA * deviation.nan_to_num(0.0).mean(dim=1, keepdim=True)
        sigma = torch.where(sigma > 0, sigma, fallback).view(-1, *(1,) * ndim)
        window = local_median(x, size, ndim=ndim, fast=True)
        detected = (x - window).abs() > threshold * sigma
        replace |= detected
        x[replace] = float("nan")
    # The replacements: medians of the neighbours without the replaced pixels.
    neighbours = local_median(x, size, ndim=ndim, exclude_centre=True, at=replace)
    if threshold is not None:
        # A detected pixel whose neighbours were all detected too keeps its window's median.
        alone = detected & ~known & torch.isnan(neighbours)
        neighbours[alone] = window[alone]
    x[replace] = neighbours[replace]
    n_left = int(torch.isnan(x).sum())
    if n_left:
        raise ValueError(
            f"{n_left} pixels have no usable neighbour in a window of size {size} (a cluster of "
            "masked or non-finite pixels); pass a larger size"
        )
    out = to_input_kind(x, was_numpy)
    return (out, to_input_kind(replace, was_numpy)) if return_mask else out


def remove_rings(
    data: Any,
    *,
    size: int = 5,
    mode: Literal["subtract", "divide"] = "subtract",
) -> Any:
    r"""Remove stripes (the cause of ring artefacts) by flattening the mean over the angles.

    A detector column with a wrong gain adds the same error to every projection: a stripe in
    the sinogram, a ring in the reconstruction. The mean over the angles, ``m(u) = mean_θ x(θ, u)``,
    is smooth across the detector for a real object, so its deviation from its own median filter
    ``s = median_size(m)`` (a ``size``-wide median along the detector rows) is the stripe:

    - ``mode="subtract"`` (line integrals, where a gain error is an added constant):
      ``x − (m − s)``;
    - ``mode="divide"`` (counts or transmissions, where it is a factor): each column is
      normalised by the ratio of its angle-mean to the smoothed angle-mean, ``x · s / m``.

    Stacks ``(n_angles, rows, cols)`` are treated row by row (one sinogram per row). ``size``
    must be wider than twice the widest stripe (the default removes stripes up to 2 pixels wide).
    The median filter also flattens the peaks of the object's own mean profile, by about
    ``|m''| k² / 2`` with ``k = ⌈(size − 1) / 4⌉`` where it curves (``m''`` per pixel²), and
    ``x`` is changed by as much: negligible when the object spans many times ``size`` pixels,
    so do not make ``size`` larger than the stripes need.

    Parameters
    ----------
    data : numpy.ndarray or torch.Tensor
        A sinogram ``(n_angles, n_detectors)`` or projections ``(n_angles, rows, cols)``.
    size : int
        Odd width of the median filter along the detector, >= 3.
    mode : {"subtract", "divide"}
        ``"subtract"`` for line integrals, ``"divide"`` for counts or transmissions.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        A new array of ``data``'s shape and kind (floating dtypes kept, integers become float32).

    Example
    -------
    >>> p = np.tile(np.hanning(64), (10, 1))       # 10 angles, 64 detectors
    >>> stripe = np.zeros(64); stripe[30] = 0.2    # detector 30 reads 0.2 too high
    >>> bool(np.abs(remove_rings(p + stripe) - p).max() < 0.02)
    True
    """
    size = check_odd_size(size)
    if mode not in RING_MODES:
        raise ValueError(f"mode must be one of {RING_MODES}, got {mode!r}")
    x, was_numpy = as_float_tensor(data, "data", copy=True)
    detector = check_projections(x, "data")
    if not torch.isfinite(x).all():
        raise ValueError("data contains NaN or inf; replace them first with remove_outliers")
    profile = x.mean(dim=0)
    rows = profile.reshape(-1, detector[-1])
    smooth = local_median(rows, size, ndim=1).reshape(profile.shape)
    if mode == "subtract":
        x -= profile - smooth
    else:
        if (profile <= 0).any() or (smooth <= 0).any():
            raise ValueError(
                "mode='divide' needs positive data (counts or transmissions); for line "
                "integrals use mode='subtract'"
            )
        x *= smooth / profile
    return to_input_kind(x, was_numpy)
