r"""Raw detector counts to line integrals: flat- and dark-field correction, then −log.

A detector pixel behind the object counts, on average,

.. math::

    I = D + (F - D)\, e^{-p},

with :math:`D` the dark field (no beam), :math:`F` the flat field (beam, no object) and :math:`p`
the line integral of the attenuation along the ray. So the transmission and the line integral are

.. math::

    T = \frac{I - D}{F - D}, \qquad p = -\log T.

:func:`flat_dark_correct` gives ``T``, :func:`minus_log` gives ``p`` from ``T`` (clipping ``T`` to
a small positive floor first), and :func:`to_line_integrals` does both.

Example
-------
>>> p = np.array([[0.0, 1.0, 2.0]])
>>> raw = 100 + (1e4 - 100) * np.exp(-p)
>>> np.round(to_line_integrals(raw, flat=1e4, dark=100), 4)
array([[0., 1., 2.]], dtype=float32)
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from data_tools.projections.common import (
    as_float_tensor,
    check_projections,
    resolve_dtype,
    to_input_kind,
)

__all__ = ["DEFAULT_MIN_TRANSMISSION", "flat_dark_correct", "minus_log", "to_line_integrals"]

#: Default floor of the transmission before −log. With a 16-bit detector one count above the
#: dark field is already a transmission >= 1/65535 ≈ 1.5e-5, so this floor only catches zero or
#: negative counts (after dark subtraction); they become a line integral of −log(1e-6) ≈ 13.8.
DEFAULT_MIN_TRANSMISSION = 1e-6

#: Angles whose per-angle flat is built at once when flats are interpolated (bounds memory).
_INTERPOLATION_CHUNK = 64


def _field(
    value: Any, name: str, detector: tuple[int, ...], raw_shape: tuple[int, ...], like: torch.Tensor
) -> torch.Tensor:
    """A flat or dark field as one frame (or a scalar): stacks of frames are averaged per pixel."""
    field, _ = as_float_tensor(value, name, dtype=torch.float64, device=like.device)
    if field.ndim == 0 or tuple(field.shape) == detector:
        frame = field
    elif field.ndim == len(detector) + 1 and tuple(field.shape[1:]) == detector and len(field):
        frame = field.mean(dim=0)
    else:
        raise ValueError(
            f"{name} has shape {tuple(field.shape)}, but projections of shape {raw_shape} need a "
            f"scalar, one frame of the detector shape {detector} or a stack of frames "
            f"(n_frames, {', '.join(map(str, detector))})"
        )
    if not torch.isfinite(frame).all():
        raise ValueError(f"{name} contains NaN or inf")
    return frame


def _scan_weights(
    scan_position: Any, n_angles: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Per-projection weight of ``flat_after`` (0 at the start of the scan, 1 at its end)."""
    if scan_position is None:
        return torch.linspace(0.0, 1.0, n_angles, device=device, dtype=dtype)
    w, _ = as_float_tensor(scan_position, "scan_position", dtype=dtype, device=device)
    if tuple(w.shape) != (n_angles,):
        raise ValueError(
            f"scan_position must hold one value per projection, shape ({n_angles},), "
            f"got shape {tuple(w.shape)}"
        )
    if not torch.isfinite(w).all():
        raise ValueError("scan_position contains NaN or inf")
    return w


def _warn_dead(n_dead: int, n_pixels: int, stacklevel: int) -> None:
    warnings.warn(
        f"{n_dead} of {n_pixels} detector pixels have flat <= dark (dead or saturated pixels); "
        "their transmission is set to 1 (line integral 0). Replace them with "
        "remove_outliers(..., mask=flat <= dark) or fix the flat and dark fields.",
        UserWarning,
        stacklevel=stacklevel + 1,
    )


