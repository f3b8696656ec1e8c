r"""Learned mirror descent (Tan, Mukherjee, Tang, Hauptmann, Schönlieb 2023), plain or accelerated.

Mirror descent minimises a differentiable objective :math:`f` in the geometry of a strongly
convex *mirror map* :math:`\psi`: it steps in the dual space and maps back with the inverse
gradient :math:`\nabla\psi^* = (\nabla\psi)^{-1}`,

.. math:: x_{k+1} = \nabla\psi^*\big(\nabla\psi(x_k) - t_k \nabla f(x_k)\big).

In *learned* mirror descent :math:`\psi = \psi_\theta` is an input-convex network
(:class:`models.icnn.ICNN`) and :math:`\nabla\psi^*` is approximated by the gradient of a second
ICNN :math:`\varphi`, trained to be consistent, :math:`\nabla\varphi(\nabla\psi(x)) \approx x`
(or computed by a few Newton steps on :math:`\nabla\psi(x) = z`). The step sizes :math:`t_k` are
learned too, within a bounded range. With :math:`\psi = \tfrac12\|x\|^2` and
:math:`\varphi = \tfrac12\|z\|^2` it is gradient descent.

:class:`LearnedMirrorDescent` is the reconstructor ``forward(y, op) -> x``, plain or in one of
two accelerated schemes (the :math:`r`-mirror descent of Krichene, Bayen & Bartlett 2015,
learned as in Tan et al.'s "robust data-driven accelerated mirror descent", or Nesterov's
momentum around the mirror step with learned momenta), and able to run past its trained
iterations with a constant step. It trains without ground truth with
:class:`recon.training.tasks.MirrorTask`.

References: H. Y. Tan, S. Mukherjee, J. Tang, C.-B. Schönlieb, "Data-driven mirror descent with
input-convex neural networks", SIAM J. Math. Data Sci. 5(2), 2023. H. Y. Tan, S. Mukherjee,
J. Tang, A. Hauptmann, C.-B. Schönlieb, "Robust data-driven accelerated mirror descent", ICASSP
2023. W. Krichene, A. Bayen, P. Bartlett, "Accelerated mirror descent in continuous and discrete
time", NeurIPS 2015. F. Hanzely, P. Richtárik, L. Xiao, "Accelerated Bregman proximal gradient
methods for relatively smooth convex optimization", Comput. Optim. Appl. 79, 2021.

Example
-------
>>> import torch
>>> from models.icnn import ICNN
>>> from recon.solvers import SmoothedTV
>>> from operators import Parallel2D, RayTransform
>>> op = RayTransform(Parallel2D((16, 16), n_angles=8), backend="matrix")
>>> lmd = LearnedMirrorDescent(mirror_map=ICNN(channels=4, quadratic=0.9),
...                            inverse_map=ICNN(channels=4, quadratic=0.9),
...                            objective=SmoothedTV(lam=0.1), n_iter=3)
>>> lmd(torch.zeros(2, 1, *op.range_shape), op).shape
torch.Size([2, 1, 16, 16])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from models.icnn import InverseSpectralQuadratic, SpectralQuadratic, input_gradient
from operators import OperatorLike
from recon.base import Reconstructor, flatten_measurements
from recon.checks import (
    check_bool,
    check_choice,
    check_int,
    check_n_iter,
    check_ndim,
    check_positive,
)
from recon.classical import fbp, fdk
from recon.mirror.objective import Objective, objective_lipschitz, value_and_gradient
from recon.solvers import nonneg_projection

__all__ = ["INITS", "INVERSES", "SCHEMES", "LearnedMirrorDescent", "MirrorTrace"]

#: Initial iterates of :class:`LearnedMirrorDescent`.
INITS: tuple[str, ...] = ("fbp", "adjoint", "zero")
#: How :class:`LearnedMirrorDescent` applies :math:`\nabla\psi^*`.
INVERSES: tuple[str, ...] = ("network", "newton")
#: Iteration schemes of :class:`LearnedMirrorDescent`.
SCHEMES: tuple[str, ...] = ("plain", "krichene", "nesterov")


def _project(x: torch.Tensor, nonneg: bool) -> torch.Tensor:
    """The Euclidean projection onto ``{x >= 0}`` when ``nonneg``, else ``x``."""
    return nonneg_projection(x) if nonneg else x


class MirrorTrace(NamedTuple):
    """What ``LearnedMirrorDescent(y, op, trace=True)`` returns (flat batch of ``N`` problems).

    Attributes
    ----------
    x : torch.Tensor
        The reconstruction, shaped as the plain ``forward`` returns it.
    iterates : torch.Tensor
        ``(n + 1, N, 1, *domain)``: :math:`x_0, …, x_n`.
    objective : torch.Tensor
        ``(n + 1, N)``: :math:`f(x_0), …, f(x_n)`.
    consistency : torch.Tensor
        ``(n, N)``: mean absolute round-trip error
        :math:`\\operatorname{mean}|\\nabla\\varphi(\\nabla\\psi(x_k)) - x_k|` per image, at
        :math:`x_0, …, x_{n-1}` (zeros with ``inverse="newton"``).
    """

    x: torch.Tensor
    iterates: torch.Tensor
    objective: torch.Tensor
    consistency: torch.Tensor


def _tie_spectral(mirror_map: nn.Module, inverse_map: nn.Module | None) -> None:
    """Give ``inverse_map`` the exact inverse of ``mirror_map``'s spectral quadratic."""
    spectral = getattr(mirror_map, "spectral_layer", None)
    if not isinstance(spectral, SpectralQuadratic):
        raise ValueError(
            "tie_spectral needs a mirror map with a spectral quadratic (an ICNN with spectral > 0)"
        )
    if getattr(mirror_map, "quadratic_layer", None) is not None:
        raise ValueError(
            "tie_spectral needs the mirror map's quadratic: 0 (the tied inverse inverts M + sI "
            "only)"
        )
    if not hasattr(inverse_map, "spectral_layer") or inverse_map.spectral_layer is not None:
        raise ValueError(
            "tie_spectral needs an inverse map (an ICNN) without a spectral term of its own "
            "(spectral: 0)"
        )
    inverse_map.spectral_layer = InverseSpectralQuadratic(
        spectral, shift=mirror_map.strong_convexity
    )


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-element inner products of ``(N, …)`` tensors, shaped ``(N, 1, …, 1)``."""
    return (a * b).flatten(1).sum(1).reshape(-1, *([1] * (a.ndim - 1)))


class LearnedMirrorDescent(Reconstructor):
    r"""Learned mirror descent with ICNN mirror maps (Tan et al. 2023), plain or accelerated.

    **Plain** (``scheme="plain"``): from :math:`x_0` (FBP, :math:`A^Ty/\|A\|^2` or 0),

    .. math:: x_{k+1} = \nabla\varphi\big(\nabla\psi(x_k) - t_k \nabla f(x_k)\big),
              \qquad k = 0, …, n - 1,

    where :math:`\nabla\varphi \approx \nabla\psi^* = (\nabla\psi)^{-1}`.

    **Krichene** (``scheme="krichene"``; Krichene et al.'s accelerated mirror descent with the
    dual variable kept in the dual space, so a mirror map and its approximate inverse are never
    composed, as in Tan et al.'s robust variant): with :math:`\tilde x_0 = x_0`,
    :math:`z_0 = \nabla\psi(x_0)` and :math:`\lambda_k = r / (r + k)`,

    .. math::

        \bar x_k &= \lambda_k \nabla\varphi(z_k) + (1 - \lambda_k)\,\tilde x_k, \\
        z_{k+1} &= z_k - \tfrac{k + 1}{r}\, t_k \nabla f(\bar x_k), \\
        \tilde x_{k+1} &= \bar x_k - \gamma_k \nabla f(\bar x_k),

    and the iterates are :math:`x_k = \tilde x_k`. Its primal step is Euclidean: the mirror map
    shapes only the dual sequence.

    **Nesterov** (``scheme="nesterov"``; Nesterov's momentum around the mirror step, the form of
    Hanzely, Richtárik & Xiao's accelerated Bregman gradient method, with learned momenta): with
    :math:`x_{-1} = x_0`,

    .. math::

        v_k &= x_k + \beta_k (x_k - x_{k-1}), \\
        x_{k+1} &= \nabla\varphi\big(\nabla\psi(v_k) - t_k \nabla f(v_k)\big).

    For a quadratic :math:`\psi = \tfrac12\langle x, Px\rangle` it is FISTA's momentum on
    gradient steps preconditioned by :math:`P^{-1}`: unlike Krichene's scheme, the mirror map
    preconditions every step. The momenta are learned in :math:`[0, \beta_{max})` and start at
    FISTA-like :math:`k / (k + r)`.

    **Non-negativity** (``nonneg=True``, for :math:`\min_{x \ge 0} f` like the protocol's TV):
    :math:`x_0` and every primal iterate are projected onto :math:`\{x \ge 0\}`. In Krichene's
    scheme this is the primal step taken in the feasible set,
    :math:`\tilde x_{k+1} = \max(\bar x_k - \gamma_k \nabla f(\bar x_k), 0)`; in the others
    :math:`x_{k+1} = \max(\nabla\varphi(\cdot), 0)` (a Euclidean, not a Bregman,
    projection). After a preconditioned step the Euclidean projection can undo the step's
    descent, so Nesterov's scheme offers Bertsekas' two-metric projection (``two_metric=True``):
    the pixels at the bound whose gradient points outwards, :math:`\mathcal A_k = \{i :
    (v_k)_i \le 0, \nabla f(v_k)_i > 0\}`, are set to 0 (where a projected gradient step
    takes them), and the mirror step runs on the gradient masked to the others and moves only
    those: :math:`x_{k+1} = \max(\nabla\varphi(\nabla\psi(v_k) - t_k \mathbb 1_{\mathcal
    F}\nabla f(v_k)), 0)` on :math:`\mathcal F = \mathcal A_k^c`, 0 on :math:`\mathcal A_k`.

    The steps are learned in a bounded range: :math:`t_k = (a + (b - a)\,\operatorname{sigmoid}
    (\kappa\theta_k)) / L` with ``step_range = (a, b)``, ``logit_scale`` :math:`\kappa` and
    :math:`L` the objective's Lipschitz bound (``objective.lipschitz(op)``, e.g.
    :class:`~recon.solvers.SmoothedTV`; :math:`L = 1` for objectives without one), and likewise
    :math:`\gamma_k`. The forward pass runs ``run_iter`` iterations (default ``n_iter``);
    iterations past the trained ``n_iter`` use the constant step ``extra_step``
    (in units of :math:`1/L`, default 1), and in Nesterov's scheme the momentum
    :math:`k / (k + r)`. In the plain scheme they also keep the dual variable,
    :math:`z_{k+1} = z_k - t\,\nabla f(x_k)`, :math:`x_{k+1} = \nabla\varphi(z_{k+1})` from
    :math:`z_n = \nabla\psi(x_{n-1}) - t_{n-1}\nabla f(x_{n-1})`: that is mirror descent with
    the map :math:`\varphi^*` exactly, so the round-trip error
    :math:`\nabla\varphi(\nabla\psi(x)) - x` of an approximate inverse does not accumulate.
    (Continued by round trips, a trained model's objective climbed again after its 10 learned
    iterations at every constant step tried, 0.5–4/L; kept in the dual, it keeps descending for
    steps up to 2/L.)

    Costs per plain iteration: one :math:`A` and one :math:`A^T` (the gradient of
    :class:`~recon.solvers.SmoothedTV`), one :math:`\nabla\psi` and one :math:`\nabla\varphi`
    (a forward and a backward pass each; with ``inverse="newton"``,
    ``newton_steps · (cg_steps + 1)`` Hessian- or gradient-evaluations of :math:`\psi` instead of
    :math:`\nabla\varphi`). So does the Nesterov iteration; Krichene's needs no
    :math:`\nabla\psi` after the first.

    Gradients of :math:`\psi` are taken by autograd, also under :func:`torch.no_grad` (as in
    ``recon-eval``); when gradients are enabled the whole unrolled scheme is differentiable in
    the networks and steps, for training with :class:`~recon.training.tasks.MirrorTask`.

    Parameters
    ----------
    mirror_map : torch.nn.Module
        :math:`\psi: (N, 1, *domain) \to (N,)`, strongly convex (e.g. :class:`models.icnn.ICNN`).
    inverse_map : torch.nn.Module or None
        :math:`\varphi`, whose gradient approximates :math:`\nabla\psi^*`; ``None`` with
        ``inverse="newton"``.
    objective : callable
        :math:`f`: ``f(x, y, op) -> (N,)`` values, e.g. :class:`~recon.solvers.SmoothedTV`. Its
        gradient comes from its ``value_and_gradient`` method when it has one, else from
        autograd.
    n_iter : int
        Number of iterations with their own learned step (the trained depth).
    run_iter : int, optional
        Iterations of the forward pass (default ``n_iter``); may exceed ``n_iter``.
    extra_step : float or None
        Constant step (units of :math:`1/L`) of the iterations past ``n_iter``, default 1 (the
        classical mirror-descent step for a 1-strongly convex map); ``None``: the last learned
        step, which training may have pushed past what is stable over many iterations.
    scheme : {"plain", "krichene", "nesterov"}
        The iteration above.
    r : float
        :math:`r \ge 2` of Krichene's scheme (Krichene et al. need :math:`r \ge 2`; 3 is the
        classical Nesterov weight), and of the momentum :math:`k / (k + r)` with which
        Nesterov's scheme starts and which it uses past ``n_iter``.
    momentum_max : float
        :math:`\beta_{max} > 0`, the bound of Nesterov's learned momenta (above 1 allowed: they
        are learned, not prescribed).
    step_range : (float, float)
        :math:`0 \le a < b`, bounds of every learned step in units of :math:`1/L`.
    step_init : float
        Initial value of every learned step (in ``(a, b)``), units of :math:`1/L`.
    logit_scale : float
        :math:`\kappa > 0`: the logits are :math:`\kappa\theta_k`, so an optimiser step moves
        them :math:`\kappa` times as far as it moves a network weight. The maps need small
        learning rates (Adam at 1e-4: larger ones perturb every tap of their convolutions at
        once and break the consistency of ψ and φ), the few steps a larger one; with the
        default 100, Adam at 1e-4 moves a logit by about 0.01 per step.
    inverse : {"network", "newton"}
        :math:`\nabla\psi^*` by the network :math:`\nabla\varphi`, or by ``newton_steps``
        Newton iterations on :math:`\nabla\psi(x) = z` (conjugate gradients with ``cg_steps``
        Hessian-vector products each), warm-started at the current iterate.
    newton_steps, cg_steps : int
        Iterations of the Newton inverse.
    nonneg : bool
        Keep the iterates non-negative (above).
    two_metric : bool
        With ``nonneg`` in Nesterov's scheme, project by the two-metric rule (above).
    tie_spectral : bool
        Tie the inverse map's Fourier-diagonal quadratic to the mirror map's: with
        :math:`\psi = N_\psi + \tfrac12\langle x, (M + sI)x\rangle` (an :class:`~models.icnn.ICNN`
        with ``spectral > 0``, ``quadratic = 0`` and strong convexity :math:`s`), the inverse map
        (an ICNN with ``spectral = 0``) gets :math:`\tfrac12\langle z, (M + sI)^{-1}z\rangle`
        (:class:`~models.icnn.InverseSpectralQuadratic`, sharing :math:`M`'s parameters): the
        quadratic parts are exact inverses however :math:`M` trains, and the networks learn only
        the non-quadratic remainder. Without it the consistency term has to drag a separately
        learned :math:`M_\varphi` along with :math:`M^{-1}`, which slows training down.
    init : {"fbp", "adjoint", "zero"}
        :math:`x_0`: the Hann-filtered FBP (FDK in 3D; needs a :class:`~operators.RayTransform`),
        :math:`A^T y/\|A\|^2`, or zeros.
    ndim : {2, 3}
        Spatial dimensions of the operator's domain and range.

    Attributes
    ----------
    step_logits : torch.nn.Parameter
        :math:`\theta_k`, ``(n_iter,)`` (the logits divided by :math:`\kappa`).
    gamma_logits : torch.nn.Parameter or None
        Likewise for :math:`\gamma_k` (Krichene's scheme only).
    momentum_logits : torch.nn.Parameter or None
        Likewise for :math:`\beta_k` (Nesterov's scheme only).

    Raises
    ------
    ValueError
        For invalid settings, and from ``forward`` for NaN, infinite or misshapen measurements.
    TypeError
        For unknown keyword arguments (a typo in a config).

    Example
    -------
    >>> from models.icnn import Quadratic
    >>> from recon.solvers import SmoothedTV
    >>> from operators import IdentityOperator
    >>> op = IdentityOperator((4, 4))
    >>> gd = LearnedMirrorDescent(mirror_map=Quadratic(), inverse_map=Quadratic(),
    ...                           objective=SmoothedTV(lam=0.0), n_iter=2, step_init=1.0,
    ...                           init="zero")
    >>> round(gd(torch.ones(1, 1, 4, 4), op).mean().item(), 5)  # gradient steps of 1/L = 1
    1.0
    """

    def __init__(
        self,
        *,
        mirror_map: nn.Module,
        inverse_map: nn.Module | None = None,
        objective: Objective,
        n_iter: int = 10,
        run_iter: int | None = None,
        extra_step: float | None = 1.0,
        scheme: str = "plain",
        r: float = 3.0,
        momentum_max: float = 1.0,
        step_range: Sequence[float] = (0.0, 4.0),
        step_init: float = 1.0,
        logit_scale: float = 100.0,
        inverse: str = "network",
        newton_steps: int = 3,
        cg_steps: int = 10,
        init: str = "fbp",
        nonneg: bool = False,
        two_metric: bool = False,
        tie_spectral: bool = False,
        ndim: int = 2,
    ) -> None:
        super().__init__()
        if not isinstance(mirror_map, nn.Module):
            raise ValueError(f"mirror_map must be a torch.nn.Module, got {type(mirror_map)}")
        check_choice("inverse", inverse, INVERSES)
        if inverse == "network" and not isinstance(inverse_map, nn.Module):
            raise ValueError('inverse="network" needs inverse_map, a torch.nn.Module')
        if inverse == "newton" and inverse_map is not None:
            raise ValueError('inverse="newton" computes ∇ψ* itself: pass inverse_map=None')
        if not callable(objective):
            raise ValueError("objective must be callable: f(x, y, op) -> values")
        check_choice("init", init, INITS)
        check_choice("scheme", scheme, SCHEMES)
        self.mirror_map = mirror_map
        self.inverse_map = inverse_map
        self.objective = objective
        self.n_iter = check_int("n_iter", n_iter, minimum=1)
        self.run_iter = (
            self.n_iter if run_iter is None else check_int("run_iter", run_iter, minimum=0)
        )
        self.scheme = scheme
        self.r = check_positive("r", r)
        if self.r < 2:
            raise ValueError(f"r must be >= 2, got {r}")
        self.momentum_max = check_positive("momentum_max", momentum_max)
        bounds = [float(b) for b in step_range]
        if len(bounds) != 2 or not (0 <= bounds[0] < bounds[1] < math.inf):
            raise ValueError(f"step_range must be two numbers 0 <= a < b, got {step_range!r}")
        self.step_range = (bounds[0], bounds[1])
        step_init = float(step_init)
        if not bounds[0] < step_init < bounds[1]:
            raise ValueError(f"step_init must lie inside step_range {bounds}, got {step_init}")
        self.logit_scale = check_positive("logit_scale", logit_scale)
        self.extra_step = None if extra_step is None else check_positive("extra_step", extra_step)
        self.inverse = inverse
        self.newton_steps = check_int("newton_steps", newton_steps, minimum=1)
        self.cg_steps = check_int("cg_steps", cg_steps, minimum=1)
        self.init = init
        self.nonneg = check_bool("nonneg", nonneg)
        self.two_metric = check_bool("two_metric", two_metric)
        if self.two_metric and not (self.nonneg and scheme == "nesterov"):
            raise ValueError(
                "two_metric is a projection rule of the nesterov scheme with nonneg=True; got "
                f"scheme={scheme!r}, nonneg={self.nonneg}"
            )
        self.tie_spectral = check_bool("tie_spectral", tie_spectral)
        if self.tie_spectral:
            _tie_spectral(mirror_map, inverse_map)
        self.ndim = check_ndim(ndim)
        logit = _logit((step_init - bounds[0]) / (bounds[1] - bounds[0])) / self.logit_scale
        self.step_logits = nn.Parameter(torch.full((self.n_iter,), logit))
        if scheme == "krichene":
            self.gamma_logits = nn.Parameter(torch.full((self.n_iter,), logit))
        else:
            self.register_parameter("gamma_logits", None)
        if scheme == "nesterov":
            fractions = [min(max(self._fista(k) / self.momentum_max, 0.01), 0.99)
                         for k in range(self.n_iter)]  # fmt: skip
            momentum = [_logit(p) / self.logit_scale for p in fractions]
            self.momentum_logits = nn.Parameter(torch.tensor(momentum))
        else:
            self.register_parameter("momentum_logits", None)

    # ------------------------------------------------------------------ steps
    def _bounded(self, logits: torch.Tensor) -> torch.Tensor:
        low, high = self.step_range
        return low + (high - low) * torch.sigmoid(self.logit_scale * logits)

    def steps(self) -> torch.Tensor:
        """The learned steps :math:`t_k` in units of :math:`1/L`, ``(n_iter,)``, in
        ``step_range``.

        Example
        -------
        >>> from models.icnn import Quadratic
        >>> from recon.solvers import SmoothedTV
        >>> lmd = LearnedMirrorDescent(mirror_map=Quadratic(), inverse_map=Quadratic(),
        ...                            objective=SmoothedTV(lam=0.0), n_iter=3, step_init=2.0)
        >>> lmd.steps().tolist()
        [2.0, 2.0, 2.0]
        """
        return self._bounded(self.step_logits)

    def gammas(self) -> torch.Tensor | None:
        """The learned :math:`\\gamma_k` (units of :math:`1/L`) of Krichene's scheme."""
        return None if self.gamma_logits is None else self._bounded(self.gamma_logits)

    def _fista(self, k: int) -> float:
        return k / (k + self.r)

    def momenta(self) -> torch.Tensor | None:
        """The learned momenta :math:`\\beta_k` of Nesterov's scheme, in ``[0, momentum_max)``.

        Example
        -------
        >>> from models.icnn import Quadratic
        >>> from recon.solvers import SmoothedTV
        >>> lmd = LearnedMirrorDescent(mirror_map=Quadratic(), inverse_map=Quadratic(),
        ...                            objective=SmoothedTV(lam=0.0), n_iter=3, scheme="nesterov")
        >>> [round(b, 3) for b in lmd.momenta().tolist()]  # k / (k + 3), at least 0.01
        [0.01, 0.25, 0.4]
        """
        if self.momentum_logits is None:
            return None
        return self.momentum_max * torch.sigmoid(self.logit_scale * self.momentum_logits)

    def _momentum(self, k: int) -> torch.Tensor | float:
        return self.momenta()[k] if k < self.n_iter else self._fista(k)

    def _step(self, logits: torch.Tensor, k: int) -> torch.Tensor | float:
        if k < self.n_iter:
            return self._bounded(logits[k])
        if self.extra_step is not None:
            return self.extra_step
        return self._bounded(logits[-1])

    # ------------------------------------------------------------------ maps
    def mirror_gradient(self, x: torch.Tensor, *, create_graph: bool = False) -> torch.Tensor:
        """:math:`\\nabla\\psi(x)` for ``x`` ``(N, 1, *domain)``."""
        return input_gradient(self.mirror_map, x, create_graph=create_graph)

    def inverse_gradient(
        self,
        z: torch.Tensor,
        *,
        start: torch.Tensor | None = None,
        create_graph: bool = False,
    ) -> torch.Tensor:
        """:math:`\\nabla\\psi^*(z)`: :math:`\\nabla\\varphi(z)`, or Newton from ``start``."""
        if self.inverse == "network":
            return input_gradient(self.inverse_map, z, create_graph=create_graph)
        return self._newton_inverse(z, z.detach() if start is None else start, create_graph)

    def _newton_inverse(self, z: torch.Tensor, x: torch.Tensor, create_graph: bool) -> torch.Tensor:
        r"""Solve :math:`\nabla\psi(x) = z` by Newton–CG (minimises :math:`\psi(x) - \langle z,
        x\rangle`, which is strongly convex), batched over the first dimension."""
        tiny = torch.finfo(z.dtype).tiny
        for _ in range(self.newton_steps):
            with torch.enable_grad():
                point = x if x.requires_grad else x.detach().requires_grad_(True)
                grad = input_gradient(self.mirror_map, point, create_graph=True)
                residual = grad - z
                direction = torch.zeros_like(residual)
                r_cg, p = residual, residual
                rs = _batch_dot(r_cg, r_cg)
                for _ in range(self.cg_steps):
                    # H p as a vector-Jacobian product: p is a constant here, not a function
                    # of the point (it is one, through the residual, when training)
                    (hp,) = torch.autograd.grad(
                        grad, point, grad_outputs=p, retain_graph=True, create_graph=create_graph
                    )
                    curvature = _batch_dot(p, hp)
                    alpha = torch.where(curvature > tiny, rs / curvature.clamp_min(tiny), 0.0)
                    direction = direction + alpha * p
                    r_cg = r_cg - alpha * hp
                    rs_new = _batch_dot(r_cg, r_cg)
                    p = r_cg + torch.where(rs > tiny, rs_new / rs.clamp_min(tiny), 0.0) * p
                    rs = rs_new
                x = point - direction
            if not create_graph:
                x = x.detach()
        return x

    def round_trip(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`\\nabla\\psi^*(\\nabla\\psi(x))` for ``x`` ``(N, 1, *domain)`` (``x`` if
        consistent)."""
        create_graph = torch.is_grad_enabled()
        z = self.mirror_gradient(x, create_graph=create_graph)
        return self.inverse_gradient(z, start=x, create_graph=create_graph)

    def consistency_error(self, x: torch.Tensor) -> torch.Tensor:
        r"""Relative round-trip error :math:`\|\nabla\psi^*(\nabla\psi(x)) - x\| / \|x\|` per
        image of ``x`` ``(N, 1, *domain)``; returns ``(N,)`` (not differentiable).

        Example
        -------
        >>> from models.icnn import Quadratic
        >>> from recon.solvers import SmoothedTV
        >>> lmd = LearnedMirrorDescent(mirror_map=Quadratic(scale=2.0),
        ...                            inverse_map=Quadratic(scale=0.5),
        ...                            objective=SmoothedTV(lam=0.0))
        >>> lmd.consistency_error(torch.randn(3, 1, 4, 4))
        tensor([0., 0., 0.])
        """
        with torch.no_grad():
            error = (self.round_trip(x) - x).flatten(1).norm(dim=1)
        return error / x.flatten(1).norm(dim=1).clamp_min(torch.finfo(x.dtype).tiny)

    # ------------------------------------------------------------------ iterations
    def _initial(self, y: torch.Tensor, op: OperatorLike) -> torch.Tensor:
        if self.init == "fbp":
            return (fdk if self.ndim == 3 else fbp)(y, op, filter="hann")
        if self.init == "adjoint":
            norm = getattr(op, "norm", None)
            if not callable(norm):
                raise ValueError(f'init="adjoint" needs op.norm(); {type(op).__name__} has none')
            return op.T(y) / float(norm()) ** 2
        return y.new_zeros((y.shape[0], 1, *op.domain_shape))

    def forward(
        self,
        y: torch.Tensor,
        op: OperatorLike,
        *,
        n_iter: int | None = None,
        trace: bool = False,
    ) -> torch.Tensor | MirrorTrace:
        """Map ``y`` ``(*batch, *op.range_shape)`` to ``(*batch, *op.domain_shape)``.

        ``n_iter`` overrides ``run_iter`` for this call; ``trace=True`` returns a
        :class:`MirrorTrace` (iterates, objective values, consistency) instead of ``x``.
        """
        batch_shape, y_flat = flatten_measurements(y, op, self.ndim)
        n = self.run_iter if n_iter is None else check_n_iter(n_iter)
        create_graph = torch.is_grad_enabled()
        lipschitz = objective_lipschitz(self.objective, op) or 1.0
        n_images = y_flat.shape[0]
        x = _project(self._initial(y_flat, op), self.nonneg)

        def evaluate(point):
            value, grad = value_and_gradient(
                self.objective, point, y_flat, op, create_graph=create_graph
            )
            return value.reshape(n_images), grad

        def value_only(point):
            return self.objective(point, y_flat, op).reshape(n_images)

        iterates, values, residuals = [x], [], []
        if self.scheme == "krichene":
            x_tilde = x
            z = self.mirror_gradient(x, create_graph=create_graph)
            for k in range(n):
                mixing = self.r / (self.r + k)
                mirrored = self.inverse_gradient(z, start=x_tilde, create_graph=create_graph)
                if trace:
                    values.append(value_only(x_tilde))
                    back = mirrored if k == 0 else self.round_trip(x_tilde)
                    residuals.append((back - x_tilde).abs().flatten(1).mean(1))
                x_bar = mixing * mirrored + (1 - mixing) * x_tilde
                _, grad = evaluate(x_bar)
                t = self._step(self.step_logits, k) / lipschitz
                gamma = self._step(self.gamma_logits, k) / lipschitz
                z = z - ((k + 1) / self.r) * t * grad
                x_tilde = _project(x_bar - gamma * grad, self.nonneg)
                iterates.append(x_tilde)
            x = x_tilde
        elif self.scheme == "nesterov":
            x_previous = x
            for k in range(n):
                v = x + self._momentum(k) * (x - x_previous) if k else x
                _, grad = evaluate(v)
                free = ~((v <= 0) & (grad > 0)) if self.two_metric else None
                if free is not None:
                    grad = torch.where(free, grad, 0.0)
                mirrored = self.mirror_gradient(v, create_graph=create_graph)
                if trace:
                    values.append(value_only(x))
                    back = self.inverse_gradient(mirrored, start=v, create_graph=create_graph)
                    residuals.append((back - v).abs().flatten(1).mean(1))
                t = self._step(self.step_logits, k) / lipschitz
                x_previous = x
                x = self.inverse_gradient(mirrored - t * grad, start=v, create_graph=create_graph)
                if free is not None:
                    x = torch.where(free, x, 0.0)
                x = _project(x, self.nonneg)
                iterates.append(x)
        else:
            z = None
            for k in range(n):
                value, grad = evaluate(x)
                restart = k < self.n_iter or z is None  # past n_iter, z stays in the dual
                if restart or trace:
                    mirrored = self.mirror_gradient(x, create_graph=create_graph)
                if restart:
                    z = mirrored
                if trace:
                    values.append(value)
                    if self.inverse == "network":
                        back = self.inverse_gradient(mirrored, create_graph=create_graph)
                        residuals.append((back - x).abs().flatten(1).mean(1))
                t = self._step(self.step_logits, k) / lipschitz
                z = z - t * grad
                x = self.inverse_gradient(z, start=x, create_graph=create_graph)
                x = _project(x, self.nonneg)
                iterates.append(x)
        out = x.reshape(*batch_shape, *op.domain_shape)
        if not trace:
            return out
        values.append(value_only(x))
        empty = y_flat.new_zeros((0, n_images))
        if residuals:
            consistency = torch.stack(residuals)
        elif n > 0:
            consistency = y_flat.new_zeros((n, n_images))
        else:
            consistency = empty
        return MirrorTrace(out, torch.stack(iterates), torch.stack(values), consistency)

    def extra_repr(self) -> str:
        return (
            f"objective={self.objective!r}, n_iter={self.n_iter}, run_iter={self.run_iter}, "
            f"scheme={self.scheme!r}, step_range={self.step_range}, "
            f"inverse={self.inverse!r}, init={self.init!r}, nonneg={self.nonneg}, "
            f"two_metric={self.two_metric}, "
            f"tie_spectral={self.tie_spectral}, ndim={self.ndim}"
        )
