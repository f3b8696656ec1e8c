r"""Training learned operator corrections and reconstructing with them (Lunz et al. 2021).

A learned approximate model :math:`A_q = F_q \circ \tilde A \circ H_f`
(:class:`operators.learned.LearnedOperator`) stands in for a slow accurate model :math:`A`.
This module holds what ``recon-train`` and the benchmarks need around it:

- :func:`correction_task`: the objective of ``recon-train`` for the correction (the ``objective``
  config node; ``conf/objective/correction.yaml``). On a batch ``(x, y)`` (``y`` the noisy data
  of the accurate model) it minimises

  .. math:: w_f \frac{\|A_q u - A u\|^2}{\|A u\|^2}
            + w_a \frac{\|A_q^*(r) - A^T r\|^2}{\|A^T r\|^2}, \qquad r = A_q u - y \text{ (fixed)},

  with :math:`A_q^*` the learned adjoint networks or the linearised adjoint. The inputs ``u``
  are the ground truth, or, in the *recursive* scheme, the iterates of the reconstruction
  algorithm that will use the model (:func:`tv_descent` with the current :math:`A_q`), with the
  number of iterations grown over training: at step ``s`` a random ``k`` in
  ``[0, min(recursive_iter, s // grow_every)]`` is drawn and ``u`` is the ``k``-th iterate
  (``k = 0``: the ground truth). With ``lam_max`` the TV weight of each step's reconstruction
  is drawn too, log-uniformly in ``[lam, lam_max]``, so the model is accurate at the iterates
  of every :math:`\lambda` a user may tune to, not just one.
- :func:`tv_descent` / :class:`TVDescent`: accelerated projected gradient descent on
  :math:`\tfrac12\|A x - y\|^2 + \lambda \mathrm{TV}_\varepsilon(x)`, :math:`x \ge 0`, with any
  operator: a :class:`~operators.LinearOperator` (gradient :math:`A^T(Ax - y)`) or a learned
  one (its :meth:`~operators.learned.LearnedOperator.gradient`).
- :func:`load_correction`: the frozen trained operator of a ``recon-train`` run, usable as the
  ``operator`` of another run (model-based unrolled reconstruction as Hauptmann et al. 2018).
- :func:`operator_errors`: the relative model and adjoint errors of :math:`A_q` and of
  :math:`\tilde A` against :math:`A`, for the benchmark.

Example
-------
>>> import torch
>>> from operators import MatrixOperator
>>> A = MatrixOperator(torch.eye(4).reshape(4, 4))
>>> x = tv_descent(torch.ones(2, 4), A, lam=0.0, n_iter=50, nonneg=False)
>>> torch.allclose(x, torch.ones(2, 4), atol=1e-4)
True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from recon.base import Reconstructor, check_measurements
from recon.mirror import smoothed_tv_gradient

__all__ = [
    "CorrectionObjective",
    "TVDescent",
    "correction_task",
    "data_gradient",
    "load_correction",
    "operator_errors",
    "tv_descent",
    "tv_lipschitz",
]


def _check_positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a number, got {value!r}") from err
    if not math.isfinite(out) or out < 0 or (out == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return out


def _check_count(name: str, value: object, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _sq_norms(v: torch.Tensor, n_trailing: int) -> torch.Tensor:
    return v.flatten(v.ndim - n_trailing).pow(2).sum(-1)


def data_gradient(op: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Gradient of :math:`\tfrac12\|A x - y\|^2` in ``x``.

    :math:`A^T(Ax - y)` for a linear operator; for a learned (non-linear) operator its own
    ``gradient(x, y)`` (the linearised or the learned adjoint of the residual).
    """
    gradient = getattr(op, "gradient", None)
    if callable(gradient):
        return gradient(x, y)
    return op.T(op(x) - y)


def tv_lipschitz(norm_squared: float, ndim: int, lam: float, eps: float) -> float:
    r"""Lipschitz constant of the gradient of :math:`\tfrac12\|Ax - y\|^2 + \lambda
    \mathrm{TV}_\varepsilon(x)` on ``ndim``-dimensional images:
    :math:`L = \|A\|^2 + 4\,d\,\lambda/\varepsilon` (``norm_squared`` is :math:`\|A\|^2`).

    Pass it as :func:`tv_descent`'s ``lipschitz`` with the accurate model's norm so that every
    model (``A``, ``Ã``, ``A_q``) takes the same steps.

    >>> tv_lipschitz(2.0, 2, lam=0.01, eps=0.1)
    2.8
    """
    return norm_squared + (4 * ndim * lam / eps if lam > 0 else 0.0)