def _flat_dark_correct(
    raw: Any,
    flat: Any,
    dark: Any,
    *,
    flat_after: Any,
    scan_position: Any,
    dtype: Any,
    stacklevel: int,
) -> tuple[torch.Tensor, bool]:
    dtype = resolve_dtype(dtype)
    t, was_numpy = as_float_tensor(raw, "raw", dtype=dtype, copy=True)
    detector = check_projections(t, "raw")
    shape = tuple(t.shape)
    if not torch.isfinite(t).all():
        raise ValueError("raw contains NaN or inf; replace them first (remove_outliers does)")
    if flat_after is None and scan_position is not None:
        raise ValueError("scan_position is used only with flat_after; pass flat_after too")
    d = _field(dark, "dark", detector, shape, t)
    before = _field(flat, "flat", detector, shape, t) - d
    after = None if flat_after is None else _field(flat_after, "flat_after", detector, shape, t) - d
    dead = before <= 0 if after is None else (before <= 0) | (after <= 0)
    if dead.ndim == 0 and dead:
        raise ValueError("flat must be larger than dark (flat_after too): no counts without them")
    n_dead = int(dead.sum())
    if n_dead:
        _warn_dead(n_dead, math.prod(detector), stacklevel + 1)
        before = torch.where(dead, 1.0, before)
        after = None if after is None else torch.where(dead, 1.0, after)
    t.sub_(d.to(dtype))
    if after is None:
        t.div_(before.to(dtype))
    else:
        w = _scan_weights(scan_position, shape[0], t.device, torch.float64)
        expand = (-1,) + (1,) * len(detector)
        for start in range(0, shape[0], _INTERPOLATION_CHUNK):
            stop = min(start + _INTERPOLATION_CHUNK, shape[0])
            wk = w[start:stop].view(expand)
            t[start:stop].div_(((1 - wk) * before + wk * after).to(dtype))
    if n_dead:
        t[:, dead] = 1.0
    return t, was_numpy


def flat_dark_correct(
    raw: Any,
    flat: Any,
    dark: Any,
    *,
    flat_after: Any = None,
    scan_position: Any = None,
    dtype: Any = None,
) -> np.ndarray | torch.Tensor:
    r"""The transmission ``T = (raw − dark) / (flat − dark)`` of raw projections.

    Parameters
    ----------
    raw : numpy.ndarray or torch.Tensor
        Counts (any integer or floating dtype) of a sinogram ``(n_angles, n_detectors)`` or of a
        stack of projections ``(n_angles, rows, cols)``.
    flat, dark : array, tensor or float
        Flat field (beam on, no object) and dark field (beam off): a number, one frame of the
        detector shape (``(n_detectors,)`` or ``(rows, cols)``) or a stack of frames
        ``(n_frames, *detector_shape)``, which is averaged per pixel. Flats taken before *and*
        after the scan are averaged if passed together as one stack; to interpolate between them
        instead, pass the later ones as ``flat_after``.
    flat_after : array, tensor or float, optional
        Flat field(s) taken after the scan. Projection ``i`` is then divided by
        ``(1 − w_i)(flat − dark) + w_i (flat_after − dark)``, linear along the scan, with
        ``w_i = scan_position[i]``.
    scan_position : array, optional
        With ``flat_after``: where each projection lies in the scan, from 0 (when ``flat`` was
        taken) to 1 (when ``flat_after`` was). Default: ``linspace(0, 1, n_angles)``, right for a
        full scan read without a subset; :class:`ProjectionData` gives the right one for a
        subset (``data.scan_positions``).
    dtype : float32 or float64, optional
        Of the result (numpy or torch dtype or name); default float32. Computed in this dtype
        (the averages of flats and darks in float64).

    Returns
    -------
    numpy.ndarray or torch.Tensor
        The transmission, the shape of ``raw``; a tensor on ``raw``'s device if ``raw`` is a
        tensor, else a numpy array. Not clipped: noise can make it <= 0 or > 1.

    Raises
    ------
    ValueError
        If a shape does not fit ``raw`` (the message names both), or an input holds NaN or inf.

    Warns
    -----
    UserWarning
        With the number of detector pixels where ``flat <= dark`` (dead pixels): their
        transmission is set to 1.

    Example
    -------
    >>> raw = np.array([[5100, 2600], [1100, 100]], dtype=np.uint16)
    >>> flats = np.array([[10100, 5100], [10100, 5100]])  # two flat frames, averaged
    >>> flat_dark_correct(raw, flats, dark=100)
    array([[0.5, 0.5],
           [0.1, 0. ]], dtype=float32)
    """
    t, was_numpy = _flat_dark_correct(
        raw,
        flat,
        dark,
        flat_after=flat_after,
        scan_position=scan_position,
        dtype=dtype,
        stacklevel=2,
    )
    return to_input_kind(t, was_numpy)


def _check_floor(min_transmission: float) -> float:
    if isinstance(min_transmission, bool) or not isinstance(min_transmission, (int, float)):
        raise TypeError(f"min_transmission must be a number in (0, 1), got {min_transmission!r}")
    if not 0.0 < float(min_transmission) < 1.0:
        raise ValueError(f"min_transmission must be in (0, 1), got {min_transmission}")
    return float(min_transmission)


