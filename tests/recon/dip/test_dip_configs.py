"""The DIP configs: conf/recon/dip*.yaml instantiate and run (shrunk), the warm start's network
and FBP are the pretraining experiment's, the pretraining trains and its U-Net loads into the
warm start, and recon-eval runs protocol=ellipses/dip under no_grad."""

from __future__ import annotations

import json

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from models.dip_unet import DIPUNet
from operators import Parallel2D, RayTransform
from recon.cli.config import compose_config, config_dir
from recon.cli.evaluate import evaluate
from recon.cli.train import train
from recon.dip import DeepImagePrior

NAMES = ["dip", "dip_paper", "dip_warm"]
SMALL_NET = {"channels": 4, "scales": 2}
TINY_TRAIN = [
    "operator.geometry.image_shape=[32,32]",
    "operator.geometry.n_detectors=46",
    "data.splits.train.size=8",
    "data.splits.validation.size=2",
    "data.splits.test.size=2",
    "model.unet.channels=4",
    "model.unet.scales=3",
    "trainer.max_steps=2",
    "trainer.batch_size=2",
    "trainer.val_every=2",
    "trainer.ckpt_every=2",
    "trainer.warmup_steps=0",
    "trainer.progress=false",
]


@pytest.fixture(autouse=True)
def _one_thread():
    """Small convolutions run fastest on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _load(name: str):
    return OmegaConf.load(config_dir() / "recon" / f"{name}.yaml")


@pytest.mark.parametrize("name", NAMES)
def test_each_dip_config_instantiates_and_runs_shrunk(name):
    cfg = _load(name)
    assert isinstance(instantiate(cfg), DeepImagePrior)  # at full size
    net = cfg.network.network if name == "dip_warm" else cfg.network
    net.update(SMALL_NET)
    cfg.update({"n_iter": 2, "progress": False})
    dip = instantiate(cfg)
    assert isinstance(dip.network, DIPUNet) and dip.network.channels == [4, 4]
    assert dip.init == ("network" if name == "dip_warm" else "seed")
    op = RayTransform(Parallel2D((16, 16), n_angles=8, n_detectors=24), backend="matrix")
    with torch.no_grad():
        x = dip(op(torch.rand(2, 1, 16, 16)), op)
    assert x.shape == (2, 1, 16, 16) and torch.isfinite(x).all()


def test_the_warm_start_config_matches_the_pretraining_experiment():
    warm = _load("dip_warm")
    pretrain = compose_config("config", ["experiment=dip/pretrain"])
    assert warm.network.prefix == "unet" and pretrain.model._target_ == "recon.unrolled.FBPUNet"
    assert OmegaConf.to_container(warm.network.network) == OmegaConf.to_container(
        pretrain.model.unet
    )
    assert (warm.fbp_filter, warm.fbp_frequency_scaling) == (
        pretrain.model.filter,
        pretrain.model.frequency_scaling,
    )
    cold = _load("dip")
    assert OmegaConf.to_container(cold.network) == OmegaConf.to_container(pretrain.model.unet)
    assert warm.n_iter * 5 <= cold.n_iter  # the warm start's target: a fifth of the iterations


def test_pretrain_then_warm_start_then_recon_eval(tmp_path):
    cfg = compose_config("config", ["experiment=dip/pretrain", *TINY_TRAIN])
    result = train(cfg, output_dir=tmp_path / "pretrain")
    checkpoint = tmp_path / "pretrain" / "checkpoints" / "best.pt"
    assert result["step"] == 2 and checkpoint.is_file()

    ev = compose_config(
        "eval",
        [
            "protocol=ellipses/dip",
            "operator.geometry.image_shape=[32,32]",
            "operator.geometry.n_detectors=46",
            "data.splits.test.size=2",
            f"dip_checkpoint={checkpoint}",
            "methods.tv.n_iter=3",
            "methods.dip.n_iter=3",
            "methods.dip.progress=false",
            "methods.dip.network.channels=4",
            "methods.dip.network.scales=3",
            "methods.dip_warm.n_iter=3",
            "methods.dip_warm.progress=false",
            "methods.dip_warm.network.network.channels=4",
            "methods.dip_warm.network.network.scales=3",
        ],
    )
    warm = instantiate(ev.methods.dip_warm)
    trained = instantiate(cfg.model)
    trained.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    for (name, p), q in zip(
        warm.network.named_parameters(), trained.unet.parameters(), strict=True
    ):
        assert torch.equal(p, q), name
    results = evaluate(ev, output_dir=tmp_path / "eval")
    assert set(results) == {"fbp", "tv", "dip", "dip_warm"}
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    # A once per iterate (0 to 3; CountingOperator does not see autograd's Aᵀ); FBP needs none
    assert metrics["dip"]["op_applications_per_image"] == 4
    assert all(10 < metrics[m]["psnr_mean"] < 60 for m in ("fbp", "tv"))
    assert all(metrics[m]["psnr_mean"] > 0 for m in ("dip", "dip_warm"))  # 3 steps: far from done
