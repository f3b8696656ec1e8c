r"""The latent search shared by the three formulations: generators, restarts, Adam on ``z``.

A *generator* is any module with ``latent_dim`` (int) and ``generate(z)`` mapping
``(B, latent_dim)`` to ``(B, ...)`` images with as many values as ``op.domain_shape``
(:mod:`models.autoencoder`, :mod:`models.gan`); ``latent(x)`` (an encoder) is optional.

- :func:`prepare_problem` checks the arguments (the generator's image shape against the operator
  before any work) and draws the ``n_restarts`` starting codes of every image, batched
  restart-major: with ``init="encoder"`` restart 0 starts at the code of an initial image
  (:func:`initial_image`) and the others at that code plus ``restart_std · N(0, I)``; with
  ``init="random"`` all start at ``restart_std · N(0, I)``.
- :func:`latent_adam` and :func:`adam_step` take Adam steps on ``z`` with the gradient
  :math:`J_G(z)^T g_x + g_z`, the image gradient :math:`g_x` coming with the operator's adjoint
  applied explicitly (autograd differentiates ``G`` only); :func:`cosine_lr` is their schedule.
- :func:`select_restarts` keeps, for every image, the restart with the lowest objective.

Example
-------
>>> import torch
>>> from operators import MatrixOperator
>>> class Lift(torch.nn.Module):
...     latent_dim = 2
...     def generate(self, z):
...         return z
>>> problem = prepare_problem(torch.zeros(3, 2), MatrixOperator(torch.eye(2)), Lift(),
...                           n_restarts=4, init="random", restart_std=1.0, z0=None, seed=0)
>>> problem.z0.shape  # 4 restarts of 3 images, restart-major
torch.Size([12, 2])
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from operators import FanBeam2D, OperatorLike, Parallel2D
from recon.base import check_measurements
from recon.checks import check_choice, check_int, check_positive
from recon.classical import fbp
from recon.solvers import DivergenceError, cgls

__all__ = [
    "INITS",
    "GenerativeResult",
    "LatentProblem",
    "adam_step",
    "check_generator",
    "check_objective",
    "cosine_lr",
    "decode_samples",
    "divergence",
    "eval_mode",
    "generate_images",
    "generator_image_shape",
    "initial_image",
    "latent_adam",
    "prepare_problem",
    "report",
    "select_restarts",
]

#: Initialisations of the latent search.
INITS: tuple[str, ...] = ("auto", "encoder", "random")

#: The learning rate decays (cosine) from ``lr`` to ``lr * _FINAL_LR_FRACTION``.
_FINAL_LR_FRACTION = 0.01

Callback = Callable[[int, torch.Tensor], None]


# --------------------------------------------------------------------------- generators
def check_generator(generator: object) -> nn.Module:
    """``generator`` if it is a module with a positive int ``latent_dim`` and ``generate(z)``.

    Example
    -------
    >>> check_generator(torch.nn.Linear(2, 2))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Linear has no positive int attribute latent_dim; ...
    """
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


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Run ``module`` in eval mode (batch norm with running statistics), then restore its mode.

    Example
    -------
    >>> net = torch.nn.BatchNorm1d(2)
    >>> with eval_mode(net):
    ...     net.training
    False
    >>> net.training
    True
    """
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def generate_images(
    generator: nn.Module, z: torch.Tensor, domain_shape: tuple[int, ...]
) -> torch.Tensor:
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


