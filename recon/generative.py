r"""Generative regularisers: reconstruction in (or near) the range of a trained generator ``G``.

Three formulations (Bora et al. 2017; Dhar et al. 2018; Duff, Campbell, Ehrhardt 2021), all with
``‖·‖`` the Euclidean norm and each batch element its own problem:

- **hard** (:func:`hard_generative`): the image is in the range of ``G``,

  .. math:: \min_z \|A G(z) - y\|^2 + α\|z\|^2, \qquad x = G(z);

- **soft** (:func:`soft_generative`): the image is near the range,

  .. math:: \min_{x, z} \|A x - y\|^2 + λ\big(μ\|z\|^2 + \|x - G(z)\|^2\big);

- **sparse deviations** (:func:`sparse_deviation_generative`): the image is in the range up to a
  sparse correction ``u`` (a feature ``G`` never saw),

  .. math:: \min_{z, u} \|A(G(z) + u) - y\|^2 + λμ\|z\|^2 + λ\|u\|_1, \qquad x = G(z) + u.

The latent variable is always updated by Adam (learning rate ``lr`` with a cosine decay to
``lr/100`` over ``n_iter`` steps), the other variable exactly or by proximal steps:

- hard: one Adam step on ``z`` per iteration;
- soft: alternating minimisation: ``cg_iter`` conjugate-gradient steps (warm-started) on the
  normal equations of the ``x``-problem, :math:`(A^TA + λI)x = A^Ty + λG(z)`, then one Adam step
  on ``z`` for :math:`μ\|z\|^2 + \|x - G(z)\|^2`;
- sparse deviations: ``inner_iter`` FISTA steps (proximal gradient with the soft threshold
  :math:`\operatorname{prox}_{tλ\|\cdot\|_1}(v) = \operatorname{sign}(v)\max(|v| - tλ, 0)`,
  step :math:`t = 1/(2\|A\|^2)`, warm-started) on ``u``, then one Adam step on ``z``.

Every solver runs ``n_restarts`` starts of ``z`` at once, batched with the images: with
``init="encoder"`` (the default for models with ``latent(x)``: autoencoders) restart 0 starts
at the code of an initial image (FBP with the Hann filter for ray transforms, else 10 CGLS
steps) and the others at that code plus ``restart_std · N(0, I)``; with ``init="random"`` all
start at ``restart_std · N(0, I)`` (the prior of a VAE or GAN). For every image the restart with
the lowest final objective is kept. A non-finite objective raises ``FloatingPointError`` (the
message names the iteration; lower ``lr``). The generator runs in eval mode and its parameters
are not touched: autograd differentiates ``G`` with respect to ``z`` only, and the operator's
adjoint is applied explicitly (:math:`\nabla_z \|AG(z) - y\|^2 = J_G^T\, 2A^T(AG(z) - y)`), so
any operator with ``op.T`` works and every application is visible to a
:class:`~operators.CountingOperator`.

A *generator* here is any module with ``latent_dim`` (int) and ``generate(z)`` mapping
``(B, latent_dim)`` to ``(B, ...)`` images with as many values as ``op.domain_shape`` (see
:mod:`models.autoencoder`, :mod:`models.gan`); ``latent(x)`` is optional.

The rest of the module trains those generators: :func:`autoencoder_objective`,
:func:`vae_objective` and :func:`autoencoder_predict` plug into :class:`recon.training.Trainer`
(:func:`autoencoder_task` and :func:`vae_task` pair them for ``recon-train``'s ``objective`` node);
the GAN needs two optimisers and has its own loop, :func:`train_gan`, which reuses the trainer's
atomic checkpoint writing, RNG-state capture and image-grid helpers. :func:`train_generative`
does either from a composed config (``python -m recon.generative experiment=…``).

References: A. Bora, A. Jalal, E. Price, A. G. Dimakis, "Compressed sensing using generative
models", ICML 2017. M. Dhar, A. Grover, S. Ermon, "Modeling sparse deviations for compressed
sensing using generative models", ICML 2018. M. Duff, N. D. F. Campbell, M. J. Ehrhardt,
"Regularising inverse problems with generative machine learning models", 2021.

Example
-------
>>> import torch
>>> from models import Autoencoder
>>> from operators import Parallel2D, RayTransform
>>> op = RayTransform(Parallel2D((16, 16), n_angles=8), backend="matrix")
>>> ae = Autoencoder(image_size=16, latent_dim=8, channels=4)
>>> recon = SoftGenerative(generator=ae, lam=1.0, mu=0.01, n_iter=5, n_restarts=2)
>>> recon(torch.rand(3, 1, 8, 23), op).shape
torch.Size([3, 1, 16, 16])
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.autoencoder import VAEOutput, kl_standard_normal
from models.gan import GAN, gradient_penalty
from operators.ct.geometry import FanBeam2D, Parallel2D
from recon.base import Reconstructor, check_measurements
from recon.classical import (
    _check_n_iter,
    _check_positive,
    _expand,
    _LinearOperatorLike,
    _operator_norm,
    _safe_div,
    _sq_norm,
    cgls,
    fbp,
)
from recon.training import (
    _atomic_link,
    _atomic_save,
    _atomic_write_text,
    _rng_state,
    _set_rng_state,
)

__all__ = [
    "INITS",
    "GenerativeResult",
    "HardGenerative",
    "SoftGenerative",
    "SparseDeviationGenerative",
    "autoencoder_objective",
    "autoencoder_predict",
    "autoencoder_task",
    "hard_generative",
    "hard_objective",
    "load_generator",
    "log_samples",
    "sample_grid",
    "soft_generative",
    "soft_objective",
    "sparse_deviation_generative",
    "sparse_deviation_objective",
    "train_gan",
    "train_generative",
    "vae_objective",
    "vae_task",
]

logger = logging.getLogger(__name__)

#: Initialisations of the latent search.
INITS: tuple[str, ...] = ("auto", "encoder", "random")

#: The learning rate decays (cosine) from ``lr`` to ``lr * _FINAL_LR_FRACTION``.
_FINAL_LR_FRACTION = 0.01

#: Bumped when the layout of a GAN checkpoint changes.
GAN_CHECKPOINT_VERSION = 1


# --------------------------------------------------------------------------- small helpers
def _check_int(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_generator(generator: object) -> nn.Module:
    if not isinstance(generator, nn.Module):
        raise ValueError(f"generator must be a torch.nn.Module, got {type(generator).__name__}")
    latent_dim = getattr(generator, "latent_dim", None)
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
        raise ValueError(
            f"{type(generator).__name__} has no positive int attribute latent_dim; a generator "
            "needs latent_dim and generate(z)"
        )
    if not callable(getattr(generator, "generate", None)):
        raise ValueError(f"{type(generator).__name__} has no generate(z) method")
    return generator


def _check_init(init: object) -> str:
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    return str(init)


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Run ``module`` in eval mode (batch norm with running statistics), then restore it."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _cosine_lr(lr: float, k: int, n_iter: int) -> float:
    """Learning rate of step ``k`` of ``n_iter``: cosine from ``lr`` to ``lr/100``."""
    factor = 0.5 * (1.0 + math.cos(math.pi * k / max(n_iter, 1)))
    return lr * (_FINAL_LR_FRACTION + (1.0 - _FINAL_LR_FRACTION) * factor)


def _generate(generator: nn.Module, z: torch.Tensor, domain_shape: tuple[int, ...]) -> torch.Tensor:
    """``G(z)`` as ``(M, *domain_shape)``; raises if ``G``'s images do not fit the domain."""
    out = generator.generate(z)
    if not isinstance(out, torch.Tensor) or out.shape[0] != z.shape[0]:
        raise ValueError("generator.generate(z) must return a tensor with one image per code")
    if out[0].numel() != math.prod(domain_shape):
        raise ValueError(
            f"the generator makes images of shape {tuple(out.shape[1:])}, which do not fit the "
            f"operator's domain_shape {domain_shape}"
        )
    return out.reshape(z.shape[0], *domain_shape)


def _check_finite(objective: torch.Tensor, formulation: str, k: int) -> None:
    if not bool(torch.isfinite(objective).all()):
        raise FloatingPointError(
            f"{formulation} generative reconstruction diverged: the objective is not finite at "
            f"iteration {k}; lower lr, or check the generator and the data"
        )


