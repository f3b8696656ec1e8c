"""Training: one :class:`Trainer`, and the tasks it trains.

Rooms:

- :mod:`~recon.training.trainer`: the :class:`Trainer` (seeded, exact resume, atomic
  checkpoints, TensorBoard on rank 0, progress bar, validation, AMP, torch.distributed).
- :mod:`~recon.training.tasks`: what is learned and how (supervised, denoising, autoencoder,
  adversarial, mirror, correction): a new way to learn is a new task, never a new loop.
- :mod:`~recon.training.sampler`: the seeded, resumable data order.
- :mod:`~recon.training.precision`: what ``amp`` means on a device.
- :mod:`~recon.training.images`: image grids for TensorBoard.
- :mod:`~recon.training.distributed`: joining a torchrun/SLURM process group.

Example
-------
>>> import tempfile, torch
>>> data = torch.utils.data.TensorDataset(torch.rand(8, 3))
>>> trainer = Trainer(torch.nn.Linear(3, 1), train_data=data, val_data=None,
...                   objective=lambda model, batch: model(batch[0]).square().mean(),
...                   out_dir=tempfile.mkdtemp(), max_steps=2, batch_size=4, progress=False)
>>> trainer.fit()["step"]
2
"""

from recon.training.images import image_grid, sample_grid
from recon.training.precision import cpu_has_native_bfloat16
from recon.training.tasks import (
    FunctionTask,
    SupervisedTask,
    Task,
    reconstruction_predict,
    supervised_objective,
)
from recon.training.trainer import Trainer

__all__ = [
    "FunctionTask",
    "SupervisedTask",
    "Task",
    "Trainer",
    "cpu_has_native_bfloat16",
    "image_grid",
    "reconstruction_predict",
    "sample_grid",
    "supervised_objective",
]
