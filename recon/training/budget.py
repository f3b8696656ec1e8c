"""The time budget of a training run (``Trainer(max_time=...)``, ``trainer.max_time``).

The clock counts the training seconds of a run over all its starts: a resumed run starts it at
the seconds its checkpoint recorded, so it honours the time that is left. Under
torch.distributed every rank takes rank 0's clock, so all ranks follow the same learning rate
and stop at the same step.

Example
-------
>>> clock = BudgetClock(max_time=None)  # no budget: never spent
>>> clock.start(0.0); clock.tick(), clock.used()
(0.0, 0.0)
>>> clock = BudgetClock(max_time=2.0)   # minutes
>>> clock.start(90.0)                   # a resumed run that had trained for 90 s
>>> round(clock.used(), 2)
0.75
"""

from __future__ import annotations

import time

import torch
import torch.distributed as dist

__all__ = ["BudgetClock"]


class BudgetClock:
    """Seconds spent against ``max_time`` minutes (``None``: no budget)."""

    def __init__(self, max_time: float | None) -> None:
        self.max_time = max_time
        self._start = time.perf_counter()
        self._used = 0.0

    def start(self, elapsed_before: float) -> None:
        """Start counting, ``elapsed_before`` seconds already spent."""
        self._start = time.perf_counter() - elapsed_before
        self._used = self._fraction(elapsed_before)

    def elapsed(self) -> float:
        """Training seconds of the run, over all its starts."""
        return time.perf_counter() - self._start

    def used(self) -> float:
        """The fraction of the budget spent at the last :meth:`tick` (0 without a budget)."""
        return self._used

    def tick(self, device: torch.device | str = "cpu") -> float:
        """Read the clock (rank 0's, under torch.distributed) and return the fraction spent."""
        if self.max_time is None:
            return 0.0
        elapsed = torch.tensor([self.elapsed()], dtype=torch.float64)
        if dist.is_available() and dist.is_initialized():
            if dist.get_backend() == "nccl":
                elapsed = elapsed.to(device)
            dist.broadcast(elapsed, src=0)
        self._used = self._fraction(float(elapsed.cpu()))
        return self._used

    def _fraction(self, seconds: float) -> float:
        return 0.0 if self.max_time is None else min(1.0, seconds / (60.0 * self.max_time))
