"""One trainer for every learned part: seeded, resumable, logged, distributed.

:class:`Trainer` runs ``max_steps`` optimiser steps of an *objective* ``objective(model, batch) ->
scalar loss`` over a map-style dataset, and validates with a *predictor* ``predict(model, batch) ->
(estimate, truth)`` (PSNR and SSIM of :mod:`data_tools.metrics`, data range = the truth's max − min
per image). The reconstructors of :mod:`recon` follow ``forward(y, op) -> x``, so most of them train
with :func:`supervised_objective` and validate with :func:`reconstruction_predict`; other learned
parts (denoisers, learned operators, regularisers) bring their own objective and predictor.

Outputs under ``out_dir``, written by rank 0 only:

- ``run.json``: the run's configuration (trainer settings, model class, dataset sizes, ``hparams``).
- ``checkpoints/step_{N:08d}.pt``: every ``ckpt_every`` steps and at the end; the newest
  ``keep_last`` are kept. ``last.pt`` is the newest, ``best.pt`` the one with the best validation
  PSNR. Every file is written atomically (temporary file in the same folder, ``fsync``,
  ``os.replace``), so a run killed at any instant leaves only complete checkpoints.
- ``tb/``: TensorBoard scalars ``train/loss``, ``train/grad_norm``, ``lr``, ``val/psnr``,
  ``val/ssim``, the image grid ``val/images`` (rows ``[truth | reconstruction | |error|]``, one
  fixed window per logged image set: the truth's min and max) and, at the end, ``add_hparams``.

Reproducibility: the global torch/numpy/python RNGs are seeded with ``seed`` when a run starts, and
the data order comes from a :class:`torch.Generator` owned by the trainer that draws one permutation
per epoch. A checkpoint holds the model, optimiser, scheduler, gradient scaler, step, epoch, the
position in the epoch, the generator state at the start of the epoch and every rank's RNG states,
so ``fit(resume=True)`` continues a killed run with exactly the losses of an uninterrupted one.

Example
-------
>>> import tempfile, torch
>>> from torch import nn
>>> class Pairs(torch.utils.data.Dataset):
...     def __len__(self):
...         return 8
...     def __getitem__(self, i):
...         x = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(i))
...         return x, 2 * x
>>> class Halve(nn.Module):  # a "reconstructor": forward(y, op) -> x
...     def __init__(self):
...         super().__init__()
...         self.conv = nn.Conv2d(1, 1, 3, padding=1)
...     def forward(self, y, op):
...         return self.conv(y)
>>> _ = torch.manual_seed(0)
>>> trainer = Trainer(
...     Halve(), train_data=Pairs(), val_data=Pairs(),
...     objective=supervised_objective(None), predict=reconstruction_predict(None),
...     out_dir=tempfile.mkdtemp(), max_steps=20, batch_size=4, progress=False)
>>> result = trainer.fit()
>>> result["step"], sorted(result["last_val"])
(20, ['psnr', 'ssim', 'step'])
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from tqdm.auto import tqdm

from data_tools.metrics import psnr, ssim

__all__ = [
    "Trainer",
    "cpu_has_native_bfloat16",
    "image_grid",
    "reconstruction_predict",
    "supervised_objective",
]

logger = logging.getLogger(__name__)

#: Bumped when the layout of a checkpoint changes.
CHECKPOINT_FORMAT_VERSION = 1

Batch = tuple[Any, ...]
Objective = Callable[[nn.Module, Batch], torch.Tensor]
Predict = Callable[[nn.Module, Batch], tuple[torch.Tensor, torch.Tensor]]
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]

SCHEDULERS = ("cosine", "constant")
#: Settings that fix the data order; a resumed run must keep them.
_RESUME_INVARIANTS = ("seed", "batch_size", "world_size", "train_size")
_STEP_FILE = re.compile(r"^step_(\d{8})\.pt$")
_MAX_VAL_IMAGES = 64


# --------------------------------------------------------------------------- objectives
def _accepts_step(objective: Callable) -> bool:
    """Whether ``objective`` takes a ``step`` argument (by keyword)."""
    try:
        parameters = inspect.signature(objective).parameters
    except (TypeError, ValueError):
        return False
    return "step" in parameters


def supervised_objective(op: Any) -> Objective:
    """The supervised loss of a reconstructor: ``MSE(model(y, op), x)`` on a batch ``(x, y)``.

    Parameters
    ----------
    op
        The operator handed to the reconstructor (on the training device).

    Returns
    -------
    callable
        ``objective(model, (x, y)) -> scalar tensor``.

    Example
    -------
    >>> import torch
    >>> class Double(torch.nn.Module):
    ...     def forward(self, y, op):
    ...         return 2 * y
    >>> x, y = torch.ones(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    >>> float(supervised_objective(None)(Double(), (x, y)))  # (2 - 1)^2
    1.0
    """

    def objective(model: nn.Module, batch: Batch) -> torch.Tensor:
        x, y = _pair(batch)
        return F.mse_loss(model(y, op), x)

    return objective


def reconstruction_predict(op: Any) -> Predict:
    """The validation predictor of a reconstructor: ``(model(y, op), x)`` on a batch ``(x, y)``.

    Parameters
    ----------
    op
        The operator handed to the reconstructor (on the training device).

    Returns
    -------
    callable
        ``predict(model, (x, y)) -> (estimate, truth)``.

    Example
    -------
    >>> import torch
    >>> class Identity(torch.nn.Module):
    ...     def forward(self, y, op):
    ...         return y
    >>> x, y = torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    >>> estimate, truth = reconstruction_predict(None)(Identity(), (x, y))
    >>> float(estimate.mean()), float(truth.mean())
    (1.0, 0.0)
    """

    def predict(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = _pair(batch)
        return model(y, op), x

    return predict


def _pair(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError(
            "supervised_objective and reconstruction_predict need batches (x, y), got "
            f"{type(batch).__name__}"
            + (f" of length {len(batch)}" if hasattr(batch, "__len__") else "")
        )
    return batch[0], batch[1]


# --------------------------------------------------------------------------- data order
class _SeededBatchSampler(Sampler[list[int]]):
    """Batches of one seeded permutation per epoch; under torch.distributed, this rank's share.

    :meth:`new_epoch` records the generator state (:attr:`epoch_state`), draws ``randperm(size)``
    from :attr:`generator`, pads it by wrapping around to a multiple of ``world_size`` (as
    :class:`torch.utils.data.DistributedSampler`), keeps the indices ``rank::world_size`` and cuts
    them into batches of ``batch_size`` (the last may be smaller). Iterating yields that epoch's
    batches from batch ``start`` on (for resuming in the middle of an epoch), however often a
    DataLoader calls ``iter``. Every rank gets the same number of batches.
    """

    def __init__(self, size: int, *, batch_size: int, seed: int, rank: int, world_size: int):
        self.size, self.batch_size = size, batch_size
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator()
        self.generator.manual_seed(seed)
        self.epoch_state = self.generator.get_state()
        self.batches_per_epoch = math.ceil(math.ceil(size / world_size) / batch_size)
        self._batches: list[list[int]] = []
        self._start = 0

    def new_epoch(self, *, start: int = 0) -> None:
        """Draw the next epoch's permutation; iteration will begin at batch ``start``."""
        self.epoch_state = self.generator.get_state()
        order = torch.randperm(self.size, generator=self.generator).tolist()
        total = math.ceil(self.size / self.world_size) * self.world_size
        while len(order) < total:
            order += order[: total - len(order)]
        mine = order[self.rank : total : self.world_size]
        self._batches = [
            mine[i : i + self.batch_size] for i in range(0, len(mine), self.batch_size)
        ]
        self._start = start

    def __len__(self) -> int:
        return len(self._batches) - self._start if self._batches else self.batches_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches[self._start :])


