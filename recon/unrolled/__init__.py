"""Learned reconstruction networks that see the operator: unrolled schemes and post-processing.

Rooms:

- :mod:`~recon.unrolled.networks`: ``LearnedGradient`` and ``LearnedPrimalDual`` (Adler & Öktem).
- :mod:`~recon.unrolled.fbpunet`: ``FBPUNet``, FBP followed by a residual U-Net (FBPConvNet).
- :mod:`~recon.unrolled.noise2inverse`: ``Noise2Inverse``, split-angle FBPs denoised by a U-Net
  learnt from the measurements alone.

Example
-------
>>> import torch
>>> from operators import Parallel2D, RayTransform
>>> op = RayTransform(Parallel2D((32, 32), n_angles=10), backend="matrix")
>>> LearnedPrimalDual(n_iter=2)(torch.zeros(1, 1, *op.range_shape), op).shape
torch.Size([1, 1, 32, 32])
"""

from recon.unrolled.fbpunet import FBPUNet
from recon.unrolled.networks import INITS, LearnedGradient, LearnedPrimalDual
from recon.unrolled.noise2inverse import Noise2Inverse, angle_subsets, subset_operator

__all__ = [
    "INITS",
    "FBPUNet",
    "LearnedGradient",
    "LearnedPrimalDual",
    "Noise2Inverse",
    "angle_subsets",
    "subset_operator",
]
