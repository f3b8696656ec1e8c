"""The iterative maths, once: plain functions with a visible loop and a ``callback(k, x)``.

Rooms:

- :mod:`~recon.solvers.common`: per-element norms, broadcasting, the initial iterate, ``‖A‖``.
- :mod:`~recon.solvers.linear`: Landweber, SIRT, CGLS (least squares), CG on
  ``(AᵀA + sI)x = b``.
- :mod:`~recon.solvers.tv`: gradient and divergence, TV objective, TV by PDHG, ``-Δ``.
- :mod:`~recon.solvers.gradient`: (proximal) gradient descent and FISTA, with the usual proxes.
- :mod:`~recon.solvers.smoothed_tv`: smoothed TV, its gradient, ``SmoothedTV`` (least squares plus
  smoothed TV) and the Lipschitz bound of its gradient.
- :mod:`~recon.solvers.splitting`: the steps of plug-and-play PGD, ADMM, HQS (gradient step, data
  prox, denoiser call) and their divergence/stopping monitor.

Every family in :mod:`recon` calls these; none writes its own copy.

Example
-------
>>> import torch
>>> from operators import IdentityOperator
>>> cgls(torch.ones(3), IdentityOperator((3,)), n_iter=1)
tensor([1., 1., 1.])
"""

from recon.solvers.common import DivergenceError
from recon.solvers.gradient import fista, gradient_descent_loop, nonneg_projection, soft_threshold
from recon.solvers.linear import cg_normal, cgls, landweber, sirt
from recon.solvers.smoothed_tv import (
    SmoothedTV,
    smoothed_tv,
    smoothed_tv_gradient,
    tv_lipschitz,
)
from recon.solvers.splitting import (
    IterationMonitor,
    admm_step,
    data_prox,
    gradient_step,
    hqs_step,
    pgd_step,
)
from recon.solvers.tv import (
    divergence2d,
    divergence3d,
    gradient2d,
    gradient3d,
    smoothness_gradient,
    tv_ndim,
    tv_objective,
    tv_pdhg,
)

__all__ = [
    "cg_normal",
    "DivergenceError",
    "IterationMonitor",
    "admm_step",
    "data_prox",
    "gradient_step",
    "hqs_step",
    "pgd_step",
    "SmoothedTV",
    "cgls",
    "fista",
    "gradient_descent_loop",
    "nonneg_projection",
    "soft_threshold",
    "divergence2d",
    "divergence3d",
    "gradient2d",
    "gradient3d",
    "landweber",
    "sirt",
    "smoothed_tv",
    "smoothed_tv_gradient",
    "smoothness_gradient",
    "tv_lipschitz",
    "tv_ndim",
    "tv_objective",
    "tv_pdhg",
]
