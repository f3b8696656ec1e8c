"""Supervised reconstruction: ``MSE(model(y, op), x)`` on pairs ``(x, y)``.

Every reconstructor follows ``forward(y, op) -> x``, so most learned ones train with
:class:`SupervisedTask` (the default of ``recon-train``).

Example
-------
>>> import torch
>>> class Double(torch.nn.Module):
...     def forward(self, y, op):
...         return 2 * y
>>> task = SupervisedTask(op=None)
>>> x, y = torch.ones(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
>>> float(task.loss(Double(), (x, y), step=1))  # (2 - 1)^2
1.0
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from recon.training.tasks.base import Batch, Objective, Predict, Task, pair

__all__ = ["SupervisedTask", "reconstruction_predict", "supervised_objective"]


class SupervisedTask(Task):
    """Train a reconstructor on pairs ``(x, y)``: loss ``MSE(model(y, op), x)``, validation
    ``(model(y, op), x)``.

    Parameters
    ----------
    op
        The operator handed to the reconstructor (on the training device).
    """

    def __init__(self, *, op: Any) -> None:
        self.op = op

    def loss(self, model: nn.Module, batch: Batch, *, step: int) -> torch.Tensor:
        x, y = pair(batch)
        return F.mse_loss(model(y, self.op), x)

    def predict(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = pair(batch)
        return model(y, self.op), x


def supervised_objective(op: Any) -> Objective:
    """:meth:`SupervisedTask.loss` as a plain ``objective(model, batch)``.

    Example
    -------
    >>> import torch
    >>> class Identity(torch.nn.Module):
    ...     def forward(self, y, op):
    ...         return y
    >>> float(supervised_objective(None)(Identity(), (torch.zeros(1, 4), torch.ones(1, 4))))
    1.0
    """
    task = SupervisedTask(op=op)

    def objective(model: nn.Module, batch: Batch) -> torch.Tensor:
        return task.loss(model, batch, step=0)

    return objective


def reconstruction_predict(op: Any) -> Predict:
    """:meth:`SupervisedTask.predict` as a plain ``predict(model, batch)``.

    Example
    -------
    >>> import torch
    >>> class Identity(torch.nn.Module):
    ...     def forward(self, y, op):
    ...         return y
    >>> x, y = torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    >>> estimate, truth = reconstruction_predict(None)(Identity(), (x, y))
    >>> float(estimate.mean()), float(truth.mean())
    (1.0, 0.0)
    """
    return SupervisedTask(op=op).predict