def generator_image_shape(
    generator: nn.Module,
    domain_shape: tuple[int, ...],
    *,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[int, ...]:
    """The shape of one image of ``generator`` (``G(0)``, eval mode, no gradient), checked
    against the operator's ``domain_shape``: a mismatch raises a ``ValueError`` naming both
    shapes and what to change.

    Example
    -------
    >>> from models import Autoencoder
    >>> generator_image_shape(Autoencoder(image_size=16, latent_dim=2, channels=2), (32, 32),
    ...                       dtype=torch.float32, device=torch.device("cpu"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: the generator makes images of shape (1, 16, 16), which do not fit the ...
    """
    zero = torch.zeros(1, generator.latent_dim, dtype=dtype, device=device)
    with torch.no_grad(), eval_mode(generator):
        out = generator.generate(zero)
    if not isinstance(out, torch.Tensor) or out.ndim < 1 or out.shape[0] != 1:
        raise ValueError("generator.generate(z) must return a tensor with one image per code")
    shape = tuple(out.shape[1:])
    if math.prod(shape) != math.prod(domain_shape):
        image = shape
        while len(image) > 1 and image[0] == 1:  # the channel axis
            image = image[1:]
        square = len(domain_shape) == 2 and domain_shape[0] == domain_shape[1]
        size = f" (image_size={domain_shape[0]} for the models of this package)" if square else ""
        raise ValueError(
            f"the generator makes images of shape {shape}, which do not fit the operator's "
            f"domain_shape {domain_shape}: use a generator of {domain_shape} images{size}, or "
            f"an operator of domain_shape {image}"
        )
    return shape


@torch.no_grad()
def decode_samples(generator: nn.Module, *, n_samples: int = 16, seed: int = 0) -> torch.Tensor:
    """``G(z)`` of ``n_samples`` codes ``z ~ N(0, I)`` fixed by ``seed``, in eval mode.

    For a VAE or GAN these are samples of the model; for a plain autoencoder, whose codes need not
    follow N(0, I), they show what the decoder makes of the prior.

    Example
    -------
    >>> from models import VariationalAutoencoder
    >>> vae = VariationalAutoencoder(image_size=16, latent_dim=4, channels=4)
    >>> decode_samples(vae, n_samples=8).shape
    torch.Size([8, 1, 16, 16])
    """
    generator = check_generator(generator)
    n_samples = check_int("n_samples", n_samples, minimum=1)
    device = next(generator.parameters()).device
    codes = torch.randn(
        n_samples, generator.latent_dim, generator=torch.Generator().manual_seed(seed)
    )
    with eval_mode(generator):
        return generator.generate(codes.to(device))


def initial_image(y_flat: torch.Tensor, op: OperatorLike) -> torch.Tensor:
    """A first image from the data: Hann FBP for 2D ray transforms, else 10 CGLS steps."""
    geometry = getattr(op, "geometry", None)
    if isinstance(geometry, (Parallel2D, FanBeam2D)):
        return fbp(y_flat, op, filter="hann")
    return cgls(y_flat, op, n_iter=10)


# --------------------------------------------------------------------------- the problem
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
class LatentProblem:
    """The batched problem: ``n`` images, ``n_restarts`` starts each, restart-major.

    ``y`` holds the measurements repeated per restart, ``(n_restarts·n, *range_shape)``, and
    ``z0`` the starting codes, ``(n_restarts·n, latent_dim)``.
    """

    batch_shape: tuple[int, ...]
    domain_shape: tuple[int, ...]
    range_shape: tuple[int, ...]
    n: int
    n_restarts: int
    y: torch.Tensor
    z0: torch.Tensor


def prepare_problem(
    y: torch.Tensor,
    op: OperatorLike,
    generator: nn.Module,
    *,
    n_restarts: int,
    init: str,
    restart_std: float,
    z0: torch.Tensor | None,
    seed: int,
) -> LatentProblem:
    """Check the arguments and draw the starting codes (see the module docstring).

    The generator's image shape is checked against ``op.domain_shape`` first, before the initial
    image (FBP or CGLS) or any iteration.
    """
    batch_shape = check_measurements(y, op)
    generator = check_generator(generator)
    n_restarts = check_int("n_restarts", n_restarts, minimum=1)
    init = check_choice("init", init, INITS)
    restart_std = check_positive("restart_std", restart_std, allow_zero=True)
    check_int("seed", seed, minimum=0)
    domain_shape, range_shape = tuple(op.domain_shape), tuple(op.range_shape)
    has_encoder = callable(getattr(generator, "latent", None))
    if z0 is None and init == "encoder" and not has_encoder:
        raise ValueError(
            f"init='encoder' needs a generator with latent(x); {type(generator).__name__} "
            "has none (use init='random')"
        )
    image_shape = generator_image_shape(generator, domain_shape, dtype=y.dtype, device=y.device)
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
        if init == "encoder" or (init == "auto" and has_encoder):
            with torch.no_grad(), eval_mode(generator):
                x_init = initial_image(y_flat, op).reshape(n, *image_shape)
                code = generator.latent(x_init).reshape(n, latent_dim)
            noise[0] = 0.0
            z = code[None] + noise
        else:
            z = noise
    rep = y_flat.expand(n_restarts, *y_flat.shape).reshape(-1, *range_shape)
    return LatentProblem(
        batch_shape=batch_shape,
        domain_shape=domain_shape,
        range_shape=range_shape,
        n=n,
        n_restarts=n_restarts,
        y=rep,
        z0=z.reshape(n_restarts * n, latent_dim).detach().clone(),
    )


def select_restarts(
    problem: LatentProblem,
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


# --------------------------------------------------------------------------- Adam on z
def cosine_lr(lr: float, k: int, n_iter: int) -> float:
    """Learning rate of step ``k`` of ``n_iter``: cosine from ``lr`` to ``lr/100``.

    Example
    -------
    >>> cosine_lr(1.0, 0, 10), cosine_lr(1.0, 10, 10)
    (1.0, 0.01)
    """
    factor = 0.5 * (1.0 + math.cos(math.pi * k / max(n_iter, 1)))
    return lr * (_FINAL_LR_FRACTION + (1.0 - _FINAL_LR_FRACTION) * factor)


def latent_adam(z0: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.optim.Adam]:
    """A leaf copy of ``z0`` that requires a gradient, and an Adam optimiser on it."""
    z = z0.clone().requires_grad_(True)
    return z, torch.optim.Adam([z], lr=lr)


def adam_step(
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


# --------------------------------------------------------------------------- monitoring
def divergence(formulation: str, k: int) -> DivergenceError:
    """The error of a ``formulation`` whose objective is not finite at iteration ``k``.

    Example
    -------
    >>> str(divergence("hard", 3)).startswith("hard generative reconstruction diverged")
    True
    """
    return DivergenceError(
        f"{formulation} generative reconstruction diverged: the objective is not finite at "
        f"iteration {k}; lower lr, or check the generator and the data"
    )


def check_objective(objective: torch.Tensor, formulation: str, k: int) -> None:
    """Raise :func:`divergence` if ``objective`` holds NaN or infinite values."""
    if not bool(torch.isfinite(objective).all()):
        raise divergence(formulation, k)


def report(
    callback: Callback | None, k: int, problem: LatentProblem, objective: torch.Tensor
) -> None:
    """``callback(k, objective)`` with the objectives as ``(n_restarts, *batch)``, if given."""
    if callback is not None:
        callback(k, objective.detach().reshape(problem.n_restarts, *problem.batch_shape))
