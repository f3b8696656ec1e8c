"""Seeded synthetic datasets, simulated on the fly, and an in-memory cache of any dataset.

Sample ``i`` of :class:`SyntheticDataset` and :class:`SyntheticImages` draws from
:func:`~data_tools.datasets.common.sample_generator` ``(seed, i)`` alone: the same sample in every
call, DataLoader worker and process.

Example
-------
>>> import functools, torch
>>> from operators import Parallel2D, RayTransform
>>> A = RayTransform(Parallel2D(image_shape=(32, 32), n_angles=10), backend="matrix")
>>> data = SyntheticDataset(phantom=functools.partial(torch.rand), operator=A, size=4, seed=1)
>>> x, y = data[0]
>>> x.shape, y.shape
(torch.Size([1, 32, 32]), torch.Size([1, 10, 46]))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from data_tools.datasets.common import (
    Noise,
    Phantom,
    Simulator,
    check_index,
    check_size,
    measure,
    non_negative_int,
    sample_generator,
    with_channel,
)

if TYPE_CHECKING:
    from operators import OperatorLike

__all__ = ["MemoryCachedDataset", "SyntheticDataset", "SyntheticImages"]


class SyntheticDataset(torch.utils.data.Dataset):
    """Seeded on-the-fly (x, y) pairs: sample ``i`` is the same every time, everywhere.

    Sample ``i`` draws from :func:`sample_generator` ``(seed, i)``: first the phantom, then the
    noise. Give either ``phantom`` and ``operator``, or ``simulator``.

    Parameters
    ----------
    phantom
        ``phantom(shape, *, generator) -> Tensor (H, W)``, called with ``operator.domain_shape``.
    operator
        Forward operator: ``y = operator(x)``, mapping ``(H, W)`` to ``operator.range_shape``.
    noise
        Optional ``noise(y, generator=None) -> Tensor``, applied to ``y`` (also after a
        ``simulator``, so pass it only if the simulator adds none).
    size
        Number of samples (at least 1).
    seed
        Non-negative base seed.
    simulator
        ``simulator(generator) -> (x, y)`` replacing the phantom/operator path, e.g. one that
        simulates on a finer grid to avoid the inverse crime.

    Returns ``(x, y)`` float32 CPU tensors with a channel dimension: ``(1, H, W)`` and
    ``(1, *operator.range_shape)``.

    Example
    -------
    >>> import functools, torch
    >>> from operators import Parallel2D, RayTransform
    >>> A = RayTransform(Parallel2D(image_shape=(32, 32), n_angles=10), backend="matrix")
    >>> data = SyntheticDataset(phantom=functools.partial(torch.rand), operator=A, size=8)
    >>> len(data), data[3][1].shape
    (8, torch.Size([1, 10, 46]))
    >>> torch.equal(data[3][0], data[3][0])
    True
    """

    def __init__(
        self,
        *,
        phantom: Phantom | None = None,
        operator: OperatorLike | None = None,
        noise: Noise | None = None,
        size: int,
        seed: int = 0,
        simulator: Simulator | None = None,
    ) -> None:
        if simulator is not None and (phantom is not None or operator is not None):
            raise ValueError("give either phantom and operator, or simulator, not both")
        if simulator is None and (phantom is None or operator is None):
            raise ValueError(
                "SyntheticDataset needs phantom and operator, or simulator; got "
                f"phantom={'set' if phantom is not None else None}, "
                f"operator={'set' if operator is not None else None}"
            )
        check_size(size)
        self.phantom = phantom
        self.operator = operator
        self.noise = noise
        self.size = size
        self.seed = non_negative_int(seed, "seed")
        self.simulator = simulator

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = check_index(index, self.size)
        generator = sample_generator(self.seed, i)
        with torch.no_grad():
            if self.simulator is not None:
                x, y = self.simulator(generator)
                if self.noise is not None:
                    y = self.noise(y, generator=generator)
            else:
                shape = tuple(self.operator.domain_shape)
                x = self.phantom(shape, generator=generator).to(torch.float32)
                if tuple(x.shape) != shape:
                    raise ValueError(
                        f"phantom returned shape {tuple(x.shape)}, expected the operator's "
                        f"domain_shape {shape}"
                    )
                y = measure(x, self.operator, self.noise, generator)
        return with_channel(x), with_channel(y)

    def __repr__(self) -> str:
        source = "simulator" if self.simulator is not None else "phantom+operator"
        return f"{type(self).__name__}(size={self.size}, seed={self.seed}, {source})"


class SyntheticImages(torch.utils.data.Dataset):
    """Seeded on-the-fly images alone, ``(x,)``: a :class:`SyntheticDataset` without measurements.

    For training that needs only clean images (denoisers, generative models), where simulating
    the data would be wasted work. Sample ``i`` calls ``render(sample_generator(seed, i))``; with
    the ``render`` of :func:`recon.data.build_split` (``images_only``) it is the same image as
    sample ``i`` of the full dataset of that split, since the phantom is drawn before the noise.

    Parameters
    ----------
    render
        ``render(generator) -> Tensor (H, W)``.
    size
        Number of samples (at least 1).
    seed
        Non-negative base seed.

    Example
    -------
    >>> images = SyntheticImages(lambda g: torch.rand(8, 8, generator=g), size=3, seed=1)
    >>> len(images), images[2][0].shape, torch.equal(images[2][0], images[2][0])
    (3, torch.Size([1, 8, 8]), True)
    """

    def __init__(
        self, render: Callable[[torch.Generator], torch.Tensor], *, size: int, seed: int = 0
    ) -> None:
        check_size(size)
        self.render = render
        self.size = size
        self.seed = non_negative_int(seed, "seed")

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor]:
        i = check_index(index, self.size)
        with torch.no_grad():
            x = self.render(sample_generator(self.seed, i))
        return (with_channel(x),)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, seed={self.seed})"


class MemoryCachedDataset(torch.utils.data.Dataset):
    """Keeps every sample of ``dataset`` in memory after its first access.

    For synthetic sets whose samples are costly to simulate (a PAT time-stepper solve per
    sample) and that training visits many times. Each process holds its own cache (use it with
    ``num_workers=0``); samples are returned as stored, so do not modify them in place.

    Example
    -------
    >>> calls = []
    >>> class Slow(torch.utils.data.Dataset):
    ...     def __len__(self):
    ...         return 3
    ...     def __getitem__(self, i):
    ...         calls.append(i)
    ...         return torch.tensor([float(i)])
    >>> data = MemoryCachedDataset(Slow())
    >>> [float(data[i]) for i in (0, 1, 0, 0)], calls
    ([0.0, 1.0, 0.0, 0.0], [0, 1])
    """

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset
        self._cache: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        index = check_index(index, len(self))
        if index not in self._cache:
            self._cache[index] = self.dataset[index]
        return self._cache[index]


class MeasurementsOnly(torch.utils.data.Dataset):
    """The measurements ``(y,)`` of a dataset of ``(x, y)`` pairs, without the ground truth.

    What self-supervised training sees: a dataset that cannot hand ``x`` to a loss by mistake.

    Example
    -------
    >>> pairs = [(torch.zeros(1, 2, 2), torch.ones(1, 3))]
    >>> only = MeasurementsOnly(pairs)
    >>> len(only), len(only[0]), only[0][0].shape
    (1, 1, torch.Size([1, 3]))
    """

    def __init__(self, pairs: torch.utils.data.Dataset) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor]:
        sample = self.pairs[index]
        if not isinstance(sample, (tuple, list)) or len(sample) != 2:
            raise ValueError(
                "MeasurementsOnly needs a dataset of (x, y) pairs, got samples of type "
                f"{type(sample).__name__}"
            )
        return (sample[1],)
