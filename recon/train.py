"""Training: ``train(cfg)`` builds operator, data and model from a config and runs the trainer.

``train(cfg)`` is a plain function (tested with a composed config); ``main`` is the thin
``hydra.main`` behind the ``recon-train`` console script, which works from any directory::

    recon-train experiment=quickstart
    recon-train experiment=ellipses_lpd trainer.max_steps=5000
    recon-train experiment=ellipses_lpd resume=true hydra.run.dir=outputs/lpd   # continue
    recon-train experiment=ellipses_lpd init_from=outputs/lpd/checkpoints/best.pt  # fine-tune

Checkpoints, TensorBoard logs (``tb/``) and ``run.json`` go under the run's output directory.
:func:`load_trained` loads a checkpoint into a model, for ``recon-eval``::

    methods:
      lpd:
        _target_: recon.train.load_trained
        model: {_target_: recon.unrolled.LearnedPrimalDual, n_iter: 10}
        checkpoint: outputs/lpd/checkpoints/best.pt
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from data_tools.datasets import MemoryCachedDataset
from recon import distributed
from recon.data import build_split
from recon.provenance import write_provenance
from recon.sweep import run_job
from recon.training import Trainer, reconstruction_predict, supervised_objective

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def load_trained(
    model: torch.nn.Module, checkpoint: str | Path, *, skip: Sequence[str] = ()
) -> torch.nn.Module:
    """Load the weights of a trainer checkpoint (``best.pt``, ``last.pt``, ``step_*.pt``) into
    ``model`` and return it in eval mode.

    ``skip`` names submodules of the checkpoint's model not to load. A model without them goes
    without (the adjoint networks of a learned operator fine-tuned with its linearised
    adjoint); a model that has them keeps its own, freshly initialised ones (say, wider adjoint
    networks to train anew)::

        load_trained(A_q, "outputs/pat_correction/checkpoints/best.pt",
                     skip=["adjoint_image_net", "adjoint_data_net"])

    Every other weight must match (names and shapes).

    Raises ``FileNotFoundError`` naming the path when the checkpoint is missing, ``ValueError``
    naming a ``skip`` entry that is not a submodule of the checkpoint's model, and
    ``RuntimeError`` listing the weights that are missing from the checkpoint or that the model
    does not have.
    """
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path} is not a tomolearn trainer checkpoint (no 'model' entry)")
    weights = state["model"]
    for name in skip:
        if not any(key.startswith(f"{name}.") for key in weights):
            modules = sorted({key.split(".")[0] for key in weights})
            raise ValueError(f"skip: {path} has no submodule {name!r} (it has {modules})")
        weights = {key: value for key, value in weights.items() if not key.startswith(f"{name}.")}
    # check the names before loading anything, so a mismatch leaves the model as it was
    fresh = tuple(f"{name}." for name in skip)
    own = model.state_dict().keys()
    missing = [key for key in own if key not in weights and not key.startswith(fresh)]
    unexpected = [key for key in weights if key not in own]
    if missing or unexpected:
        raise RuntimeError(
            f"{path} does not fit {type(model).__name__}: missing from the checkpoint "
            f"{_few(missing)}; not in the model {_few(unexpected)} "
            "(init_skip / skip= names submodules not to load)"
        )
    model.load_state_dict(weights, strict=False)
    return model.eval()


def _few(keys: Sequence[str], most: int = 6) -> str:
    """``keys`` as a short list for an error message."""
    shown = ", ".join(repr(k) for k in keys[:most])
    return f"[{shown}{', …' if len(keys) > most else ''}] ({len(keys)})" if keys else "none"


def load_run(run_dir: str | Path, checkpoint: str = "best.pt") -> torch.nn.Module:
    """The trained model of a ``recon-train`` run directory, ready for ``recon-eval``.

    Rebuilds the model from the run's own resolved config (``.hydra/config.yaml``) and loads
    ``checkpoints/<checkpoint>``, so an evaluation cannot pair weights with the wrong
    architecture::

        methods:
          lpd: {_target_: recon.train.load_run, run_dir: outputs/ellipses_lpd}

    Raises ``FileNotFoundError`` naming what is missing (the directory, its config or the
    checkpoint).
    """
    from hydra.utils import instantiate

    run_dir = Path(run_dir).expanduser()
    config = run_dir / ".hydra" / "config.yaml"
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    if not config.is_file():
        raise FileNotFoundError(
            f"{run_dir} has no .hydra/config.yaml: not a recon-train run directory "
            "(use recon.train.load_trained with an explicit model config instead)"
        )
    model = instantiate(OmegaConf.load(config).model)
    return load_trained(model, run_dir / "checkpoints" / checkpoint)


def train(cfg: DictConfig, output_dir: str | Path | None = None) -> dict:
    """Train ``cfg.model`` on ``cfg.data``'s train split; returns the trainer's result.

    ``output_dir`` defaults to Hydra's run directory (``cfg.paths.output_dir``).
    """
    from hydra.utils import instantiate

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
        "lr": float(cfg.optim.lr),
        "batch_size": int(cfg.trainer.batch_size),
        "max_steps": int(cfg.trainer.max_steps),
    }
    log.info(
        "training %s (%d parameters) for %d steps",
        hparams["model"],
        hparams["parameters"],
        hparams["max_steps"],
    )
    # an optional `objective` config (e.g. conf/objective/denoising.yaml) returns
    # (objective, predict) for the operator; by default the supervised reconstruction loss
    if cfg.get("objective") is not None:
        objective, predict = instantiate(cfg.objective, op=op)
    else:
        objective, predict = supervised_objective(op), reconstruction_predict(op)
    trainer = Trainer(
        model,
        train_data=train_data,
        val_data=val_data,
        objective=objective,
        predict=predict,
        out_dir=output_dir,
        optimizer=instantiate(cfg.optim),
        seed=int(cfg.seed),
        hparams=hparams,
        **trainer_cfg,
    )
    result = trainer.fit(resume=bool(cfg.resume))
    if trainer.distributed:
        result["parameter_spread"] = distributed.parameter_spread(trainer.module)
    result["output_dir"] = str(output_dir)
    result["checkpoint"] = str(output_dir / "checkpoints" / "best.pt")
    return result


def main() -> float:
    """Console entry point ``recon-train``; returns the best validation PSNR (for sweepers).

    The job runs through :func:`recon.sweep.run_job`: ``result.json`` records its outcome, and
    a diverged run (or, in a multirun, a failed one) returns ``-inf``, never NaN or ``None``.
    """
    import hydra

    def train_and_report(cfg: DictConfig) -> dict:
        result = train(cfg)
        if result["best_psnr"] is not None:
            print(f"best validation PSNR {result['best_psnr']:.2f} dB at {result['checkpoint']}")
        print(f"TensorBoard: tensorboard --logdir {result['output_dir']}/tb")
        return result

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
    def _main(cfg: DictConfig) -> float:
        return run_job(cfg, train_and_report, objective=lambda result: result["best_psnr"])

    return _main()


if __name__ == "__main__":
    main()
