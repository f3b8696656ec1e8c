"""The generative configs: the generators train through recon-train's ``train(cfg)``
(``experiment=generative/{ae,vae,gan}``) and load with ``load_generator``; the model, operator
and recon configs instantiate; the evaluation protocol loads a checkpoint into every method."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recon.cli.config import compose_config, config_dir
from recon.cli.evaluate import evaluate
from recon.cli.train import train
from recon.generative import load_generator

SMALL_OP = ["operator.geometry.image_shape=[16,16]", "operator.geometry.n_detectors=23"]
TINY_DATA = ["data.splits.train.size=8", "data.splits.validation.size=2", "data.splits.test.size=2"]


@pytest.mark.parametrize("kind", ["ae", "vae", "gan"])
def test_training_experiments_run_a_few_steps(tmp_path, kind):
    if kind == "gan":  # 2 critic batches of 2 images per step
        model = ["model.generator.image_size=16", "model.generator.channels=2",
                 "model.critic.channels=2", "model.generator.latent_dim=4",
                 "objective.n_critic=2", "trainer.batch_size=4"]  # fmt: skip
    else:
        model = ["model.image_size=16", "model.channels=2", "model.latent_dim=4",
                 "trainer.batch_size=2"]  # fmt: skip
    cfg = compose_config(
        "config",
        [f"experiment=generative/{kind}", *SMALL_OP, *TINY_DATA, *model, "trainer.max_steps=2",
         "trainer.val_every=2", "trainer.ckpt_every=2", "trainer.warmup_steps=0",
         "trainer.progress=false"],
    )  # fmt: skip
    assert cfg.operator.geometry.n_angles == 15 and cfg.data.noise.relative == 0.05
    result = train(cfg, output_dir=tmp_path)
    assert result["step"] == 2
    checkpoint = tmp_path / "checkpoints" / ("last.pt" if kind == "gan" else "best.pt")
    assert result["checkpoint"] == str(checkpoint)
    if kind == "gan":
        assert result["best_psnr"] is None
    else:
        assert result["best_psnr"] is not None
    generator = load_generator(model=instantiate(cfg.model), checkpoint=checkpoint)
    assert generator.generate(torch.zeros(1, 4)).shape == (1, 1, 16, 16)


def test_the_gan_experiment_is_wgan_gp_with_one_adam_per_group():
    cfg = compose_config("config", ["experiment=generative/gan"])
    assert cfg.objective._target_ == "recon.training.tasks.AdversarialTask"
    assert set(cfg.optim) == {"critic", "generator"}
    for group in ("critic", "generator"):
        assert cfg.optim[group]._target_ == "torch.optim.Adam"
        assert cfg.optim[group].lr == 1e-4 and list(cfg.optim[group].betas) == [0.0, 0.9]
    assert cfg.trainer.batch_size == cfg.objective.n_critic * 16  # 16 images per critic step
    assert cfg.trainer.scheduler == "constant" and cfg.trainer.grad_clip is None


@pytest.mark.parametrize("kind", ["ae", "vae", "gan"])
def test_full_size_model_configs_instantiate(kind):
    model = instantiate(OmegaConf.load(config_dir() / "model" / f"{kind}.yaml"))
    assert model.latent_dim == 128
    assert model.generate(torch.zeros(1, 128)).shape == (1, 1, 64, 64)


def test_operator_config_is_sparse_angle_64():
    op = instantiate(OmegaConf.load(config_dir() / "operator" / "parallel64_15.yaml"))
    assert op.domain_shape == (64, 64) and op.range_shape == (15, 91)


def test_eval_protocol_loads_the_checkpoint_into_every_method(tmp_path):
    overrides = ["generator_model.image_size=16", "generator_model.channels=2",
                 "generator_model.latent_dim=4"]  # fmt: skip
    probe = compose_config("eval", ["protocol=generative/ellipses64", "generator_checkpoint=x",
                                    *overrides])  # fmt: skip
    trained = instantiate(probe.generator_model)
    with torch.no_grad():
        trained.decoder.out_conv.bias.fill_(0.25)  # recognisable weights
    torch.save({"model": trained.state_dict()}, tmp_path / "g.pt")
    cfg = compose_config(
        "eval",
        ["protocol=generative/ellipses64", f"generator_checkpoint={tmp_path / 'g.pt'}",
         *overrides, *SMALL_OP, *TINY_DATA, "methods.tv.n_iter=3", "methods.hard.n_iter=2",
         "methods.soft.n_iter=2", "methods.sparse.n_iter=2", "batch_size=2"],
    )  # fmt: skip
    assert set(cfg.methods) == {"fbp", "tv", "hard", "soft", "sparse"}
    for name in ("hard", "soft", "sparse"):
        method = instantiate(cfg.methods[name])
        assert method.generator.decoder.out_conv.bias.item() == 0.25
    assert set(cfg.search_grid) == {"tv", "hard", "soft", "sparse"}
    results = evaluate(cfg, output_dir=tmp_path / "eval")
    assert set(results) == {"fbp", "tv", "hard", "soft", "sparse"}
    # hard: 4 restarts x (2 steps + the end) forward and 4 x 2 adjoint applications (FBP: none)
    assert results["hard"]["op_applications_per_image"] == 4 * 3 + 4 * 2
