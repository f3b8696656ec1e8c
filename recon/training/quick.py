"""A short supervised path from Python: ``Trainer.supervised(model, op, train, val, out_dir)``.

What ``recon-train`` does for a reconstructor, without Hydra: the trainer settings, the optimiser
and the seed of the shipped configs (:mod:`recon.training.defaults`), the supervised task
``MSE(model(y, op), x)``, the same refusal of an ``out_dir`` that holds a run, and checkpoints that
carry the model's constructor record, so :func:`recon.checkpoints.load_run` rebuilds the model
without a ``.hydra/`` folder.

Example
-------
>>> import functools, tempfile, torch
>>> from operators import MatrixOperator
>>> from data_tools.datasets import SyntheticDataset
>>> op = MatrixOperator(torch.randn(6 * 5, 4 * 4, generator=torch.Generator().manual_seed(0)),
...                     domain_shape=(4, 4), range_shape=(6, 5))
>>> pairs = SyntheticDataset(phantom=functools.partial(torch.rand), operator=op, size=4, seed=0)
>>> lpd = {"_target_": "recon.unrolled.LearnedPrimalDual", "n_iter": 1, "channels": 2}
>>> result, model = train_supervised(lpd, op, pairs, pairs, tempfile.mkdtemp(), max_steps=2,
...                                  batch_size=2, progress=False)
>>> result["step"], type(model).__name__, model.training
(2, 'LearnedPrimalDual', False)
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from recon.checkpoints import build_model, init_config_of, load_trained
from recon.checks import check_int
from recon.training.defaults import default_optimizer, default_seed, trainer_defaults
from recon.training.tasks.supervised import SupervisedTask

__all__ = ["SETTINGS", "check_pairs", "train_supervised"]

logger = logging.getLogger(__name__)

#: Settings of :func:`train_supervised` besides those of ``conf/trainer/default.yaml``.
SETTINGS = ("seed", "optimizer", "lr", "hparams", "val_indices", "overwrite", "model_config")


def train_supervised(
    model: nn.Module | Mapping[str, Any],
    op: Any,
    train_data: Dataset,
    val_data: Dataset | None,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    **settings: Any,
) -> tuple[dict[str, Any], nn.Module]:
    """Train a reconstructor on ``(x, y)`` pairs with the defaults of ``recon-train``.

    Parameters
    ----------
    model : torch.nn.Module or dict
        A reconstructor, ``model(y, op) -> x`` (e.g. :class:`recon.unrolled.LearnedPrimalDual`),
        or its config ``{"_target_": "recon.unrolled.LearnedPrimalDual", **arguments}``, built
        after seeding torch (as ``recon-train`` builds ``model``) with
        :func:`recon.checkpoints.build_model`.
    op : operators.LinearOperator
        The forward operator handed to the model.
    train_data, val_data : torch.utils.data.Dataset
        Samples ``(x, y)``: the image ``(1, *op.domain_shape)`` first, then the measurements
        ``(1, *op.range_shape)``, as :class:`data_tools.datasets.SyntheticDataset` and
        :func:`recon.data.build_split` give them. ``val_data`` may be ``None`` (no validation).
    out_dir : str or Path
        The run folder (``run.json``, ``checkpoints/``, ``tb/``). A folder that holds a run is
        refused, as ``recon-train`` refuses it, unless ``resume`` (or ``overwrite=True``).
    resume : bool
        Continue the run in ``out_dir`` from its newest checkpoint.
    **settings
        Any key of ``conf/trainer/default.yaml`` (``max_steps``, ``batch_size``, ``device``,
        ``amp``, ``val_every``, ...), with the same defaults; ``warmup_steps`` defaults to the
        config's, at most a tenth of ``max_steps``. Also ``seed`` (``conf/config.yaml``'s),
        ``lr`` (of ``conf/optim/adamw.yaml``'s AdamW) or ``optimizer`` (a factory
        ``optimizer(parameters)``), and ``hparams``, ``val_indices``, ``overwrite`` and
        ``model_config`` of :class:`~recon.training.Trainer`.

    Returns
    -------
    result : dict
        :meth:`~recon.training.Trainer.fit`'s result, with ``output_dir`` and ``checkpoint``
        (``best.pt``, or ``last.pt`` without validation).
    model : torch.nn.Module
        The model with the weights of that checkpoint, in eval mode. Its checkpoints carry its
        constructor record when it has one (a config ``model``, ``build_model``,
        ``model_config=``), so ``load_run(out_dir)`` rebuilds it; otherwise a warning says so.

    Raises
    ------
    TypeError
        For an unknown setting (the message names the close ones).
    ValueError
        For samples that are not ``(x, y)`` pairs of the operator's shapes (e.g. ``(y, x)``).
    FileExistsError
        If ``out_dir`` holds a run and neither ``resume`` nor ``overwrite`` is set.
    """
    from recon.training.trainer import Trainer  # trainer.py names this function Trainer.supervised

    defaults = trainer_defaults()
    unknown = sorted(set(settings) - set(defaults) - set(SETTINGS))
    if unknown:
        known = [*defaults, *SETTINGS]
        close = {name: difflib.get_close_matches(name, known, n=1) for name in unknown}
        hints = ", ".join(
            f"{name!r}" + (f" (did you mean {match[0]!r}?)" if match else "")
            for name, match in close.items()
        )
        raise TypeError(f"unknown setting {hints}; settings: {', '.join(known)}")
    seed = settings.pop("seed", default_seed())
    lr = settings.pop("lr", None)
    optimizer = settings.pop("optimizer", None)
    if optimizer is not None and lr is not None:
        raise ValueError("give lr (of the default AdamW) or optimizer, not both")
    if optimizer is None:
        optimizer = default_optimizer() if lr is None else default_optimizer(lr=lr)
    record = settings.pop("model_config", None)
    if isinstance(model, Mapping):
        torch.manual_seed(check_int("seed", seed, minimum=0))
        model = build_model(model)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or a config dict, got {type(model)}")
    if record is None and init_config_of(model) is None:
        logger.warning(
            "%s carries no constructor record: load_run(%r) cannot rebuild it (pass "
            "model_config={'_target_': ..., **arguments}, or a config dict as the model)",
            type(model).__name__,
            str(out_dir),
        )
    check_pairs(train_data, op, "train_data")
    if val_data is not None:
        check_pairs(val_data, op, "val_data")
    options = {**defaults, **settings}
    if "warmup_steps" not in settings:
        steps = check_int("max_steps", options["max_steps"], minimum=1)
        options["warmup_steps"] = min(int(defaults["warmup_steps"]), steps // 10)
    if settings.get("hparams") is None:
        options["hparams"] = {
            "model": type(model).__name__,
            "parameters": sum(p.numel() for p in model.parameters()),
            "lr": getattr(optimizer, "keywords", {}).get("lr"),
            "batch_size": options["batch_size"],
            "max_steps": options["max_steps"],
            "max_time": options["max_time"],
        }
    trainer = Trainer(
        model,
        train_data=train_data,
        val_data=val_data,
        task=SupervisedTask(op=op),
        out_dir=out_dir,
        optimizer=optimizer,
        seed=seed,
        model_config=record,
        **options,
    )
    result = trainer.fit(resume=resume)
    checkpoint = Path(out_dir) / "checkpoints" / ("last.pt" if val_data is None else "best.pt")
    result["output_dir"], result["checkpoint"] = str(out_dir), str(checkpoint)
    return result, load_trained(trainer.module, checkpoint)


def check_pairs(data: Dataset, op: Any, name: str) -> None:
    """Check that ``data[0]`` is an ``(x, y)`` pair of ``op``'s shapes, with a channel dimension.

    Raises ``ValueError`` saying what to change: swap a ``(y, x)`` pair, add the channel
    dimension, or fit the operator's shapes.

    Example
    -------
    >>> from operators import MatrixOperator
    >>> op = MatrixOperator(torch.ones(6, 4), domain_shape=(2, 2), range_shape=(6,))
    >>> check_pairs([(torch.zeros(1, 2, 2), torch.zeros(1, 6))], op, "train_data")
    >>> check_pairs([(torch.zeros(1, 6), torch.zeros(1, 2, 2))], op, "train_data")
    Traceback (most recent call last):
    ...
    ValueError: train_data[0] looks like (y, x): shapes (1, 6) and (1, 2, 2); ...
    """
    try:
        sample = data[0]
    except Exception as error:  # noqa: BLE001 - named for the user, with its cause
        raise ValueError(f"{name}[0] cannot be read: {type(error).__name__}: {error}") from error
    if not isinstance(sample, (tuple, list)) or len(sample) != 2:
        raise ValueError(f"{name}[0] must be a pair (x, y), got {type(sample).__name__}")
    domain, range_ = tuple(op.domain_shape), tuple(op.range_shape)
    x_shape, y_shape = (tuple(getattr(t, "shape", ())) for t in sample)
    expected = (
        f"x (1, *op.domain_shape) = {(1, *domain)} and y (1, *op.range_shape) = {(1, *range_)}"
    )
    if x_shape[1:] == domain and y_shape[1:] == range_:
        return
    if x_shape[1:] == range_ and y_shape[1:] == domain:
        raise ValueError(
            f"{name}[0] looks like (y, x): shapes {x_shape} and {y_shape}; samples are (x, y), "
            f"{expected}: swap them"
        )
    if x_shape == domain and y_shape == range_:
        raise ValueError(
            f"{name}[0] has shapes {x_shape} and {y_shape}, without a channel dimension; "
            f"expected {expected} (x[None], y[None])"
        )
    raise ValueError(f"{name}[0] has shapes {x_shape} and {y_shape}; expected {expected}")
