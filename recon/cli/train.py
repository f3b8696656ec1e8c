"""``recon-train``: ``train(cfg)`` builds operator, data, model and task from a config and trains.

``train(cfg)`` is a plain function (tested with a composed config); ``main`` is the thin
``hydra.main`` behind the ``recon-train`` console script, which works from any directory::

    recon-train experiment=quickstart/lpd
    recon-train experiment=ellipses/lpd trainer.max_steps=5000
    recon-train experiment=ellipses/lpd resume=true hydra.run.dir=outputs/lpd   # continue
    recon-train experiment=ellipses/lpd init_from=outputs/lpd/checkpoints/best.pt  # fine-tune
    recon-train --list experiments     # what exists (experiments, operators, phantoms, all, ...)
    recon-train --help                 # the config groups recon-train uses, with their options

Checkpoints, TensorBoard logs (``tb/``) and ``run.json`` go under the run's output directory;
the checkpoints carry the ``model`` config node (:func:`model_record`).
:func:`recon.checkpoints.load_run` loads the trained model of a run folder for ``recon-eval``::

    methods:
      lpd: {_target_: recon.checkpoints.load_run, run_dir: outputs/lpd}
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from data_tools.datasets import MemoryCachedDataset
from recon.checkpoints import check_model_config, load_trained
from recon.cli.config import config_dir
from recon.cli.listing import intercept
from recon.data import build_split
from recon.runs.folders import claim_output_dir
from recon.runs.provenance import record_outcome, write_provenance
from recon.runs.sweep import run_job
from recon.training import Trainer, distributed
from recon.training.tasks import SupervisedTask, as_task

__all__ = ["check_trainer_config", "main", "model_record", "train"]

log = logging.getLogger(__name__)


def train(cfg: DictConfig, output_dir: str | Path | None = None) -> dict:
    """Train ``cfg.model`` on ``cfg.data``'s train split; returns the trainer's result.

    ``output_dir`` defaults to Hydra's run directory (``cfg.paths.output_dir``).
    """
    from hydra.utils import instantiate

    check_trainer_config(cfg)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    output_dir = Path(output_dir if output_dir is not None else cfg.paths.output_dir)
    op = instantiate(cfg.operator)
    torch.manual_seed(int(cfg.seed))  # the model's initialisation follows the seed
    model = instantiate(cfg.model)
    skip = cfg.get("init_skip") or []
    skip = [skip] if isinstance(skip, str) else list(skip)
    if skip and not cfg.get("init_from"):
        raise ValueError(f"init_skip={skip} needs init_from (the checkpoint to skip them in)")
    if cfg.get("init_from"):  # fine-tuning: the weights of another run, trained afresh from here
        load_trained(model, cfg.init_from, skip=skip).train()
        log.info("model weights from %s%s", cfg.init_from, f" (skipping {skip})" if skip else "")
    train_data = build_split(cfg.data, "train", getattr(op, "geometry", None))
    if cfg.data.get("memory_cache", False):  # costly simulations (PAT): simulate each sample once
        train_data = MemoryCachedDataset(train_data)
    val_data = build_split(cfg.data, "validation", getattr(op, "geometry", None))
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    # trainer=ddp: join the torchrun/SLURM process group; every rank uses rank 0's output_dir
    trainer_cfg, output_dir = distributed.setup_training(trainer_cfg, output_dir)
    write_provenance(cfg, output_dir)
    hparams = {
        "model": cfg.model._target_.rsplit(".", 1)[-1],
        "parameters": sum(p.numel() for p in model.parameters()),
        "lr": _learning_rates(cfg.optim),
        "batch_size": int(cfg.trainer.batch_size),
        "max_steps": int(cfg.trainer.max_steps),
        "max_time": cfg.trainer.get("max_time"),
    }
    log.info(
        "training %s (%d parameters) for %d steps",
        hparams["model"],
        hparams["parameters"],
        hparams["max_steps"],
    )
    # an optional `objective` config (conf/objective/*.yaml) is the training task, built for the
    # operator; by default the supervised reconstruction loss
    if cfg.get("objective") is not None:
        task = as_task(instantiate(cfg.objective, op=op))
    else:
        task = SupervisedTask(op=op)
    trainer = Trainer(
        model,
        train_data=train_data,
        val_data=val_data if task.validates else None,
        task=task,
        out_dir=output_dir,
        optimizer=_optimizers(cfg.optim),
        seed=int(cfg.seed),
        hparams=hparams,
        model_config=model_record(cfg),
        **trainer_cfg,
    )
    result = trainer.fit(resume=bool(cfg.resume))
    record_outcome(
        output_dir,
        steps=result["step"],
        stopped_by=result["stopped_by"],
        train_seconds=round(result["train_seconds"], 1),
    )
    if trainer.distributed:
        result["parameter_spread"] = distributed.parameter_spread(trainer.module)
    result["output_dir"] = str(output_dir)
    # without validation (a GAN) there is no best.pt: the last checkpoint is the result
    name = "best.pt" if task.validates else "last.pt"
    result["checkpoint"] = str(output_dir / "checkpoints" / name)
    return result


def check_trainer_config(cfg: DictConfig) -> None:
    """Check that ``cfg.trainer``'s numbers and switches have the types of the packaged defaults
    (``conf/trainer/default.yaml``), so ``trainer.max_steps=ten`` fails at once, naming the key.

    Example
    -------
    >>> from omegaconf import OmegaConf
    >>> check_trainer_config(OmegaConf.create({"trainer": {"max_steps": "ten"}}))
    Traceback (most recent call last):
    ...
    ValueError: trainer.max_steps='ten' is not an integer; set it like trainer.max_steps=20000
    """
    defaults = OmegaConf.load(config_dir() / "trainer" / "default.yaml")
    for key, value in cfg.trainer.items():
        default = defaults.get(key)
        if (
            default is None
            or value is None
            or isinstance(value, type(default))
            and (isinstance(value, bool) == isinstance(default, bool))
        ):
            continue
        if isinstance(default, bool) and isinstance(value, str):
            continue  # amp: a switch or a dtype name, checked by the trainer
        if isinstance(default, bool):
            kind = "true or false"
        elif isinstance(default, int):
            kind = "an integer"
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            continue  # an integer where a float is expected is fine
        elif isinstance(default, float):
            kind = "a number"
        else:
            continue  # strings and the amp switch (a bool or a dtype name) are checked later
        raise ValueError(
            f"trainer.{key}={value!r} is not {kind}; set it like trainer.{key}={_yaml(default)}"
        )


def model_record(cfg: DictConfig) -> dict | None:
    """``cfg.model`` resolved to the constructor record the checkpoints carry (so
    :func:`recon.checkpoints.load_run` rebuilds the model without ``.hydra/``); ``None``, with a
    warning, for a node that does not resolve to plain data.

    Example
    -------
    >>> from omegaconf import OmegaConf
    >>> cfg = OmegaConf.create({"n": 2, "model": {"_target_": "recon.unrolled.FBPUNet",
    ...                                           "depth": "${n}"}})
    >>> model_record(cfg)
    {'_target_': 'recon.unrolled.FBPUNet', 'depth': 2}
    """
    try:
        return check_model_config(OmegaConf.to_container(cfg.model, resolve=True))
    except Exception as error:  # noqa: BLE001 - the run trains; load_run then reads .hydra/
        log.warning("the checkpoints carry no model record (%s); load_run reads .hydra/", error)
        return None


def _yaml(value: object) -> str:
    """``value`` as written on a Hydra command line (``true``, not ``True``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _optimizers(optim: DictConfig) -> object:
    """The optimiser factory of ``cfg.optim`` (a node with ``_target_``), or, for tasks with
    several parameter groups, a dict ``{group: factory}`` (a node of such nodes, e.g. ``critic``
    and ``generator``: ``conf/experiment/generative/gan.yaml``)."""
    from hydra.utils import instantiate

    if "_target_" in optim:
        return instantiate(optim)
    return {group: instantiate(node) for group, node in optim.items()}


def _learning_rates(optim: DictConfig) -> float | dict[str, float]:
    """``cfg.optim``'s learning rate, or one per parameter group."""
    if "_target_" in optim:
        return float(optim.lr)
    return {group: float(node.lr) for group, node in optim.items()}


def main() -> float:
    """Console entry point ``recon-train``; returns the best validation PSNR (for sweepers).

    The job runs through :func:`recon.runs.sweep.run_job`: the output folder is checked and
    claimed before the first byte is written (:func:`recon.runs.folders.claim_output_dir`),
    ``result.json`` records the outcome, a diverged single run exits non-zero, and in a
    multirun a diverged or failed job returns ``-inf``, never NaN or ``None``.
    """
    import hydra

    # --list KIND and --help are answered before Hydra parses the arguments
    status = intercept(sys.argv[1:], command="recon-train", config_name="config")
    if status is not None:
        sys.exit(status)

    def train_and_report(cfg: DictConfig) -> dict:
        result = train(cfg)
        if result["best_psnr"] is not None:
            print(f"best validation PSNR {result['best_psnr']:.2f} dB at {result['checkpoint']}")
        print(f"TensorBoard: tensorboard --logdir {result['output_dir']}/tb")
        return result

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
    def _main(cfg: DictConfig) -> float:
        check_trainer_config(cfg)
        return run_job(
            cfg,
            train_and_report,
            objective=lambda result: result["best_psnr"],
            prepare=lambda out: claim_output_dir(out, cfg, resume=bool(cfg.resume)),
            raise_on_divergence=True,
        )

    return _main()


if __name__ == "__main__":
    main()
