r"""Unsupervised training of learned mirror descent (:class:`recon.mirror.LearnedMirrorDescent`):
the objective along the iterates plus the forward-backward consistency of the mirror maps.

Example
-------
>>> import torch
>>> from models.icnn import Quadratic
>>> from operators import IdentityOperator
>>> from recon.mirror import LearnedMirrorDescent
>>> from recon.solvers import SmoothedTV
>>> op = IdentityOperator((4, 4))
>>> gd = LearnedMirrorDescent(mirror_map=Quadratic(), inverse_map=Quadratic(),
...                           objective=SmoothedTV(lam=0.0), n_iter=1, step_init=1.0,
...                           init="zero")
>>> y = torch.ones(2, 1, 4, 4)
>>> task = MirrorTask(op=op)
>>> round(task.loss(gd, (torch.zeros_like(y), y), step=1).item(), 6)  # f(x_1)/f(x_0)
0.0
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from recon.checks import check_positive
from recon.training.tasks.base import Batch, Task
from recon.training.tasks.supervised import reconstruction_predict

__all__ = ["MirrorTask"]


class MirrorTask(Task):
    r"""The unsupervised training loss of :class:`~recon.mirror.LearnedMirrorDescent`.

    On a batch ``(x, y)`` (``x`` is ignored: no ground truth is used) or ``(y,)``, with the
    iterates :math:`x_0, …, x_n` of ``model(y, op)``:

    .. math::

        \mathcal L = \frac1{N}\sum_{i=1}^N \Big[\frac1n \sum_{k=1}^n
            \frac{f(x_k^{(i)})}{f(x_0^{(i)})}
            + w\,\frac1n\sum_{k=0}^{n-1}
            \operatorname{mean}\big|\nabla\varphi(\nabla\psi(x_k^{(i)})) - x_k^{(i)}\big|\Big],

    the objective along the iterates (normalised by its detached value at :math:`x_0`, so the
    loss does not depend on the data's scale) plus the forward-backward consistency, weighted
    by ``consistency_weight`` :math:`w`. Validation still reports the PSNR of the
    reconstructions ``(model(y, op), x)`` against the ground truth. In a ``recon-train`` config
    (``experiment=ellipses/mirror``)::

        objective:
          _target_: recon.training.tasks.MirrorTask
          consistency_weight: 10.0

    Parameters
    ----------
    op
        The operator handed to the model.
    consistency_weight : float
        :math:`w \ge 0`.
    """

    def __init__(self, *, op: Any, consistency_weight: float = 10.0) -> None:
        self.op = op
        self.consistency_weight = check_positive(
            "consistency_weight", consistency_weight, allow_zero=True
        )
        self._predict = reconstruction_predict(op)

    def loss(self, model: nn.Module, batch: Batch, *, step: int) -> torch.Tensor:
        if isinstance(batch, torch.Tensor):
            y = batch
        elif isinstance(batch, (tuple, list)) and len(batch) in (1, 2):
            y = batch[-1]
        else:
            raise ValueError("MirrorTask needs batches (x, y) or (y,)")
        trace = model(y, self.op, trace=True)
        values = trace.objective
        tiny = torch.finfo(values.dtype).tiny
        relative = values[1:] / values[0].detach().abs().clamp_min(tiny)
        loss = relative.mean()
        if self.consistency_weight > 0 and trace.consistency.numel():
            loss = loss + self.consistency_weight * trace.consistency.mean()
        return loss

    def predict(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return self._predict(model, batch)
