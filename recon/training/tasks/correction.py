r"""Training a learned operator correction (Lunz et al. 2021): forward and adjoint errors against
the accurate model, at the ground truth or at iterates of the reconstruction that will use it.

A learned approximate model :math:`A_q = F_q \circ \tilde A \circ H_f`
(:class:`operators.learned.LearnedOperator`, the trained ``model``) learns to match a slow
accurate model :math:`A`. On a batch ``(x, y)`` (``y`` the noisy data of the accurate model)
:class:`CorrectionTask` minimises

.. math:: w_f \frac{\|A_q u - A u\|^2}{\|A u\|^2}
          + w_a \frac{\|A_q^*(r) - A^T r\|^2}{\|A^T r\|^2}, \qquad r = A_q u - y \text{ (fixed)},

with :math:`A_q^*` the learned adjoint networks or the linearised adjoint. The inputs ``u``
are the ground truth, or, in the *recursive* scheme, the iterates of the reconstruction
algorithm that will use the model (:func:`recon.correction.tv_descent` with the current
:math:`A_q`), with the number of iterations grown over training: at step ``s`` a random ``k`` in
``[0, min(recursive_iter, s // grow_every)]`` is drawn and ``u`` is the ``k``-th iterate
(``k = 0``: the ground truth). With ``lam_max`` the TV weight of each step's reconstruction is
drawn too, log-uniformly in ``[lam, lam_max]``, so the model is accurate at the iterates of
every :math:`\lambda` a user may tune to, not just one.

Example
-------
>>> from operators import IdentityOperator
>>> task = CorrectionTask(op=IdentityOperator(3), accurate=IdentityOperator(3), recursive_iter=2,
...                       grow_every=10)
>>> task.iterations_at(5), task.validates
(0, True)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from operators.learned import adjoint_loss, forward_loss
from recon.checks import check_int, check_positive
from recon.correction import tv_descent
from recon.solvers import tv_lipschitz
from recon.training.tasks.base import Batch, Task

__all__ = ["CorrectionTask"]


class CorrectionTask(Task):
    r"""The loss of a learned correction on a batch ``(x, y)`` at a training step (see the
    module docstring): relative forward error plus relative adjoint error, at the ground truth
    or, in the recursive scheme, at iterates of :func:`~recon.correction.tv_descent` with the
    current model.

    Validation reports the PSNR of :math:`A_q x` against :math:`A x` in data space (the
    trainer's best checkpoint is the best forward model). With ``forward_weight=0`` only the
    adjoint networks learn (with no weight decay the forward networks stay as loaded), and
    validation reports the PSNR of :math:`A_q^*(r)` against :math:`A^T r`, :math:`r = A_q x - y`,
    in image space instead, so the best checkpoint is the best adjoint. In a ``recon-train``
    config, ``conf/objective/correction.yaml`` (``experiment=correction_pat64/forward``).

    Parameters
    ----------
    op
        The approximate operator of the run (``cfg.operator``), which ``recon-train`` passes;
        unused: the learned model holds its own copy.
    accurate : LinearOperator
        The accurate model :math:`A` (e.g. the PAT time stepper).
    forward_weight, adjoint_weight : float
        :math:`w_f, w_a \ge 0`, not both zero.
    recursive_iter : int
        Largest number of reconstruction iterations whose iterates serve as inputs
        (0: always the ground truth).
    grow_every : int
        The number of allowed iterations grows by one every ``grow_every`` steps.
    truth_fraction : float, optional
        Probability that a recursive step trains at the ground truth (``k = 0``); the other
        steps draw ``k`` uniformly from ``1 … allowed``. By default ``k`` is uniform on
        ``0 … allowed``, so with 20 iterations allowed only 1 step in 21 sees a phantom, and the
        model error on phantoms suffers (measured on PAT: 0.31 against 0.23 for a forward fit
        on phantoms alone).
    lam, eps : float
        TV weight and smoothing of the reconstruction that produces the iterates.
    lam_max : float, optional
        If given, each recursive step draws its TV weight log-uniformly in
        ``[lam, lam_max]`` (the reconstruction will use a tuned :math:`\lambda`; measured on
        PAT 64²: a model trained at :math:`\lambda` 5e-4 had a model error of 0.101 at its own
        200th iterate for the tuned :math:`\lambda` 2e-3).
    seed : int
        Seeds the draws of ``k`` and :math:`\lambda` per step, so a resumed run draws the same.
    """

    def __init__(
        self,
        *,
        op: Any = None,
        accurate: Any,
        forward_weight: float = 1.0,
        adjoint_weight: float = 1.0,
        recursive_iter: int = 0,
        grow_every: int = 100,
        truth_fraction: float | None = None,
        lam: float = 0.0,
        eps: float = 0.01,
        lam_max: float | None = None,
        seed: int = 0,
    ) -> None:
        for name in ("domain_shape", "range_shape", "T"):
            if not hasattr(accurate, name):
                kind = type(accurate).__name__
                raise ValueError(f"accurate must be a linear operator (with {name}), got {kind}")
        self.op = op
        self.accurate = accurate
        self.forward_weight = check_positive("forward_weight", forward_weight, allow_zero=True)
        self.adjoint_weight = check_positive("adjoint_weight", adjoint_weight, allow_zero=True)
        if self.forward_weight == 0 and self.adjoint_weight == 0:
            raise ValueError("forward_weight and adjoint_weight are both 0: nothing to train")
        self.recursive_iter = check_int("recursive_iter", recursive_iter, minimum=0)
        self.grow_every = check_int("grow_every", grow_every, minimum=1)
        if truth_fraction is not None:
            truth_fraction = check_positive("truth_fraction", truth_fraction, allow_zero=True)
            if truth_fraction > 1:
                raise ValueError(f"truth_fraction must lie in [0, 1], got {truth_fraction}")
        self.truth_fraction = truth_fraction
        self.lam = check_positive("lam", lam, allow_zero=True)
        self.eps = check_positive("eps", eps)
        if lam_max is not None:
            lam_max = check_positive("lam_max", lam_max)
            if self.lam <= 0 or lam_max < self.lam:
                raise ValueError(
                    f"lam_max needs 0 < lam <= lam_max (a log-uniform range), got lam={self.lam}, "
                    f"lam_max={lam_max}"
                )
        self.lam_max = lam_max
        self._norm_squared: float | None = None
        self.seed = int(seed)

    # ------------------------------------------------------------------ the schedule
    def _generator(self, step: int, stream: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + step + stream * 7_919_993)

    def lipschitz(self, lam: float | None = None) -> float:
        """The step's :math:`L` (:func:`~recon.solvers.tv_lipschitz` with the accurate model's
        norm) for TV weight ``lam`` (default ``self.lam``)."""
        if self._norm_squared is None:
            self._norm_squared = float(self.accurate.norm()) ** 2
        ndim = len(tuple(self.accurate.domain_shape))
        return tv_lipschitz(self._norm_squared, ndim, self.lam if lam is None else lam, self.eps)

    def lam_at(self, step: int) -> float:
        """The TV weight of ``step``'s reconstruction: ``lam``, or log-uniform up to ``lam_max``."""
        if self.lam_max is None:
            return self.lam
        u = float(torch.rand((), generator=self._generator(step, stream=1)))
        return math.exp(math.log(self.lam) + u * (math.log(self.lam_max) - math.log(self.lam)))

    def iterations_at(self, step: int) -> int:
        """The number of reconstruction iterations drawn for ``step`` (0 = ground truth)."""
        allowed = min(self.recursive_iter, step // self.grow_every)
        if allowed == 0:
            return 0
        gen = self._generator(step)
        if self.truth_fraction is None:
            return int(torch.randint(0, allowed + 1, (1,), generator=gen))
        if float(torch.rand((), generator=gen)) < self.truth_fraction:
            return 0
        return int(torch.randint(1, allowed + 1, (1,), generator=gen))

    def inputs(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
        """The images the losses are evaluated at: ``x``, or the ``k``-th TV iterate."""
        k = self.iterations_at(step)
        if k == 0:
            return x
        # no graph through the networks' parameters across k iterations: with the learned
        # adjoint it would hold every iterate's activations (at 128² and k ~ 200, more than
        # 24 GB); a linearised adjoint enables autograd inside its own gradient()
        lam = self.lam_at(step)
        lipschitz = self.lipschitz(lam)
        with torch.no_grad():
            u = tv_descent(y, model, lam=lam, eps=self.eps, n_iter=k, lipschitz=lipschitz)
        return u.detach()

    # ------------------------------------------------------------------ the task
    def loss(self, model: nn.Module, batch: Batch, *, step: int) -> torch.Tensor:
        x, y = batch[0], batch[1]
        x = x.reshape(-1, *self.accurate.domain_shape)
        y = y.reshape(-1, *self.accurate.range_shape)
        u = self.inputs(model, x, y, step)
        loss = x.new_zeros(())
        if self.forward_weight > 0:
            with torch.no_grad():
                au = self.accurate(u)
            loss = loss + self.forward_weight * forward_loss(model, u, au)
        if self.adjoint_weight > 0:
            with torch.no_grad():
                r = model(u) - y
                atr = self.accurate.T(r)
            linearised = getattr(model, "adjoint_mode", "learned") == "linearised"
            at = u if linearised else None
            loss = loss + self.adjoint_weight * adjoint_loss(model, r, atr, at=at)
        return loss

    def predict(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        accurate = self.accurate
        x = batch[0].reshape(-1, *accurate.domain_shape)
        if self.forward_weight > 0:
            return model(x).unsqueeze(1), accurate(x).unsqueeze(1)
        if getattr(model, "adjoint_mode", "learned") != "learned":
            raise ValueError(
                "forward_weight=0 trains the adjoint networks alone, and this model has none "
                f"(adjoint={model.adjoint_mode!r}); use adjoint=learned"
            )
        r = model(x) - batch[1].reshape(-1, *accurate.range_shape)
        return model.adjoint(r).unsqueeze(1), accurate.T(r).unsqueeze(1)
