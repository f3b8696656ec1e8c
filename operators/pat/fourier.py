"""Small Fourier helpers shared by the PAT operators."""

from __future__ import annotations

import math

import numpy as np


def is_smooth(n: int, primes: tuple[int, ...] = (2, 3, 5)) -> bool:
    """True when ``n`` has no prime factor outside ``primes``."""
    for p in primes:
        while n % p == 0 and n > 1:
            n //= p
    return n == 1


def fast_len(n: int) -> int:
    """The smallest ``m ≥ n`` whose prime factors are 2, 3 and 5 (fast FFT sizes)."""
    m = max(int(math.ceil(n)), 1)
    while not is_smooth(m):
        m += 1
    return m


def half_weights(n: int) -> np.ndarray:
    """Multiplicities of the ``n // 2 + 1`` non-negative frequencies of a length-``n`` real
    even signal: 1 for DC (and Nyquist when ``n`` is even), 2 for the others."""
    w = np.full(n // 2 + 1, 2.0)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    return w
