"""The image grid of the phantoms and the argument checks they share.

Image convention (shared by every phantom of :mod:`data_tools.phantoms`): an image of shape
``(H, W)`` samples the square ``[-1, 1]²`` at pixel centres, row 0 is the top (``y = +1``) and
column 0 the left (``x = -1``)::

    x_j = (2 j + 1 - W) / W,        y_i = (H - 1 - 2 i) / H.

Pixels are sampled at their centres (no supersampling), so an ellipse edge is exact to within one
pixel. The photoacoustic phantoms (:mod:`data_tools.phantoms.photoacoustic`) use the same grid but
are drawn in pixel units.

Every random phantom takes either a ``torch.Generator`` or an integer ``seed`` (not both); with
neither it uses torch's global generator (:func:`make_generator`).

Example
-------
>>> check_shape(32), check_range("radius", (0.5, 3.0))
((32, 32), (0.5, 3.0))
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "check_count",
    "check_int_range",
    "check_range",
    "check_shape",
    "generator_device",
    "make_generator",
    "uniform",
]


def check_shape(shape: int | Sequence[int]) -> tuple[int, int]:
    """Return ``shape`` as ``(H, W)``, raising ``ValueError`` unless it holds positive integers.

    Example
    -------
    >>> check_shape(8), check_shape((4, 6))
    ((8, 8), (4, 6))
    """
    if isinstance(shape, bool):
        raise ValueError(f"shape must be an int or a pair of ints, got {shape!r}")
    if isinstance(shape, int):
        shape = (shape, shape)
    try:
        dims = tuple(shape)
    except TypeError:
        raise ValueError(f"shape must be an int or a pair of ints, got {shape!r}") from None
    if len(dims) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) for n in dims):
        raise ValueError(f"shape must be an int or a pair of ints, got {shape!r}")
    if min(dims) <= 0:
        raise ValueError(f"shape must be positive, got {dims}")
    return dims[0], dims[1]


def make_generator(generator: torch.Generator | None, seed: int | None) -> torch.Generator | None:
    """The generator to draw from: ``generator``, a new one seeded with ``seed``, or ``None``
    (torch's global generator).

    Example
    -------
    >>> make_generator(None, 3).initial_seed(), make_generator(None, None)
    (3, None)
    """
    if generator is not None and seed is not None:
        raise ValueError("pass either generator or seed, not both")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        return torch.Generator().manual_seed(seed)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return generator


def generator_device(generator: torch.Generator | None) -> torch.device:
    """The device a generator draws on (the CPU for torch's global generator).

    Example
    -------
    >>> generator_device(None)
    device(type='cpu')
    """
    return torch.device("cpu") if generator is None else generator.device


def check_count(n: int | None, name: str = "n") -> int:
    """``n`` as a positive int (``None`` means 1).

    Example
    -------
    >>> check_count(None), check_count(4)
    (1, 4)
    """
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be a positive int or None, got {n!r}")
    return n


def check_range(
    name: str, value: Sequence[float], *, low: float = 0.0, strict: bool = False
) -> tuple[float, float]:
    """A ``(lo, hi)`` pair of finite numbers with ``low <= lo <= hi`` (``low < lo`` if strict).

    Example
    -------
    >>> check_range("amplitude", [0.3, 1])
    (0.3, 1.0)
    """
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high) of numbers, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"{name} must be finite with low <= high, got {value!r}")
    if lo < low or (strict and lo == low):
        bound = ">" if strict else ">="
        raise ValueError(f"{name} must be {bound} {low}, got {value!r}")
    return lo, hi


def check_int_range(name: str, value: Sequence[int], *, low: int) -> tuple[int, int]:
    """A ``(lo, hi)`` pair of ints with ``low <= lo <= hi``.

    Example
    -------
    >>> check_int_range("n_trees", (1, 4), low=0)
    (1, 4)
    """
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high) of ints, got {value!r}") from None
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{name} must be a pair (low, high) of ints, got {value!r}")
    if lo < low or lo > hi:
        raise ValueError(f"{name} must satisfy {low} <= low <= high, got {value!r}")
    return lo, hi


def uniform(
    lo: float, hi: float, size: int | tuple[int, ...], generator: torch.Generator | None
) -> torch.Tensor:
    """Float64 uniform samples on ``[lo, hi)`` on the generator's device.

    Example
    -------
    >>> u = uniform(2.0, 3.0, 4, torch.Generator().manual_seed(0))
    >>> u.dtype, bool(((u >= 2) & (u < 3)).all())
    (torch.float64, True)
    """
    size = (size,) if isinstance(size, int) else size
    u = torch.rand(
        size, generator=generator, dtype=torch.float64, device=generator_device(generator)
    )
    return lo + (hi - lo) * u
