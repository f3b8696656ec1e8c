r"""The observation covariance of the linearised DIP and type-II maximum likelihood of its
hyper-parameters (Antorán et al. 2022, section 3.2).

With :math:`\theta \sim \mathcal N(0, \Sigma_\theta)` (:class:`~recon.dip.weight_prior.WeightPrior`)
and noise :math:`\varepsilon \sim \mathcal N(0, \sigma_y^2 I)`, the linearised model
:math:`y = A(f(\theta^*) + J(\theta - \theta^*)) + \varepsilon` has the observation covariance

.. math:: K_{yy} = A J \Sigma_\theta J^T A^T + \sigma_y^2 I \quad (m \times m),

applied matrix-free by :class:`ObservationCov` (one :math:`J^T`, one :math:`J` product) and
assembled for small problems (:meth:`ObservationCov.assemble`). The hyper-parameters (the prior
variances and length-scales, :math:`\sigma_y^2`) maximise the evidence approximated at the
trained weights (MacKay's form, the paper's eq. 7; the TV-PredCP term is left out):

.. math:: -\log p(y) \approx \tfrac12\Big(\frac{\lVert y - Af(\theta^*)\rVert^2}{\sigma_y^2}
          + \theta^{*T}\Sigma_\theta^{-1}\theta^* + \log\det K_{yy} + m\log 2\pi\Big).

Small problems differentiate an exact ``slogdet`` (:func:`negative_log_evidence`). At scale only
the gradient of the log-determinant is estimated (:func:`log_det_grad_hutchinson`):
:math:`\partial\log\det K = \operatorname{tr}(K^{-1}\partial K) \approx \frac1s\sum_i
(K^{-1}z_i)^T \partial K z_i` with Hutchinson probes :math:`z_i` and :math:`K^{-1}z_i` from
preconditioned conjugate gradients (:func:`~recon.dip.pcg.pcg`) with a randomised Nyström
preconditioner (:class:`~recon.dip.pcg.NystromPreconditioner`) refreshed every few steps.
:class:`MarginalLikelihoodFit` runs the Adam loop with a progress bar and a resumable
``state_dict``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from operators import OperatorLike
from recon.checks import check_choice, check_int, check_positive
from recon.dip.linearised import Linearisation
from recon.dip.pcg import CGInfo, NystromPreconditioner, pcg
from recon.dip.weight_prior import WeightPrior
from recon.solvers.common import DivergenceError

__all__ = [
    "MarginalLikelihoodFit",
    "ObservationCov",
    "exact_log_det",
    "gprior_scale",
    "log_det_grad_hutchinson",
    "negative_log_evidence",
]


class ObservationCov(nn.Module):
    r""":math:`K_{yy} = A J \Sigma_\theta J^T A^T + \sigma_y^2 I` for one measurement.

    Measurement vectors are flat, ``(B, m)`` with ``m = prod(op.range_shape)``; images flat
    ``(B, N)`` in the order of ``op.domain_shape``; weights ``(B, n_params)``. The module's
    parameters are the hyper-parameters: ``prior.log_variance``, ``prior.log_lengthscale`` and
    :attr:`log_noise_variance`. Matrix-free products are not differentiable in them; the
    assembled matrices are.

    Parameters
    ----------
    linearisation : Linearisation
        :math:`J` of the network around :math:`\theta^*` (its ``names`` those of the prior).
    prior : WeightPrior
        :math:`\Sigma_\theta`.
    op : LinearOperator
        :math:`A`, with ``prod(op.domain_shape)`` equal to the network's output size.
    noise_variance : float
        Initial :math:`\sigma_y^2`.

    Raises
    ------
    TypeError, ValueError
        For wrong types, weight names that differ between linearisation and prior, or sizes of
        network output and operator domain that differ.
    """

    def __init__(
        self,
        linearisation: Linearisation,
        prior: WeightPrior,
        op: OperatorLike,
        *,
        noise_variance: float = 1.0,
    ) -> None:
        super().__init__()
        if not isinstance(linearisation, Linearisation):
            raise TypeError(f"linearisation must be a Linearisation, got {type(linearisation)}")
        if not isinstance(prior, WeightPrior):
            raise TypeError(f"prior must be a WeightPrior, got {type(prior).__name__}")
        if tuple(linearisation.names) != tuple(prior.names):
            raise ValueError(
                "the linearisation and the prior must name the same weights in the same order; "
                "build the linearisation with names=prior.names"
            )
        domain, out = tuple(op.domain_shape), linearisation.out_shape
        if math.prod(domain) != linearisation.n_pixels:
            raise ValueError(
                f"the network output {out} and op.domain_shape {domain} differ in size"
            )
        noise_variance = check_positive("noise_variance", noise_variance)
        self.prior = prior
        # Plain attributes, not submodules: the network and the operator's matrix stay out of
        # parameters() and state_dict().
        self.__dict__["linearisation"] = linearisation
        self.__dict__["op"] = op
        self.log_noise_variance = nn.Parameter(
            torch.tensor(
                math.log(noise_variance), dtype=linearisation.dtype, device=linearisation.device
            )
        )
        self.n_obs = math.prod(tuple(op.range_shape))
        self.n_pixels = linearisation.n_pixels
        self._jacobian: torch.Tensor | None = None
        self._obs_jacobian: torch.Tensor | None = None

    @property
    def noise_variance(self) -> torch.Tensor:
        r""":math:`\sigma_y^2` (differentiable)."""
        return self.log_noise_variance.exp()

    # --- matrix-free products -------------------------------------------------------------
    def forward_op(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`A x` for flat images ``(B, N)``, returning ``(B, m)``."""
        return self.op(x.reshape(len(x), *self.op.domain_shape)).reshape(len(x), self.n_obs)

    def adjoint_op(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`A^T v` for flat measurements ``(B, m)``, returning ``(B, N)``."""
        return self.op.T(v.reshape(len(v), *self.op.range_shape)).reshape(len(v), self.n_pixels)

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`J v`, flat images ``(B, N)``."""
        return self.linearisation.jvp(v).reshape(len(v), self.n_pixels)

    def vjp(self, u: torch.Tensor) -> torch.Tensor:
        """:math:`J^T u` for flat images ``u`` ``(B, N)``."""
        return self.linearisation.vjp(u.reshape(len(u), *self.linearisation.out_shape))

    def image_cov_mv(self, u: torch.Tensor) -> torch.Tensor:
        r""":math:`J \Sigma_\theta J^T u` for flat images ``(B, N)``."""
        with torch.no_grad():
            return self.jvp(self.prior.cov_mv(self.vjp(u)))

    def prior_mv(self, v: torch.Tensor) -> torch.Tensor:
        r""":math:`A J \Sigma_\theta J^T A^T v` (no noise term) for ``(B, m)``."""
        return self.forward_op(self.image_cov_mv(self.adjoint_op(v)))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        r""":math:`K_{yy} v` for flat measurements ``v`` ``(B, m)`` (not differentiable)."""
        if not isinstance(v, torch.Tensor) or v.ndim != 2 or v.shape[1] != self.n_obs:
            got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"expected measurements of shape (B, {self.n_obs}), got {got}")
        with torch.no_grad():
            return self.prior_mv(v) + self.noise_variance * v

    # --- assembled matrices (small problems) ----------------------------------------------
    def jacobian(self) -> torch.Tensor:
        """The dense :math:`J` ``(N, n_params)``, computed once and cached."""
        if self._jacobian is None:
            self._jacobian = self.linearisation.dense()
        return self._jacobian

    def obs_jacobian(self) -> torch.Tensor:
        """The dense :math:`A J` ``(m, n_params)``, computed once and cached."""
        if self._obs_jacobian is None:
            with torch.no_grad():
                self._obs_jacobian = self.forward_op(self.jacobian().T).T.contiguous()
        return self._obs_jacobian

    def preconditioner(
        self, rank: int, *, generator: torch.Generator | None = None
    ) -> NystromPreconditioner:
        """A :class:`~recon.dip.pcg.NystromPreconditioner` of :math:`K_{yy}`: the prior part
        (:meth:`prior_mv`) sketched at ``rank``, shifted by the current :math:`\\sigma_y^2`."""
        return NystromPreconditioner.build(
            self.prior_mv,
            self.n_obs,
            rank,
            shift=lambda: self.noise_variance.detach(),
            dtype=self.linearisation.dtype,
            device=self.linearisation.device,
            generator=generator,
        )

    def assemble(self, *, noise: bool = True) -> torch.Tensor:
        """:math:`K_{yy}` (or without ``noise`` its prior part) as an ``(m, m)`` matrix,
        differentiable in the hyper-parameters."""
        aj = self.obs_jacobian()
        cov = aj @ self.prior.cov_mv(aj).T
        cov = 0.5 * (cov + cov.T)
        if noise:
            cov = cov + self.noise_variance * torch.eye(
                self.n_obs, dtype=aj.dtype, device=aj.device
            )
        return cov

    def assemble_image_cov(self) -> torch.Tensor:
        r""":math:`J \Sigma_\theta J^T` as an ``(N, N)`` matrix, differentiable."""
        jac = self.jacobian()
        cov = jac @ self.prior.cov_mv(jac).T
        return 0.5 * (cov + cov.T)


