"""One trainer for every learned part: seeded, resumable, logged, distributed.

:class:`Trainer` runs ``max_steps`` steps of a *task* (:mod:`recon.training.tasks`: its
``loss(model, batch, step=)`` and, for validation, ``predict(model, batch) -> (estimate, truth)``)
over a map-style dataset, and validates with PSNR and SSIM of :mod:`data_tools.metrics` (data range
= the truth's max − min per image). The reconstructors of :mod:`recon` follow ``forward(y, op) ->
x``, so most of them train with :class:`~recon.training.tasks.SupervisedTask`; other learned parts
(denoisers, learned operators, regularisers, generators) bring their own task. A task with several
optimiser groups (the adversarial one: critic and generator) takes one optimiser step per
``(group, loss)`` it yields. Plain callables ``objective=`` and ``predict=`` work too.

Outputs under ``out_dir``, written by rank 0 only:

- ``run.json``: the run's configuration (trainer settings, model class, dataset sizes, ``hparams``).
- ``checkpoints/``: ``step_{N:08d}.pt`` every ``ckpt_every`` steps and at the end (the newest
  ``keep_last`` kept), ``last.pt`` and ``best.pt``, independent files written atomically
  (:mod:`recon.training.checkpoint_folder`).
- ``tb/``: TensorBoard scalars ``train/loss``, ``train/grad_norm``, ``lr``, ``val/psnr``,
  ``val/ssim``, the image grid ``val/images`` (rows ``[truth | reconstruction | |error|]``, one
  fixed window per logged image set: the truth's min and max), the task's own image grids
  (``task.images(model)``, e.g. a generator's samples) and, at the end, ``add_hparams``.

Reproducibility: the global torch/numpy/python RNGs are seeded with ``seed`` when a run starts, and
the data order comes from a :class:`torch.Generator` owned by the trainer that draws one permutation
per epoch. A checkpoint holds the model, optimiser, scheduler, gradient scaler, step, epoch, the
position in the epoch, the generator state at the start of the epoch and every rank's RNG states,
so ``fit(resume=True)`` continues a killed run with exactly the losses of an uninterrupted one.

Example
-------
>>> import tempfile, torch
>>> from recon.training.tasks import SupervisedTask
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
...     Halve(), train_data=Pairs(), val_data=Pairs(), task=SupervisedTask(op=None),
...     out_dir=tempfile.mkdtemp(), max_steps=20, batch_size=4, progress=False)
>>> result = trainer.fit()
>>> result["step"], sorted(result["last_val"])
(20, ['psnr', 'ssim', 'step'])
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from data_tools.metrics import psnr
from recon.checkpoints import check_model_config, init_config_of, rng_state, set_rng_state
from recon.checks import check_int, check_optional_positive
from recon.training.budget import BudgetClock
from recon.training.checkpoint_folder import (
    CHECKPOINT_FORMAT_VERSION,
    CheckpointFolder,
    prepare_run_folder,
    read_training_checkpoint,
)
from recon.training.compilation import compile_networks
from recon.training.images import image_grid, mean_ssim
from recon.training.optimizers import SCHEDULERS, lr_schedule, make_optimizers
from recon.training.precision import amp_dtype
from recon.training.quick import train_supervised
from recon.training.records import hparams_record, jsonable, run_record
from recon.training.sampler import SeededBatchSampler, dataset_length, to_device
from recon.training.tasks.base import FunctionTask, Objective, Predict, Task, as_task

__all__ = ["CHECKPOINT_FORMAT_VERSION", "SCHEDULERS", "Trainer", "read_training_checkpoint"]

logger = logging.getLogger(__name__)

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]

_MAX_VAL_IMAGES = 64


# --------------------------------------------------------------------------- the trainer
class Trainer:
    """Train one model on one task: seeded, resumable, validated, logged, distributed.

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
    task : recon.training.tasks.Task, optional
        What is learned and how: ``task.loss(model, batch, step=step)`` (``step`` counts from 1,
        so schedules over training stay reproducible on resume), ``task.predict(model, batch) ->
        (estimate, truth)`` of shapes ``(B, C, *image)`` for validation (evaluated under
        ``torch.no_grad()`` in eval mode; needed with ``val_data``), and optionally several
        optimiser groups (:meth:`~recon.training.tasks.Task.updates`). ``batch`` is a tuple of
        tensors on ``device``. Under torch.distributed, ``model`` is the DDP wrapper.
    objective, predict : callable, optional
        Instead of ``task``: ``objective(model, batch[, step=]) -> scalar tensor`` and
        ``predict(model, batch)`` (a :class:`~recon.training.tasks.FunctionTask`).
    out_dir : str or Path
        Where ``run.json``, ``checkpoints/`` and ``tb/`` go (the same for every rank).
    max_steps : int
        Number of optimiser steps (at least 1).
    max_time : float or None
        A time budget in minutes: training ends when it is spent (a final checkpoint is
        written), or at ``max_steps``, whichever comes first. The learning-rate decay then
        follows the larger of the two fractions used (steps, time), so it anneals to zero at
        the deadline whatever the step rate; a resumed run honours the time that is left.
        Time-limited runs are not bit-reproducible (the step count depends on the machine).
    batch_size : int
        Samples per step and process (under torch.distributed, each rank takes ``batch_size``).
    optimizer : callable or dict of callables
        ``optimizer(parameters) -> torch.optim.Optimizer``; AdamW with ``lr=1e-3`` by default. A
        task with several parameter groups takes one factory per group (a dict with the task's
        group names), or one factory for all of them.
    scheduler : {"cosine", "constant"}
        Learning-rate factor after the warm-up: cosine decay to 0 at ``max_steps`` (or at the
        ``max_time`` deadline, if that comes first), or 1.
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
        1.4× faster (2× with ``channels_last`` networks; ``python -m benchmarks.train_throughput``).
    compile : bool
        Compile the model's networks with inductor (:func:`~recon.training.compilation.
        compile_networks`; eager fallback on failure). Measured on CPU it does not pay.
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
    model_config : dict or None
        The model's constructor record ``{"_target_": ..., **arguments}``, stored in every
        checkpoint so :func:`recon.checkpoints.load_run` rebuilds the model; by default the one
        the model carries (:func:`recon.checkpoints.build_model`), if any.

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
        task: Task | None = None,
        objective: Objective | None = None,
        predict: Predict | None = None,
        out_dir: str | os.PathLike[str],
        max_steps: int,
        max_time: float | None = None,
        batch_size: int = 8,
        optimizer: OptimizerFactory | Mapping[str, OptimizerFactory] = partial(  # noqa: B008
            torch.optim.AdamW, lr=1e-3
        ),
        scheduler: str = "cosine",
        warmup_steps: int = 0,
        grad_clip: float | None = 1.0,
        amp: bool | str = False,
        compile: bool = False,
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
        model_config: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if task is None:
            if objective is None:
                raise ValueError(
                    "give a task (recon.training.tasks) or objective(model, batch) -> loss"
                )
            task = FunctionTask(objective, predict)
            if predict is not None and val_data is None:
                raise ValueError("predict is given but val_data is None; give both or neither")
        elif objective is not None or predict is not None:
            raise ValueError("give either task or objective/predict, not both")
        self.task = as_task(task)
        if val_data is not None and not self.task.validates:
            raise ValueError(
                "val_data needs predict(model, batch) -> (estimate, truth); "
                f"{type(self.task).__name__} has none"
            )
        self.max_steps = check_int("max_steps", max_steps, minimum=1)
        self.max_time = check_optional_positive("max_time", max_time)
        self.clock = BudgetClock(self.max_time)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
        if self.warmup_steps >= self.max_steps:
            raise ValueError(
                f"warmup_steps ({warmup_steps}) must be smaller than max_steps ({max_steps})"
            )
        self.ckpt_every = check_int("ckpt_every", ckpt_every, minimum=1)
        self.val_every = check_int("val_every", val_every, minimum=1)
        self.keep_last = check_int("keep_last", keep_last, minimum=1)
        self.log_images = check_int("log_images", log_images, minimum=0)
        self.seed = check_int("seed", seed, minimum=0)
        self.num_workers = check_int("num_workers", num_workers, minimum=0)
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
        self.amp_dtype = amp_dtype(amp, self.device)
        self.progress = bool(progress)
        self.overwrite = bool(overwrite)
        if hparams is not None and not isinstance(hparams, dict):
            raise ValueError(f"hparams must be a dict or None, got {type(hparams).__name__}")
        self.hparams = jsonable(dict(hparams or {}))
        record = init_config_of(model) if model_config is None else model_config
        self.model_config = None if record is None else check_model_config(record)

        self.train_data = train_data
        self.train_size = dataset_length(train_data, "train_data")
        self.val_data = val_data
        if val_data is not None:
            val_size = dataset_length(val_data, "val_data")
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
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.checkpoints = CheckpointFolder(self.ckpt_dir, keep_last=self.keep_last)

        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        self.module = model.to(self.device)
        if compile:
            compile_networks(self.module)
        if not any(p.requires_grad for p in self.module.parameters()):
            raise ValueError("model has no trainable parameters")
        groups = self.task.parameter_groups(self.module)
        if self.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.model: nn.Module = nn.parallel.DistributedDataParallel(
                self.module, device_ids=device_ids, find_unused_parameters=len(groups) > 1
            )
        else:
            self.model = self.module
        self.group_parameters = {name: list(params) for name, params in groups.items()}
        self.optimizers = make_optimizers(
            optimizer, self.group_parameters, task=type(self.task).__name__
        )
        lr_factor = lr_schedule(
            self.scheduler_kind,
            warmup_steps=self.warmup_steps,
            max_steps=self.max_steps,
            budget_used=self.clock.used,
        )
        self.schedulers = {
            name: torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
            for name, opt in self.optimizers.items()
        }
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )
        self.sampler = SeededBatchSampler(
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
        self.config = run_record(self, optimizer)
        self._last_ckpt: Path | None = None

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimiser of a single-group task."""
        return self._only(self.optimizers, "optimizer")

    @property
    def scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
        """The learning-rate scheduler of a single-group task."""
        return self._only(self.schedulers, "scheduler")

    def _only(self, by_group: dict[str, Any], what: str) -> Any:
        if len(by_group) != 1:
            raise AttributeError(
                f"the task has parameter groups {list(by_group)}: use trainer.{what}s[group]"
            )
        return next(iter(by_group.values()))

    #: Train a reconstructor ``model(y, op)`` on ``(x, y)`` pairs with ``recon-train``'s
    #: defaults: :func:`recon.training.quick.train_supervised`.
    supervised = staticmethod(train_supervised)

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
        self.clock.start(0.0 if state is None else float(state.get("elapsed_s", 0.0)))
        last_loss: float | None = None
        if step >= self.max_steps or self.clock.used() >= 1.0:
            logger.info("the run in %s is complete at step %d", self.out_dir, step)
            return self._result(step, best_psnr, last_val, last_loss, started)

        # events past the checkpoint (from a killed run) are dropped by TensorBoard
        writer = self._open_writer(purge_step=step + 1)
        bar = tqdm(
            total=self.max_steps,
            initial=step,
            desc="train" if self.max_time is None else f"train ({self.max_time:g} min budget)",
            disable=not (self.progress and self.rank == 0),
            dynamic_ncols=True,
        )
        try:
            self.model.train()
            done = False
            while not done:
                self.sampler.new_epoch(start=position)
                self._loader_generator.manual_seed(self._epoch_seed(epoch))
                for batch in self.loader:
                    lr = next(iter(self.optimizers.values())).param_groups[0]["lr"]
                    updates = self._train_step(batch, step + 1)
                    step, position = step + 1, position + 1
                    loss = last_loss = next(reversed(updates.values()))[0]
                    if writer is not None:
                        self._log_step(writer, updates, step)
                        writer.add_scalar("lr", lr, step)
                    done = step >= self.max_steps or self.clock.tick(self.device) >= 1.0
                    new_best = False
                    if self.val_indices and (step % self.val_every == 0 or done):
                        if self.rank == 0:
                            last_val = self._validate(step, writer)
                            if best_psnr is None or last_val["psnr"] > best_psnr:
                                best_psnr, new_best = last_val["psnr"], True
                            self.model.train()
                    if writer is not None and (step % self.val_every == 0 or done):
                        for tag, grid in self.task.images(self.module).items():
                            writer.add_image(tag, grid, step, dataformats="HW")
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
                writer.add_hparams(
                    *hparams_record(self, best_psnr, last_val, last_loss),
                    run_name=".",
                    global_step=step,
                )
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
    def _log_step(self, writer: Any, updates: dict[str, tuple[float, float]], step: int) -> None:
        """``train/loss`` and ``train/grad_norm`` (per group with several), and the task's
        scalars."""
        for group, (loss, grad_norm) in updates.items():
            suffix = "" if len(self.optimizers) == 1 else f"_{group}"
            writer.add_scalar(f"train/loss{suffix}", loss, step)
            writer.add_scalar(f"train/grad_norm{suffix}", grad_norm, step)
        for name, value in self.task.scalars().items():
            writer.add_scalar(f"train/{name}", value, step)

    def _train_step(self, batch: Any, step: int) -> dict[str, tuple[float, float]]:
        """One training step: every optimiser update the task yields. Returns, per group, the
        (all-reduced) loss and the gradient norm of its last update."""
        batch = to_device(batch, self.device)
        updates = self.task.updates(self.model, batch, step=step)
        done: dict[str, tuple[float, float]] = {}
        while True:
            with self._autocast():
                item = next(updates, None)
            if item is None:
                break
            group, loss = item
            done[group] = self._update(group, loss, step)
        if not done:
            raise ValueError(f"{type(self.task).__name__}.updates yielded no (group, loss)")
        for scheduler in self.schedulers.values():
            scheduler.step()
        return done

    def _update(self, group: str, loss: Any, step: int) -> tuple[float, float]:
        """Backward ``loss`` and step the optimiser of ``group``; its loss and gradient norm."""
        if group not in self.optimizers:
            raise ValueError(
                f"{type(self.task).__name__} yielded a loss for group {group!r}; its groups are "
                f"{list(self.optimizers)}"
            )
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError(
                "the task's loss must be a scalar tensor, got "
                + (f"shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else repr(loss))
            )
        value = loss.detach().float().reshape(())
        if self.distributed:
            value = value.clone()
            dist.all_reduce(value)
            value /= self.world_size
        value = float(value)
        if not math.isfinite(value):
            where = "" if len(self.optimizers) == 1 else f" ({group})"
            raise FloatingPointError(f"loss{where} is {value} at step {step}; {self._last_good()}")
        optimizer = self.optimizers[group]
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss.reshape(())).backward()
        self.scaler.unscale_(optimizer)
        max_norm = self.grad_clip if self.grad_clip is not None else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.group_parameters[group], max_norm))
        if not self.scaler.is_enabled() and not math.isfinite(grad_norm):
            raise FloatingPointError(
                f"gradient norm is {grad_norm} at step {step}; {self._last_good()}"
            )
        self.scaler.step(optimizer)
        self.scaler.update()
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
            batch = to_device(batch, self.device)
            with self._autocast():
                estimate, truth = self.task.predict(self.module, batch)
            estimate, truth = estimate.float(), truth.float()
            if estimate.shape != truth.shape or truth.ndim < 3:
                raise ValueError(
                    "predict must return (estimate, truth) of one shape (B, C, *image), got "
                    f"{tuple(estimate.shape)} and {tuple(truth.shape)}"
                )
            ndim = truth.ndim - 2
            psnrs.append(psnr(estimate, truth, ndim=ndim).flatten(1).mean(1).cpu())
            ssims.append(mean_ssim(estimate, truth, ndim).cpu())
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
        rng = rng_state()
        if self.distributed and periodic:  # only rank 0 knows of a new best: no collective then
            states: list[Any] = [None] * self.world_size
            dist.all_gather_object(states, rng)
        else:
            states = [rng]
        if self.rank != 0:
            if periodic:
                self._last_ckpt = self.checkpoints.step_path(step)
            return
        state = {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "step": step,
            "epoch": epoch,
            "position": position,
            "model": self.module.state_dict(),
            "optimizer": self._by_group({k: o.state_dict() for k, o in self.optimizers.items()}),
            "scheduler": self._by_group({k: s.state_dict() for k, s in self.schedulers.items()}),
            "scaler": self.scaler.state_dict(),
            "sampler_generator": self.sampler.epoch_state.clone(),
            "rng": states,
            "elapsed_s": self.clock.elapsed(),
            "best_psnr": best_psnr,
            "last_val": dict(last_val),
            "config": self.config,
            "hparams": self.hparams,
            "model_config": self.model_config,
        }
        written = self.checkpoints.write(state, step=step, periodic=periodic, new_best=new_best)
        if written is not None:
            self._last_ckpt = written

    def _by_group(self, states: dict[str, Any]) -> Any:
        """A single group's state as it is (the layout of one-optimiser checkpoints), several
        groups' states as a dict by group."""
        return next(iter(states.values())) if len(states) == 1 else states

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
        state = read_training_checkpoint(path)
        if state is None:
            raise RuntimeError(f"checkpoint {path} became unreadable while resuming")
        logger.info("resuming from %s at step %d", path, state["step"])
        self._last_ckpt = path.parent / f"step_{state['step']:08d}.pt"
        return state

    def _prepare_out_dir(self, resume: bool) -> str | None:
        """Rank 0: refuse or clear an old run, write ``run.json``; the checkpoint to resume."""
        found = prepare_run_folder(
            self.out_dir, self.checkpoints, self.config, resume=resume, overwrite=self.overwrite
        )
        return None if found is None else str(found)

    def _restore(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        optimizers, schedulers = state["optimizer"], state["scheduler"]
        if len(self.optimizers) == 1:
            optimizers, schedulers = {"model": optimizers}, {"model": schedulers}
        for (name, optimizer), scheduler in zip(
            self.optimizers.items(), self.schedulers.values(), strict=True
        ):
            key = name if len(self.optimizers) > 1 else "model"
            optimizer.load_state_dict(optimizers[key])
            scheduler.load_state_dict(schedulers[key])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.sampler.generator.set_state(state["sampler_generator"])
        rng = state["rng"]
        set_rng_state(rng[self.rank] if len(rng) == self.world_size else rng[0])

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
            "stopped_by": "max_steps" if step >= self.max_steps else "max_time",
            "best_psnr": best_psnr,
            "last_val": dict(last_val),
            "last_loss": last_loss,
            "wall_time": time.perf_counter() - started,
            "train_seconds": self.clock.elapsed(),
        }
