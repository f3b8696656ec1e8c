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

import torch
from torch.utils.data import Sampler

__all__ = ["SeededBatchSampler"]


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
