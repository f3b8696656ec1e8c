"""Training tasks: what is learned and how, one small object each, for the one Trainer.

Rooms:

- :mod:`~recon.training.tasks.base`: the :class:`Task` contract, :class:`FunctionTask` (plain
  callables), :func:`as_task`.
- :mod:`~recon.training.tasks.supervised`: reconstructors on ``(x, y)`` pairs (the default).
- :mod:`~recon.training.tasks.denoising`: denoisers for plug-and-play, on noisy clean images.
- :mod:`~recon.training.tasks.mirror`: learned mirror descent, unsupervised (objective along the
  iterates plus the consistency of the mirror maps).
- :mod:`~recon.training.tasks.correction`: learned operator corrections against the accurate
  model, at the ground truth or at TV iterates.
- :mod:`~recon.training.tasks.autoencoder`: autoencoders and VAEs on clean images (the
  generators of :mod:`recon.generative`).
- :mod:`~recon.training.tasks.adversarial`: the WGAN-GP, two optimiser groups (critic,
  generator).
- :mod:`~recon.training.tasks.self_supervised`: from measurements alone: measurement consistency,
  SURE, equivariant imaging (robust EI); the losses in
  :mod:`~recon.training.tasks.self_supervised_losses`.
- :mod:`~recon.training.tasks.noise2inverse`: Noise2Inverse's X:1 training.

Example
-------
>>> SupervisedTask(op=None).validates
True
"""

from recon.training.tasks.adversarial import AdversarialTask
from recon.training.tasks.autoencoder import AutoencoderTask, VAETask
from recon.training.tasks.base import Batch, FunctionTask, Task, as_task, pair
from recon.training.tasks.correction import CorrectionTask
from recon.training.tasks.denoising import (
    DenoisingTask,
    denoising_objective,
    denoising_predict,
)
from recon.training.tasks.mirror import MirrorTask
from recon.training.tasks.noise2inverse import Noise2InverseTask
from recon.training.tasks.self_supervised import EquivariantTask, MeasurementConsistencyTask
from recon.training.tasks.supervised import (
    SupervisedTask,
    reconstruction_predict,
    supervised_objective,
)

__all__ = [
    "AdversarialTask",
    "AutoencoderTask",
    "Batch",
    "CorrectionTask",
    "DenoisingTask",
    "EquivariantTask",
    "FunctionTask",
    "MeasurementConsistencyTask",
    "MirrorTask",
    "Noise2InverseTask",
    "SupervisedTask",
    "Task",
    "VAETask",
    "as_task",
    "denoising_objective",
    "denoising_predict",
    "pair",
    "reconstruction_predict",
    "supervised_objective",
]
