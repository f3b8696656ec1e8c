r"""Training a denoiser for plug-and-play reconstruction, on clean images with random noise levels.

:class:`DenoisingTask` is what ``recon-train experiment=ellipses/pnp_denoiser`` trains
(``conf/objective/denoising.yaml``): the clean images ``x`` of the data's ``(x, y)`` pairs (the
measurements are unused) plus Gaussian noise of a random level per image; validation denoises the
validation images at a fixed, seeded noise. :func:`denoising_objective` and
:func:`denoising_predict` are its two halves as plain callables.

Example
-------
>>> import torch
>>> from models.dncnn import DnCNN
>>> _ = torch.manual_seed(0)
>>> task = DenoisingTask(sigma_max=0.1)
>>> loss = task.loss(DnCNN(channels=4, depth=3), (torch.rand(2, 1, 8, 8),), step=1)
>>> loss.ndim, bool(loss > 0), task.validates
(0, True, True)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from recon.checks import check_int, check_positive
from recon.training.tasks.base import Batch, Objective, Predict, Task, image_batch

__all__ = ["DenoisingTask", "denoising_objective", "denoising_predict"]


def _random_patches(x: torch.Tensor, size: int) -> torch.Tensor:
    """One random ``size``-wide patch per image (positions from torch's global RNG)."""
    spatial = x.shape[2:]
    if any(size > n for n in spatial):
        raise ValueError(f"patch_size {size} is larger than the images {tuple(spatial)}")
    patches = []
    for image in x:
        corner = [int(torch.randint(0, n - size + 1, ())) for n in spatial]
        index = tuple(slice(c, c + size) for c in corner)
        patches.append(image[(slice(None), *index)])
    return torch.stack(patches)


class DenoisingTask(Task):
    r"""Train a denoiser ``model(x, sigma)`` on clean images with random noise levels.

    The loss of a batch of clean images :math:`x_b` (the ``x`` of ``(x, y)`` pairs; ``y`` is
    unused), optionally cut to one random ``patch_size`` patch each, with
    :math:`\sigma_b \sim U[\sigma_{\min}, \sigma_{\max}]` and :math:`n_b \sim N(0, I)`, is

    .. math:: \frac1{B}\sum_b \frac{1}{|x_b|}\|D_\theta(x_b + \sigma_b n_b, \sigma_b) - x_b\|^2
              \;+\; w\,\frac1B\sum_b \max\big(0,\ \|\nabla^2 g_{\sigma_b}(x_b + \sigma_b n_b)\|
              - c\big),

    the second term only with ``jacobian_weight`` :math:`w > 0` (for a
    :class:`models.GSDenoiser`; Hurault et al. 2022's penalty pushing the Lipschitz constant of
    :math:`\nabla g` below :math:`c` < 1, estimated by ``jacobian_iter`` power iterations).
    Randomness comes from torch's global RNG, which the trainer seeds and checkpoints.

    Validation predicts :math:`(D(x + \sigma_{val} n, \sigma_{val}), x)`, the noise :math:`n` of a
    batch drawn from a generator seeded with ``seed`` at every call, so the validation PSNR of a
    fixed set is deterministic.

    Parameters
    ----------
    op
        Unused: ``recon-train`` hands every task the operator; denoisers learn from images alone.
    sigma_min, sigma_max : float
        Range of the training noise levels (image units), ``0 ≤ sigma_min ≤ sigma_max``.
    sigma_val : float
        Validation noise level.
    patch_size : int, optional
        Train on random square patches of this size (faster; the networks are convolutional).
    jacobian_weight : float
        Weight :math:`w` of the Lipschitz penalty (0: none).
    jacobian_target : float
        Its threshold :math:`c`.
    jacobian_iter : int
        Power iterations of its estimate.
    seed : int
        Seed of the validation noise.

    Example
    -------
    >>> identity = lambda x, sigma: x
    >>> estimate, truth = DenoisingTask(sigma_val=0.1).predict(identity, (torch.zeros(2, 1, 8, 8),))
    >>> round(float(estimate.std()), 1)
    0.1
    """

    def __init__(
        self,
        *,
        op: Any = None,
        sigma_min: float = 0.0,
        sigma_max: float = 0.2,
        sigma_val: float = 0.05,
        patch_size: int | None = None,
        jacobian_weight: float = 0.0,
        jacobian_target: float = 0.9,
        jacobian_iter: int = 5,
        seed: int = 0,
    ) -> None:
        del op  # denoisers are trained on images alone
        self.sigma_min = check_positive("sigma_min", sigma_min, allow_zero=True)
        self.sigma_max = check_positive("sigma_max", sigma_max, allow_zero=True)
        if self.sigma_max < self.sigma_min:
            raise ValueError(
                f"sigma_max ({self.sigma_max}) must be >= sigma_min ({self.sigma_min})"
            )
        self.patch_size = (
            None if patch_size is None else check_int("patch_size", patch_size, minimum=1)
        )
        self.jacobian_weight = check_positive("jacobian_weight", jacobian_weight, allow_zero=True)
        self.jacobian_target = check_positive("jacobian_target", jacobian_target)
        self.jacobian_iter = check_int("jacobian_iter", jacobian_iter, minimum=1)
        self.sigma_val = check_positive("sigma_val", sigma_val, allow_zero=True)
        self.seed = check_int("seed", seed, minimum=0)

    def loss(self, model: nn.Module, batch: Batch, *, step: int) -> torch.Tensor:
        x = image_batch(batch)
        if self.patch_size is not None:
            x = _random_patches(x, self.patch_size)
        spread = self.sigma_max - self.sigma_min
        sigma = self.sigma_min + spread * torch.rand(x.shape[0]).to(x)
        noisy = x + sigma.reshape(-1, *[1] * (x.ndim - 1)) * torch.randn_like(x)
        loss = F.mse_loss(model(noisy, sigma), x)
        if self.jacobian_weight > 0:
            module = getattr(model, "module", model)  # DistributedDataParallel wraps it
            if not hasattr(module, "hessian_norm"):
                raise ValueError(
                    "jacobian_weight > 0 needs a gradient-step denoiser (models.GSDenoiser)"
                )
            norms = module.hessian_norm(noisy, sigma, n_iter=self.jacobian_iter, create_graph=True)
            loss = loss + self.jacobian_weight * F.relu(norms - self.jacobian_target).mean()
        return loss

    def predict(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        x = image_batch(batch)
        gen = torch.Generator().manual_seed(self.seed)
        noise = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
        sigma = self.sigma_val
        return model(x + sigma * noise, torch.full((x.shape[0],), sigma).to(x)), x


def denoising_objective(
    *,
    sigma_min: float = 0.0,
    sigma_max: float = 0.2,
    patch_size: int | None = None,
    jacobian_weight: float = 0.0,
    jacobian_target: float = 0.9,
    jacobian_iter: int = 5,
) -> Objective:
    """:meth:`DenoisingTask.loss` as a plain ``objective(model, batch)``.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> objective = denoising_objective(sigma_min=0.1, sigma_max=0.1)
    >>> round(float(objective(lambda x, sigma: x, (torch.zeros(4, 1, 32, 32),))), 2)
    0.01
    """
    task = DenoisingTask(
        sigma_min=sigma_min,
        sigma_max=sigma_max,
        patch_size=patch_size,
        jacobian_weight=jacobian_weight,
        jacobian_target=jacobian_target,
        jacobian_iter=jacobian_iter,
    )

    def objective(model: nn.Module, batch: Batch) -> torch.Tensor:
        return task.loss(model, batch, step=0)

    return objective


def denoising_predict(*, sigma: float = 0.05, seed: int = 0) -> Predict:
    """:meth:`DenoisingTask.predict` at noise level ``sigma`` as a plain ``predict(model, batch)``.

    Example
    -------
    >>> x = torch.zeros(2, 1, 8, 8)
    >>> estimate, truth = denoising_predict(sigma=0.1)(lambda v, s: v, (x, None))
    >>> round(float(estimate.std()), 1)
    0.1
    """
    sigma = check_positive("sigma", sigma, allow_zero=True)
    return DenoisingTask(sigma_val=sigma, seed=seed).predict
