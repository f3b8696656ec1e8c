"""Shared checks of the projection tools: numpy or torch in, the same kind out, float32 by default.

Example
-------
>>> t, was_numpy = as_float_tensor(np.ones((2, 3), np.uint16), "raw")
>>> t.dtype, was_numpy
(torch.float32, True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "as_float_tensor",
    "check_odd_size",
    "check_projections",
    "local_median",
    "resolve_dtype",
    "to_input_kind",
]

#: Elements processed at once by :func:`local_median` (bounds its temporary memory).
MEDIAN_CHUNK_ELEMENTS = 1 << 24

_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
}


def resolve_dtype(dtype: Any, default: torch.dtype = torch.float32) -> torch.dtype:
    """A floating torch dtype from ``None`` (``default``), a torch dtype, a numpy dtype or a name.

    Example
    -------
    >>> resolve_dtype(np.float64), resolve_dtype(None)
    (torch.float64, torch.float32)
    """
    if dtype is None:
        return default
    if isinstance(dtype, torch.dtype):
        resolved = dtype
    else:
        try:
            resolved = _DTYPES.get(np.dtype(dtype).name)
        except TypeError:
            resolved = None
    if resolved not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be float32 or float64 (numpy or torch), got {dtype!r}")
    return resolved


def as_float_tensor(
    data: Any,
    name: str,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
    copy: bool = False,
) -> tuple[torch.Tensor, bool]:
    """``(tensor, was_numpy)``: ``data`` (a tensor, an array or a number) as a floating tensor.

    Tensors keep their device (or move to ``device``); everything else is read with
    ``numpy.asarray``. Without ``dtype``, floating tensors keep theirs and anything else becomes
    float32. ``copy=True`` always returns fresh memory, safe to modify in place. Booleans,
    complex numbers and non-numeric arrays raise ``TypeError`` naming ``name``.
    """
    was_numpy = not isinstance(data, torch.Tensor)
    if was_numpy:
        array = np.asarray(data)
        if array.dtype.kind not in "uif":
            raise TypeError(
                f"{name} must hold real numbers (counts or floats), got dtype {array.dtype}"
            )
        target = dtype or (torch.float64 if array.dtype == np.float64 else torch.float32)
        np_target = np.float64 if target == torch.float64 else np.float32
        # A fresh, writable copy when asked for or when the array is read-only (h5py, memmap).
        fresh = copy or array.dtype != np_target or not array.flags.writeable
        if fresh or not array.flags.c_contiguous:
            array = np.array(array, dtype=np_target, order="C", copy=True)
        tensor = torch.from_numpy(array)
        return (tensor if device is None else tensor.to(device)), True
    if data.dtype == torch.bool or data.is_complex():
        raise TypeError(f"{name} must hold real numbers (counts or floats), got {data.dtype}")
    target = dtype or (data.dtype if data.is_floating_point() else torch.float32)
    return data.to(device=device or data.device, dtype=target, copy=copy), False


def to_input_kind(tensor: torch.Tensor, was_numpy: bool) -> np.ndarray | torch.Tensor:
    """``tensor`` as a numpy array if the input was not a tensor, else unchanged."""
    return tensor.cpu().numpy() if was_numpy else tensor


def check_projections(data: torch.Tensor, name: str = "raw") -> tuple[int, ...]:
    """The detector shape of a sinogram ``(n_angles, n_det)`` or a stack ``(n_angles, rows, cols)``.

    Example
    -------
    >>> check_projections(torch.zeros(10, 4, 5))
    (4, 5)
    """
    if data.ndim not in (2, 3) or data.shape[0] == 0:
        raise ValueError(
            f"{name} must be a sinogram (n_angles, n_detectors) or a stack of projections "
            f"(n_angles, rows, cols) with n_angles >= 1, got shape {tuple(data.shape)}"
        )
    return tuple(data.shape[1:])


def check_odd_size(size: int, name: str = "size") -> int:
    """``size`` if it is an odd int >= 3, else ``ValueError``."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 3 or size % 2 == 0:
        raise ValueError(
            f"{name} must be an odd int >= 3 (a window centred on each pixel), got {size!r}"
        )
    return size


def local_median(
    x: torch.Tensor,
    size: int,
    *,
    ndim: int,
    exclude_centre: bool = False,
    at: torch.Tensor | None = None,
    fast: bool = False,
) -> torch.Tensor:
    """Median over a ``size`` (1D) or ``size × size`` (2D) window on the last ``ndim`` dimensions.

    NaN values are ignored (``torch.nanquantile``: an even count gives the mean of the two middle
    values; with ``fast``, ``torch.nanmedian``: the lower one, about 3 times faster); a window of
    NaN only gives NaN. Edges are padded by repeating the border. ``x`` has one leading batch
    dimension: ``(n, width)`` for ``ndim=1``, ``(n, rows, cols)`` for ``ndim=2``; it is
    processed in chunks of the batch.

    With ``exclude_centre``, the median of the neighbours only (the pixel itself left out). With
    ``at`` (a boolean tensor of ``x``'s shape), only those positions are computed, the others
    are NaN.

    Example
    -------
    >>> x = torch.tensor([[1.0, 9.0, 1.0, 2.0, float("nan")]])
    >>> local_median(x, 3, ndim=1)
    tensor([[1.0000, 1.0000, 2.0000, 1.5000, 2.0000]])
    >>> local_median(x, 3, ndim=1, exclude_centre=True, at=x < 5)
    tensor([[5.0000,    nan, 5.5000, 1.0000,    nan]])
    """
    if ndim not in (1, 2) or x.ndim != ndim + 1:
        raise ValueError(
            f"local_median needs ndim in (1, 2) and x of ndim + 1 dimensions, got {x.shape}"
        )
    half = size // 2
    n_window = size**ndim
    chunk = max(1, MEDIAN_CHUNK_ELEMENTS // max(x[0].numel() * n_window, 1))
    keep = torch.arange(n_window, device=x.device)
    if exclude_centre:
        keep = keep[keep != n_window // 2]
    out = torch.full_like(x, float("nan")) if at is not None else torch.empty_like(x)
    for start in range(0, x.shape[0], chunk):
        block = x[start : start + chunk]
        padded = torch.nn.functional.pad(block, (half,) * (2 * ndim), mode="replicate")
        windows = padded.unfold(-1, size, 1)
        if ndim == 2:
            windows = windows.unfold(-3, size, 1)
        if at is not None:  # gather the selected windows before any copy of all of them
            windows = windows[at[start : start + chunk]]
        if ndim == 2:
            windows = windows.flatten(-2)
        if exclude_centre:
            windows = windows.index_select(-1, keep)
        if windows.numel() == 0:
            continue
        if fast:
            median = windows.nanmedian(dim=-1).values
        else:
            median = torch.nanquantile(windows, 0.5, dim=-1)
        if at is None:
            out[start : start + chunk] = median
        else:
            out[start : start + chunk][at[start : start + chunk]] = median
    return out
