"""The trainer's data order: one seeded permutation per epoch, split across ranks.

Example
-------
>>> sampler = SeededBatchSampler(5, batch_size=2, seed=0, rank=0, world_size=1)
>>> sampler.new_epoch()
>>> sorted(i for batch in sampler for i in batch)
[0, 1, 2, 3, 4]
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler

__all__ = ["SeededBatchSampler", "dataset_length", "to_device"]


class SeededBatchSampler(Sampler[list[int]]):
    """Batches of one seeded permutation per epoch; under torch.distributed, this rank's share.

    :meth:`new_epoch` records the generator state (:attr:`epoch_state`), draws ``randperm(size)``
    from :attr:`generator`, pads it by wrapping around to a multiple of ``world_size`` (as
    :class:`torch.utils.data.DistributedSampler`), keeps the indices ``rank::world_size`` and cuts
    them into batches of ``batch_size`` (the last may be smaller). Iterating yields that epoch's
    batches from batch ``start`` on (for resuming in the middle of an epoch), however often a
    DataLoader calls ``iter``. Every rank gets the same number of batches.
    """

    def __init__(self, size: int, *, batch_size: int, seed: int, rank: int, world_size: int):
        self.size, self.batch_size = size, batch_size
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator()
        self.generator.manual_seed(seed)
        self.epoch_state = self.generator.get_state()
        self.batches_per_epoch = math.ceil(math.ceil(size / world_size) / batch_size)
        self._batches: list[list[int]] = []
        self._start = 0

    def new_epoch(self, *, start: int = 0) -> None:
        """Draw the next epoch's permutation; iteration will begin at batch ``start``."""
        self.epoch_state = self.generator.get_state()
        order = torch.randperm(self.size, generator=self.generator).tolist()
        total = math.ceil(self.size / self.world_size) * self.world_size
        while len(order) < total:
            order += order[: total - len(order)]
        mine = order[self.rank : total : self.world_size]
        self._batches = [
            mine[i : i + self.batch_size] for i in range(0, len(mine), self.batch_size)
        ]
        self._start = start

    def __len__(self) -> int:
        return len(self._batches) - self._start if self._batches else self.batches_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches[self._start :])


def dataset_length(data: Any, name: str) -> int:
    """``len(data)``, or ``ValueError`` naming ``name`` for an iterable-style or empty dataset.

    Example
    -------
    >>> dataset_length([1, 2, 3], "train_data")
    3
    """
    try:
        size = len(data)
    except TypeError:
        raise ValueError(f"{name} must be a map-style dataset with a length") from None
    if size < 1:
        raise ValueError(f"{name} is empty")
    return size


def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors in (nested) tuples, lists and dicts moved to ``device``; lists become tuples.

    Example
    -------
    >>> to_device([torch.zeros(1), {"y": torch.ones(1)}], torch.device("cpu"))
    (tensor([0.]), {'y': tensor([1.])})
    """
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return tuple(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch
