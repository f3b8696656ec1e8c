r"""The predictive posterior of the image under the linearised DIP (Antorán et al. 2022, eq. 5).

Given :class:`~recon.dip.marginal_likelihood.ObservationCov` ``cov`` (:math:`J`,
:math:`\Sigma_\theta`, :math:`A`, :math:`\sigma_y^2`), the image covariance
:math:`K_{xx} = J\Sigma_\theta J^T` is conditioned on the measurement:

.. math:: \operatorname{Cov}(x \mid y) = K_{xx} - K_{xx}A^T K_{yy}^{-1} A K_{xx}.

The mean is the DIP reconstruction :math:`f(\theta^*)` (``mean="map"``, the paper's choice) or
the exact posterior mean of the linearised model (``mean="linearised"``),
:math:`\mu_0 + K_{xx}A^T K_{yy}^{-1}(y - A\mu_0)` with prior mean
:math:`\mu_0 = f(\theta^*) - J\theta^*`.

- :func:`exact_posterior` assembles the covariance (small problems).
- :func:`sample_posterior` draws samples by pathwise conditioning (Matheron's rule):
  :math:`x = \bar x + x_0 - K_{xx}A^T K_{yy}^{-1}(A x_0 + \varepsilon)` with
  :math:`x_0 = J\theta_0`, :math:`\theta_0 \sim \mathcal N(0, \Sigma_\theta)`,
  :math:`\varepsilon \sim \mathcal N(0, \sigma_y^2 I)`; the solve uses preconditioned CG
  (:func:`~recon.dip.marginal_likelihood.pcg`) at scale or a Cholesky factor of the assembled
  :math:`K_{yy}`. The per-pixel std and patch covariances come from the samples.

Both return a :class:`PredictivePosterior` (mean, std, samples and, if exact, the covariance).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from data_tools.uq_metrics import patch_covariances
from recon.checks import check_choice, check_int, check_positive
from recon.dip.marginal_likelihood import ObservationCov
from recon.dip.pcg import pcg

__all__ = ["PredictivePosterior", "exact_posterior", "linearised_mean", "sample_posterior"]


@dataclass
class PredictivePosterior:
    """A Gaussian predictive posterior of one image.

    Attributes
    ----------
    mean : torch.Tensor
        The predictive mean, of the operator's ``domain_shape``.
    std : torch.Tensor
        The per-pixel standard deviation, same shape.
    samples : torch.Tensor or None
        Posterior samples ``(n, *domain_shape)`` (from :func:`sample_posterior`).
    cov : torch.Tensor or None
        The exact covariance ``(N, N)`` over the flattened image (from :func:`exact_posterior`).
    """

    mean: torch.Tensor
    std: torch.Tensor
    samples: torch.Tensor | None = None
    cov: torch.Tensor | None = None

    def patch_covariances(self, patch_size: int) -> list[torch.Tensor]:
        """The covariance of every ``patch_size`` × ``patch_size`` patch (the patches of
        :func:`data_tools.uq_metrics.patch_indices`), from :attr:`cov` if present, else from
        :attr:`samples` around :attr:`mean`."""
        if self.cov is None and self.samples is None:
            raise ValueError("this posterior holds neither a covariance nor samples")
        return patch_covariances(
            tuple(self.mean.shape),
            patch_size,
            cov=self.cov,
            samples=None if self.cov is not None else self.samples,
            mean=self.mean,
        )


def _y(cov: ObservationCov, y: torch.Tensor | None, mean: str) -> torch.Tensor | None:
    check_choice("mean", mean, ("map", "linearised"))
    if mean == "map":
        return None
    shape = tuple(cov.op.range_shape)
    if not isinstance(y, torch.Tensor) or tuple(y.shape) not in (shape, (1, *shape)):
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f'mean="linearised" needs y of shape {shape}, got {got}')
    return y.reshape(1, cov.n_obs).to(cov.linearisation.dtype)


def _prior_mean_residual(cov: ObservationCov, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``μ₀ = f(θ*) − Jθ*`` (flat, ``(1, N)``) and ``y − A μ₀``."""
    lin = cov.linearisation
    mu0 = lin.image.reshape(1, -1) - cov.jvp(lin.theta[None])
    return mu0, y - cov.forward_op(mu0)


def linearised_mean(
    cov: ObservationCov,
    y: torch.Tensor,
    *,
    solver: str = "cholesky",
    cg_tol: float = 1e-6,
    cg_max_iter: int = 200,
    precond_rank: int = 0,
) -> torch.Tensor:
    r"""The posterior mean of the linearised model, :math:`\mu_0 + K_{xx}A^T K_{yy}^{-1}
    (y - A\mu_0)`, of shape ``op.domain_shape``; ``solver`` ``"cholesky"`` (assembled
    :math:`K_{yy}`) or ``"cg"``."""
    check_choice("solver", solver, ("cholesky", "cg"))
    y = _y(cov, y, "linearised")
    with torch.no_grad():
        mu0, residual = _prior_mean_residual(cov, y)
        if solver == "cholesky":
            weights = torch.cholesky_solve(residual.T, torch.linalg.cholesky(cov.assemble())).T
        else:
            pre = cov.preconditioner(precond_rank) if precond_rank else None
            weights, _ = pcg(
                cov,
                residual,
                precond=None if pre is None else pre.inverse,
                tol=cg_tol,
                max_iter=cg_max_iter,
            )
        mean = mu0 + cov.image_cov_mv(cov.adjoint_op(weights))
    return mean.reshape(cov.op.domain_shape)


def exact_posterior(
    cov: ObservationCov, y: torch.Tensor | None = None, *, mean: str = "map"
) -> PredictivePosterior:
    r"""The predictive posterior with its covariance assembled (small problems: :math:`J` is
    formed, and an ``(N, N)`` matrix).

    Parameters
    ----------
    cov : ObservationCov
        The linearised model and its hyper-parameters.
    y : torch.Tensor, optional
        The measurement (``op.range_shape``), needed for ``mean="linearised"`` only: the
        covariance does not depend on it.
    mean : {"map", "linearised"}
        :math:`f(\theta^*)` or the linearised model's posterior mean.

    Returns
    -------
    PredictivePosterior
        With ``cov`` set and ``samples`` None.
    """
    y = _y(cov, y, mean)
    with torch.no_grad():
        prior = cov.assemble_image_cov()  # K_xx (N, N)
        projected = cov.forward_op(prior).T  # A K_xx (m, N)
        chol = torch.linalg.cholesky(cov.assemble())
        whitened = torch.linalg.solve_triangular(chol, projected, upper=False)
        post = prior - whitened.T @ whitened
        post = 0.5 * (post + post.T)
    shape = tuple(cov.op.domain_shape)
    if y is None:
        centre = cov.linearisation.image.reshape(shape)
    else:
        centre = linearised_mean(cov, y.reshape(cov.op.range_shape))
    std = post.diagonal().clamp_min(0).sqrt().reshape(shape)
    return PredictivePosterior(mean=centre.clone(), std=std, cov=post)


def sample_posterior(
    cov: ObservationCov,
    y: torch.Tensor | None = None,
    *,
    n_samples: int,
    batch_size: int = 64,
    mean: str = "map",
    solver: str = "cg",
    cg_tol: float = 1e-6,
    cg_max_iter: int = 200,
    precond_rank: int = 100,
    keep_samples: bool = True,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> PredictivePosterior:
    r"""Posterior samples by Matheron's rule, with their per-pixel std.

    Parameters
    ----------
    cov : ObservationCov
        The linearised model and its hyper-parameters.
    y : torch.Tensor, optional
        The measurement; needed for ``mean="linearised"`` only.
    n_samples : int
        Number of samples.
    batch_size : int
        Samples drawn at once (one batched CG solve each).
    mean : {"map", "linearised"}
        The centre of the samples (see the module docstring).
    solver : {"cg", "cholesky"}
        Preconditioned CG (matrix-free, at scale) or a Cholesky factor of the assembled
        :math:`K_{yy}` (small problems).
    cg_tol, cg_max_iter, precond_rank
        Of the CG solves (relative residual; iteration cap; rank of the Nyström
        preconditioner, 0 for none).
    keep_samples : bool
        Return the samples (else only mean and std are kept).
    generator : torch.Generator, optional
        Source of randomness (torch's global generator by default).
    progress : bool
        Show a tqdm progress bar over the batches.

    Returns
    -------
    PredictivePosterior
        ``std`` is the root mean square deviation of the samples from the mean (they are drawn
        around it exactly).

    Raises
    ------
    ValueError
        For non-positive counts, unknown names, or ``mean="linearised"`` without ``y``.
    """
    n_samples = check_int("n_samples", n_samples, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    check_choice("solver", solver, ("cg", "cholesky"))
    cg_tol = check_positive("cg_tol", cg_tol, allow_zero=True)
    precond_rank = check_int("precond_rank", precond_rank, minimum=0)
    y = _y(cov, y, mean)
    shape = tuple(cov.op.domain_shape)
    lin = cov.linearisation
    if y is None:
        centre = lin.image.reshape(1, -1)
    else:
        centre = linearised_mean(
            cov,
            y.reshape(cov.op.range_shape),
            solver=solver,
            cg_tol=cg_tol,
            cg_max_iter=cg_max_iter,
            precond_rank=precond_rank,
        ).reshape(1, -1)
    with torch.no_grad():
        chol = torch.linalg.cholesky(cov.assemble()) if solver == "cholesky" else None
        pre = None
        if solver == "cg" and precond_rank:
            pre = cov.preconditioner(precond_rank, generator=generator)
        sq_sum = torch.zeros_like(centre[0])
        kept = []
        done = 0
        with tqdm(total=n_samples, desc="Matheron samples", disable=not progress) as bar:
            while done < n_samples:
                n = min(batch_size, n_samples - done)
                x0 = cov.jvp(cov.prior.sample(n, generator=generator))
                noise = torch.randn(
                    n, cov.n_obs, generator=generator, dtype=lin.dtype, device=lin.device
                )
                y0 = cov.forward_op(x0) + cov.noise_variance.sqrt() * noise
                if chol is not None:
                    weights = torch.cholesky_solve(y0.T, chol).T
                else:
                    weights, _ = pcg(
                        cov,
                        y0,
                        precond=None if pre is None else pre.inverse,
                        tol=cg_tol,
                        max_iter=cg_max_iter,
                    )
                delta = x0 - cov.image_cov_mv(cov.adjoint_op(weights))
                sq_sum += (delta**2).sum(dim=0)
                if keep_samples:
                    kept.append((centre + delta).reshape(n, *shape))
                done += n
                bar.update(n)
    std = (sq_sum / n_samples).sqrt().reshape(shape)
    samples = torch.cat(kept) if keep_samples else None
    return PredictivePosterior(mean=centre.reshape(shape).clone(), std=std, samples=samples)
