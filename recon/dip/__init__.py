"""The deep image prior (DIP): a network fitted to one image's measurements, cold or warm.

Rooms:

- :mod:`~recon.dip.fitting`: the network input (FBP, scaled adjoint or noise), the loss
  (mean squared residual plus γ·TV) and the Adam loop over per-image weights, batched by
  ``torch.func.vmap``; the result keeps the fitted weights.
- :mod:`~recon.dip.reconstructors`: ``DeepImagePrior``, the ``forward(y, op)`` reconstructor
  (cold start from seeded weights, or warm start from the network given).
- :mod:`~recon.dip.linearised`: Jacobian products of the network around its fitted weights.
- :mod:`~recon.dip.weight_prior`: Matérn-½ / isotropic / g-prior Gaussian priors on the weights.
- :mod:`~recon.dip.pcg`: batched preconditioned CG and a Nyström preconditioner.
- :mod:`~recon.dip.marginal_likelihood`: ``K_yy``, its log-determinant and type-II ML.
- :mod:`~recon.dip.posterior`: the predictive posterior, exact or by Matheron sampling.
- :mod:`~recon.dip.warm_start`: loading a pretrained network (``recon-train
  experiment=dip/pretrain``) for the warm ("educated") start.

The network is :class:`models.dip_unet.DIPUNet`. Guide: ``docs/guide/dip.md``.

Example
-------
>>> import torch
>>> from operators import Parallel2D, RayTransform
>>> from models.dip_unet import DIPUNet
>>> op = RayTransform(Parallel2D((16, 16), n_angles=8), backend="matrix")
>>> dip = DeepImagePrior(network=DIPUNet(channels=4, scales=2), gamma=1e-4, n_iter=2,
...                      progress=False)
>>> dip(op(torch.rand(2, 16, 16)), op).shape
torch.Size([2, 16, 16])
"""

from recon.dip.fitting import (
    BATCH_MODES,
    INPUTS,
    KEEP,
    DIPResult,
    dip_input,
    dip_loss,
    eval_mode,
    fit_dip,
    initial_weights,
    load_weights,
)
from recon.dip.linearised import Linearisation, check_eval_mode
from recon.dip.marginal_likelihood import (
    MarginalLikelihoodFit,
    ObservationCov,
    exact_log_det,
    gprior_scale,
    log_det_grad_hutchinson,
    negative_log_evidence,
)
from recon.dip.pcg import CGInfo, NystromPreconditioner, pcg
from recon.dip.posterior import (
    PredictivePosterior,
    exact_posterior,
    linearised_mean,
    sample_posterior,
)
from recon.dip.reconstructors import INITS, DeepImagePrior, default_dip_network
from recon.dip.warm_start import load_pretrained_unet, submodule_state
from recon.dip.weight_prior import PRIOR_KINDS, PriorBlock, WeightPrior, default_prior_blocks

__all__ = [
    "BATCH_MODES",
    "PRIOR_KINDS",
    "CGInfo",
    "Linearisation",
    "MarginalLikelihoodFit",
    "NystromPreconditioner",
    "ObservationCov",
    "PredictivePosterior",
    "PriorBlock",
    "WeightPrior",
    "check_eval_mode",
    "default_prior_blocks",
    "exact_log_det",
    "exact_posterior",
    "gprior_scale",
    "linearised_mean",
    "log_det_grad_hutchinson",
    "negative_log_evidence",
    "pcg",
    "sample_posterior",
    "INITS",
    "INPUTS",
    "KEEP",
    "DIPResult",
    "DeepImagePrior",
    "default_dip_network",
    "dip_input",
    "dip_loss",
    "eval_mode",
    "fit_dip",
    "initial_weights",
    "load_pretrained_unet",
    "load_weights",
    "submodule_state",
]
