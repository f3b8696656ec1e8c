"""What a training run records about itself: ``run.json`` and TensorBoard's hparams.

Example
-------
>>> import torch
>>> jsonable({"lr": 0.1, "device": torch.device("cpu")})
{'lr': 0.1, 'device': 'cpu'}
>>> flatten_hparams({"model": {"channels": 32, "ndim": 2}, "lr": 0.1})
{'model/channels': 32, 'model/ndim': 2, 'lr': 0.1}
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["flatten_hparams", "hparams_record", "jsonable", "run_record"]


def jsonable(value: Any) -> Any:
    """``value`` round-tripped through JSON (non-JSON leaves become strings)."""
    return json.loads(json.dumps(value, default=str))


def flatten_hparams(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a/b": leaf}`` with leaves TensorBoard's hparams accept (others as
    strings)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_hparams(value, f"{name}/"))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def run_record(trainer: Any, optimizer: Any) -> dict[str, Any]:
    """The configuration of ``trainer`` written to ``run.json`` and into every checkpoint; a
    resume compares it with the new run's."""
    return jsonable(
        {
            "model": type(trainer.module).__qualname__,
            "train_size": trainer.train_size,
            "val_size": None if trainer.val_data is None else len(trainer.val_data),
            "val_indices": trainer.val_indices,
            "max_steps": trainer.max_steps,
            "max_time": trainer.max_time,
            "batch_size": trainer.batch_size,
            "optimizer": re.sub(r" at 0x[0-9a-fA-F]+", "", repr(optimizer)),
            "scheduler": trainer.scheduler_kind,
            "warmup_steps": trainer.warmup_steps,
            "grad_clip": trainer.grad_clip,
            "amp": str(trainer.amp_dtype).removeprefix("torch.") if trainer.amp else False,
            "ckpt_every": trainer.ckpt_every,
            "val_every": trainer.val_every,
            "keep_last": trainer.keep_last,
            "seed": trainer.seed,
            "world_size": trainer.world_size,
            "hparams": trainer.hparams,
        }
    )


def hparams_record(
    trainer: Any, best_psnr: float | None, last_val: dict[str, Any], last_loss: float | None
) -> tuple[dict[str, Any], dict[str, float]]:
    """TensorBoard's ``add_hparams`` arguments at the end of a run: settings and final metrics."""
    first = next(iter(trainer.optimizers.values()))
    hparams = {
        "batch_size": trainer.batch_size,
        "max_steps": trainer.max_steps,
        "lr": float(first.param_groups[0].get("initial_lr", math.nan)),
        "scheduler": trainer.scheduler_kind,
        "warmup_steps": trainer.warmup_steps,
        "grad_clip": "None" if trainer.grad_clip is None else trainer.grad_clip,
        "seed": trainer.seed,
        "world_size": trainer.world_size,
        "model": trainer.config["model"],
        **flatten_hparams(trainer.hparams),
    }
    metrics = {"hparam/loss": math.nan if last_loss is None else last_loss}
    if last_val:
        metrics["hparam/psnr"] = last_val["psnr"]
        metrics["hparam/ssim"] = last_val["ssim"]
        metrics["hparam/best_psnr"] = best_psnr
    return hparams, metrics