def _minus_log_(t: torch.Tensor, floor: float, stacklevel: int) -> torch.Tensor:
    """``−log(max(t, floor))`` in place, warning with the number of clipped values."""
    low = t < floor
    n_low = int(low.sum())
    if n_low:
        warnings.warn(
            f"{n_low} of {t.numel()} values ({100 * n_low / t.numel():.3g} %) had a transmission "
            f"below min_transmission={floor:g} (zero or negative counts after dark subtraction, "
            f"or stronger attenuation than the counts can measure); they were clipped to it, a "
            f"line integral of {-math.log(floor):.3g}. Lower min_transmission to keep more, or "
            "replace them afterwards with remove_outliers(..., mask=...).",
            UserWarning,
            stacklevel=stacklevel + 1,
        )
        t.clamp_(min=floor)
    return t.log_().neg_().add_(0.0)  # + 0 turns −0 (from T = 1) into 0


def minus_log(
    transmission: Any,
    *,
    min_transmission: float = DEFAULT_MIN_TRANSMISSION,
    dtype: Any = None,
) -> np.ndarray | torch.Tensor:
    r"""Line integrals ``p = −log(max(T, min_transmission))`` from a transmission ``T``.

    Values below ``min_transmission`` (zero or negative counts after dark subtraction, or more
    attenuation than the counts can measure) are clipped to it, with a warning that counts them:
    they become ``−log(min_transmission)`` (13.8 for the default 1e-6). Transmissions above 1
    (noise) give small negative line integrals and are kept, so the noise stays unbiased.

    Parameters
    ----------
    transmission : numpy.ndarray or torch.Tensor
        Any shape, e.g. from :func:`flat_dark_correct`; not modified.
    min_transmission : float
        The floor, in (0, 1).
    dtype : float32 or float64, optional
        Of the result; default float32.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        As ``transmission`` (a tensor on its device, or a numpy array).

    Example
    -------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     p = minus_log(np.array([1.0, np.exp(-2.0), 0.0]), min_transmission=1e-3)
    >>> np.round(p, 3), str(caught[0].message)[:12]
    (array([0.   , 2.   , 6.908], dtype=float32), '1 of 3 value')
    """
    floor = _check_floor(min_transmission)
    t, was_numpy = as_float_tensor(
        transmission, "transmission", dtype=resolve_dtype(dtype), copy=True
    )
    if torch.isnan(t).any():
        raise ValueError("transmission contains NaN")
    return to_input_kind(_minus_log_(t, floor, stacklevel=2), was_numpy)


def to_line_integrals(
    raw: Any,
    flat: Any,
    dark: Any,
    *,
    flat_after: Any = None,
    scan_position: Any = None,
    min_transmission: float = DEFAULT_MIN_TRANSMISSION,
    dtype: Any = None,
) -> np.ndarray | torch.Tensor:
    r"""Line integrals ``p = −log((raw − dark) / (flat − dark))`` from raw projections.

    :func:`flat_dark_correct` (averaging stacks of flats and darks per pixel, or interpolating
    between ``flat`` and ``flat_after`` along the scan), then :func:`minus_log` (clipping the
    transmission to ``min_transmission`` first, with a warning that counts the clipped values).
    The arguments are theirs; the work happens in place on one copy of ``raw`` in ``dtype``.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        The shape of ``raw``, float32 by default: a tensor on ``raw``'s device if ``raw`` is a
        tensor, else a numpy array. It is a sinogram ready for a ray transform whose geometry
        matches the scan (angles, detector spacing, centre of rotation).

    Example
    -------
    Counts simulated with Poisson noise from a flat of 10⁴ and a dark of 100 give back line
    integrals to within the photon noise (about 1/sqrt(10⁴ e^{-p})):

    >>> rng = np.random.default_rng(0)
    >>> p = np.tile(np.linspace(0.0, 2.0, 50), (30, 1))  # a sinogram (30 angles, 50 detectors)
    >>> raw = rng.poisson(100 + 1e4 * np.exp(-p))
    >>> flats, darks = rng.poisson(1e4 + 100, (20, 50)), rng.poisson(100, (20, 50))
    >>> p_hat = to_line_integrals(raw, flats, darks)
    >>> p_hat.shape, p_hat.dtype, bool(np.abs(p_hat - p).mean() < 0.03)
    ((30, 50), dtype('float32'), True)
    """
    floor = _check_floor(min_transmission)
    t, was_numpy = _flat_dark_correct(
        raw,
        flat,
        dark,
        flat_after=flat_after,
        scan_position=scan_position,
        dtype=dtype,
        stacklevel=2,
    )
    return to_input_kind(_minus_log_(t, floor, stacklevel=2), was_numpy)
