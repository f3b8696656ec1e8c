"""Argument checks shared by the networks: one implementation of each.

Each returns the value in its canonical form or raises ``ValueError`` naming the argument, what it
must be and what it got, so a typo in a Hydra config says what to change.

Example
-------
>>> check_positive_int("channels", 32), check_ndim(3), normalise_name("norm", "Batch", ("batch",))
(32, 3, 'batch')
>>> image_levels(64)                      # 64 = 4 · 2**4
4
"""

from __future__ import annotations

import math

__all__ = [
    "check_latent_dim",
    "check_ndim",
    "check_positive_int",
    "image_levels",
    "normalise_name",
]


def check_positive_int(name: str, value: object, *, minimum: int = 1) -> int:
    """``value`` if it is an int ≥ ``minimum`` (bools rejected), else ``ValueError``.

    Example
    -------
    >>> check_positive_int("depth", 0, minimum=0)
    0
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_ndim(ndim: object) -> int:
    """``ndim`` if it is 2 or 3 (spatial dimensions), else ``ValueError``.

    Example
    -------
    >>> check_ndim(2)
    2
    """
    if isinstance(ndim, bool) or ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3 (spatial dimensions), got {ndim!r}")
    return int(ndim)


def normalise_name(kind: str, name: object, choices: tuple[str, ...]) -> str:
    """``name`` lower-cased with ``-`` read as ``_`` (``None`` is ``"none"``), if it is one of
    ``choices``; else ``ValueError`` listing them.

    Example
    -------
    >>> normalise_name("activation", "Leaky-ReLU", ("relu", "leaky_relu"))
    'leaky_relu'
    """
    if name is None:
        return "none"
    if not isinstance(name, str) or name.lower().replace("-", "_") not in choices:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {', '.join(choices)} or None")
    return name.lower().replace("-", "_")


def check_latent_dim(latent_dim: object) -> int:
    """The size of a latent code: an int ≥ 1.

    Example
    -------
    >>> check_latent_dim(128)
    128
    """
    return check_positive_int("latent_dim", latent_dim)


def image_levels(image_size: object) -> int:
    """Number of 2× resolution steps between ``image_size`` and 4 (``image_size = 4 · 2**n``).

    Example
    -------
    >>> image_levels(8), image_levels(128)
    (1, 5)
    """
    size = check_positive_int("image_size", image_size, minimum=8)
    n = int(round(math.log2(size / 4)))
    if 4 * 2**n != size:
        raise ValueError(f"image_size must be 4 · 2**n (8, 16, 32, 64, 128, ...), got {size}")
    return n
