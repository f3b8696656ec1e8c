"""Tests of recon.pnp.reconstructors: the reconstructor contract on any batch (for every PnP
reconstructor, the unfolded one included), real denoisers in float64, argument errors, and every
PnP config file through recon-train/recon-eval."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from models.dncnn import DnCNN
from models.drunet import DRUNet
from models.gsdenoiser import GSDenoiser
from recon.base import Reconstructor
from recon.cli.config import CONF_DIR
from recon.pnp import RED, PnPADMM, PnPHQS, PnPPGD, UnfoldedPnP

# --------------------------------------------------------------------------- the contract
RECONSTRUCTORS = [
    pytest.param(lambda d: PnPPGD(denoiser=d, sigma=0.05, n_iter=3), id="pgd"),
    pytest.param(lambda d: PnPPGD(denoiser=d, sigma=0.05, n_iter=2, init="fbp"), id="pgd-fbp"),
    pytest.param(lambda d: PnPADMM(denoiser=d, sigma=0.05, n_iter=2, inner_iter=2), id="admm"),
    pytest.param(
        lambda d: PnPADMM(denoiser=d, sigma=0.05, n_iter=2, inner="gradient"), id="admm-gradient"
    ),
    pytest.param(lambda d: PnPHQS(denoiser=d, n_iter=3, inner_iter=2), id="hqs"),
    pytest.param(lambda d: RED(denoiser=d, sigma=0.05, n_iter=3), id="red"),
    pytest.param(
        lambda d: RED(denoiser=d, sigma=0.05, n_iter=2, mode="fixed_point"), id="red-fixed-point"
    ),
    pytest.param(lambda d: UnfoldedPnP(denoiser=d, algorithm="pgd", n_iter=2), id="unfolded-pgd"),
    pytest.param(
        lambda d: UnfoldedPnP(denoiser=d, algorithm="admm", n_iter=2, inner_iter=2),
        id="unfolded-admm",
    ),
    pytest.param(
        lambda d: UnfoldedPnP(denoiser=d, algorithm="hqs", n_iter=2, inner_iter=2),
        id="unfolded-hqs",
    ),
]


@pytest.mark.parametrize("make", RECONSTRUCTORS)
@pytest.mark.parametrize("batch", [(), (3,), (2, 1)], ids=str)
def test_reconstructors_map_any_batch(ray, make, batch, discs, smoothing):
    recon = make(smoothing())
    assert isinstance(recon, Reconstructor)
    x = discs(math.prod(batch) or 1).reshape(*batch, 32, 32)
    out = recon(ray(x), ray)
    assert out.shape == (*batch, 32, 32) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.abs().max() > 0


def test_a_real_denoiser_works_in_every_algorithm_and_float64(ray, discs):
    x = discs(2).double()
    for denoiser in (
        DnCNN(channels=4, depth=3).double(),
        DRUNet(channels=4, depth=1, n_blocks=1).double(),
        GSDenoiser(channels=4, depth=1, n_blocks=1).double(),
    ):
        for recon in (
            PnPPGD(denoiser=denoiser, sigma=0.05, n_iter=1),
            PnPHQS(denoiser=denoiser, n_iter=1, inner_iter=1),
        ):
            with torch.no_grad():
                out = recon(ray(x), ray)
            assert out.shape == x.shape and out.dtype == torch.float64


# --------------------------------------------------------------------------- errors
def test_nan_measurements_raise(ray, discs, smoothing):
    y = ray(discs(1))
    y[0, 0, 0, 0] = math.nan
    for make in (p.values[0] for p in RECONSTRUCTORS):
        with pytest.raises(ValueError, match="NaN or infinite"):
            make(smoothing())(y, ray)


@pytest.mark.parametrize(
    "make",
    [
        lambda d: PnPPGD(denoiser=d, sigma=0.1, n_iters=3),
        lambda d: PnPADMM(denoiser=d, sigma=0.1, row=1.0),
        lambda d: PnPHQS(denoiser=d, sigma=0.1),
        lambda d: RED(denoiser=d, sigma=0.1, lambda_=0.1),
        lambda d: UnfoldedPnP(denoiser=d, n_iters=3),
    ],
    ids=["pgd", "admm", "hqs", "red", "unfolded"],
)
def test_typos_raise_type_error(make, smoothing):
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        make(smoothing())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: PnPPGD(denoiser=d, sigma=-0.1), "sigma must be a finite non-negative"),
        (lambda d: PnPPGD(denoiser=d, sigma=0.1, step=0), "step must be a finite positive"),
        (
            lambda d: PnPPGD(denoiser=lambda x, s: x, sigma=0.1),
            "denoiser must be a torch.nn.Module",
        ),
        (lambda d: PnPPGD(denoiser=d, sigma=0.1, init="fdk"), "unknown init 'fdk'"),
        (lambda d: PnPADMM(denoiser=d, sigma=0.1, inner="lsqr"), "unknown inner solver"),
        (lambda d: PnPADMM(denoiser=d, sigma=0.1, inner_iter=0), "inner_iter must be"),
        (
            lambda d: PnPHQS(denoiser=d, sigma_end=0.0),
            "sigma_end must be a finite positive",
        ),
        (lambda d: RED(denoiser=d, sigma=0.1, mode="fixed"), "unknown RED mode"),
        (lambda d: PnPPGD(denoiser=d, sigma=0.1, tol=math.nan), "tol must be a finite"),
        (
            lambda d: UnfoldedPnP(denoiser=d, algorithm="pgd", lam=0.2),
            "lam do\\(es\\) not apply to algorithm='pgd'",
        ),
        (lambda d: UnfoldedPnP(denoiser=d, algorithm="red"), "unknown algorithm 'red'"),
        (lambda d: UnfoldedPnP(denoiser=d, n_iter=0), "n_iter must be an int >= 1"),
    ],
)
def test_invalid_arguments_raise(make, message, smoothing):
    with pytest.raises(ValueError, match=message):
        make(smoothing())


# --------------------------------------------------------------------------- configs, CLI
TINY_OP = ["operator.geometry.image_shape=[32,32]", "operator.geometry.n_detectors=46"]
TINY_DATA = [
    "data.splits.train.size=8",
    "data.splits.validation.size=2",
    "data.splits.test.size=2",
]
TINY_TRAINER = [
    "trainer.batch_size=2",
    "trainer.warmup_steps=0",
    "trainer.progress=false",
]


@pytest.mark.parametrize("name", ["dncnn", "drunet", "drunet_small", "gsdenoiser"])
def test_denoiser_model_configs_instantiate_and_denoise(compose_cfg, name):
    model = instantiate(compose_cfg("config", f"model={name}").model)
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert model(x, 0.1).shape == x.shape
    with pytest.raises(Exception, match="chanels"):
        instantiate(compose_cfg("config", f"model={name}", "+model.chanels=4").model)


@pytest.mark.parametrize("name", ["pnp_pgd", "pnp_admm", "pnp_hqs", "red"])
def test_pnp_recon_configs_reconstruct(ray, compose_cfg, name, discs):
    cfg = OmegaConf.load(CONF_DIR / "recon" / f"{name}.yaml")
    cfg.n_iter = 1
    recon = instantiate(cfg)
    with torch.no_grad():
        assert recon(ray(discs(2)), ray).shape == (2, 1, 32, 32)


def test_pnp_protocol_end_to_end(compose_cfg, tmp_path):
    """recon-train the denoiser, recon-eval the PnP algorithms with it, recon-train the learned
    schedule on top of it, recon-eval that: every PnP experiment file, tiny."""
    from recon.checkpoints import load_run
    from recon.cli.evaluate import evaluate
    from recon.cli.train import train

    small_net = ["model.channels=4", "model.depth=1", "model.n_blocks=1"]
    cfg = compose_cfg(
        "config",
        "experiment=ellipses/pnp_denoiser",
        *TINY_OP,
        *TINY_DATA,
        *TINY_TRAINER,
        *small_net,
        "objective.patch_size=16",
        "trainer.max_steps=3",
        "trainer.val_every=3",
        "trainer.ckpt_every=3",
    )
    assert cfg.objective._target_ == "recon.training.tasks.DenoisingTask"
    run = tmp_path / "denoiser"
    result = train(cfg, output_dir=run)
    assert result["step"] == 3 and math.isfinite(result["best_psnr"])
    (run / ".hydra").mkdir()
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")  # as recon-train's hydra.main does
    denoiser = load_run(run)
    assert isinstance(denoiser, DRUNet) and denoiser.channels == 4

    n_iter = [f"methods.{m}.n_iter=2" for m in ("pnp_pgd", "pnp_admm", "pnp_hqs", "red")]
    ev = compose_cfg(
        "eval",
        "protocol=ellipses/pnp",
        *TINY_OP,
        "data.splits.test.size=2",
        "data.splits.validation.size=1",
        "search=true",  # the experiment's search grid, on the validation split
        "search_grid.pnp_pgd.sigma=[0.01,0.2]",
        "search_grid.pnp_hqs.n_iter=[2]",  # the experiment's grid tries 8 and 24 iterations
        "batch_size=2",
        f"runs.denoiser={run}",
        "methods.tv.n_iter=3",
        *n_iter,
    )
    results = evaluate(ev, output_dir=tmp_path / "eval")
    assert set(results) == {"fbp", "tv", "pnp_pgd", "pnp_admm", "pnp_hqs", "red"}
    assert all(math.isfinite(r["psnr_mean"]) for r in results.values())
    # PGD from FBP (no operator call): one A at the start, then A and Aᵀ per iteration
    assert results["pnp_pgd"]["op_applications_per_image"] == 1 + 2 * 2
    assert results["pnp_pgd"]["params"]["sigma"] in (0.01, 0.2)  # chosen by the search
    assert (tmp_path / "eval" / "search_red.json").is_file()
    # HQS: 5 CG iterations (one A, one Aᵀ each) plus the start of CGLS (one A, one Aᵀ)
    assert results["pnp_hqs"]["op_applications_per_image"] == 2 * (2 * 5 + 2)

    ucfg = compose_cfg(
        "config",
        "experiment=ellipses/pnp_unfolded",
        *TINY_OP,
        *TINY_DATA,
        *TINY_TRAINER,
        f"runs.denoiser={run}",
        "model.n_iter=2",
        "model.inner_iter=1",
        "trainer.max_steps=2",
        "trainer.val_every=2",
        "trainer.ckpt_every=2",
    )
    unfolded_run = tmp_path / "unfolded"
    assert train(ucfg, output_dir=unfolded_run)["step"] == 2
    (unfolded_run / ".hydra").mkdir()
    OmegaConf.save(ucfg, unfolded_run / ".hydra" / "config.yaml")
    unfolded = load_run(unfolded_run)
    for name, value in unfolded.denoiser.state_dict().items():  # frozen during training
        assert torch.equal(value, denoiser.state_dict()[name]), name
    uev = compose_cfg(
        "eval",
        "protocol=ellipses/pnp_unfolded",
        *TINY_OP,
        "data.splits.test.size=2",
        f"runs.denoiser={run}",
        f"runs.unfolded={unfolded_run}",
        "methods.tv.n_iter=3",
        "methods.pnp_hqs.n_iter=2",
    )
    results = evaluate(uev, output_dir=tmp_path / "eval_unfolded")
    assert set(results) == {"fbp", "tv", "pnp_hqs", "unfolded"}
    assert all(math.isfinite(r["psnr_mean"]) for r in results.values())