def _l1(v: torch.Tensor, n_trailing: int) -> torch.Tensor:
    return v.abs().sum(dim=tuple(range(-n_trailing, 0)))


def _initial_image(y_flat: torch.Tensor, op: _LinearOperatorLike) -> torch.Tensor:
    """A first image from the data: Hann FBP for 2D ray transforms, else 10 CGLS steps."""
    geometry = getattr(op, "geometry", None)
    if isinstance(geometry, (Parallel2D, FanBeam2D)):
        return fbp(y_flat, op, filter="hann")
    return cgls(y_flat, op, n_iter=10)


@dataclass
class GenerativeResult:
    """What the generative solvers return: the best restart of every image, and all objectives.

    Attributes
    ----------
    x : torch.Tensor
        Reconstructions ``(*batch, *op.domain_shape)``: ``G(z)``, the soft ``x``, or ``G(z) + u``.
    z : torch.Tensor
        Latent codes ``(*batch, latent_dim)``.
    u : torch.Tensor or None
        Sparse deviations ``(*batch, *op.domain_shape)`` (sparse-deviation formulation only).
    objective : torch.Tensor
        Final objective of the kept restart, ``batch``.
    restart_objectives : torch.Tensor
        Final objective of every restart, ``(n_restarts, *batch)``.
    best_restart : torch.Tensor
        Index of the kept restart (int64), ``batch``.
    """

    x: torch.Tensor
    z: torch.Tensor
    u: torch.Tensor | None
    objective: torch.Tensor
    restart_objectives: torch.Tensor
    best_restart: torch.Tensor


@dataclass
class _Problem:
    """The batched problem: ``n`` images, ``n_restarts`` starts each, restart-major."""

    batch_shape: tuple[int, ...]
    domain_shape: tuple[int, ...]
    range_shape: tuple[int, ...]
    n: int
    n_restarts: int
    y: torch.Tensor  # (R·n, *range_shape)
    z0: torch.Tensor  # (R·n, latent_dim)


def _prepare(
    y: torch.Tensor,
    op: _LinearOperatorLike,
    generator: nn.Module,
    *,
    n_restarts: int,
    init: str,
    restart_std: float,
    z0: torch.Tensor | None,
    seed: int,
) -> _Problem:
    batch_shape = check_measurements(y, op)
    generator = _check_generator(generator)
    n_restarts = _check_int("n_restarts", n_restarts, minimum=1)
    init = _check_init(init)
    restart_std = _check_positive("restart_std", restart_std, allow_zero=True)
    _check_int("seed", seed, minimum=0)
    domain_shape, range_shape = tuple(op.domain_shape), tuple(op.range_shape)
    y_flat = y.reshape(-1, *range_shape)
    n, latent_dim = y_flat.shape[0], generator.latent_dim
    if z0 is not None:
        expected = (n_restarts, *batch_shape, latent_dim)
        if not isinstance(z0, torch.Tensor) or tuple(z0.shape) != expected:
            got = tuple(z0.shape) if isinstance(z0, torch.Tensor) else type(z0).__name__
            raise ValueError(
                f"z0 must have shape (n_restarts, *batch, latent_dim) = {expected}, got {got}"
            )
        if not torch.isfinite(z0).all():
            raise ValueError("z0 contains NaN or infinite values")
        z = z0.to(dtype=y.dtype, device=y.device).reshape(n_restarts, n, latent_dim)
    else:
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn((n_restarts, n, latent_dim), generator=gen, dtype=torch.float64)
        noise = noise.to(dtype=y.dtype, device=y.device) * restart_std
        has_encoder = callable(getattr(generator, "latent", None))
        if init == "encoder" and not has_encoder:
            raise ValueError(
                f"init='encoder' needs a generator with latent(x); {type(generator).__name__} "
                "has none (use init='random')"
            )
        if init == "encoder" or (init == "auto" and has_encoder):
            with torch.no_grad(), _eval_mode(generator):
                probe = generator.generate(
                    torch.zeros(1, latent_dim, dtype=y.dtype, device=y.device)
                )
                x_init = _initial_image(y_flat, op).reshape(n, *probe.shape[1:])
                code = generator.latent(x_init).reshape(n, latent_dim)
            noise[0] = 0.0
            z = code[None] + noise
        else:
            z = noise
    rep = y_flat.expand(n_restarts, *y_flat.shape).reshape(-1, *range_shape)
    return _Problem(
        batch_shape=batch_shape,
        domain_shape=domain_shape,
        range_shape=range_shape,
        n=n,
        n_restarts=n_restarts,
        y=rep,
        z0=z.reshape(n_restarts * n, latent_dim).detach().clone(),
    )


def _select(
    problem: _Problem,
    objective: torch.Tensor,
    x: torch.Tensor,
    z: torch.Tensor,
    u: torch.Tensor | None,
) -> GenerativeResult:
    """Keep, for every image, the restart of the lowest objective."""
    r, n, batch = problem.n_restarts, problem.n, problem.batch_shape
    objectives = objective.reshape(r, n)
    best = objectives.argmin(dim=0)
    index = torch.arange(n, device=objective.device)

    def pick(v: torch.Tensor, trailing: tuple[int, ...]) -> torch.Tensor:
        return v.reshape(r, n, *trailing)[best, index].reshape(*batch, *trailing)

    return GenerativeResult(
        x=pick(x, problem.domain_shape),
        z=pick(z, (z.shape[-1],)),
        u=None if u is None else pick(u, problem.domain_shape),
        objective=objectives[best, index].reshape(batch),
        restart_objectives=objectives.reshape(r, *batch),
        best_restart=best.reshape(batch),
    )


def _adam(z0: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.optim.Adam]:
    z = z0.clone().requires_grad_(True)
    return z, torch.optim.Adam([z], lr=lr)


def _adam_step(
    optimizer: torch.optim.Adam,
    z: torch.Tensor,
    gz: torch.Tensor,
    image_grad: torch.Tensor,
    z_grad: torch.Tensor,
    lr: float,
) -> None:
    r"""One Adam step on ``z`` with the gradient :math:`J_G(z)^T g_x + g_z`.

    ``gz = G(z)`` (with its graph), ``image_grad`` the objective's gradient in the image
    :math:`g_x` (with the operator's adjoint applied explicitly, so that only ``G`` is
    differentiated by autograd), ``z_grad`` the gradient of the terms in ``z`` alone. Per batch
    element, so the elements stay independent problems.
    """
    (grad,) = torch.autograd.grad(gz, z, grad_outputs=image_grad)
    z.grad = grad + z_grad
    optimizer.param_groups[0]["lr"] = lr
    optimizer.step()


def _report(callback: Callable | None, k: int, problem: _Problem, objective: torch.Tensor) -> None:
    if callback is not None:
        callback(k, objective.detach().reshape(problem.n_restarts, *problem.batch_shape))


# --------------------------------------------------------------------------- objectives
def _check_images(name: str, v: torch.Tensor, batch: tuple[int, ...], trailing: tuple[int, ...]):
    expected = (*batch, *trailing)
    if not isinstance(v, torch.Tensor) or tuple(v.shape) != expected:
        got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        raise ValueError(f"{name} must have shape {expected}, got {got}")
    return v.reshape(-1, *trailing)


def _objective_inputs(z, y, op, generator):
    batch = check_measurements(y, op)
    generator = _check_generator(generator)
    z = _check_images("z", z, batch, (generator.latent_dim,))
    return batch, z, y.reshape(-1, *tuple(op.range_shape))


