"""Training :class:`~recon.unrolled.Noise2Inverse` from measurements alone (the "X:1" strategy).

Each step reconstructs every angle subset of each sinogram by FBP and fits the network's
output for the mean of the other subsets to each subset's own FBP
(:meth:`recon.unrolled.Noise2Inverse.forward` with ``training_pairs=True``). Batches may be
``(y,)`` or ``(x, y)``: only ``y`` reaches the loss. Validation (where the split has ground
truth) scores the averaged reconstruction against ``x``.

Example
-------
>>> import torch
>>> from operators import Parallel2D, RayTransform
>>> from recon.unrolled import Noise2Inverse
>>> op = RayTransform(Parallel2D((16, 16), n_angles=8), backend="matrix")
>>> task = Noise2InverseTask(op=op)
>>> model = Noise2Inverse(n_splits=2, channels=4, depth=1)
>>> loss = task.loss(model, (torch.rand(2, 1, 8, 23),), step=1)
>>> loss.ndim, bool(loss > 0)
(0, True)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from recon.training.tasks.base import Batch, Task, pair
from recon.training.tasks.self_supervised import measurements

__all__ = ["Noise2InverseTask"]


class Noise2InverseTask(Task):
    """Loss ``MSE(N(mean of the other splits), split)`` over all splits of the batch.

    Parameters
    ----------
    op
        The full-angle ray transform (on the training device); the model splits it.
    """

    def __init__(self, *, op: Any) -> None:
        self.op = op

    def loss(self, model: nn.Module, batch: Batch, *, step: int) -> torch.Tensor:
        denoised, targets = model(measurements(batch), self.op, training_pairs=True)
        return F.mse_loss(denoised, targets)

    def predict(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = pair(batch)
        return model(y, self.op), x
