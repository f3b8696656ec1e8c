"""Generative regularisers: reconstruction in (or near) the range of a trained generator ``G``.

Rooms:

- :mod:`~recon.generative.formulations`: the hard, soft and sparse-deviation objectives and their
  solvers (Adam on the latent code; CG and FISTA of :mod:`recon.solvers` on the image variable).
- :mod:`~recon.generative.latent`: the latent search they share: the generator interface,
  restarts and starting codes, Adam steps on ``z``, :class:`GenerativeResult`.
- :mod:`~recon.generative.reconstructors`: :class:`HardGenerative`, :class:`SoftGenerative`,
  :class:`SparseDeviationGenerative` (``forward(y, op) -> x``) and :func:`load_generator`.

The generators (:mod:`models.autoencoder`, :mod:`models.gan`) are trained by the one
:class:`~recon.training.Trainer` with the tasks :class:`~recon.training.tasks.AutoencoderTask`,
:class:`~recon.training.tasks.VAETask` and :class:`~recon.training.tasks.AdversarialTask`:
``recon-train experiment=generative/{ae,vae,gan}``; ``recon-eval
protocol=generative/ellipses64`` compares the three formulations with TV.

Example
-------
>>> import torch
>>> from models import Autoencoder
>>> from operators import Parallel2D, RayTransform
>>> op = RayTransform(Parallel2D((16, 16), n_angles=8), backend="matrix")
>>> ae = Autoencoder(image_size=16, latent_dim=8, channels=4)
>>> recon = HardGenerative(generator=load_generator(model=ae), alpha=0.1, n_iter=5)
>>> recon(torch.rand(2, 8, 23), op).shape
torch.Size([2, 16, 16])
"""

from recon.generative.formulations import (
    hard_generative,
    hard_objective,
    soft_generative,
    soft_objective,
    sparse_deviation_generative,
    sparse_deviation_objective,
)
from recon.generative.latent import INITS, GenerativeResult, check_generator, decode_samples
from recon.generative.reconstructors import (
    HardGenerative,
    SoftGenerative,
    SparseDeviationGenerative,
    load_generator,
)

__all__ = [
    "INITS",
    "GenerativeResult",
    "HardGenerative",
    "SoftGenerative",
    "SparseDeviationGenerative",
    "check_generator",
    "decode_samples",
    "hard_generative",
    "hard_objective",
    "load_generator",
    "soft_generative",
    "soft_objective",
    "sparse_deviation_generative",
    "sparse_deviation_objective",
]