# --------------------------------------------------------------------------- the trainer
class Trainer:
    """Train one model on one objective: seeded, resumable, validated, logged, distributed.

    Parameters
    ----------
    model : torch.nn.Module
        The model to train; moved to ``device`` (and wrapped in
        :class:`~torch.nn.parallel.DistributedDataParallel` when torch.distributed is initialised).
        Build it after seeding torch if its initialisation must be reproducible.
    train_data : torch.utils.data.Dataset
        Map-style training set; the default collation stacks its samples (e.g. ``(x, y)`` pairs).
    val_data : torch.utils.data.Dataset or None
        Validation set, or ``None`` for no validation (then no ``best.pt`` is written).
    objective : callable
        ``objective(model, batch) -> scalar tensor``, the loss to minimise; an objective with a
        ``step`` parameter is called as ``objective(model, batch, step=step)`` (schedules that
        change over training, e.g. the recursive scheme of :mod:`recon.correction`, and stay
        reproducible on resume). ``batch`` is a tuple of
        tensors on ``device``. Under torch.distributed, ``model`` is the DDP wrapper: call it, not
        its submodules, so that gradients are synchronised.
    predict : callable or None
        ``predict(model, batch) -> (estimate, truth)`` of shapes ``(B, C, *image)``, evaluated
        under ``torch.no_grad()`` in eval mode; needed with ``val_data``.
    out_dir : str or Path
        Where ``run.json``, ``checkpoints/`` and ``tb/`` go (the same for every rank).
    max_steps : int
        Number of optimiser steps (at least 1).
    batch_size : int
        Samples per step and process (under torch.distributed, each rank takes ``batch_size``).
    optimizer : callable
        ``optimizer(parameters) -> torch.optim.Optimizer``; AdamW with ``lr=1e-3`` by default.
    scheduler : {"cosine", "constant"}
        Learning-rate factor after the warm-up: cosine decay to 0 at ``max_steps``, or 1.
    warmup_steps : int
        Linear warm-up: step ``k`` (from 1) of the first ``warmup_steps`` uses ``lr · k /
        warmup_steps``. Must be smaller than ``max_steps``.
    grad_clip : float or None
        Clip the global gradient norm to this value (``clip_grad_norm_``); ``None`` for no clipping.
    amp : bool or {"auto", "float16", "bfloat16"}
        Mixed precision: the objective and validation run under :func:`torch.autocast`.
        ``True`` picks the device's usual type: float16 with a gradient scaler on CUDA,
        bfloat16 on CPU (no scaler needed: it has float32's range). ``"auto"`` does the same
        where the hardware computes in that type natively (CUDA; CPUs with
        :func:`cpu_has_native_bfloat16`) and stays in float32 elsewhere. Convolutions then run in
        low precision; linear operators stay in float32 (see
        :meth:`operators.LinearOperator.forward`). float16 needs a CUDA device. On a CPU with
        bfloat16 instructions (AVX512-BF16, AMX), a learned primal-dual step at 128² runs about
        1.4× faster (2× with ``channels_last`` networks; ``python -m recon.bench_train --amp``).
    ckpt_every, val_every : int
        Checkpoint / validate every so many steps; both also happen after the last step.
    keep_last : int
        Number of step checkpoints kept (``best.pt`` and ``last.pt`` come on top).
    val_indices : sequence of int or None
        Fixed validation indices; default the first ``min(64, len(val_data))``.
    log_images : int
        Number of validation images (the first of ``val_indices``) in the ``val/images`` grid.
    seed : int
        Seed of the global RNGs at the start of a run and of the data order.
    device : str or torch.device
        Where the model and the batches go.
    num_workers : int
        DataLoader worker processes.
    progress : bool
        Show a tqdm progress bar (rank 0 only) with the loss and the last validation PSNR.
    hparams : dict or None
        JSON-like hyperparameters of the run, stored in ``run.json`` and the checkpoints and
        logged with ``add_hparams``.
    overwrite : bool
        Let a fresh run (``fit(resume=False)``) delete the checkpoints and logs of a previous run in
        ``out_dir``; without it, such an ``out_dir`` is refused.

    Raises
    ------
    ValueError
        For invalid arguments (the message names the argument and the value).
    TypeError
        If ``optimizer`` does not return a :class:`torch.optim.Optimizer`.

    Example
    -------
    >>> import tempfile, torch
    >>> from torch import nn
    >>> data = torch.utils.data.TensorDataset(torch.rand(16, 1, 8, 8))
    >>> def objective(model, batch):  # a denoiser: any objective works
    ...     (x,) = batch
    ...     return (model(x + 0.1 * torch.randn_like(x)) - x).square().mean()
    >>> _ = torch.manual_seed(0)
    >>> trainer = Trainer(nn.Conv2d(1, 1, 3, padding=1), train_data=data, val_data=None,
    ...                   objective=objective, predict=None, out_dir=tempfile.mkdtemp(),
    ...                   max_steps=10, batch_size=4, progress=False)
    >>> result = trainer.fit()
    >>> result["step"], result["best_psnr"]
    (10, None)
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        train_data: Dataset,
        val_data: Dataset | None,
        objective: Objective,
        predict: Predict | None,
        out_dir: str | os.PathLike[str],
        max_steps: int,
        batch_size: int = 8,
        optimizer: OptimizerFactory = partial(torch.optim.AdamW, lr=1e-3),  # noqa: B008
        scheduler: str = "cosine",
        warmup_steps: int = 0,
        grad_clip: float | None = 1.0,
        amp: bool | str = False,
        ckpt_every: int = 500,
        val_every: int = 500,
        keep_last: int = 3,
        val_indices: Sequence[int] | None = None,
        log_images: int = 4,
        seed: int = 0,
        device: str | torch.device = "cpu",
        num_workers: int = 0,
        progress: bool = True,
        hparams: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(objective):
            raise ValueError("objective must be callable: objective(model, batch) -> loss")
        if predict is not None and not callable(predict):
            raise ValueError("predict must be callable: predict(model, batch) -> (estimate, truth)")
        if val_data is not None and predict is None:
            raise ValueError("val_data needs predict(model, batch) -> (estimate, truth)")
        if predict is not None and val_data is None:
            raise ValueError("predict is given but val_data is None; give both or neither")
        self.max_steps = _int_at_least(max_steps, 1, "max_steps")
        self.batch_size = _int_at_least(batch_size, 1, "batch_size")
        self.warmup_steps = _int_at_least(warmup_steps, 0, "warmup_steps")
        if self.warmup_steps >= self.max_steps:
            raise ValueError(
                f"warmup_steps ({warmup_steps}) must be smaller than max_steps ({max_steps})"
            )
        self.ckpt_every = _int_at_least(ckpt_every, 1, "ckpt_every")
        self.val_every = _int_at_least(val_every, 1, "val_every")
        self.keep_last = _int_at_least(keep_last, 1, "keep_last")
        self.log_images = _int_at_least(log_images, 0, "log_images")
        self.seed = _int_at_least(seed, 0, "seed")
        self.num_workers = _int_at_least(num_workers, 0, "num_workers")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
        self.scheduler_kind = scheduler
        if grad_clip is not None:
            if isinstance(grad_clip, bool) or not isinstance(grad_clip, (int, float)):
                raise ValueError(f"grad_clip must be a positive number or None, got {grad_clip!r}")
            if not (math.isfinite(grad_clip) and grad_clip > 0):
                raise ValueError(f"grad_clip must be positive and finite, got {grad_clip!r}")
            grad_clip = float(grad_clip)
        self.grad_clip = grad_clip
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device {device!r} is not a torch device") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested, but CUDA is not available")
        self.amp_dtype = _amp_dtype(amp, self.device)
        self.progress = bool(progress)
        self.overwrite = bool(overwrite)
        if hparams is not None and not isinstance(hparams, dict):
            raise ValueError(f"hparams must be a dict or None, got {type(hparams).__name__}")
        self.hparams = _jsonable(dict(hparams or {}))

        self.train_data = train_data
        self.train_size = _dataset_length(train_data, "train_data")
        self.val_data = val_data
        if val_data is not None:
            val_size = _dataset_length(val_data, "val_data")
            if val_indices is None:
                val_indices = range(min(_MAX_VAL_IMAGES, val_size))
            indices = []
            for index in val_indices:
                if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
                    raise ValueError(f"val_indices must hold ints, got {index!r}")
                if not 0 <= index < val_size:
                    raise ValueError(
                        f"val_indices holds {index}, outside [0, {val_size}) for val_data"
                    )
                indices.append(int(index))
            if not indices:
                raise ValueError("val_indices is empty")
            self.val_indices: list[int] = indices
        elif val_indices is not None:
            raise ValueError("val_indices is given but val_data is None")
        else:
            self.val_indices = []
        self.objective, self.predict = objective, predict
        self._objective_takes_step = _accepts_step(objective)
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"

        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        self.module = model.to(self.device)
        if not any(p.requires_grad for p in self.module.parameters()):
            raise ValueError("model has no trainable parameters")
        if self.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.model: nn.Module = nn.parallel.DistributedDataParallel(
                self.module, device_ids=device_ids
            )
        else:
            self.model = self.module
        self.optimizer = optimizer(self.model.parameters())
        if not isinstance(self.optimizer, torch.optim.Optimizer):
            raise TypeError(
                "optimizer(parameters) must return a torch.optim.Optimizer, got "
                f"{type(self.optimizer).__name__}"
            )

        def lr_factor(count: int) -> float:  # a plain function: LambdaLR does not pickle it
            return self._lr_factor(count)

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )
        self.sampler = _SeededBatchSampler(
            self.train_size,
            batch_size=self.batch_size,
            seed=self.seed,
            rank=self.rank,
            world_size=self.world_size,
        )
        self._loader_generator = torch.Generator()
        self.loader = DataLoader(
            train_data,
            batch_sampler=self.sampler,
            num_workers=self.num_workers,
            generator=self._loader_generator,
            pin_memory=self.device.type == "cuda",
        )
        self.config = self._make_config(optimizer)
        self._last_ckpt: Path | None = None

    # ------------------------------------------------------------------ public
    def fit(self, *, resume: bool = False) -> dict[str, Any]:
        """Train to ``max_steps``, from scratch or from the newest checkpoint in ``out_dir``.

        Parameters
        ----------
        resume : bool
            Continue from ``checkpoints/last.pt`` (or, if it is unreadable, the newest readable
            ``step_*.pt``), restoring the model, optimiser, scheduler, data order and RNG states.
            Without any checkpoint, a fresh run starts (and a message says so). Settings that
            fix the data order (seed, batch size, number of processes, training-set size) must
            match the checkpoint's; other changes (e.g. a larger ``max_steps``) are logged.

        Returns
        -------
        dict
            ``step`` (steps done), ``best_psnr`` (best validation PSNR, ``None`` without
            validation), ``last_val`` (``{"psnr", "ssim", "step"}`` of the last validation, empty
            without), ``last_loss`` (loss of the last step of this call, ``None`` if it made no
            step) and ``wall_time`` (seconds of this call).

        Raises
        ------
        FileExistsError
            If ``resume`` is false and ``out_dir`` holds a run, unless ``overwrite``.
        FloatingPointError
            If the loss or the gradient norm is NaN or infinite; the message names the step and
            the last good checkpoint, which is left intact.
        RuntimeError
            If ``resume`` finds checkpoints but none is readable, or they belong to a run with
            another data order.

        Example
        -------
        >>> import tempfile, torch
        >>> data = torch.utils.data.TensorDataset(torch.rand(8, 3))
        >>> def objective(model, batch):
        ...     return model(batch[0]).square().mean()
        >>> out = tempfile.mkdtemp()
        >>> def make(max_steps):
        ...     return Trainer(torch.nn.Linear(3, 1), train_data=data, val_data=None,
        ...                    objective=objective, predict=None, out_dir=out,
        ...                    max_steps=max_steps, batch_size=4, ckpt_every=5, progress=False)
        >>> make(5).fit()["step"]
        5
        >>> make(8).fit(resume=True)["step"]  # continues from step 5
        8
        """
        started = time.perf_counter()
        state = self._prepare_run(resume)
        if state is None:
            step, epoch, position = 0, 0, 0
            best_psnr: float | None = None
            last_val: dict[str, float] = {}
            self._seed_everything()
            self.sampler.generator.manual_seed(self.seed)
            self._last_ckpt = None
        else:
            step, epoch, position = state["step"], state["epoch"], state["position"]
            best_psnr, last_val = state["best_psnr"], dict(state["last_val"])
            self._restore(state)
        last_loss: float | None = None
        if step >= self.max_steps:
            logger.info("the run in %s is complete at step %d", self.out_dir, step)
            return self._result(step, best_psnr, last_val, last_loss, started)

        # events past the checkpoint (from a killed run) are dropped by TensorBoard
        writer = self._open_writer(purge_step=step + 1)
        bar = tqdm(
            total=self.max_steps,
            initial=step,
            desc="train",
            disable=not (self.progress and self.rank == 0),
            dynamic_ncols=True,
        )
        try:
            self.model.train()
            while step < self.max_steps:
                self.sampler.new_epoch(start=position)
                self._loader_generator.manual_seed(self._epoch_seed(epoch))
                for batch in self.loader:
                    lr = self.optimizer.param_groups[0]["lr"]
                    loss, grad_norm = self._train_step(batch, step + 1)
                    step, position = step + 1, position + 1
                    last_loss = loss
                    if writer is not None:
                        writer.add_scalar("train/loss", loss, step)
                        writer.add_scalar("train/grad_norm", grad_norm, step)
                        writer.add_scalar("lr", lr, step)
                    done = step >= self.max_steps
                    new_best = False
                    if self.val_indices and (step % self.val_every == 0 or done):
                        if self.rank == 0:
                            last_val = self._validate(step, writer)
                            if best_psnr is None or last_val["psnr"] > best_psnr:
                                best_psnr, new_best = last_val["psnr"], True
                            self.model.train()
                    bar.update(1)
                    postfix = {"loss": f"{loss:.4g}"}
                    if last_val:
                        postfix["val_psnr"] = f"{last_val['psnr']:.2f}"
                    bar.set_postfix(postfix, refresh=False)
                    if step % self.ckpt_every == 0 or done or new_best:
                        self._checkpoint(
                            step=step,
                            epoch=epoch,
                            position=position,
                            best_psnr=best_psnr,
                            last_val=last_val,
                            periodic=step % self.ckpt_every == 0 or done,
                            new_best=new_best,
                        )
                    if done:
                        break
                else:
                    epoch, position = epoch + 1, 0
            if writer is not None:
                self._log_hparams(writer, step, best_psnr, last_val, last_loss)
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        if self.distributed:  # rank 0 alone validates: share its results (also a barrier)
            shared = [best_psnr, last_val]
            dist.broadcast_object_list(shared, src=0)
            best_psnr, last_val = shared
        return self._result(step, best_psnr, last_val, last_loss, started)

    # ------------------------------------------------------------------ steps
    def _lr_factor(self, count: int) -> float:
        """Learning-rate factor of the update that follows ``count`` scheduler steps."""
        if count < self.warmup_steps:
            return (count + 1) / self.warmup_steps
        if self.scheduler_kind == "constant":
            return 1.0
        progress = (count - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    def _train_step(self, batch: Any, step: int) -> tuple[float, float]:
        """One optimiser step; returns the (all-reduced) loss and the gradient norm."""
        batch = _to_device(batch, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            if self._objective_takes_step:
                loss = self.objective(self.model, batch, step=step)
            else:
                loss = self.objective(self.model, batch)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError(
                "objective must return a scalar tensor, got "
                + (f"shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else repr(loss))
            )
        value = loss.detach().float().reshape(())
        if self.distributed:
            value = value.clone()
            dist.all_reduce(value)
            value /= self.world_size
        value = float(value)
        if not math.isfinite(value):
            raise FloatingPointError(f"loss is {value} at step {step}; {self._last_good()}")
        self.scaler.scale(loss.reshape(())).backward()
        self.scaler.unscale_(self.optimizer)
        max_norm = self.grad_clip if self.grad_clip is not None else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        if not self.scaler.is_enabled() and not math.isfinite(grad_norm):
            raise FloatingPointError(
                f"gradient norm is {grad_norm} at step {step}; {self._last_good()}"
            )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return value, grad_norm

    @property
    def amp(self) -> bool:
        """Whether the objective and validation run under autocast (``amp_dtype`` is set)."""
        return self.amp_dtype is not None

    def _autocast(self) -> torch.autocast:
        """The autocast context of the objective and of validation (off without ``amp``)."""
        dtype = self.amp_dtype or torch.bfloat16  # any type autocast accepts; it is off
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.amp)

    def _last_good(self) -> str:
        if self._last_ckpt is None:
            return "no checkpoint has been written yet"
        return f"the last good checkpoint is {self._last_ckpt}"

    def _epoch_seed(self, epoch: int) -> int:
        """Seed of the DataLoader's own generator (worker seeds) in ``epoch``."""
        state = np.random.SeedSequence([self.seed, epoch]).generate_state(1, dtype=np.uint64)[0]
        return int(state)

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def _validate(self, step: int, writer: Any) -> dict[str, float]:
        """Mean PSNR and SSIM over ``val_indices``; logs scalars and the image grid."""
        self.module.eval()
        loader = DataLoader(
            Subset(self.val_data, self.val_indices),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),
        )
        psnrs, ssims, shown = [], [], []
        for batch in loader:
            batch = _to_device(batch, self.device)
            with self._autocast():
                estimate, truth = self.predict(self.module, batch)
            estimate, truth = estimate.float(), truth.float()
            if estimate.shape != truth.shape or truth.ndim < 3:
                raise ValueError(
                    "predict must return (estimate, truth) of one shape (B, C, *image), got "
                    f"{tuple(estimate.shape)} and {tuple(truth.shape)}"
                )
            ndim = truth.ndim - 2
            psnrs.append(psnr(estimate, truth, ndim=ndim).flatten(1).mean(1).cpu())
            ssims.append(_ssim(estimate, truth, ndim).cpu())
            missing = self.log_images - sum(len(t) for t, _ in shown)
            if missing > 0:
                shown.append((truth[:missing].cpu(), estimate[:missing].cpu()))
        result = {
            "psnr": float(torch.cat(psnrs).double().mean()),
            "ssim": float(torch.cat(ssims).double().mean()),
            "step": step,
        }
        if writer is not None:
            writer.add_scalar("val/psnr", result["psnr"], step)
            writer.add_scalar("val/ssim", result["ssim"], step)
            if shown:
                truth = torch.cat([t for t, _ in shown])
                estimate = torch.cat([e for _, e in shown])
                writer.add_image("val/images", image_grid(truth, estimate), step, dataformats="HW")
        return result

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint(
        self,
        *,
        step: int,
        epoch: int,
        position: int,
        best_psnr: float | None,
        last_val: dict[str, Any],
        periodic: bool,
        new_best: bool,
    ) -> None:
        """Write ``step_N.pt`` (+ ``last.pt``) and/or ``best.pt``; rotate; rank 0 does the I/O."""
        rng = _rng_state()
        if self.distributed and periodic:  # only rank 0 knows of a new best: no collective then
            states: list[Any] = [None] * self.world_size
            dist.all_gather_object(states, rng)
        else:
            states = [rng]
        step_path = self.ckpt_dir / f"step_{step:08d}.pt"
        if self.rank != 0:
            if periodic:
                self._last_ckpt = step_path
            return
        state = {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "step": step,
            "epoch": epoch,
            "position": position,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "sampler_generator": self.sampler.epoch_state.clone(),
            "rng": states,
            "best_psnr": best_psnr,
            "last_val": dict(last_val),
            "config": self.config,
            "hparams": self.hparams,
        }
        if periodic:
            _atomic_save(state, step_path)
            self._last_ckpt = step_path
            _atomic_link(step_path, self.ckpt_dir / "last.pt")
            if new_best:
                _atomic_link(step_path, self.ckpt_dir / "best.pt")
            self._rotate()
        elif new_best:
            _atomic_save(state, self.ckpt_dir / "best.pt")

    def _rotate(self) -> None:
        steps = sorted(p for p in self.ckpt_dir.iterdir() if _STEP_FILE.match(p.name))
        for old in steps[: -self.keep_last]:
            old.unlink(missing_ok=True)

    def _prepare_run(self, resume: bool) -> dict[str, Any] | None:
        """Check ``out_dir`` and load the checkpoint to resume from (all ranks agree)."""
        outcome: dict[str, Any] = {"error": None, "path": None}
        failure: Exception | None = None
        if self.rank == 0:
            try:
                outcome["path"] = self._prepare_out_dir(resume)
            except Exception as error:  # noqa: BLE001 - re-raised below, after telling the others
                failure, outcome["error"] = error, f"{type(error).__name__}: {error}"
        if self.distributed:
            shared = [outcome]
            dist.broadcast_object_list(shared, src=0)
            outcome = shared[0]
        if failure is not None:
            raise failure
        if outcome["error"] is not None:
            raise RuntimeError(f"rank 0 could not prepare {self.out_dir}: {outcome['error']}")
        if outcome["path"] is None:
            return None
        path = Path(outcome["path"])
        state = _load_checkpoint(path)
        if state is None:
            raise RuntimeError(f"checkpoint {path} became unreadable while resuming")
        logger.info("resuming from %s at step %d", path, state["step"])
        self._last_ckpt = path.parent / f"step_{state['step']:08d}.pt"
        return state

    def _prepare_out_dir(self, resume: bool) -> str | None:
        """Rank 0: refuse or clear an old run, write ``run.json``; the checkpoint to resume."""
        previous = _read_json(self.out_dir / "run.json")
        has_checkpoints = self.ckpt_dir.is_dir() and any(self.ckpt_dir.glob("*.pt"))
        found: tuple[Path, dict[str, Any]] | None = None
        if resume:
            found = self._find_checkpoint() if has_checkpoints else None
            if found is None:
                logger.warning(
                    "resume=True, but %s holds no checkpoint: starting afresh", self.ckpt_dir
                )
        elif previous is not None or has_checkpoints:
            if not self.overwrite:
                what = _describe_differences(previous, self.config) if previous else ""
                raise FileExistsError(
                    f"{self.out_dir} already holds a run{what}; pass resume=True to continue it, "
                    "overwrite=True to replace it, or choose another out_dir"
                )
            logger.warning("overwrite=True: deleting the previous run in %s", self.out_dir)
            shutil.rmtree(self.ckpt_dir, ignore_errors=True)
            shutil.rmtree(self.out_dir / "tb", ignore_errors=True)
        if found is not None:
            path, state = found
            old = state["config"]
            changed = [k for k in _RESUME_INVARIANTS if old.get(k) != self.config.get(k)]
            if changed:
                detail = ", ".join(
                    f"{k}: {old.get(k)!r} -> {self.config.get(k)!r}" for k in changed
                )
                raise RuntimeError(
                    f"cannot resume from {path}: it fixes the data order with other settings "
                    f"({detail})"
                )
            if any(old.get(k) != self.config.get(k) for k in old.keys() | self.config.keys()):
                # e.g. " with a different configuration (max_steps: 100 -> 200)"
                logger.warning("resuming %s%s", path, _describe_differences(old, self.config))
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.ckpt_dir.glob(".*.tmp"):  # left by a run killed while writing
            stale.unlink(missing_ok=True)
        _atomic_write_text(json.dumps(self.config, indent=2), self.out_dir / "run.json")
        return None if found is None else str(found[0])

    def _find_checkpoint(self) -> tuple[Path, dict[str, Any]] | None:
        """``last.pt``, else the newest readable ``step_*.pt``; raise if none is readable."""
        steps = sorted(
            (p for p in self.ckpt_dir.iterdir() if _STEP_FILE.match(p.name)), reverse=True
        )
        candidates = [self.ckpt_dir / "last.pt", *steps]
        tried = []
        for path in candidates:
            if not path.is_file():
                continue
            state = _load_checkpoint(path)
            if state is not None:
                if tried:
                    logger.warning("unreadable checkpoints %s; resuming from %s", tried, path.name)
                return path, state
            tried.append(path.name)
        if not tried:
            return None
        raise RuntimeError(f"no readable checkpoint in {self.ckpt_dir} (tried {', '.join(tried)})")

    def _restore(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.sampler.generator.set_state(state["sampler_generator"])
        rng = state["rng"]
        _set_rng_state(rng[self.rank] if len(rng) == self.world_size else rng[0])

    def _seed_everything(self) -> None:
        random.seed(self.seed)
        np.random.seed(self.seed)
        torch.manual_seed(self.seed)

    # ------------------------------------------------------------------ logging
    def _open_writer(self, purge_step: int | None) -> Any:
        if self.rank != 0:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.out_dir / "tb"), purge_step=purge_step)

    def _log_hparams(
        self,
        writer: Any,
        step: int,
        best_psnr: float | None,
        last_val: dict[str, Any],
        last_loss: float | None,
    ) -> None:
        hparams = {
            "batch_size": self.batch_size,
            "max_steps": self.max_steps,
            "lr": float(self.optimizer.param_groups[0].get("initial_lr", math.nan)),
            "scheduler": self.scheduler_kind,
            "warmup_steps": self.warmup_steps,
            "grad_clip": "None" if self.grad_clip is None else self.grad_clip,
            "seed": self.seed,
            "world_size": self.world_size,
            "model": self.config["model"],
        }
        hparams.update(_flatten(self.hparams))
        metrics = {"hparam/loss": math.nan if last_loss is None else last_loss}
        if last_val:
            metrics["hparam/psnr"] = last_val["psnr"]
            metrics["hparam/ssim"] = last_val["ssim"]
            metrics["hparam/best_psnr"] = best_psnr
        writer.add_hparams(hparams, metrics, run_name=".", global_step=step)

    def _make_config(self, optimizer: OptimizerFactory) -> dict[str, Any]:
        return _jsonable(
            {
                "model": type(self.module).__qualname__,
                "train_size": self.train_size,
                "val_size": None if self.val_data is None else len(self.val_data),
                "val_indices": self.val_indices,
                "max_steps": self.max_steps,
                "batch_size": self.batch_size,
                "optimizer": re.sub(r" at 0x[0-9a-fA-F]+", "", repr(optimizer)),
                "scheduler": self.scheduler_kind,
                "warmup_steps": self.warmup_steps,
                "grad_clip": self.grad_clip,
                "amp": str(self.amp_dtype).removeprefix("torch.") if self.amp else False,
                "ckpt_every": self.ckpt_every,
                "val_every": self.val_every,
                "keep_last": self.keep_last,
                "seed": self.seed,
                "world_size": self.world_size,
                "hparams": self.hparams,
            }
        )

    def _result(
        self,
        step: int,
        best_psnr: float | None,
        last_val: dict[str, Any],
        last_loss: float | None,
        started: float,
    ) -> dict[str, Any]:
        return {
            "step": step,
            "best_psnr": best_psnr,
            "last_val": dict(last_val),
            "last_loss": last_loss,
            "wall_time": time.perf_counter() - started,
        }


