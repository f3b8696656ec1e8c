"""What every dataset shares: per-sample seeding, index and size checks, the channel dimension.

Reproducibility: sample ``i`` of a seeded dataset draws its randomness from a generator seeded by
``(seed, i)`` alone (:func:`sample_generator`), so it is the same sample in every call, DataLoader
worker and process, whatever the order of access.

Example
-------
>>> check_index(-1, 5), with_channel(torch.zeros(2, 3)).shape
(4, torch.Size([1, 2, 3]))
"""

from __future__ import annotations

from collections.abc import Callable
from operator import index as to_index
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from operators import OperatorLike

__all__ = [
    "Noise",
    "Phantom",
    "Simulator",
    "check_index",
    "check_size",
    "measure",
    "non_negative_int",
    "sample_generator",
    "with_channel",
]

#: ``phantom(shape, *, generator) -> image (H, W)``.
Phantom = Callable[..., torch.Tensor]
#: ``noise(y, generator=None) -> y_noisy``.
Noise = Callable[..., torch.Tensor]
#: ``simulator(generator) -> (x, y)``.
Simulator = Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def sample_generator(seed: int, index: int) -> torch.Generator:
    """A CPU :class:`torch.Generator` seeded from ``(seed, index)`` alone.

    The pair goes through :class:`numpy.random.SeedSequence`, so neighbouring seeds and indices give
    unrelated streams (unlike ``seed * k + index``, which collides for large indices).

    Parameters
    ----------
    seed, index
        Non-negative integers.

    Returns
    -------
    torch.Generator
        A fresh generator; the same pair always gives the same stream.

    Example
    -------
    >>> a = torch.rand(3, generator=sample_generator(0, 7))
    >>> b = torch.rand(3, generator=sample_generator(0, 7))
    >>> torch.equal(a, b)
    True
    """
    seed, index = non_negative_int(seed, "seed"), non_negative_int(index, "index")
    state = np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0]
    generator = torch.Generator()
    generator.manual_seed(int(state))
    return generator


def non_negative_int(value: Any, name: str) -> int:
    """``value`` as an int ``>= 0`` (bools refused), else ``ValueError`` naming ``name``.

    Example
    -------
    >>> non_negative_int(3, "seed")
    3
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    try:
        value = to_index(value)
    except TypeError:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value}")
    return value


def check_size(size: Any) -> None:
    """Refuse anything but an int ``size >= 1`` (the number of samples of a dataset).

    Example
    -------
    >>> check_size(4)
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an int >= 1, got {size!r}")


def check_index(index: Any, length: int) -> int:
    """``index`` as an int in ``[0, length)``; negative indices count from the end.

    Raises ``TypeError`` for a non-integer and ``IndexError`` for one out of range, as a
    sequence does.

    Example
    -------
    >>> check_index(-2, 10)
    8
    """
    try:
        i = to_index(index)
    except TypeError:
        raise TypeError(f"dataset index must be an int, got {type(index).__name__}") from None
    if not -length <= i < length:
        raise IndexError(f"index {i} out of range for a dataset of {length} samples")
    return i + length if i < 0 else i


def with_channel(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` as a contiguous float32 CPU tensor with a leading channel dimension.

    Example
    -------
    >>> with_channel(torch.zeros(4, 4, dtype=torch.float64)).dtype
    torch.float32
    """
    return tensor.detach().to(device="cpu", dtype=torch.float32).unsqueeze(0).contiguous()


def measure(
    x: torch.Tensor, operator: OperatorLike, noise: Noise | None, generator: torch.Generator
) -> torch.Tensor:
    """``y = operator(x)``, plus ``noise(y, generator=generator)`` when a noise model is given,
    without gradients.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> measure(torch.ones(2), IdentityOperator((2,)), None, torch.Generator())
    tensor([1., 1.])
    """
    with torch.no_grad():
        y = operator(x)
        if noise is not None:
            y = noise(y, generator=generator)
    return y