def exact_log_det(cov: ObservationCov) -> torch.Tensor:
    r""":math:`\log\det K_{yy}` from the assembled matrix (Cholesky), differentiable."""
    chol = torch.linalg.cholesky(cov.assemble())
    return 2 * chol.diagonal().log().sum()


def _check_y(cov: ObservationCov, y: torch.Tensor) -> torch.Tensor:
    shape = tuple(cov.op.range_shape)
    if not isinstance(y, torch.Tensor) or tuple(y.shape) not in (shape, (1, *shape)):
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"y must be one measurement of shape {shape}, got {got}")
    if not bool(torch.isfinite(y).all()):
        raise ValueError("y holds NaN or infinite values")
    return y.reshape(1, cov.n_obs).to(cov.linearisation.dtype)


def _data_terms(cov: ObservationCov, y: torch.Tensor) -> torch.Tensor:
    """``0.5 (‖y − A f(θ*)‖² / σ² + θ*ᵀ Σ⁻¹ θ*)``, differentiable."""
    lin = cov.linearisation
    with torch.no_grad():
        sse = ((y - cov.forward_op(lin.image.reshape(1, -1))) ** 2).sum()
    theta = lin.theta[None]
    return 0.5 * (sse / cov.noise_variance + (cov.prior.inv_mv(theta) * theta).sum())