def hard_objective(
    z: torch.Tensor, y: torch.Tensor, op: _LinearOperatorLike, generator: nn.Module, *, alpha: float
) -> torch.Tensor:
    r"""The hard-constraint objective :math:`\|A G(z) - y\|^2 + α\|z\|^2`, per batch element.

    Parameters
    ----------
    z : torch.Tensor
        Codes ``(*batch, latent_dim)``.
    y : torch.Tensor
        Measurements ``(*batch, *op.range_shape)``.
    op : LinearOperator
        The forward operator.
    generator : torch.nn.Module
        ``latent_dim`` and ``generate(z)``.
    alpha : float
        α ≥ 0.

    Returns
    -------
    torch.Tensor
        ``batch``.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> class Lift(torch.nn.Module):
    ...     latent_dim = 2
    ...     def generate(self, z):
    ...         return z
    >>> hard_objective(torch.ones(2), torch.zeros(2), IdentityOperator(2), Lift(), alpha=1.0)
    tensor(4.)
    """
    alpha = _check_positive("alpha", alpha, allow_zero=True)
    batch, z_flat, y_flat = _objective_inputs(z, y, op, generator)
    x = _generate(generator, z_flat, tuple(op.domain_shape))
    data = _sq_norm(op(x) - y_flat, len(tuple(op.range_shape)))
    return (data + alpha * _sq_norm(z_flat, 1)).reshape(batch)


def soft_objective(
    x: torch.Tensor,
    z: torch.Tensor,
    y: torch.Tensor,
    op: _LinearOperatorLike,
    generator: nn.Module,
    *,
    lam: float,
    mu: float,
) -> torch.Tensor:
    r"""The soft-constraint objective :math:`\|Ax - y\|^2 + λ(μ\|z\|^2 + \|x - G(z)\|^2)`.

    Parameters
    ----------
    x : torch.Tensor
        Images ``(*batch, *op.domain_shape)``.
    z, y, op, generator
        As :func:`hard_objective`.
    lam, mu : float
        λ ≥ 0 and μ ≥ 0.

    Returns
    -------
    torch.Tensor
        ``batch``.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> class Lift(torch.nn.Module):
    ...     latent_dim = 2
    ...     def generate(self, z):
    ...         return z
    >>> A = IdentityOperator(2)  # 1 + 2 · (0.5 · 2 + 1)
    >>> soft_objective(torch.tensor([1.0, 0.0]), torch.ones(2), torch.zeros(2), A, Lift(),
    ...                lam=2.0, mu=0.5)
    tensor(5.)
    """
    lam = _check_positive("lam", lam, allow_zero=True)
    mu = _check_positive("mu", mu, allow_zero=True)
    batch, z_flat, y_flat = _objective_inputs(z, y, op, generator)
    domain = tuple(op.domain_shape)
    x_flat = _check_images("x", x, batch, domain)
    gz = _generate(generator, z_flat, domain)
    data = _sq_norm(op(x_flat) - y_flat, len(tuple(op.range_shape)))
    prior = mu * _sq_norm(z_flat, 1) + _sq_norm(x_flat - gz, len(domain))
    return (data + lam * prior).reshape(batch)


def sparse_deviation_objective(
    z: torch.Tensor,
    u: torch.Tensor,
    y: torch.Tensor,
    op: _LinearOperatorLike,
    generator: nn.Module,
    *,
    lam: float,
    mu: float,
) -> torch.Tensor:
    r"""The sparse-deviation objective :math:`\|A(G(z) + u) - y\|^2 + λμ\|z\|^2 + λ\|u\|_1`.

    Parameters
    ----------
    z : torch.Tensor
        Codes ``(*batch, latent_dim)``.
    u : torch.Tensor
        Deviations ``(*batch, *op.domain_shape)``.
    y, op, generator
        As :func:`hard_objective`.
    lam, mu : float
        λ ≥ 0 and μ ≥ 0.

    Returns
    -------
    torch.Tensor
        ``batch``.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> class Lift(torch.nn.Module):
    ...     latent_dim = 2
    ...     def generate(self, z):
    ...         return z
    >>> A = IdentityOperator(2)  # ‖(1, 2)‖² + 2 · 0.5 · 2 + 2 · 1
    >>> sparse_deviation_objective(torch.ones(2), torch.tensor([0.0, 1.0]), torch.zeros(2), A,
    ...                            Lift(), lam=2.0, mu=0.5)
    tensor(9.)
    """
    lam = _check_positive("lam", lam, allow_zero=True)
    mu = _check_positive("mu", mu, allow_zero=True)
    batch, z_flat, y_flat = _objective_inputs(z, y, op, generator)
    domain = tuple(op.domain_shape)
    u_flat = _check_images("u", u, batch, domain)
    x = _generate(generator, z_flat, domain) + u_flat
    data = _sq_norm(op(x) - y_flat, len(tuple(op.range_shape)))
    return (data + lam * mu * _sq_norm(z_flat, 1) + lam * _l1(u_flat, len(domain))).reshape(batch)


