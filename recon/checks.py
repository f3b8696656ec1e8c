"""Argument validators shared by every part of :mod:`recon`: one implementation of each check.

Each returns the value in its canonical type, or raises ``ValueError`` whose message names the
argument, what it must be and what it got, so a typo in a Hydra config says what to change.

Example
-------
>>> check_int("n_iter", 10, minimum=0)
10
>>> check_positive("lam", 0, allow_zero=True)
0.0
>>> check_positive("lr", -1.0)
Traceback (most recent call last):
...
ValueError: lr must be a finite positive number, got -1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "check_bool",
    "check_choice",
    "check_int",
    "check_n_iter",
    "check_ndim",
    "check_optional_positive",
    "check_positive",
]


def check_int(name: str, value: object, *, minimum: int) -> int:
    """``value`` as an int ``>= minimum`` (bools are refused: ``True`` is not a count).

    Example
    -------
    >>> check_int("batch_size", 4, minimum=1)
    4
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_n_iter(n_iter: object) -> int:
    """An iteration count: an int ``>= 0``.

    Example
    -------
    >>> check_n_iter(0)
    0
    """
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 0:
        raise ValueError(f"n_iter must be a non-negative int, got {n_iter!r}")
    return int(n_iter)


def check_positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    """``value`` as a float, unless it is not a finite positive (or, with ``allow_zero``,
    non-negative) real number.

    Example
    -------
    >>> check_positive("step", 2)
    2.0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a finite {kind} number, got {value}")
    return value


def check_optional_positive(name: str, value: object) -> float | None:
    """``None``, or ``value`` checked by :func:`check_positive`.

    Example
    -------
    >>> check_optional_positive("step", None) is None
    True
    """
    return None if value is None else check_positive(name, value)


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is a bool (``"false"`` from a config is a mistake, not a truth value).

    Example
    -------
    >>> check_bool("nonneg", True)
    True
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``.

    Example
    -------
    >>> check_choice("init", "fbp", ("zero", "fbp"))
    'fbp'
    """
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
    return value


def check_ndim(value: object) -> int:
    """The number of spatial dimensions of a network: 2 or 3.

    Example
    -------
    >>> check_ndim(3)
    3
    """
    if isinstance(value, bool) or value not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3 (spatial dimensions), got {value!r}")
    return int(value)