def negative_log_evidence(cov: ObservationCov, y: torch.Tensor) -> torch.Tensor:
    r"""The exact negative log evidence of the module docstring (assembled :math:`K_{yy}`),
    differentiable in the hyper-parameters. ``y`` has ``op.range_shape``."""
    y = _check_y(cov, y)
    return _data_terms(cov, y) + 0.5 * (exact_log_det(cov) + cov.n_obs * math.log(2 * math.pi))


def _probes(n: int, m: int, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    signs = torch.randint(0, 2, (n, m), generator=generator, device=like.device)
    return (2 * signs - 1).to(like.dtype)


def log_det_grad_hutchinson(
    cov: ObservationCov,
    *,
    n_probes: int = 8,
    precond: NystromPreconditioner | None = None,
    probes: str = "rademacher",
    cg_tol: float = 1e-3,
    cg_max_iter: int = 50,
    generator: torch.Generator | None = None,
) -> tuple[dict[str, torch.Tensor], CGInfo]:
    r"""Estimate the gradient of :math:`\tfrac12\log\det K_{yy}` in the hyper-parameters.

    :math:`\tfrac12\partial_h\log\det K = \tfrac12\operatorname{tr}(K^{-1}\partial_h K)
    \approx \frac1{2s}\sum_i (K^{-1}z_i)^T A J\,\partial_h\Sigma_\theta\,J^T A^T w_i`, the right
    side by autograd of :math:`\langle\Sigma_\theta a_i, b_i\rangle` with
    :math:`a_i = J^TA^TK^{-1}z_i`, :math:`b_i = J^TA^Tw_i` held fixed. Rademacher probes
    (``probes="rademacher"``) have :math:`w_i = z_i`; preconditioned probes
    (``"preconditioned"``, GPyTorch's) draw :math:`z_i \sim \mathcal N(0, P)` and take
    :math:`w_i = P^{-1}z_i`. :math:`K^{-1}z_i` comes from :func:`pcg`.

    Returns
    -------
    grads : dict
        ``"log_variance"``, ``"log_lengthscale"`` (of the prior) and ``"log_noise_variance"``.
    info : CGInfo
        The CG solve's iterations and residuals.
    """
    n_probes = check_int("n_probes", n_probes, minimum=1)
    check_choice("probes", probes, ("rademacher", "preconditioned"))
    lin = cov.linearisation
    if probes == "preconditioned":
        if precond is None:
            raise ValueError('probes="preconditioned" needs a preconditioner (precond=...)')
        z = precond.sample(n_probes, generator=generator)
        w = precond.inverse(z)
    else:
        z = w = _probes(n_probes, cov.n_obs, generator, lin.theta)
    solve, info = pcg(
        cov,
        z,
        precond=None if precond is None else precond.inverse,
        tol=cg_tol,
        max_iter=cg_max_iter,
    )
    with torch.no_grad():
        left = cov.vjp(cov.adjoint_op(solve))
        right = cov.vjp(cov.adjoint_op(w))
    prior = cov.prior
    scalar = 0.5 * (prior.cov_mv(left) * right).sum(dim=1).mean()
    g_var, g_len = torch.autograd.grad(
        scalar, (prior.log_variance, prior.log_lengthscale), allow_unused=True
    )
    noise = 0.5 * cov.noise_variance.detach() * (solve * w).sum(dim=1).mean()
    grads = {
        "log_variance": torch.zeros_like(prior.log_variance) if g_var is None else g_var,
        "log_lengthscale": torch.zeros_like(prior.log_lengthscale) if g_len is None else g_len,
        "log_noise_variance": noise,
    }
    return grads, info


def gprior_scale(
    cov: ObservationCov,
    *,
    n_probes: int | None = None,
    eps: float = 1e-6,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""The g-prior scale :math:`s_i = (\lVert (AJ)_{:,i}\rVert^2 / m)^{-1/2}` ``(n_params,)``.

    Exact from the assembled :math:`AJ` (``n_probes=None``, small problems), else estimated
    from :math:`\operatorname{diag}(J^TA^TAJ) = \mathbb E[(J^TA^T z)^2]` with ``n_probes``
    Rademacher probes. Norms below ``eps`` are raised to ``eps``. Set it with
    :meth:`~recon.dip.weight_prior.WeightPrior.set_gprior_scale`.
    """
    eps = check_positive("eps", eps)
    if n_probes is None:
        diag = (cov.obs_jacobian() ** 2).sum(dim=0)
    else:
        n_probes = check_int("n_probes", n_probes, minimum=1)
        z = _probes(n_probes, cov.n_obs, generator, cov.linearisation.theta)
        with torch.no_grad():
            diag = (cov.vjp(cov.adjoint_op(z)) ** 2).mean(dim=0)
    return 1 / (diag / cov.n_obs).sqrt().clamp_min(eps)


class MarginalLikelihoodFit:
    r"""Type-II maximum likelihood of ``cov``'s hyper-parameters by Adam, resumable.

    Parameters
    ----------
    cov : ObservationCov
        Its parameters are optimised in place.
    y : torch.Tensor
        The measurement, ``op.range_shape``.
    method : {"exact", "hutchinson"}
        Autograd through the exact log-determinant (small problems), or the Hutchinson + CG
        estimate of its gradient (:func:`log_det_grad_hutchinson`).
    lr : float
        Adam's learning rate.
    n_probes, probes, cg_tol, cg_max_iter
        Of the Hutchinson estimate.
    precond_rank : int
        Rank of the :class:`NystromPreconditioner` (0: none).
    precond_every : int
        Steps between preconditioner refreshes.
    min_log_variance : float, optional
        Clamp the prior log-variances from below after each step.
    seed : int
        Seeds the probes and sketches (a generator of its own, saved in :meth:`state_dict`).

    Example
    -------
    >>> from operators import IdentityOperator
    >>> from recon.dip.linearised import Linearisation
    >>> from recon.dip.weight_prior import WeightPrior
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.Conv2d(2, 1, 1))
    >>> net = net.double()
    >>> prior = WeightPrior.for_network(net)
    >>> z = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    >>> lin = Linearisation(net, z, names=prior.names)
    >>> cov = ObservationCov(lin, prior, IdentityOperator((4, 4)), noise_variance=0.1)
    >>> y = lin.image[0] + 0.1 * torch.randn(4, 4, dtype=torch.float64)
    >>> fit = MarginalLikelihoodFit(cov, y, lr=0.1)
    >>> before = negative_log_evidence(cov, y).item()
    >>> history = fit.run(20, progress=False)  # resume later with fit.load_state_dict(state)
    >>> negative_log_evidence(cov, y).item() < before, fit.step_count
    (True, 20)
    """

    def __init__(
        self,
        cov: ObservationCov,
        y: torch.Tensor,
        *,
        method: str = "exact",
        lr: float = 0.01,
        n_probes: int = 8,
        probes: str = "rademacher",
        cg_tol: float = 1e-3,
        cg_max_iter: int = 50,
        precond_rank: int = 100,
        precond_every: int = 50,
        min_log_variance: float | None = None,
        seed: int = 0,
    ) -> None:
        if not isinstance(cov, ObservationCov):
            raise TypeError(f"cov must be an ObservationCov, got {type(cov).__name__}")
        self.cov = cov
        self.y = _check_y(cov, y)
        self.method = check_choice("method", method, ("exact", "hutchinson"))
        self.n_probes = check_int("n_probes", n_probes, minimum=1)
        self.probes = check_choice("probes", probes, ("rademacher", "preconditioned"))
        self.cg_tol = check_positive("cg_tol", cg_tol)
        self.cg_max_iter = check_int("cg_max_iter", cg_max_iter, minimum=1)
        self.precond_rank = check_int("precond_rank", precond_rank, minimum=0)
        self.precond_every = check_int("precond_every", precond_every, minimum=1)
        if probes == "preconditioned" and self.precond_rank == 0:
            raise ValueError('probes="preconditioned" needs precond_rank > 0')
        if min_log_variance is not None and not math.isfinite(min_log_variance):
            raise ValueError(f"min_log_variance must be finite or None, got {min_log_variance}")
        self.min_log_variance = min_log_variance
        self.optimizer = torch.optim.Adam(cov.parameters(), lr=check_positive("lr", lr))
        self.generator = torch.Generator(cov.linearisation.device).manual_seed(seed)
        self.precond: NystromPreconditioner | None = None
        self.step_count = 0

    def _refresh(self) -> None:
        if self.precond_rank and (
            self.precond is None or self.step_count % self.precond_every == 0
        ):
            self.precond = self.cov.preconditioner(self.precond_rank, generator=self.generator)

    def step(self) -> dict[str, float]:
        """One Adam step; returns the loss (the data terms only for ``"hutchinson"``) and
        :math:`\\sigma_y^2` (and the CG iterations and mean residual)."""
        cov = self.cov
        self.optimizer.zero_grad()
        record: dict[str, float] = {"step": float(self.step_count + 1)}
        if self.method == "exact":
            loss = negative_log_evidence(cov, self.y.reshape(cov.op.range_shape))
            loss.backward()
        else:
            self._refresh()
            grads, info = log_det_grad_hutchinson(
                cov,
                n_probes=self.n_probes,
                precond=self.precond,
                probes=self.probes,
                cg_tol=self.cg_tol,
                cg_max_iter=self.cg_max_iter,
                generator=self.generator,
            )
            loss = _data_terms(cov, self.y)
            loss.backward()
            cov.prior.log_variance.grad += grads["log_variance"]
            cov.prior.log_lengthscale.grad = (
                grads["log_lengthscale"]
                if cov.prior.log_lengthscale.grad is None
                else cov.prior.log_lengthscale.grad + grads["log_lengthscale"]
            )
            cov.log_noise_variance.grad += grads["log_noise_variance"]
            record.update(cg_iter=float(info.n_iter), cg_residual=float(info.residual.mean()))
        self.optimizer.step()
        if self.min_log_variance is not None:
            with torch.no_grad():
                cov.prior.log_variance.clamp_(min=self.min_log_variance)
        self.step_count += 1
        record.update(loss=loss.item(), noise_variance=cov.noise_variance.item())
        if not math.isfinite(record["loss"]):
            raise DivergenceError(f"type-II ML: the loss is {record['loss']}; lower lr")
        return record

    def run(
        self,
        n_iter: int,
        *,
        progress: bool = True,
        callback: Callable[[dict[str, float]], None] | None = None,
    ) -> list[dict[str, float]]:
        """``n_iter`` more steps with a tqdm progress bar; returns their records."""
        n_iter = check_int("n_iter", n_iter, minimum=0)
        history = []
        with tqdm(range(n_iter), desc="type-II ML", disable=not progress) as bar:
            for _ in bar:
                record = self.step()
                history.append(record)
                bar.set_postfix(
                    loss=f"{record['loss']:.4g}", noise=f"{record['noise_variance']:.3g}"
                )
                if callback is not None:
                    callback(record)
        return history

    def state_dict(self) -> dict:
        """Hyper-parameters, optimiser, step count, generator state and preconditioner."""
        return {
            "cov": self.cov.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step_count,
            "generator": self.generator.get_state(),
            "precond": None if self.precond is None else self.precond.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume from :meth:`state_dict`: the following steps equal an uninterrupted run."""
        missing = {"cov", "optimizer", "step", "generator", "precond"} - set(state)
        if missing:
            raise ValueError(f"not a MarginalLikelihoodFit state: missing {sorted(missing)}")
        self.cov.load_state_dict(state["cov"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step_count = int(state["step"])
        self.generator.set_state(state["generator"])
        pre = state["precond"]
        self.precond = (
            None
            if pre is None
            else NystromPreconditioner(
                pre["u"], pre["lam"], lambda: self.cov.noise_variance.detach()
            )
        )
