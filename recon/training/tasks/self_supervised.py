r"""Self-supervised training tasks: a reconstructor learnt from measurements alone.

- :class:`MeasurementConsistencyTask`: :math:`\tfrac1m\|A f(y) - y\|^2` (MC), or its
  unbiased version, SURE (:class:`~recon.training.tasks.self_supervised_losses.GaussianSURE`,
  :class:`~recon.training.tasks.self_supervised_losses.PoissonGaussianSURE`), alone.
- :class:`EquivariantTask`: equivariant imaging (Chen, Tachella and Davies 2021),

  .. math:: \mathcal L = \mathrm{MC}(y) + \alpha\,\| T_g x_1 - f(A T_g x_1) \|^2,
            \qquad x_1 = f(y),

  with :math:`T_g` drawn from a group under which the images are invariant in distribution
  (:class:`~recon.training.tasks.self_supervised_losses.ImageTransforms`). With ``sure`` the MC
  term is SURE and :math:`A T_g x_1` gets fresh noise of the measurement model (robust EI, Chen et
  al. 2022).

Batches may be ``(y,)`` (a :class:`~data_tools.datasets.MeasurementsOnly` dataset, as
``recon-train`` builds with ``data.measurements_only``) or ``(x, y)`` pairs: only ``y`` ever
reaches the loss. Validation, where the validation split has ground truth, scores
``(f(y), x)`` for monitoring; randomness comes from torch's global RNG, which the trainer seeds and
checkpoints.

Example
-------
>>> import torch
>>> from operators import IdentityOperator
>>> class Keep(torch.nn.Module):
...     def forward(self, y, op):
...         return y
>>> task = EquivariantTask(op=IdentityOperator((4, 4)), group="rot90")
>>> float(task.loss(Keep(), (torch.randn(2, 1, 4, 4),), step=1))   # f = I is equivariant
0.0
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from recon.training.tasks.base import Batch, Task, pair
from recon.training.tasks.self_supervised_losses import (
    GaussianSURE,
    ImageTransforms,
    PoissonGaussianSURE,
    measurement_consistency,
)

__all__ = ["EquivariantTask", "MeasurementConsistencyTask", "measurements"]

SURE = GaussianSURE | PoissonGaussianSURE


def measurements(batch: Batch | torch.Tensor) -> torch.Tensor:
    """The measurements ``y`` of a batch: ``(y,)``, a bare tensor, or the ``y`` of ``(x, y)``
    (the ground truth ``x`` is dropped here, before any loss sees it).

    Example
    -------
    >>> measurements((torch.zeros(1), torch.ones(2))).shape
    torch.Size([2])
    """
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and len(batch) in (1, 2):
        return batch[-1]
    raise ValueError(
        "a self-supervised task needs batches (y,) or (x, y), got "
        f"{type(batch).__name__}"
        + (f" of length {len(batch)}" if hasattr(batch, "__len__") else "")
    )


def _check_sure(sure: Any) -> SURE | None:
    if sure is not None and not isinstance(sure, (GaussianSURE, PoissonGaussianSURE)):
        raise ValueError(
            f"sure must be a GaussianSURE, a PoissonGaussianSURE or None, got {type(sure).__name__}"
        )
    return sure


class _MeasurementLoss(Task):
    """MC or SURE of the measurements, and validation on pairs where there are any."""

    def __init__(self, *, op: Any, sure: SURE | None = None, normalize_operator: bool = True):
        self.op = op
        self.sure = _check_sure(sure)
        self.normalize_operator = bool(normalize_operator)
        self._last: dict[str, float] = {}

    def data_loss(self, model: nn.Module, y: torch.Tensor) -> torch.Tensor:
        """MC, or SURE when ``sure`` is given."""
        if self.sure is not None:
            return self.sure(model, y, self.op)
        return measurement_consistency(
            model, y, self.op, normalize_operator=self.normalize_operator
        )

    def predict(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = pair(batch)  # validation only: monitoring where the split has ground truth
        return model(y, self.op), x

    def scalars(self) -> dict[str, float]:
        return dict(self._last)


class MeasurementConsistencyTask(_MeasurementLoss):
    r"""Train on :math:`\tfrac1m\|A f(y) - y\|^2` alone (``sure=None``), or on SURE.

    Parameters
    ----------
    op
        The forward operator (on the training device).
    sure : GaussianSURE or PoissonGaussianSURE, optional
        Replace MC by SURE for that noise model.
    normalize_operator : bool
        Divide the MC residual by ``‖A‖`` (``op.norm()``, cached): the loss on the image's scale.
    """

    def loss(self, model: nn.Module, batch: Batch, *, step: int) -> torch.Tensor:
        loss = self.data_loss(model, measurements(batch))
        self._last = {"data_loss": float(loss.detach())}
        return loss


class EquivariantTask(_MeasurementLoss):
    r"""Equivariant imaging: MC (or SURE) plus :math:`\alpha\|T_g x_1 - f(A T_g x_1)\|^2`.

    Parameters
    ----------
    op
        The forward operator.
    group : str
        Transformation group (:data:`~recon.training.tasks.self_supervised_losses.GROUPS`).
    alpha : float
        Weight of the equivariance term (mean over pixels; MC is a mean over measurements).
    sure : GaussianSURE or PoissonGaussianSURE, optional
        Robust EI: SURE replaces MC, and the transformed image's measurements get fresh noise
        from ``noise``.
    noise : callable, optional
        ``noise(y) -> noisy y``, e.g. :class:`~data_tools.noise.GaussianNoise`; required with
        ``sure``, ignored without.
    normalize_operator : bool
        As for :class:`MeasurementConsistencyTask`.
    """

    def __init__(
        self,
        *,
        op: Any,
        group: str = "rotations",
        alpha: float = 1.0,
        sure: SURE | None = None,
        noise: Any = None,
        normalize_operator: bool = True,
    ) -> None:
        super().__init__(op=op, sure=sure, normalize_operator=normalize_operator)
        self.transforms = ImageTransforms(group)
        self.alpha = float(alpha)
        if not self.alpha >= 0:
            raise ValueError(f"alpha must be ≥ 0, got {alpha}")
        if sure is not None and noise is None:
            raise ValueError(
                "robust EI (sure=...) needs the noise model, noise=..., to re-measure the "
                "transformed images"
            )
        if noise is not None and not callable(noise):
            raise ValueError(f"noise must be callable: noise(y) -> y, got {type(noise).__name__}")
        self.noise = noise if sure is not None else None

    def equivariance(self, model: nn.Module, y: torch.Tensor) -> torch.Tensor:
        r""":math:`\|T_g x_1 - f(A T_g x_1)\|^2` (mean over pixels), :math:`x_1 = f(y)`."""
        x2 = self.transforms(model(y, self.op))
        y2 = self.op(x2)
        if self.noise is not None:
            y2 = self.noise(y2.detach()) - y2.detach() + y2  # fresh noise, gradient through A x2
        return F.mse_loss(model(y2, self.op), x2)

    def loss(self, model: nn.Module, batch: Batch, *, step: int) -> torch.Tensor:
        y = measurements(batch)
        data = self.data_loss(model, y)
        equivariance = self.equivariance(model, y)
        self._last = {
            "data_loss": float(data.detach()),
            "equivariance": float(equivariance.detach()),
        }
        return data + self.alpha * equivariance