# --------------------------------------------------------------------------- images
def image_grid(truth: torch.Tensor, estimate: torch.Tensor, *, gap: int = 2) -> np.ndarray:
    """A float grid in [0, 1]: one row per image, columns ``truth | estimate | |error|``.

    Truth and estimate are windowed on the truth's ``[min, max]`` over all shown images, the
    error on ``[0, max − min]``, so the same images always look the same. Channel 0 is shown; of
    a volume, the middle slice.

    Parameters
    ----------
    truth, estimate : torch.Tensor
        ``(B, C, *image)`` with at least two image dimensions.
    gap : int
        Width of the white separators in pixels.

    Returns
    -------
    numpy.ndarray
        ``(B·H + (B − 1)·gap, 3·W + 2·gap)`` float32 array.

    Example
    -------
    >>> truth = torch.tensor([[[[0.0, 2.0]]]])  # one 1 x 2 image
    >>> image_grid(truth, truth + 1.0, gap=1).round(2).tolist()
    [[0.0, 1.0, 1.0, 0.5, 1.0, 1.0, 0.5, 0.5]]
    """
    t, e = _slice2d(truth.detach().double()), _slice2d(estimate.detach().double())
    low, high = float(t.min()), float(t.max())
    scale = high - low if high > low else 1.0
    columns = [(t - low) / scale, (e - low) / scale, (e - t).abs() / scale]
    n, (h, w) = len(t), t.shape[-2:]
    grid = torch.ones(n * (h + gap) - gap, 3 * (w + gap) - gap, dtype=torch.float64)
    for j, column in enumerate(columns):
        for i, image in enumerate(column):
            grid[i * (h + gap) : i * (h + gap) + h, j * (w + gap) : j * (w + gap) + w] = image
    return grid.clamp(0, 1).to(torch.float32).numpy()