def tv_descent(
    y: torch.Tensor,
    op: Any,
    *,
    lam: float,
    eps: float = 0.01,
    n_iter: int = 100,
    lipschitz: float | None = None,
    nonneg: bool = True,
    x0: torch.Tensor | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    r"""Accelerated projected gradient descent (FISTA) on
    :math:`f(x) = \tfrac12\|A x - y\|^2 + \lambda\,\mathrm{TV}_\varepsilon(x)`, optionally
    with :math:`x \ge 0`.

    .. math:: x_{k+1} = P\big(z_k - \tfrac1L \nabla f(z_k)\big), \quad
              z_{k+1} = x_{k+1} + \tfrac{t_k - 1}{t_{k+1}}(x_{k+1} - x_k),

    :math:`L = \|A\|^2 + 8\lambda/\varepsilon` (2D; 12 in 3D) unless ``lipschitz`` is given.
    With a learned operator (not linear) this is the projected gradient scheme of Lunz et al.,
    whose gradient comes from ``op.gradient``; pass ``lipschitz`` computed from the accurate
    model so every model takes the same steps.

    Parameters
    ----------
    y : torch.Tensor
        Data ``(*batch, *op.range_shape)``.
    op
        A :class:`~operators.LinearOperator` or a :class:`~operators.learned.LearnedOperator`.
    lam, eps : float
        TV weight :math:`\lambda \ge 0` and smoothing :math:`\varepsilon > 0`.
    n_iter : int
        Iterations.
    lipschitz : float, optional
        :math:`L`; by default from ``op.norm()``.
    nonneg : bool
        Project onto :math:`x \ge 0`.
    x0 : torch.Tensor, optional
        Start (default zeros).
    callback : callable, optional
        ``callback(k, x_k)`` after every iteration.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> y = torch.tensor([[-1.0, 2.0]])
    >>> tv_descent(y, IdentityOperator(2), lam=0.0, eps=1.0, n_iter=5, lipschitz=1.0)
    tensor([[0., 2.]])
    """
    batch_shape = check_measurements(y, op)
    lam = _check_positive("lam", lam, allow_zero=True)
    eps = _check_positive("eps", eps)
    n_iter = _check_count("n_iter", n_iter)
    domain_shape = tuple(op.domain_shape)
    ndim = len(domain_shape)
    if lam > 0 and ndim not in (2, 3):
        raise ValueError(f"TV needs a 2D or 3D domain, got op.domain_shape {domain_shape}")
    if lipschitz is None:
        lipschitz = tv_lipschitz(float(op.norm()) ** 2, ndim, lam, eps)
    step = 1.0 / _check_positive("lipschitz", lipschitz)
    if x0 is None:
        x = y.new_zeros((*batch_shape, *domain_shape))
    else:
        if tuple(x0.shape) != (*batch_shape, *domain_shape):
            raise ValueError(
                f"x0 has shape {tuple(x0.shape)}, expected {(*batch_shape, *domain_shape)}"
            )
        x = x0.to(y)
    z, t = x, 1.0
    for k in range(n_iter):
        grad = data_gradient(op, z, y)
        if lam > 0:
            flat = z.reshape(-1, *domain_shape)
            grad = grad + lam * smoothed_tv_gradient(flat, eps=eps, ndim=ndim).reshape(z.shape)
        x_new = z - step * grad
        if nonneg:
            x_new = x_new.clamp_min(0)
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        z = x_new + ((t - 1.0) / t_new) * (x_new - x)
        x, t = x_new, t_new
        if not torch.isfinite(x).all():
            raise FloatingPointError(
                f"tv_descent diverged at iteration {k + 1} (non-finite iterate); "
                "lower the step (pass a larger lipschitz)"
            )
        if callback is not None:
            callback(k, x)
    return x


class TVDescent(Reconstructor):
    r"""Reconstructor for :func:`tv_descent`: smoothed-TV regularised least squares, ``x ≥ 0``,
    by accelerated projected gradient descent, with a linear or a learned operator.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> TVDescent(lam=0.0, n_iter=3, lipschitz=1.0)(torch.ones(1, 2), IdentityOperator(2))
    tensor([[1., 1.]])
    """

    def __init__(
        self,
        *,
        lam: float,
        eps: float = 0.01,
        n_iter: int = 100,
        lipschitz: float | None = None,
        nonneg: bool = True,
    ) -> None:
        super().__init__()
        self.lam = _check_positive("lam", lam, allow_zero=True)
        self.eps = _check_positive("eps", eps)
        self.n_iter = _check_count("n_iter", n_iter)
        self.lipschitz = None if lipschitz is None else _check_positive("lipschitz", lipschitz)
        if not isinstance(nonneg, bool):
            raise ValueError(f"nonneg must be True or False, got {nonneg!r}")
        self.nonneg = nonneg

    def forward(self, y: torch.Tensor, op: Any) -> torch.Tensor:
        """Map ``y`` ``(*batch, *op.range_shape)`` to ``(*batch, *op.domain_shape)``."""
        return tv_descent(
            y,
            op,
            lam=self.lam,
            eps=self.eps,
            n_iter=self.n_iter,
            lipschitz=self.lipschitz,
            nonneg=self.nonneg,
        )

    def extra_repr(self) -> str:
        return (
            f"lam={self.lam}, eps={self.eps}, n_iter={self.n_iter}, "
            f"lipschitz={self.lipschitz}, nonneg={self.nonneg}"
        )


# --------------------------------------------------------------------------- training
class CorrectionObjective:
    r"""The loss of a learned correction on a batch ``(x, y)`` at a training step (see the
    module docstring): relative forward error plus relative adjoint error, at the ground truth
    or, in the recursive scheme, at iterates of :func:`tv_descent` with the current model.

    Parameters
    ----------
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
    lipschitz : float, optional
        Its :math:`L` (default from the accurate model's norm and the step's :math:`\lambda`).
    seed : int
        Seeds the draws of ``k`` and :math:`\lambda` per step, so a resumed run draws the same.
    """

    def __init__(
        self,
        *,
        accurate: Any,
        forward_weight: float = 1.0,
        adjoint_weight: float = 1.0,
        recursive_iter: int = 0,
        grow_every: int = 100,
        truth_fraction: float | None = None,
        lam: float = 0.0,
        eps: float = 0.01,
        lam_max: float | None = None,
        lipschitz: float | None = None,
        seed: int = 0,
    ) -> None:
        for name in ("domain_shape", "range_shape", "T"):
            if not hasattr(accurate, name):
                kind = type(accurate).__name__
                raise ValueError(f"accurate must be a linear operator (with {name}), got {kind}")
        self.accurate = accurate
        self.forward_weight = _check_positive("forward_weight", forward_weight, allow_zero=True)
        self.adjoint_weight = _check_positive("adjoint_weight", adjoint_weight, allow_zero=True)
        if self.forward_weight == 0 and self.adjoint_weight == 0:
            raise ValueError("forward_weight and adjoint_weight are both 0: nothing to train")
        self.recursive_iter = _check_count("recursive_iter", recursive_iter)
        self.grow_every = _check_count("grow_every", grow_every, minimum=1)
        if truth_fraction is not None:
            truth_fraction = _check_positive("truth_fraction", truth_fraction, allow_zero=True)
            if truth_fraction > 1:
                raise ValueError(f"truth_fraction must lie in [0, 1], got {truth_fraction}")
        self.truth_fraction = truth_fraction
        self.lam = _check_positive("lam", lam, allow_zero=True)
        self.eps = _check_positive("eps", eps)
        if lam_max is not None:
            lam_max = _check_positive("lam_max", lam_max)
            if self.lam <= 0 or lam_max < self.lam:
                raise ValueError(
                    f"lam_max needs 0 < lam <= lam_max (a log-uniform range), got lam={self.lam}, "
                    f"lam_max={lam_max}"
                )
        self.lam_max = lam_max
        self.lipschitz = lipschitz
        self._norm_squared: float | None = None
        self.seed = int(seed)

    def _generator(self, step: int, stream: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + step + stream * 7_919_993)

    def _lipschitz(self, lam: float | None = None) -> float:
        if self.lipschitz is not None:
            return float(self.lipschitz)
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
        lipschitz = self._lipschitz(lam)
        with torch.no_grad():
            u = tv_descent(y, model, lam=lam, eps=self.eps, n_iter=k, lipschitz=lipschitz)
        return u.detach()

    def __call__(self, model: nn.Module, batch: Any, step: int = 0) -> torch.Tensor:
        from operators.learned import adjoint_loss, forward_loss

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


def correction_task(
    *,
    op: Any,
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
) -> tuple[CorrectionObjective, Callable]:
    r"""``(objective, predict)`` for ``recon-train``'s ``objective`` node: trains a
    :class:`~operators.learned.LearnedOperator` (the ``model``) built on the approximate ``op``
    to match ``accurate``.

    Validation reports the PSNR of :math:`A_q x` against :math:`A x` in data space (the
    trainer's best checkpoint is the best forward model). With ``forward_weight=0`` only the
    adjoint networks learn (with no weight decay the forward networks stay as loaded), and
    validation reports the PSNR of :math:`A_q^*(r)` against :math:`A^T r`, :math:`r = A_q x - y`,
    in image space instead, so the best checkpoint is the best adjoint. ``op`` is the
    approximate operator of the run (``cfg.operator``); the learned model holds its own copy.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> objective, predict = correction_task(op=IdentityOperator(3), accurate=IdentityOperator(3))
    >>> objective.recursive_iter, callable(predict)
    (0, True)
    """
    objective = CorrectionObjective(
        accurate=accurate,
        forward_weight=forward_weight,
        adjoint_weight=adjoint_weight,
        recursive_iter=recursive_iter,
        grow_every=grow_every,
        truth_fraction=truth_fraction,
        lam=lam,
        eps=eps,
        lam_max=lam_max,
        seed=seed,
    )

    def predict(model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch[0].reshape(-1, *accurate.domain_shape)
        if objective.forward_weight > 0:
            return model(x).unsqueeze(1), accurate(x).unsqueeze(1)
        if getattr(model, "adjoint_mode", "learned") != "learned":
            raise ValueError(
                "forward_weight=0 trains the adjoint networks alone, and this model has none "
                f"(adjoint={model.adjoint_mode!r}); use adjoint=learned"
            )
        r = model(x) - batch[1].reshape(-1, *accurate.range_shape)
        return model.adjoint(r).unsqueeze(1), accurate.T(r).unsqueeze(1)

    return objective, predict


# --------------------------------------------------------------------------- using it
def load_correction(
    run_dir: str | Path, checkpoint: str = "best.pt", adjoint: str | None = None
) -> nn.Module:
    """The trained, frozen learned operator of a ``recon-train`` correction run.

    Use it as the ``operator`` of another run (its parameters stay fixed there)::

        operator: {_target_: recon.correction.load_correction, run_dir: outputs/pat_correction}

    ``adjoint="linearised"`` switches a run trained with learned adjoint networks to its
    linearised adjoint (the networks stay loaded, unused): then ``gradient(x, y)`` is the
    exact gradient of ``½‖A_q x − y‖²``, which TV with the 64² PAT ``A_q`` prefers (18.34
    against 18.12 dB). ``None`` keeps the run's mode.

    Raises ``FileNotFoundError`` naming what is missing, and ``ValueError`` for an unknown
    ``adjoint`` or a model without adjoint modes.
    """
    from operators.learned import ADJOINTS
    from recon.train import load_run

    if adjoint is not None and adjoint not in ADJOINTS:
        raise ValueError(f"adjoint must be one of {ADJOINTS} or None, got {adjoint!r}")
    model = load_run(run_dir, checkpoint)
    if adjoint is not None:
        if getattr(model, "adjoint_mode", None) is None:
            raise ValueError(
                f"adjoint={adjoint!r} needs a LearnedOperator, {run_dir} holds a "
                f"{type(model).__name__}"
            )
        if adjoint == "learned" and model.adjoint_mode != "learned":
            raise ValueError(f"{run_dir} was trained without learned adjoint networks")
        model.adjoint_mode = adjoint
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval()


def operator_errors(
    model: Any, approx: Any, accurate: Any, x: torch.Tensor, y: torch.Tensor
) -> dict[str, torch.Tensor]:
    r"""Per-sample relative errors against the accurate model on images ``x`` with data ``y``.

    - ``forward_model`` :math:`\|A_q x - Ax\|/\|Ax\|` and ``forward_approx``
      :math:`\|\tilde A x - Ax\|/\|Ax\|`;
    - ``adjoint_model`` :math:`\|A_q^*(r) - A^T r\|/\|A^T r\|` and ``adjoint_approx``
      :math:`\|\tilde A^T r - A^T r\|/\|A^T r\|`, with :math:`r = A_q x - y` (the residual the
      adjoint loss is trained on; linearised adjoints at ``x``).
    """
    n_range = len(tuple(accurate.range_shape))
    n_domain = len(tuple(accurate.domain_shape))

    def rel(a: torch.Tensor, b: torch.Tensor, n: int) -> torch.Tensor:
        return (_sq_norms(a - b, n) / _sq_norms(b, n)).sqrt()

    with torch.no_grad():
        ax = accurate(x)
        forward_model = model(x)
        r = forward_model - y
        atr = accurate.T(r)
        out = {
            "forward_model": rel(forward_model, ax, n_range),
            "forward_approx": rel(approx(x), ax, n_range),
            "adjoint_approx": rel(approx.T(r), atr, n_domain),
        }
    if getattr(model, "adjoint_mode", "learned") == "linearised":
        adjoint = model.adjoint(r, at=x).detach()
    else:
        with torch.no_grad():
            adjoint = model.adjoint(r)
    out["adjoint_model"] = rel(adjoint, atr, n_domain)
    return out
