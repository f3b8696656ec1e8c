"""The training-task contract: what is learned and how, for the one
:class:`~recon.training.Trainer`.

A task is a small object with

- ``loss(model, batch, *, step) -> scalar tensor``: the loss of one optimiser step;
- ``predict(model, batch) -> (estimate, truth)``: what validation scores (PSNR, SSIM), or no
  ``predict`` (``Task.predict`` not overridden) for tasks without validation;
- optionally ``parameter_groups(model)`` and ``updates(model, batch, *, step)`` for tasks with
  several optimisers (an adversarial task updates its critic, then its generator): each yielded
  ``(group, loss)`` is one optimiser step of that group, taken before the next loss is computed;
- optionally ``scalars()``: extra numbers the trainer logs as ``train/<name>`` after each step.
- optionally ``images(model)``: image grids the trainer logs every ``val_every`` steps (a
  generator's samples).

``batch`` is a tuple of tensors on the training device. Under torch.distributed, ``model`` is the
DDP wrapper: call it, not its submodules, so that gradients are synchronised.

Example
-------
>>> import torch
>>> class Denoise(Task):
...     def loss(self, model, batch, *, step):
...         (x,) = batch
...         return (model(x + 0.1) - x).square().mean()
>>> task = Denoise()
>>> float(task.loss(torch.nn.Identity(), (torch.zeros(2, 3),), step=1))
0.010000000707805157
>>> task.validates, list(task.parameter_groups(torch.nn.Linear(1, 1)))
(False, ['model'])
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

__all__ = [
    "Batch",
    "FunctionTask",
    "Objective",
    "Predict",
    "Task",
    "as_task",
    "image_batch",
    "pair",
]

Batch = tuple[Any, ...]
Objective = Callable[..., torch.Tensor]
Predict = Callable[[nn.Module, Batch], tuple[torch.Tensor, torch.Tensor]]


class Task:
    """Base class of training tasks (see the module docstring for the contract)."""

    def loss(self, model: nn.Module, batch: Batch, *, step: int) -> torch.Tensor:
        """The scalar loss of one optimiser step at ``step`` (counted from 1)."""
        raise NotImplementedError(f"{type(self).__name__} must implement loss(model, batch, step)")

    def predict(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(estimate, truth)`` of shapes ``(B, C, *image)`` for validation."""
        raise NotImplementedError(
            f"{type(self).__name__} has no validation prediction; train it with val_data=None"
        )

    @property
    def validates(self) -> bool:
        """Whether this task can validate (it overrides :meth:`predict`)."""
        return type(self).predict is not Task.predict

    def parameter_groups(self, model: nn.Module) -> dict[str, list[nn.Parameter]]:
        """Parameters by optimiser group; one group, ``"model"``, holding all of them, by default
        (parameters that never get a gradient are left alone by the optimiser)."""
        return {"model": list(model.parameters())}

    def updates(
        self, model: nn.Module, batch: Batch, *, step: int
    ) -> Iterator[tuple[str, torch.Tensor]]:
        """The optimiser steps of one training step: ``(group, loss)`` pairs, in order."""
        yield "model", self.loss(model, batch, step=step)

    def scalars(self) -> dict[str, float]:
        """Extra numbers to log after a training step (``train/<name>``); none by default."""
        return {}

    def images(self, model: nn.Module) -> dict[str, Any]:
        """Image grids to log every ``val_every`` steps and after the last (``tag -> (H, W)``
        floats in [0, 1]), e.g. a generator's samples; none by default."""
        return {}


def _accepts_step(function: Callable) -> bool:
    try:
        return "step" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


class FunctionTask(Task):
    """A task from plain callables: ``objective(model, batch[, step=])`` and, optionally,
    ``predict(model, batch)``.

    Example
    -------
    >>> task = FunctionTask(lambda model, batch: model(batch[0]).sum())
    >>> float(task.loss(torch.nn.Identity(), (torch.ones(3),), step=1)), task.validates
    (3.0, False)
    """

    def __init__(self, objective: Objective, predict: Predict | None = None) -> None:
        if not callable(objective):
            raise ValueError("objective must be callable: objective(model, batch) -> loss")
        if predict is not None and not callable(predict):
            raise ValueError("predict must be callable: predict(model, batch) -> (estimate, truth)")
        self.objective, self._predict = objective, predict
        self._takes_step = _accepts_step(objective)

    def loss(self, model: nn.Module, batch: Batch, *, step: int) -> torch.Tensor:
        if self._takes_step:
            return self.objective(model, batch, step=step)
        return self.objective(model, batch)

    def predict(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if self._predict is None:
            return super().predict(model, batch)
        return self._predict(model, batch)

    @property
    def validates(self) -> bool:
        return self._predict is not None


def as_task(task: Any) -> Task:
    """``task`` if it is a :class:`Task`; an ``(objective, predict)`` pair as a
    :class:`FunctionTask`; otherwise a ``ValueError`` saying what a task is.

    Example
    -------
    >>> as_task((lambda m, b: b[0].sum(), None)).validates
    False
    """
    if isinstance(task, Task):
        return task
    if isinstance(task, tuple) and len(task) == 2 and callable(task[0]):
        return FunctionTask(*task)
    raise ValueError(
        "a training task must be a recon.training.tasks.Task (loss/predict) or a pair "
        f"(objective, predict), got {type(task).__name__}"
    )


def pair(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of a supervised batch, or a ``ValueError`` naming what came instead.

    Example
    -------
    >>> x, y = pair((torch.zeros(1), torch.ones(1)))
    >>> float(y)
    1.0
    """
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError(
            "a supervised task needs batches (x, y), got "
            f"{type(batch).__name__}"
            + (f" of length {len(batch)}" if hasattr(batch, "__len__") else "")
        )
    return batch[0], batch[1]


def image_batch(batch: Any) -> torch.Tensor:
    """The images of a batch: ``x`` of ``(x, y)`` pairs, ``(x,)`` or a bare tensor.

    Example
    -------
    >>> image_batch((torch.zeros(2, 1, 4, 4), torch.ones(2, 3))).shape
    torch.Size([2, 1, 4, 4])
    """
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise ValueError(f"expected a batch of images x, (x,) or (x, y), got {type(batch).__name__}")
