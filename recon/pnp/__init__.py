r"""Plug-and-play reconstruction: proximal algorithms whose prior step is a learned denoiser.

Rooms:

- :mod:`~recon.pnp.algorithms`: :func:`pnp_pgd`, :func:`pnp_admm`, :func:`pnp_hqs`, :func:`red`
  and DPIR's :func:`dpir_schedule`, with fixed parameters.
- :mod:`~recon.pnp.reconstructors`: :class:`PnPPGD`, :class:`PnPADMM`, :class:`PnPHQS`,
  :class:`RED`: the algorithms as reconstructors (``forward(y, op) -> x``) for configs.
- :mod:`~recon.pnp.unfolded`: :class:`UnfoldedPnP`, the same iterations unrolled with trainable
  per-iteration noise levels and step sizes.

Their steps are written once, in :mod:`recon.solvers.splitting`; the denoisers themselves are
trained by :class:`recon.training.tasks.DenoisingTask` (``recon-train
experiment=ellipses/pnp_denoiser``).

For the data term :math:`f(x) = \tfrac12\|Ax - y\|^2` and a denoiser :math:`D_\sigma` (any
callable ``denoiser(x, sigma)`` on images ``(N, 1, *op.domain_shape)``, e.g.
:class:`models.DnCNN`, :class:`models.DRUNet`, :class:`models.GSDenoiser`), the proximal map of
the unknown regulariser is replaced by the denoiser (Venkatakrishnan et al. 2013):

- :func:`pnp_pgd`, proximal gradient: :math:`x_{k+1} = D_\sigma\big(x_k - \tau A^T(Ax_k - y)\big)`.
- :func:`pnp_admm`: :math:`x_{k+1} = \operatorname{prox}_{f/\rho}(z_k - u_k)`,
  :math:`z_{k+1} = D_\sigma(x_{k+1} + u_k)`, :math:`u_{k+1} = u_k + x_{k+1} - z_{k+1}`.
- :func:`pnp_hqs`, half-quadratic splitting with DPIR's decreasing noise levels
  (:func:`dpir_schedule`): :math:`x_k = \operatorname{prox}_{f/\alpha_k}(z_{k-1})`,
  :math:`z_k = D_{\sigma_k}(x_k)`.
- :func:`red`, regularisation by denoising: the gradient :math:`x - D_\sigma(x)` of
  :math:`\tfrac12 x^T(x - D_\sigma(x))` in a gradient or a fixed-point iteration.

The data sub-problem :math:`\operatorname{prox}_{f/\alpha}(v) = \arg\min_x \tfrac12\|Ax - y\|^2 +
\tfrac\alpha2\|x - v\|^2` is solved inexactly by :func:`recon.solvers.cgls` on the stacked system
:math:`[A; \sqrt\alpha I]\,x \approx [y; \sqrt\alpha v]` (``inner_iter`` iterations, warm started),
or by ``inner_iter`` gradient steps. Every step size is relative to :math:`\|A\|^2`
(``op.norm()``), so the same settings work across operators and units. All functions work on
any batch ``y`` of shape ``(*batch, *op.range_shape)`` and raise :class:`DivergenceError` (from
:mod:`recon.solvers`) when an iterate or a denoiser output is not finite or an iterate blows up.

References: S. V. Venkatakrishnan, C. A. Bouman, B. Wohlberg, "Plug-and-play priors for model
based reconstruction", GlobalSIP 2013. K. Zhang, Y. Li, W. Zuo, L. Zhang, L. Van Gool, R. Timofte,
"Plug-and-play image restoration with deep denoiser prior" (DPIR), IEEE TPAMI 2022. Y. Romano,
M. Elad, P. Milanfar, "The little engine that could: regularization by denoising (RED)", SIAM J.
Imaging Sci. 10(4), 2017. K. Wei, A. Aviles-Rivero, J. Liang, Y. Fu, C.-B. Schönlieb, H. Huang,
"Tuning-free plug-and-play proximal algorithm for inverse imaging problems" (TFPnP), ICML 2020.
S. Hurault, A. Leclaire, N. Papadakis, "Proximal denoiser for convergent plug-and-play
optimization with nonconvex regularization", ICML 2022.

Example
-------
>>> import torch
>>> from operators import MatrixOperator
>>> op = MatrixOperator(torch.randn(40, 64), domain_shape=(8, 8), range_shape=(40,))
>>> smooth = lambda x, sigma: torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
>>> x = pnp_pgd(op(torch.ones(2, 8, 8)), op, smooth, sigma=0.1, n_iter=20)
>>> x.shape
torch.Size([2, 8, 8])
"""

from recon.pnp.algorithms import RED_MODES, dpir_schedule, pnp_admm, pnp_hqs, pnp_pgd, red
from recon.pnp.reconstructors import INITS, RED, PnPADMM, PnPHQS, PnPPGD
from recon.pnp.unfolded import ALGORITHMS, UnfoldedPnP
from recon.solvers import DivergenceError
from recon.solvers.splitting import INNER_SOLVERS

__all__ = [
    "ALGORITHMS",
    "INITS",
    "INNER_SOLVERS",
    "RED",
    "RED_MODES",
    "DivergenceError",
    "PnPADMM",
    "PnPHQS",
    "PnPPGD",
    "UnfoldedPnP",
    "dpir_schedule",
    "pnp_admm",
    "pnp_hqs",
    "pnp_pgd",
    "red",
]
