"""Optimisers per parameter group and the learning-rate schedule of the :class:`Trainer`.

Example
-------
>>> import torch
>>> params = {"model": [torch.nn.Parameter(torch.zeros(2))]}
>>> optimizers = make_optimizers(lambda p: torch.optim.SGD(p, lr=0.1), params, task="Supervised")
>>> type(optimizers["model"]).__name__
'SGD'
>>> factor = lr_schedule("cosine", warmup_steps=2, max_steps=10)
>>> [round(factor(count), 3) for count in (0, 1, 2, 6, 10)]
[0.5, 1.0, 1.0, 0.5, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["SCHEDULERS", "lr_schedule", "make_optimizers"]

#: Learning-rate schedules after the linear warm-up.
SCHEDULERS = ("cosine", "constant")


def make_optimizers(
    optimizer: Any, group_parameters: Mapping[str, list[nn.Parameter]], *, task: str
) -> dict[str, torch.optim.Optimizer]:
    """One optimiser per parameter group, from one factory (``optimizer(params)``) for all
    groups or a mapping ``{group: factory}`` naming every group of the task."""
    names = list(group_parameters)
    if isinstance(optimizer, Mapping):
        if sorted(optimizer) != sorted(names):
            raise ValueError(
                f"optimizer gives factories for {sorted(optimizer)}, but the task {task} has "
                f"parameter groups {names}"
            )
        factories = dict(optimizer)
    elif callable(optimizer):
        factories = dict.fromkeys(names, optimizer)
    else:
        raise ValueError(f"optimizer must be callable or a dict of callables, got {optimizer!r}")
    optimizers = {}
    for name in names:
        made = factories[name](group_parameters[name])
        if not isinstance(made, torch.optim.Optimizer):
            raise TypeError(
                "optimizer(parameters) must return a torch.optim.Optimizer, got "
                f"{type(made).__name__}"
            )
        optimizers[name] = made
    return optimizers


def lr_schedule(
    kind: str,
    *,
    warmup_steps: int,
    max_steps: int,
    budget_used: Callable[[], float] | None = None,
) -> Callable[[int], float]:
    """The learning-rate factor of the update that follows ``count`` scheduler steps: linear
    warm-up over ``warmup_steps``, then constant or a cosine decay to 0 at ``max_steps``.

    With ``budget_used`` (the fraction of a time budget spent, in [0, 1]) the decay follows
    the larger of the two fractions, steps or time, so it reaches 0 at whichever limit comes
    first. A plain function (not a callable object), so ``LambdaLR.state_dict`` stores nothing
    of it: a resumed run follows its own limits.

    Example
    -------
    >>> half_the_time = lr_schedule("cosine", warmup_steps=0, max_steps=100,
    ...                             budget_used=lambda: 0.5)
    >>> round(half_the_time(10), 3)  # 10 % of the steps, but half the time: cos at 0.5
    0.5
    """

    def factor(count: int) -> float:
        if count < warmup_steps:
            return (count + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        progress = (count - warmup_steps) / max(1, max_steps - warmup_steps)
        if budget_used is not None:
            progress = max(progress, budget_used())
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor
