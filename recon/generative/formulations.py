r"""The three generative formulations: objectives and solvers.

All with ``‖·‖`` the Euclidean norm and each batch element its own problem (Bora et al. 2017;
Dhar et al. 2018; Duff, Campbell, Ehrhardt 2021):

- **hard** (:func:`hard_generative`): the image is in the range of ``G``,

  .. math:: \min_z \|A G(z) - y\|^2 + α\|z\|^2, \qquad x = G(z);

- **soft** (:func:`soft_generative`): the image is near the range,

  .. math:: \min_{x, z} \|A x - y\|^2 + λ\big(μ\|z\|^2 + \|x - G(z)\|^2\big);

- **sparse deviations** (:func:`sparse_deviation_generative`): the image is in the range up to a
  sparse correction ``u`` (a feature ``G`` never saw),

  .. math:: \min_{z, u} \|A(G(z) + u) - y\|^2 + λμ\|z\|^2 + λ\|u\|_1, \qquad x = G(z) + u.

The latent variable is always updated by Adam (learning rate ``lr`` with a cosine decay to
``lr/100`` over ``n_iter`` steps; :mod:`recon.generative.latent`), the other variable exactly or
by proximal steps of :mod:`recon.solvers`:

- hard: one Adam step on ``z`` per iteration;
- soft: alternating minimisation: ``cg_iter`` conjugate-gradient steps (warm-started,
  :func:`recon.solvers.cg_normal`) on the normal equations of the ``x``-problem,
  :math:`(A^TA + λI)x = A^Ty + λG(z)`, then one Adam step on ``z`` for
  :math:`μ\|z\|^2 + \|x - G(z)\|^2`;
- sparse deviations: ``inner_iter`` FISTA steps (:func:`recon.solvers.fista` with the soft
  threshold :math:`\operatorname{prox}_{tλ\|\cdot\|_1}(v) = \operatorname{sign}(v)\max(|v| - tλ,
  0)`, step :math:`t = 1/(2\|A\|^2)`, warm-started) on ``u``, then one Adam step on ``z``.

Every solver runs ``n_restarts`` starts of ``z`` at once, batched with the images, and keeps for
every image the restart with the lowest final objective (:func:`~recon.generative.latent.
prepare_problem`). A non-finite objective raises :class:`~recon.solvers.DivergenceError` (a
``FloatingPointError``; the message names the iteration; lower ``lr``). The generator runs in
eval mode and its parameters are not touched: autograd differentiates ``G`` with respect to ``z``
only, and the operator's adjoint is applied explicitly (:math:`\nabla_z \|AG(z) - y\|^2 =
J_G^T\, 2A^T(AG(z) - y)`), so any operator with ``op.T`` works and every application is visible
to a :class:`~operators.CountingOperator`.

References: A. Bora, A. Jalal, E. Price, A. G. Dimakis, "Compressed sensing using generative
models", ICML 2017. M. Dhar, A. Grover, S. Ermon, "Modeling sparse deviations for compressed
sensing using generative models", ICML 2018. M. Duff, N. D. F. Campbell, M. J. Ehrhardt,
"Regularising inverse problems with generative machine learning models", 2021.

Example
-------
>>> import torch
>>> from operators import MatrixOperator
>>> class Lift(torch.nn.Module):  # G(z) = z
...     latent_dim = 2
...     def generate(self, z):
...         return z
>>> result = soft_generative(torch.tensor([2.0, 4.0]), MatrixOperator(torch.eye(2)), Lift(),
...                          lam=1.0, mu=0.0, n_iter=50, lr=0.1, n_restarts=1)
>>> result.x.shape, result.z.shape
(torch.Size([2]), torch.Size([2]))
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from operators import OperatorLike
from recon.base import check_measurements
from recon.checks import check_int, check_n_iter, check_positive
from recon.generative.latent import (
    GenerativeResult,
    adam_step,
    check_generator,
    check_objective,
    cosine_lr,
    divergence,
    eval_mode,
    generate_images,
    latent_adam,
    prepare_problem,
    report,
    select_restarts,
)
from recon.solvers import DivergenceError, cg_normal, fista, soft_threshold
from recon.solvers.common import operator_norm, sq_norm

__all__ = [
    "hard_generative",
    "hard_objective",
    "soft_generative",
    "soft_objective",
    "sparse_deviation_generative",
    "sparse_deviation_objective",
]


def _l1(v: torch.Tensor, n_trailing: int) -> torch.Tensor:
    return v.abs().sum(dim=tuple(range(-n_trailing, 0)))


# --------------------------------------------------------------------------- objectives
def _check_images(name: str, v: torch.Tensor, batch: tuple[int, ...], trailing: tuple[int, ...]):
    expected = (*batch, *trailing)
    if not isinstance(v, torch.Tensor) or tuple(v.shape) != expected:
        got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        raise ValueError(f"{name} must have shape {expected}, got {got}")
    return v.reshape(-1, *trailing)


def _objective_inputs(z, y, op, generator):
    batch = check_measurements(y, op)
    generator = check_generator(generator)
    z = _check_images("z", z, batch, (generator.latent_dim,))
    return batch, z, y.reshape(-1, *tuple(op.range_shape))


def hard_objective(
    z: torch.Tensor, y: torch.Tensor, op: OperatorLike, generator: nn.Module, *, alpha: float
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
    alpha = check_positive("alpha", alpha, allow_zero=True)
    batch, z_flat, y_flat = _objective_inputs(z, y, op, generator)
    x = generate_images(generator, z_flat, tuple(op.domain_shape))
    data = sq_norm(op(x) - y_flat, len(tuple(op.range_shape)))
    return (data + alpha * sq_norm(z_flat, 1)).reshape(batch)


def soft_objective(
    x: torch.Tensor,
    z: torch.Tensor,
    y: torch.Tensor,
    op: OperatorLike,
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
    lam = check_positive("lam", lam, allow_zero=True)
    mu = check_positive("mu", mu, allow_zero=True)
    batch, z_flat, y_flat = _objective_inputs(z, y, op, generator)
    domain = tuple(op.domain_shape)
    x_flat = _check_images("x", x, batch, domain)
    gz = generate_images(generator, z_flat, domain)
    data = sq_norm(op(x_flat) - y_flat, len(tuple(op.range_shape)))
    prior = mu * sq_norm(z_flat, 1) + sq_norm(x_flat - gz, len(domain))
    return (data + lam * prior).reshape(batch)


def sparse_deviation_objective(
    z: torch.Tensor,
    u: torch.Tensor,
    y: torch.Tensor,
    op: OperatorLike,
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
    lam = check_positive("lam", lam, allow_zero=True)
    mu = check_positive("mu", mu, allow_zero=True)
    batch, z_flat, y_flat = _objective_inputs(z, y, op, generator)
    domain = tuple(op.domain_shape)
    u_flat = _check_images("u", u, batch, domain)
    x = generate_images(generator, z_flat, domain) + u_flat
    data = sq_norm(op(x) - y_flat, len(tuple(op.range_shape)))
    return (data + lam * mu * sq_norm(z_flat, 1) + lam * _l1(u_flat, len(domain))).reshape(batch)


# --------------------------------------------------------------------------- solvers


def _tikhonov_step(
    op: OperatorLike, rhs: torch.Tensor, x: torch.Tensor, *, lam: float, n_iter: int, k: int
) -> torch.Tensor:
    r"""The ``x``-step of the soft formulation: ``n_iter`` CG steps on
    :math:`(A^TA + λI)x = \mathrm{rhs}` from ``x`` (:func:`recon.solvers.cg_normal`)."""
    try:
        return cg_normal(op, rhs, x, shift=lam, n_iter=n_iter)
    except DivergenceError:
        raise divergence("soft", k) from None


def _deviation_step(
    op: OperatorLike,
    target: torch.Tensor,
    u: torch.Tensor,
    *,
    step: float,
    lam: float,
    n_iter: int,
    k: int,
) -> torch.Tensor:
    r"""The ``u``-step of the sparse-deviation formulation: ``n_iter`` FISTA steps on
    :math:`\min_u \|Au - b\|^2 + λ\|u\|_1` (``b = target``) from ``u``, with the soft threshold
    at ``step · λ`` (:func:`recon.solvers.fista`)."""

    def gradient(v: torch.Tensor) -> torch.Tensor:
        return 2.0 * op.T(op(v) - target)

    try:
        return fista(u, gradient, step=step, n_iter=n_iter, prox=soft_threshold(step * lam))
    except DivergenceError:
        raise divergence("sparse-deviation", k) from None


def hard_generative(
    y: torch.Tensor,
    op: OperatorLike,
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
    alpha = check_positive("alpha", alpha, allow_zero=True)
    n_iter, lr = check_n_iter(n_iter), check_positive("lr", lr)
    p = prepare_problem(
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
    with eval_mode(generator), torch.enable_grad():
        z, optimizer = latent_adam(p.z0, lr)
        for k in range(n_iter):
            gz = generate_images(generator, z, p.domain_shape)
            with torch.no_grad():
                residual = op(gz) - p.y
                objective = sq_norm(residual, n_range) + alpha * sq_norm(z, 1)
                check_objective(objective, "hard", k)
                report(callback, k, p, objective)
                image_grad = 2.0 * op.T(residual)
            lr_k = cosine_lr(lr, k, n_iter)
            adam_step(optimizer, z, gz, image_grad, 2.0 * alpha * z.detach(), lr_k)
        with torch.no_grad():
            z = z.detach()
            x = generate_images(generator, z, p.domain_shape)
            objective = sq_norm(op(x) - p.y, n_range) + alpha * sq_norm(z, 1)
            check_objective(objective, "hard", n_iter)
    return select_restarts(p, objective, x, z, None)


def soft_generative(
    y: torch.Tensor,
    op: OperatorLike,
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
    lam, mu = check_positive("lam", lam), check_positive("mu", mu, allow_zero=True)
    n_iter, lr = check_n_iter(n_iter), check_positive("lr", lr)
    cg_iter = check_int("cg_iter", cg_iter, minimum=1)
    p = prepare_problem(
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
    with eval_mode(generator), torch.enable_grad():
        z, optimizer = latent_adam(p.z0, lr)
        with torch.no_grad():
            x = generate_images(generator, z, p.domain_shape)
        for k in range(n_iter):
            gz = generate_images(generator, z, p.domain_shape)
            with torch.no_grad():
                x = _tikhonov_step(op, aty + lam * gz, x, lam=lam, n_iter=cg_iter, k=k)
                z_objective = mu * sq_norm(z, 1) + sq_norm(x - gz, n_domain)
                check_objective(z_objective, "soft", k)
                if callback is not None:
                    data = sq_norm(op(x) - p.y, n_range)
                    report(callback, k, p, data + lam * z_objective)
            lr_k = cosine_lr(lr, k, n_iter)
            adam_step(optimizer, z, gz, 2.0 * (gz.detach() - x), 2.0 * mu * z.detach(), lr_k)
        with torch.no_grad():
            z = z.detach()
            gz = generate_images(generator, z, p.domain_shape)
            x = _tikhonov_step(op, aty + lam * gz, x, lam=lam, n_iter=cg_iter, k=n_iter)
            objective = sq_norm(op(x) - p.y, n_range) + lam * (
                mu * sq_norm(z, 1) + sq_norm(x - gz, n_domain)
            )
            check_objective(objective, "soft", n_iter)
    return select_restarts(p, objective, x, z, None)


def sparse_deviation_generative(
    y: torch.Tensor,
    op: OperatorLike,
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
        check_positive("lam", lam, allow_zero=True),
        check_positive("mu", mu, allow_zero=True),
    )
    n_iter, lr = check_n_iter(n_iter), check_positive("lr", lr)
    inner_iter = check_int("inner_iter", inner_iter, minimum=1)
    p = prepare_problem(
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
    norm = operator_norm(op, hint="the step on u is 1 / (2 ||A||^2): give an operator with norm()")
    step = 1.0 / (2.0 * norm**2)
    with eval_mode(generator), torch.enable_grad():
        z, optimizer = latent_adam(p.z0, lr)
        u = torch.zeros((p.y.shape[0], *p.domain_shape), dtype=p.y.dtype, device=p.y.device)
        for k in range(n_iter):
            gz = generate_images(generator, z, p.domain_shape)
            with torch.no_grad():
                a_gz = op(gz)
                u = _deviation_step(op, p.y - a_gz, u, step=step, lam=lam, n_iter=inner_iter, k=k)
                residual = a_gz + op(u) - p.y
                objective = (
                    sq_norm(residual, n_range) + lam * mu * sq_norm(z, 1) + lam * _l1(u, n_domain)
                )
                check_objective(objective, "sparse-deviation", k)
                report(callback, k, p, objective)
                image_grad = 2.0 * op.T(residual)
            lr_k = cosine_lr(lr, k, n_iter)
            adam_step(optimizer, z, gz, image_grad, 2.0 * lam * mu * z.detach(), lr_k)
        with torch.no_grad():
            z = z.detach()
            gz = generate_images(generator, z, p.domain_shape)
            a_gz = op(gz)
            u = _deviation_step(op, p.y - a_gz, u, step=step, lam=lam, n_iter=inner_iter, k=n_iter)
            objective = (
                sq_norm(a_gz + op(u) - p.y, n_range)
                + lam * mu * sq_norm(z, 1)
                + lam * _l1(u, n_domain)
            )
            check_objective(objective, "sparse-deviation", n_iter)
    return select_restarts(p, objective, gz + u, z, u)