def _slice2d(images: torch.Tensor) -> torch.Tensor:
    """``(B, C, *image)`` -> ``(B, H, W)``: channel 0, middle slice of extra leading dims."""
    images = images[:, 0]
    while images.ndim > 3:
        images = images[:, images.shape[1] // 2]
    return images


def _ssim(estimate: torch.Tensor, truth: torch.Tensor, ndim: int) -> torch.Tensor:
    """Per-image SSIM (mean over channels); NaN where the image is too small or has > 3 dims."""
    side = min(truth.shape[2:])
    win = min(7, side if side % 2 else side - 1)
    if ndim > 3 or win < 3:
        return torch.full((truth.shape[0],), math.nan)
    return ssim(estimate, truth, ndim=ndim, win_size=win).flatten(1).mean(1)


# --------------------------------------------------------------------------- files
def _atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then ``os.replace``."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _atomic_write_text(text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_link(source: Path, path: Path) -> None:
    """Make ``path`` the same file as ``source`` atomically: a hard link, or else a copy."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.link.tmp"
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(source, tmp)
        except OSError:  # no hard links on this file system
            shutil.copyfile(source, tmp)
            with open(tmp, "rb+") as file:
                os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_REQUIRED_KEYS = {
    "format_version",
    "step",
    "epoch",
    "position",
    "model",
    "optimizer",
    "scheduler",
    "scaler",
    "sampler_generator",
    "rng",
    "best_psnr",
    "last_val",
    "config",
}


def _load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or ``None`` if it is missing, truncated or not ours."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any failure to unpickle means "unreadable"
        logger.warning("checkpoint %s is unreadable: %s", path, error)
        return None
    if not isinstance(state, dict) or not _REQUIRED_KEYS <= state.keys():
        logger.warning("%s is not a tomolearn training checkpoint", path)
        return None
    if state["format_version"] != CHECKPOINT_FORMAT_VERSION:
        logger.warning("%s has checkpoint format %s", path, state["format_version"])
        return None
    return state


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- RNG
def _rng_state() -> dict[str, Any]:
    """This process's torch, CUDA, numpy and python RNG states, in types ``weights_only`` loads."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        else:
            logger.warning("the checkpoint's CUDA RNG states are for another number of GPUs")
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# --------------------------------------------------------------------------- small helpers
def _int_at_least(value: Any, minimum: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


_AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX), where bfloat16
    convolutions beat float32 ones; elsewhere oneDNN emulates them, more slowly. The trainer's
    ``amp="auto"`` trains in bfloat16 on CPU only where this is true.

    Example
    -------
    >>> cpu_has_native_bfloat16() in (True, False)
    True
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def _amp_dtype(amp: Any, device: torch.device) -> torch.dtype | None:
    """The autocast type ``amp`` asks for on ``device`` (``None``: off), or a clear error."""
    if amp is False:
        return None
    if amp == "auto":  # where the hardware has it natively
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bfloat16() else None
    if amp is True:
        dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    elif isinstance(amp, str) and amp in _AMP_DTYPES:
        dtype = _AMP_DTYPES[amp]
    else:
        raise ValueError(f"amp must be a bool, 'auto', 'float16' or 'bfloat16', got {amp!r}")
    if dtype == torch.float16 and device.type != "cuda":
        raise ValueError(
            f"amp with float16 needs a CUDA device, got device {str(device)!r}; "
            "use amp=true or amp=bfloat16 on CPU"
        )
    return dtype


def _dataset_length(data: Any, name: str) -> int:
    try:
        size = len(data)
    except TypeError:
        raise ValueError(f"{name} must be a map-style dataset with a length") from None
    if size < 1:
        raise ValueError(f"{name} is empty")
    return size


def _to_device(batch: Any, device: torch.device) -> Any:
    """Tensors in (nested) tuples, lists and dicts moved to ``device``; lists become tuples."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return tuple(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def _jsonable(value: Any) -> Any:
    """``value`` round-tripped through JSON (non-JSON leaves become strings)."""
    return json.loads(json.dumps(value, default=str))


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a/b": leaf}`` with leaves TensorBoard's hparams accept."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def _describe_differences(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    if not old:
        return ""
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if not keys:
        return " with the same configuration"
    shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys)
    return f" with a different configuration ({shown})"