# --------------------------------------------------------------------------- solvers
def hard_generative(
    y: torch.Tensor,
    op: _LinearOperatorLike,
    generator: nn.Module,
    *,
    alpha: float,
    n_iter: int = 200,
    lr: float = 0.05,
    n_restarts: int = 4,
    init: str = "auto",
    restart_std: float = 1.0,
    seed: int = 0,
    z0: torch.Tensor | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> GenerativeResult:
    r"""Reconstruct in the range of the generator: :math:`\min_z \|AG(z) - y\|^2 + α\|z\|^2`.

    Each iteration evaluates ``G`` and ``A`` on all restarts of all images at once and takes one
    Adam step on ``z`` (cosine-decayed ``lr``). The result is ``x = G(z)`` of the restart with the
    lowest final objective (:func:`hard_objective`).

    Parameters
    ----------
    y : torch.Tensor
        Measurements ``(*batch, *op.range_shape)``.
    op : LinearOperator
        Forward operator.
    generator : torch.nn.Module
        ``latent_dim``, ``generate(z)`` and optionally ``latent(x)``.
    alpha : float
        Weight α ≥ 0 of :math:`\|z\|^2`.
    n_iter : int
        Adam steps.
    lr : float
        Initial learning rate of Adam.
    n_restarts : int
        Starts of ``z`` per image (see the module docstring for ``init``).
    init : {"auto", "encoder", "random"}
        ``"auto"`` is ``"encoder"`` when the generator has ``latent(x)``.
    restart_std : float
        Standard deviation of the random starts (around the encoder's code, or around 0).
    seed : int
        Seed of the random starts.
    z0 : torch.Tensor, optional
        Explicit starts ``(n_restarts, *batch, latent_dim)`` (overrides ``init``).
    callback : callable, optional
        ``callback(k, objective)`` after the gradient of step ``k``, with the objective of every
        restart at the iterate of that step, ``(n_restarts, *batch)``.

    Returns
    -------
    GenerativeResult

    Raises
    ------
    ValueError
        For invalid arguments or measurements (NaN included).
    FloatingPointError
        If the objective becomes NaN or infinite.

    Example
    -------
    >>> from operators import MatrixOperator
    >>> class Linear(torch.nn.Module):
    ...     latent_dim = 2
    ...     def generate(self, z):
    ...         return torch.stack([z[:, 0], z[:, 1], z[:, 0] + z[:, 1]], dim=1)
    >>> A = MatrixOperator(torch.eye(3))
    >>> result = hard_generative(torch.tensor([1.0, 2.0, 3.0]), A, Linear(), alpha=0.0,
    ...                          n_iter=300, lr=0.1, n_restarts=2)
    >>> result.x.round(decimals=3)
    tensor([1., 2., 3.])
    """
    alpha = _check_positive("alpha", alpha, allow_zero=True)
    n_iter, lr = _check_n_iter(n_iter), _check_positive("lr", lr)
    p = _prepare(
        y,
        op,
        generator,
        n_restarts=n_restarts,
        init=init,
        restart_std=restart_std,
        z0=z0,
        seed=seed,
    )
    n_range = len(p.range_shape)
    with _eval_mode(generator), torch.enable_grad():
        z, optimizer = _adam(p.z0, lr)
        for k in range(n_iter):
            gz = _generate(generator, z, p.domain_shape)
            with torch.no_grad():
                residual = op(gz) - p.y
                objective = _sq_norm(residual, n_range) + alpha * _sq_norm(z, 1)
                _check_finite(objective, "hard", k)
                _report(callback, k, p, objective)
                image_grad = 2.0 * op.T(residual)
            lr_k = _cosine_lr(lr, k, n_iter)
            _adam_step(optimizer, z, gz, image_grad, 2.0 * alpha * z.detach(), lr_k)
        with torch.no_grad():
            z = z.detach()
            x = _generate(generator, z, p.domain_shape)
            objective = _sq_norm(op(x) - p.y, n_range) + alpha * _sq_norm(z, 1)
            _check_finite(objective, "hard", n_iter)
    return _select(p, objective, x, z, None)


def _cg_tikhonov(
    op: _LinearOperatorLike,
    rhs: torch.Tensor,
    lam: float,
    x: torch.Tensor,
    n_iter: int,
    n_domain: int,
) -> torch.Tensor:
    r"""``n_iter`` CG steps on :math:`(A^TA + λI)x = \mathrm{rhs}` from ``x``, per batch element."""

    def normal(v: torch.Tensor) -> torch.Tensor:
        return op.T(op(v)) + lam * v

    r = rhs - normal(x)
    p = r
    gamma = _sq_norm(r, n_domain)
    for _ in range(n_iter):
        q = normal(p)
        step = _safe_div(gamma, (p * q).sum(dim=tuple(range(-n_domain, 0))))
        x = x + _expand(step, n_domain) * p
        r = r - _expand(step, n_domain) * q
        gamma_next = _sq_norm(r, n_domain)
        p = r + _expand(_safe_div(gamma_next, gamma), n_domain) * p
        gamma = gamma_next
    return x


def soft_generative(
    y: torch.Tensor,
    op: _LinearOperatorLike,
    generator: nn.Module,
    *,
    lam: float,
    mu: float,
    n_iter: int = 200,
    cg_iter: int = 5,
    lr: float = 0.05,
    n_restarts: int = 4,
    init: str = "auto",
    restart_std: float = 1.0,
    seed: int = 0,
    z0: torch.Tensor | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> GenerativeResult:
    r"""Reconstruct near the range: :math:`\min_{x,z}\|Ax - y\|^2 + λ(μ\|z\|^2 + \|x - G(z)\|^2)`.

    Alternating minimisation, all restarts and images at once. From :math:`x = G(z_0)`, each of
    the ``n_iter`` iterations

    1. takes ``cg_iter`` conjugate-gradient steps, warm-started at the current ``x``, on the
       normal equations of the ``x``-problem, :math:`(A^TA + λI)\,x = A^Ty + λ\,G(z)`, whose
       solution is the exact minimiser in ``x`` (for λ > 0);
    2. takes one Adam step on ``z`` for :math:`μ\|z\|^2 + \|x - G(z)\|^2` (the ``z``-part of the
       objective divided by λ).

    A last ``x``-step follows the last ``z``-step. The objective (:func:`soft_objective`) picks
    the restart.

    Parameters
    ----------
    y, op, generator
        As :func:`hard_generative`.
    lam : float
        λ > 0: the weight of the prior term.
    mu : float
        μ ≥ 0: the weight of :math:`\|z\|^2` inside it.
    n_iter : int
        Outer iterations (one Adam step on ``z`` each).
    cg_iter : int
        CG steps on ``x`` per iteration (two operator applications each).
    lr, n_restarts, init, restart_std, seed, z0, callback
        As :func:`hard_generative` (with a callback, the objective costs one more ``A`` per
        iteration).

    Returns
    -------
    GenerativeResult

    Example
    -------
    >>> from operators import MatrixOperator
    >>> class Zero(torch.nn.Module):  # G(z) = 0: Tikhonov regularisation, x = y / (1 + λ)
    ...     latent_dim = 1
    ...     def generate(self, z):
    ...         return 0 * z.expand(-1, 2)
    >>> result = soft_generative(torch.tensor([2.0, 4.0]), MatrixOperator(torch.eye(2)), Zero(),
    ...                          lam=1.0, mu=1.0, n_iter=3, n_restarts=1)
    >>> result.x
    tensor([1., 2.])
    """
    lam, mu = _check_positive("lam", lam), _check_positive("mu", mu, allow_zero=True)
    n_iter, lr = _check_n_iter(n_iter), _check_positive("lr", lr)
    cg_iter = _check_int("cg_iter", cg_iter, minimum=1)
    p = _prepare(
        y,
        op,
        generator,
        n_restarts=n_restarts,
        init=init,
        restart_std=restart_std,
        z0=z0,
        seed=seed,
    )
    n_domain, n_range = len(p.domain_shape), len(p.range_shape)
    with torch.no_grad():
        aty = op.T(p.y)
    with _eval_mode(generator), torch.enable_grad():
        z, optimizer = _adam(p.z0, lr)
        with torch.no_grad():
            x = _generate(generator, z, p.domain_shape)
        for k in range(n_iter):
            gz = _generate(generator, z, p.domain_shape)
            with torch.no_grad():
                x = _cg_tikhonov(op, aty + lam * gz, lam, x, cg_iter, n_domain)
                z_objective = mu * _sq_norm(z, 1) + _sq_norm(x - gz, n_domain)
                _check_finite(z_objective, "soft", k)
                if callback is not None:
                    data = _sq_norm(op(x) - p.y, n_range)
                    _report(callback, k, p, data + lam * z_objective)
            lr_k = _cosine_lr(lr, k, n_iter)
            _adam_step(optimizer, z, gz, 2.0 * (gz.detach() - x), 2.0 * mu * z.detach(), lr_k)
        with torch.no_grad():
            z = z.detach()
            gz = _generate(generator, z, p.domain_shape)
            x = _cg_tikhonov(op, aty + lam * gz, lam, x, cg_iter, n_domain)
            objective = _sq_norm(op(x) - p.y, n_range) + lam * (
                mu * _sq_norm(z, 1) + _sq_norm(x - gz, n_domain)
            )
            _check_finite(objective, "soft", n_iter)
    return _select(p, objective, x, z, None)


def _fista_l1(
    op: _LinearOperatorLike,
    target: torch.Tensor,
    u: torch.Tensor,
    *,
    step: float,
    lam: float,
    n_iter: int,
) -> torch.Tensor:
    r"""``n_iter`` FISTA steps on :math:`\min_u \|Au - b\|^2 + λ\|u\|_1` (``b = target``)."""
    v, t = u, 1.0
    for _ in range(n_iter):
        w = v - step * 2.0 * op.T(op(v) - target)
        u_next = torch.sign(w) * (w.abs() - step * lam).clamp_min(0.0)
        t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        v = u_next + ((t - 1.0) / t_next) * (u_next - u)
        u, t = u_next, t_next
    return u


def sparse_deviation_generative(
    y: torch.Tensor,
    op: _LinearOperatorLike,
    generator: nn.Module,
    *,
    lam: float,
    mu: float,
    n_iter: int = 200,
    inner_iter: int = 5,
    lr: float = 0.05,
    n_restarts: int = 4,
    init: str = "auto",
    restart_std: float = 1.0,
    seed: int = 0,
    z0: torch.Tensor | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> GenerativeResult:
    r"""Range plus sparse deviations: :math:`\min_{z,u}\|A(G(z)+u) - y\|^2 + λμ\|z\|^2 + λ\|u\|_1`.

    From ``u = 0``, each of the ``n_iter`` iterations

    1. takes ``inner_iter`` FISTA steps on ``u`` for the fixed ``z`` (warm-started at the current
       ``u``, momentum restarted), i.e. proximal gradient steps

       .. math:: u \leftarrow \operatorname{soft}_{tλ}\big(v - 2t\,A^T(A(G(z) + v) - y)\big),
                 \qquad t = \frac1{2\|A\|^2},

       with the soft threshold :math:`\operatorname{soft}_τ(w) = \operatorname{sign}(w)
       \max(|w| - τ, 0)` and the FISTA extrapolation ``v``;
    2. takes one Adam step on ``z`` for :math:`\|A(G(z)+u) - y\|^2 + λμ\|z\|^2`.

    A last ``u``-step follows the last ``z``-step. As λ grows (with λμ fixed) the threshold
    wins, ``u`` stays exactly 0 and this is :func:`hard_generative` with α = λμ.

    Parameters
    ----------
    y, op, generator
        As :func:`hard_generative` (``op`` also needs ``norm()``).
    lam : float
        λ ≥ 0: the weight of :math:`\|u\|_1`.
    mu : float
        μ ≥ 0: :math:`\|z\|^2` has weight λμ.
    n_iter : int
        Outer iterations (one Adam step on ``z`` each).
    inner_iter : int
        FISTA steps on ``u`` per iteration (two operator applications each).
    lr, n_restarts, init, restart_std, seed, z0, callback
        As :func:`hard_generative`.

    Returns
    -------
    GenerativeResult
        With ``u``, and ``x = G(z) + u``.

    Example
    -------
    >>> from operators import MatrixOperator
    >>> class Zero(torch.nn.Module):  # G(z) = 0: the lasso, u = soft(y, λ/2)
    ...     latent_dim = 1
    ...     def generate(self, z):
    ...         return 0 * z.expand(-1, 3)
    >>> result = sparse_deviation_generative(torch.tensor([3.0, -0.5, 1.0]),
    ...     MatrixOperator(torch.eye(3)), Zero(), lam=2.0, mu=0.0, n_iter=20, n_restarts=1)
    >>> result.u
    tensor([2., -0., 0.])
    """
    lam, mu = (
        _check_positive("lam", lam, allow_zero=True),
        _check_positive("mu", mu, allow_zero=True),
    )
    n_iter, lr = _check_n_iter(n_iter), _check_positive("lr", lr)
    inner_iter = _check_int("inner_iter", inner_iter, minimum=1)
    p = _prepare(
        y,
        op,
        generator,
        n_restarts=n_restarts,
        init=init,
        restart_std=restart_std,
        z0=z0,
        seed=seed,
    )
    n_domain, n_range = len(p.domain_shape), len(p.range_shape)
    step = 1.0 / (2.0 * _operator_norm(op) ** 2)
    with _eval_mode(generator), torch.enable_grad():
        z, optimizer = _adam(p.z0, lr)
        u = torch.zeros((p.y.shape[0], *p.domain_shape), dtype=p.y.dtype, device=p.y.device)
        for k in range(n_iter):
            gz = _generate(generator, z, p.domain_shape)
            with torch.no_grad():
                a_gz = op(gz)
                u = _fista_l1(op, p.y - a_gz, u, step=step, lam=lam, n_iter=inner_iter)
                residual = a_gz + op(u) - p.y
                objective = (
                    _sq_norm(residual, n_range) + lam * mu * _sq_norm(z, 1) + lam * _l1(u, n_domain)
                )
                _check_finite(objective, "sparse-deviation", k)
                _report(callback, k, p, objective)
                image_grad = 2.0 * op.T(residual)
            lr_k = _cosine_lr(lr, k, n_iter)
            _adam_step(optimizer, z, gz, image_grad, 2.0 * lam * mu * z.detach(), lr_k)
        with torch.no_grad():
            z = z.detach()
            gz = _generate(generator, z, p.domain_shape)
            a_gz = op(gz)
            u = _fista_l1(op, p.y - a_gz, u, step=step, lam=lam, n_iter=inner_iter)
            objective = (
                _sq_norm(a_gz + op(u) - p.y, n_range)
                + lam * mu * _sq_norm(z, 1)
                + lam * _l1(u, n_domain)
            )
            _check_finite(objective, "sparse-deviation", n_iter)
    return _select(p, objective, gz + u, z, u)


def load_generator(*, model: nn.Module, checkpoint: str | Path | None = None) -> nn.Module:
    """A generator for the reconstructors: ``model`` with the weights of ``checkpoint``, eval mode.

    ``checkpoint`` is a file written by :class:`recon.training.Trainer` (AE, VAE) or
    :func:`train_gan` (a :class:`models.GAN`): anything with a ``"model"`` state dict, loaded by
    :func:`recon.train.load_trained`. With ``checkpoint=None`` the model keeps its (untrained)
    weights and a warning says so: what configs instantiated without a trained run get.

    Parameters
    ----------
    model : torch.nn.Module
        An :class:`~models.Autoencoder`, :class:`~models.VariationalAutoencoder` or
        :class:`~models.GAN` (anything with ``latent_dim`` and ``generate``).
    checkpoint : str or Path, optional
        The checkpoint file.

    Raises
    ------
    ValueError
        If ``model`` is not a generator, or the checkpoint holds no ``"model"``.
    FileNotFoundError
        If the checkpoint does not exist.

    Example
    -------
    >>> from models import Autoencoder
    >>> load_generator(model=Autoencoder(image_size=16, latent_dim=4, channels=4)).training
    False
    """
    from recon.train import load_trained

    model = _check_generator(model)
    if checkpoint is None:
        logger.warning(
            "generator %s has no checkpoint: its weights are untrained", type(model).__name__
        )
        return model.eval()
    return load_trained(model, checkpoint)


# --------------------------------------------------------------------------- reconstructors
class _GenerativeReconstructor(Reconstructor):
    """Shared settings of the three generative reconstructors."""

    def __init__(
        self,
        *,
        generator: nn.Module,
        n_iter: int,
        lr: float,
        n_restarts: int,
        init: str,
        restart_std: float,
        seed: int,
    ) -> None:
        super().__init__()
        self.generator = _check_generator(generator)
        self.n_iter = _check_n_iter(n_iter)
        self.lr = _check_positive("lr", lr)
        self.n_restarts = _check_int("n_restarts", n_restarts, minimum=1)
        self.init = _check_init(init)
        self.restart_std = _check_positive("restart_std", restart_std, allow_zero=True)
        self.seed = _check_int("seed", seed, minimum=0)

    def _common(self) -> dict[str, Any]:
        return {
            "n_iter": self.n_iter,
            "lr": self.lr,
            "n_restarts": self.n_restarts,
            "init": self.init,
            "restart_std": self.restart_std,
            "seed": self.seed,
        }

    def solve(self, y: torch.Tensor, op: _LinearOperatorLike) -> GenerativeResult:
        """The full :class:`GenerativeResult` (``forward`` returns its ``x``)."""
        raise NotImplementedError

    def forward(self, y: torch.Tensor, op: _LinearOperatorLike) -> torch.Tensor:
        check_measurements(y, op)
        return self.solve(y, op).x

    def extra_repr(self) -> str:
        common = ", ".join(f"{k}={v!r}" for k, v in self._common().items())
        return f"{self._weights()}, {common}"

    def _weights(self) -> str:
        raise NotImplementedError


class HardGenerative(_GenerativeReconstructor):
    r""":func:`hard_generative` as a reconstructor: :math:`x = G(\hat z)`,
    :math:`\hat z = \arg\min_z \|AG(z) - y\|^2 + α\|z\|^2`.

    Parameters
    ----------
    generator : torch.nn.Module
        A trained generator (``latent_dim``, ``generate``; ``latent`` for the encoder start),
        e.g. from ``recon.train.load_trained``.
    alpha : float
        α ≥ 0 (choose it on validation data with :func:`recon.search.grid_search`).
    n_iter, lr, n_restarts, init, restart_std, seed
        As :func:`hard_generative`.

    Example
    -------
    >>> from models import Autoencoder
    >>> recon = HardGenerative(generator=Autoencoder(image_size=16, latent_dim=4, channels=4),
    ...                        alpha=0.1, n_restarts=8)
    >>> recon.alpha, recon.n_restarts, recon.init
    (0.1, 8, 'auto')
    """

    def __init__(
        self,
        *,
        generator: nn.Module,
        alpha: float,
        n_iter: int = 200,
        lr: float = 0.05,
        n_restarts: int = 4,
        init: str = "auto",
        restart_std: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            generator=generator,
            n_iter=n_iter,
            lr=lr,
            n_restarts=n_restarts,
            init=init,
            restart_std=restart_std,
            seed=seed,
        )
        self.alpha = _check_positive("alpha", alpha, allow_zero=True)

    def solve(self, y: torch.Tensor, op: _LinearOperatorLike) -> GenerativeResult:
        return hard_generative(y, op, self.generator, alpha=self.alpha, **self._common())

    def _weights(self) -> str:
        return f"alpha={self.alpha!r}"


class SoftGenerative(_GenerativeReconstructor):
    r""":func:`soft_generative` as a reconstructor:
    :math:`\min_{x,z}\|Ax - y\|^2 + λ(μ\|z\|^2 + \|x - G(z)\|^2)`.

    Parameters
    ----------
    generator : torch.nn.Module
        A trained generator.
    lam, mu : float
        λ > 0, μ ≥ 0 (choose them on validation data).
    cg_iter : int
        CG steps on ``x`` per iteration.
    n_iter, lr, n_restarts, init, restart_std, seed
        As :func:`soft_generative`.

    Example
    -------
    >>> from models import Autoencoder
    >>> SoftGenerative(generator=Autoencoder(image_size=16, latent_dim=4, channels=4),
    ...                lam=10.0, mu=0.01).cg_iter
    5
    """

    def __init__(
        self,
        *,
        generator: nn.Module,
        lam: float,
        mu: float,
        n_iter: int = 200,
        cg_iter: int = 5,
        lr: float = 0.05,
        n_restarts: int = 4,
        init: str = "auto",
        restart_std: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            generator=generator,
            n_iter=n_iter,
            lr=lr,
            n_restarts=n_restarts,
            init=init,
            restart_std=restart_std,
            seed=seed,
        )
        self.lam = _check_positive("lam", lam)
        self.mu = _check_positive("mu", mu, allow_zero=True)
        self.cg_iter = _check_int("cg_iter", cg_iter, minimum=1)

    def solve(self, y: torch.Tensor, op: _LinearOperatorLike) -> GenerativeResult:
        return soft_generative(
            y,
            op,
            self.generator,
            lam=self.lam,
            mu=self.mu,
            cg_iter=self.cg_iter,
            **self._common(),
        )

    def _weights(self) -> str:
        return f"lam={self.lam!r}, mu={self.mu!r}, cg_iter={self.cg_iter}"


class SparseDeviationGenerative(_GenerativeReconstructor):
    r""":func:`sparse_deviation_generative` as a reconstructor: :math:`x = G(\hat z) + \hat u`,
    :math:`(\hat z, \hat u) = \arg\min \|A(G(z) + u) - y\|^2 + λμ\|z\|^2 + λ\|u\|_1`.

    Parameters
    ----------
    generator : torch.nn.Module
        A trained generator.
    lam, mu : float
        λ ≥ 0, μ ≥ 0 (choose them on validation data).
    inner_iter : int
        FISTA steps on ``u`` per iteration.
    n_iter, lr, n_restarts, init, restart_std, seed
        As :func:`sparse_deviation_generative`.

    Example
    -------
    >>> from models import Autoencoder
    >>> SparseDeviationGenerative(generator=Autoencoder(image_size=16, latent_dim=4, channels=4),
    ...                           lam=1.0, mu=0.1).inner_iter
    5
    """

    def __init__(
        self,
        *,
        generator: nn.Module,
        lam: float,
        mu: float,
        n_iter: int = 200,
        inner_iter: int = 5,
        lr: float = 0.05,
        n_restarts: int = 4,
        init: str = "auto",
        restart_std: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            generator=generator,
            n_iter=n_iter,
            lr=lr,
            n_restarts=n_restarts,
            init=init,
            restart_std=restart_std,
            seed=seed,
        )
        self.lam = _check_positive("lam", lam, allow_zero=True)
        self.mu = _check_positive("mu", mu, allow_zero=True)
        self.inner_iter = _check_int("inner_iter", inner_iter, minimum=1)

    def solve(self, y: torch.Tensor, op: _LinearOperatorLike) -> GenerativeResult:
        return sparse_deviation_generative(
            y,
            op,
            self.generator,
            lam=self.lam,
            mu=self.mu,
            inner_iter=self.inner_iter,
            **self._common(),
        )

    def _weights(self) -> str:
        return f"lam={self.lam!r}, mu={self.mu!r}, inner_iter={self.inner_iter}"


# --------------------------------------------------------------------------- training objectives
def _images(batch: Any) -> torch.Tensor:
    """The images of a batch: ``x`` of ``(x, y)`` pairs, ``(x,)`` or a bare tensor."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise ValueError(f"expected a batch of images x, (x,) or (x, y), got {type(batch).__name__}")


def autoencoder_objective() -> Callable[[nn.Module, Any], torch.Tensor]:
    r"""The autoencoder's loss :math:`\tfrac1{Bn}\sum_b\|x_b - D(E(x_b))\|^2` (mean squared error).

    For :class:`recon.training.Trainer`: ``objective(model, batch)``, where ``batch`` is ``(x, y)``
    (the measurements are ignored), ``(x,)`` or ``x``.

    Example
    -------
    >>> from models import Autoencoder
    >>> ae = Autoencoder(image_size=16, latent_dim=4, channels=4)
    >>> loss = autoencoder_objective()(ae, (torch.rand(2, 1, 16, 16), None))
    >>> loss.shape, bool(loss > 0)
    (torch.Size([]), True)
    """

    def objective(model: nn.Module, batch: Any) -> torch.Tensor:
        x = _images(batch)
        out = model(x)
        if isinstance(out, VAEOutput):
            raise ValueError("autoencoder_objective got a VAE; use vae_objective")
        return F.mse_loss(out, x)

    return objective


def vae_objective(
    *, noise_std: float = 0.1, beta: float = 1.0
) -> Callable[[nn.Module, Any], torch.Tensor]:
    r"""The VAE's loss: the negative ELBO per pixel, up to a constant.

    .. math:: \frac1{Bn}\sum_b \Big(\frac{\|x_b - D(z_b)\|^2}{2s^2}
              + β\,\mathrm{KL}(q(z|x_b)\,\|\,N(0, I))\Big),\qquad z_b \sim q(z|x_b),

    i.e. :math:`-\mathrm{ELBO}/n` (:func:`models.autoencoder.gaussian_elbo`) without the constant
    :math:`\tfrac n2\log(2πs^2)`, with ``n`` pixels per image and decoder noise ``s``.

    Parameters
    ----------
    noise_std : float
        The decoder's standard deviation ``s`` (images in [0, 1]: about 0.1).
    beta : float
        Weight of the KL term (1: the ELBO).

    Example
    -------
    >>> from models import VariationalAutoencoder
    >>> vae = VariationalAutoencoder(image_size=16, latent_dim=4, channels=4)
    >>> vae_objective(noise_std=0.1)(vae, torch.rand(2, 1, 16, 16)).item() > 0
    True
    """
    noise_std = _check_positive("noise_std", noise_std)
    beta = _check_positive("beta", beta, allow_zero=True)

    def objective(model: nn.Module, batch: Any) -> torch.Tensor:
        x = _images(batch)
        out = model(x)
        if not isinstance(out, VAEOutput):
            raise ValueError(
                f"vae_objective needs a model returning VAEOutput, got {type(out).__name__}"
            )
        squared = (x - out.reconstruction).square().flatten(1).sum(1)
        kl = kl_standard_normal(out.mean, out.logvar)
        return (squared / (2 * noise_std**2) + beta * kl).mean() / x[0].numel()

    return objective


def autoencoder_predict() -> Callable[[nn.Module, Any], tuple[torch.Tensor, torch.Tensor]]:
    """The validation predictor of AE and VAE: ``(reconstruction, x)`` (eval mode: the mean).

    Example
    -------
    >>> from models import Autoencoder
    >>> ae = Autoencoder(image_size=16, latent_dim=4, channels=4).eval()
    >>> estimate, truth = autoencoder_predict()(ae, (torch.rand(2, 1, 16, 16),))
    >>> estimate.shape == truth.shape
    True
    """

    def predict(model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x = _images(batch)
        out = model(x)
        return (out.reconstruction if isinstance(out, VAEOutput) else out), x

    return predict


def autoencoder_task(*, op: Any = None) -> tuple[Callable, Callable]:
    """:func:`autoencoder_objective` and :func:`autoencoder_predict` for ``recon-train``'s
    ``objective`` config node (``recon-train`` hands every objective the operator; an autoencoder
    is trained on the images alone).

    Example
    -------
    >>> objective, predict = autoencoder_task()
    >>> callable(objective) and callable(predict)
    True
    """
    del op
    return autoencoder_objective(), autoencoder_predict()


def vae_task(
    *, op: Any = None, noise_std: float = 0.1, beta: float = 1.0
) -> tuple[Callable, Callable]:
    """:func:`vae_objective` (``noise_std``, ``beta``) and :func:`autoencoder_predict` for
    ``recon-train``'s ``objective`` config node; ``op`` is unused.

    Example
    -------
    >>> objective, predict = vae_task(noise_std=0.05, beta=0.5)
    >>> callable(objective) and callable(predict)
    True
    """
    del op
    return vae_objective(noise_std=noise_std, beta=beta), autoencoder_predict()


# --------------------------------------------------------------------------- sample grids
def sample_grid(
    images: torch.Tensor,
    *,
    n_columns: int = 4,
    window: tuple[float, float] = (0.0, 1.0),
    gap: int = 2,
) -> np.ndarray:
    """Images ``(B, C, H, W)`` (channel 0 shown) tiled row by row, windowed to [0, 1].

    Parameters
    ----------
    images : torch.Tensor
        ``(B, C, H, W)``.
    n_columns : int
        Images per row.
    window : (float, float)
        Values mapped to 0 and 1 (the training images' range); the rest is clipped.
    gap : int
        Width of the white separators.

    Returns
    -------
    numpy.ndarray
        float32 ``(rows·H + (rows − 1)·gap, cols·W + (cols − 1)·gap)``.

    Example
    -------
    >>> sample_grid(torch.zeros(5, 1, 3, 3), n_columns=2, gap=1).shape
    (11, 7)
    """
    n_columns = _check_int("n_columns", n_columns, minimum=1)
    low, high = float(window[0]), float(window[1])
    if not high > low:
        raise ValueError(f"window must be (low, high) with high > low, got {window}")
    images = images.detach().double().cpu()[:, 0]
    b, h, w = images.shape
    cols = min(n_columns, b)
    rows = math.ceil(b / cols)
    grid = torch.ones(rows * (h + gap) - gap, cols * (w + gap) - gap, dtype=torch.float64)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = (
            image - low
        ) / (high - low)
    return grid.clamp(0, 1).to(torch.float32).numpy()


@torch.no_grad()
def _decode_samples(model: nn.Module, z: torch.Tensor) -> torch.Tensor:
    with _eval_mode(model):
        return model.generate(z)


def log_samples(
    model: nn.Module,
    log_dir: str | Path,
    *,
    step: int,
    n_samples: int = 16,
    seed: int = 0,
    tag: str = "samples",
) -> np.ndarray:
    """Decode ``n_samples`` codes ``z ~ N(0, I)`` (fixed by ``seed``) and log them as an image grid.

    For a VAE or GAN these are samples of the model; for a plain autoencoder, whose codes need not
    follow N(0, I), they show what the decoder makes of the prior. Writes the TensorBoard image
    ``tag`` at ``step`` under ``log_dir``, and returns the grid.

    Example
    -------
    >>> import tempfile
    >>> from models import VariationalAutoencoder
    >>> vae = VariationalAutoencoder(image_size=16, latent_dim=4, channels=4)
    >>> log_samples(vae, tempfile.mkdtemp(), step=0, n_samples=8).shape  # 2 rows of 4
    (34, 70)
    """
    from torch.utils.tensorboard import SummaryWriter

    model = _check_generator(model)
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n_samples, model.latent_dim, generator=gen).to(device)
    grid = sample_grid(_decode_samples(model, z))
    with SummaryWriter(str(log_dir)) as writer:
        writer.add_image(tag, grid, step, dataformats="HW")
    return grid


# --------------------------------------------------------------------------- the GAN loop
def _stack_images(data: Any, indices: list[int]) -> torch.Tensor:
    return torch.stack(
        [
            _images(tuple(item)) if isinstance(item, (tuple, list)) else item
            for item in (data[i] for i in indices)
        ]
    )


def train_gan(
    gan: GAN,
    *,
    train_data: Any,
    out_dir: str | Path,
    max_steps: int,
    batch_size: int = 16,
    n_critic: int = 5,
    gp_weight: float = 10.0,
    lr_generator: float = 1e-4,
    lr_critic: float = 1e-4,
    betas: tuple[float, float] = (0.0, 0.9),
    ckpt_every: int = 500,
    log_every: int = 100,
    keep_last: int = 3,
    n_samples: int = 16,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    resume: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    r"""Train a WGAN-GP (Gulrajani et al. 2017, Alg. 1): ``n_critic`` critic steps per G step.

    Per generator step: ``n_critic`` times draw real images ``x`` and codes :math:`z \sim N(0,I)`
    and take an Adam step on the critic for
    :math:`D(G(z)) - D(x) + λ_{GP}\,\mathrm{GP}` (batch means;
    :func:`models.gan.gradient_penalty`), then one Adam step on the generator for
    :math:`-D(G(z))`. The :class:`~recon.training.Trainer` has one optimiser, hence this loop; it
    keeps the trainer's conventions: seeded (real images are drawn with replacement by a
    generator seeded with ``seed``), atomic checkpoints ``checkpoints/step_N.pt`` + ``last.pt``
    (holding ``"model"``, so ``recon.train.load_trained(GAN(...), path)`` loads them), resume from
    ``last.pt`` with both optimisers, the data generator and the RNG states, and TensorBoard
    scalars ``train/critic_loss``, ``train/generator_loss``, ``train/gradient_penalty``,
    ``train/wasserstein`` (:math:`E D(x) - E D(G(z))`, the critic's estimate of the distance)
    and the image grid ``samples`` of ``n_samples`` fixed codes every ``log_every`` steps.

    Parameters
    ----------
    gan : models.GAN
        Generator and critic.
    train_data : Dataset
        Map-style; items are images ``(1, S, S)`` or ``(x, y)`` pairs (``y`` ignored).
    out_dir : str or Path
        Where ``checkpoints/``, ``tb/`` and ``run.json`` go.
    max_steps : int
        Generator steps.
    batch_size, n_critic, gp_weight : int, int, float
        Batch size, critic steps per generator step, λ_GP.
    lr_generator, lr_critic, betas
        Adam settings of both optimisers.
    ckpt_every, log_every, keep_last, n_samples : int
        Checkpoint and sample-grid intervals, checkpoints kept, images in the grid.
    seed : int
        Seeds the global RNGs (initial draws, codes) and the data order.
    device : str or torch.device
    progress : bool
        tqdm bar.
    resume, overwrite : bool
        Continue from ``last.pt``; or replace an existing run (else one is refused).

    Returns
    -------
    dict
        ``step``, ``last`` (the last losses), ``wall_time`` (s), ``checkpoint`` (``last.pt``).

    Raises
    ------
    FloatingPointError
        If a loss becomes NaN or infinite (the message names the step).
    FileExistsError
        If ``out_dir`` holds a run and neither ``resume`` nor ``overwrite`` is set.

    Example
    -------
    >>> import tempfile
    >>> from models import GAN, Critic, Generator
    >>> gan = GAN(generator=Generator(image_size=8, latent_dim=2, channels=4),
    ...           critic=Critic(image_size=8, channels=4))
    >>> data = torch.rand(16, 1, 8, 8)
    >>> train_gan(gan, train_data=data, out_dir=tempfile.mkdtemp(), max_steps=2, batch_size=4,
    ...           n_critic=2, progress=False)["step"]
    2
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    if not isinstance(gan, GAN):
        raise ValueError(f"train_gan needs a models.GAN, got {type(gan).__name__}")
    max_steps = _check_int("max_steps", max_steps, minimum=1)
    batch_size = _check_int("batch_size", batch_size, minimum=1)
    n_critic = _check_int("n_critic", n_critic, minimum=1)
    gp_weight = _check_positive("gp_weight", gp_weight, allow_zero=True)
    ckpt_every = _check_int("ckpt_every", ckpt_every, minimum=1)
    log_every = _check_int("log_every", log_every, minimum=1)
    keep_last = _check_int("keep_last", keep_last, minimum=1)
    seed = _check_int("seed", seed, minimum=0)
    size = len(train_data)
    if size < 1:
        raise ValueError("train_data is empty")
    device = torch.device(device)
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    gan.to(device)
    opt_g = torch.optim.Adam(gan.generator.parameters(), lr=lr_generator, betas=tuple(betas))
    opt_d = torch.optim.Adam(gan.critic.parameters(), lr=lr_critic, betas=tuple(betas))
    data_gen = torch.Generator().manual_seed(seed)
    fixed_z = torch.randn(n_samples, gan.latent_dim, generator=torch.Generator().manual_seed(seed))
    config = {
        "model": "GAN",
        "max_steps": max_steps,
        "batch_size": batch_size,
        "n_critic": n_critic,
        "gp_weight": gp_weight,
        "lr_generator": lr_generator,
        "lr_critic": lr_critic,
        "betas": list(betas),
        "seed": seed,
        "train_size": size,
    }

    step = 0
    last = ckpt_dir / "last.pt"
    if resume and last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=False)
        if state.get("format_version") != GAN_CHECKPOINT_VERSION or state.get("kind") != "gan":
            raise RuntimeError(f"{last} is not a GAN checkpoint of this version")
        gan.load_state_dict(state["model"])
        opt_g.load_state_dict(state["optimizer_generator"])
        opt_d.load_state_dict(state["optimizer_critic"])
        data_gen.set_state(state["data_generator"])
        _set_rng_state(state["rng"])
        step = int(state["step"])
        logger.info("resuming the GAN from %s at step %d", last, step)
    else:
        if ckpt_dir.is_dir() and any(ckpt_dir.glob("*.pt")):
            if not overwrite:
                raise FileExistsError(
                    f"{out_dir} already holds a GAN run; pass resume=True to continue it or "
                    "overwrite=True to replace it"
                )
            for old in ckpt_dir.glob("*.pt"):
                old.unlink()
        torch.manual_seed(seed)
        np.random.seed(seed)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(json.dumps(config, indent=2), out_dir / "run.json")

    def draw() -> torch.Tensor:
        indices = torch.randint(size, (batch_size,), generator=data_gen).tolist()
        return _stack_images(train_data, indices).to(device)

    def checkpoint(step: int) -> Path:
        path = ckpt_dir / f"step_{step:08d}.pt"
        _atomic_save(
            {
                "format_version": GAN_CHECKPOINT_VERSION,
                "kind": "gan",
                "step": step,
                "model": gan.state_dict(),
                "optimizer_generator": opt_g.state_dict(),
                "optimizer_critic": opt_d.state_dict(),
                "data_generator": data_gen.get_state(),
                "rng": _rng_state(),
                "config": config,
            },
            path,
        )
        _atomic_link(path, last)
        for old in sorted(ckpt_dir.glob("step_*.pt"))[:-keep_last]:
            old.unlink(missing_ok=True)
        return path

    started = time.perf_counter()
    losses: dict[str, float] = {}
    writer = SummaryWriter(str(out_dir / "tb"), purge_step=step + 1)
    bar = tqdm(total=max_steps, initial=step, desc="gan", disable=not progress, dynamic_ncols=True)
    try:
        gan.train()
        while step < max_steps:
            for _ in range(n_critic):
                real = draw()
                with torch.no_grad():
                    fake = gan.generator(torch.randn(batch_size, gan.latent_dim, device=device))
                d_real, d_fake = gan.critic(real).mean(), gan.critic(fake).mean()
                penalty = gradient_penalty(gan.critic, real, fake)
                loss_d = d_fake - d_real + gp_weight * penalty
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
            fake = gan.generator(torch.randn(batch_size, gan.latent_dim, device=device))
            loss_g = -gan.critic(fake).mean()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            step += 1
            losses = {
                "critic_loss": loss_d.item(),
                "generator_loss": loss_g.item(),
                "gradient_penalty": penalty.item(),
                "wasserstein": (d_real - d_fake).item(),
            }
            if not all(math.isfinite(v) for v in losses.values()):
                raise FloatingPointError(
                    f"GAN training diverged at step {step}: {losses}; lower the learning rates"
                )
            for name, value in losses.items():
                writer.add_scalar(f"train/{name}", value, step)
            done = step >= max_steps
            if step % log_every == 0 or done:
                grid = sample_grid(_decode_samples(gan, fixed_z.to(device)))
                writer.add_image("samples", grid, step, dataformats="HW")
            if step % ckpt_every == 0 or done:
                checkpoint(step)
            bar.update(1)
            bar.set_postfix({"W": f"{losses['wasserstein']:.3g}"}, refresh=False)
    finally:
        bar.close()
        writer.close()
    return {
        "step": step,
        "last": losses,
        "wall_time": time.perf_counter() - started,
        "checkpoint": str(last),
    }


# --------------------------------------------------------------------------- from a config
def train_generative(cfg: Any, output_dir: str | Path | None = None) -> dict[str, Any]:
    """Train ``cfg.model`` (AE, VAE or GAN) on the images of ``cfg.data``'s train split.

    AE and VAE go through :class:`recon.training.Trainer` with ``(objective, predict) =
    instantiate(cfg.objective, op=op)`` (:func:`autoencoder_task`, :func:`vae_task`: the same
    ``objective`` node ``recon-train`` takes), ``cfg.optim`` and ``cfg.trainer``, and a grid of
    decoded ``N(0, I)`` codes is logged at the end (``samples``). A :class:`models.GAN` goes through
    :func:`train_gan` with ``cfg.gan`` (``n_critic``, ``gp_weight``, ``lr_generator``,
    ``lr_critic``, ``betas``) and ``max_steps``, ``batch_size``, ``ckpt_every``,
    ``val_every`` (as ``log_every``), ``keep_last``, ``device`` and ``progress`` of
    ``cfg.trainer``. ``output_dir`` defaults to Hydra's run directory.

    Example
    -------
    >>> train_generative(cfg, output_dir="outputs/ae")  # doctest: +SKIP
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from recon.data import build_split
    from recon.training import Trainer

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    output_dir = Path(output_dir if output_dir is not None else cfg.paths.output_dir)
    op = instantiate(cfg.operator)
    torch.manual_seed(int(cfg.seed))
    model = instantiate(cfg.model)
    train_data = build_split(cfg.data, "train", op.geometry)
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    if isinstance(model, GAN):
        gan_cfg = OmegaConf.to_container(cfg.gan, resolve=True) if cfg.get("gan") else {}
        return train_gan(
            model,
            train_data=train_data,
            out_dir=output_dir,
            max_steps=trainer_cfg["max_steps"],
            batch_size=trainer_cfg["batch_size"],
            ckpt_every=trainer_cfg["ckpt_every"],
            log_every=trainer_cfg["val_every"],
            keep_last=trainer_cfg["keep_last"],
            device=trainer_cfg["device"],
            progress=trainer_cfg["progress"],
            seed=int(cfg.seed),
            resume=bool(cfg.resume),
            **gan_cfg,
        )
    if cfg.get("objective") is None:
        raise ValueError(
            "an AE/VAE config needs an `objective` node (recon.generative.autoencoder_task or "
            "vae_task)"
        )
    objective, predict = instantiate(cfg.objective, op=op)
    val_data = build_split(cfg.data, "validation", op.geometry)
    hparams = {
        "model": cfg.model._target_.rsplit(".", 1)[-1],
        "parameters": sum(p.numel() for p in model.parameters()),
        "latent_dim": int(model.latent_dim),
    }
    trainer = Trainer(
        model,
        train_data=train_data,
        val_data=val_data,
        objective=objective,
        predict=predict,
        out_dir=output_dir,
        optimizer=instantiate(cfg.optim),
        seed=int(cfg.seed),
        hparams=hparams,
        **trainer_cfg,
    )
    result = trainer.fit(resume=bool(cfg.resume))
    log_samples(model, output_dir / "tb", step=result["step"])
    result["checkpoint"] = str(output_dir / "checkpoints" / "best.pt")
    return result


def main() -> None:
    """``python -m recon.generative experiment=ellipses64_{ae,vae,gan}_generative``."""
    import hydra

    from recon.train import CONF_DIR

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
    def _main(cfg) -> None:
        result = train_generative(cfg)
        print(f"trained for {result['step']} steps; checkpoint {result['checkpoint']}")

    _main()


if __name__ == "__main__":
    main()
