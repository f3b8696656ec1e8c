"""Tests of recon.training.tasks.denoising: denoiser training beats the noisy input, the loss and
the seeded validation prediction, the Lipschitz penalty of gradient-step denoisers, and the
objective config."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from models.dncnn import DnCNN
from models.drunet import DRUNet
from models.gsdenoiser import GSDenoiser
from recon.cli.config import CONF_DIR
from recon.training import Trainer
from recon.training.tasks import DenoisingTask, denoising_objective, denoising_predict


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread is fastest on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def discs(n: int, size: int = 32, *, seed: int = 0) -> torch.Tensor:
    """``n`` images ``(n, 1, size, size)``, each the sum of three random discs."""
    gen = torch.Generator().manual_seed(seed)
    c = torch.linspace(-1, 1, size)
    rows, cols = torch.meshgrid(c, c, indexing="ij")
    images = torch.zeros(n, 1, size, size)
    for i in range(n):
        for _ in range(3):
            cy, cx = (torch.rand(2, generator=gen) - 0.5).tolist()
            radius = 0.15 + 0.3 * torch.rand(1, generator=gen).item()
            value = 0.3 + 0.7 * torch.rand(1, generator=gen).item()
            images[i, 0] += value * ((rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2)
    return images


# --------------------------------------------------------------------------- denoiser training
DENOISERS = [
    pytest.param(lambda: DnCNN(channels=16, depth=5, norm=None), id="dncnn"),
    pytest.param(lambda: DRUNet(channels=8, depth=2, n_blocks=1, residual=True), id="drunet"),
    pytest.param(lambda: GSDenoiser(channels=8, depth=2, n_blocks=1), id="gsdenoiser"),
]


@pytest.mark.parametrize("make", DENOISERS)
def test_denoiser_training_beats_the_noisy_input(tmp_path, make):
    torch.manual_seed(0)
    train = torch.utils.data.TensorDataset(discs(64, size=24, seed=2))
    val = torch.utils.data.TensorDataset(discs(4, size=24, seed=3))
    trainer = Trainer(
        make(),
        train_data=train,
        val_data=val,
        out_dir=tmp_path,
        max_steps=50,
        batch_size=8,
        objective=denoising_objective(sigma_min=0.05, sigma_max=0.15),
        predict=denoising_predict(sigma=0.1),
        optimizer=lambda p: torch.optim.Adam(p, lr=2e-3),
        scheduler="constant",
        val_every=50,
        progress=False,
    )
    result = trainer.fit()
    model = trainer.module.eval()
    clean = discs(8, size=24, seed=4)
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        denoised = model(noisy, 0.1)
    mse_noisy = (noisy - clean).square().mean()
    assert (denoised - clean).square().mean() < 0.8 * mse_noisy
    assert math.isfinite(result["best_psnr"])


def test_denoising_objective_and_predictor():
    torch.manual_seed(0)
    x = torch.rand(4, 1, 16, 16)
    identity = lambda v, s: v  # noqa: E731
    loss = denoising_objective(sigma_min=0.1, sigma_max=0.1)(identity, (x, None))
    assert loss.item() == pytest.approx(0.01, rel=0.1)  # the noise variance
    patches = denoising_objective(patch_size=8)
    seen = []
    patches(lambda v, s: seen.append(v.shape) or v, (x,))
    assert seen == [(4, 1, 8, 8)]
    a, truth = denoising_predict(sigma=0.1, seed=3)(identity, (x,))
    b, _ = denoising_predict(sigma=0.1, seed=3)(identity, (x,))
    assert torch.equal(a, b) and torch.equal(truth, x)  # fixed, seeded validation noise
    assert (a - x).std().item() == pytest.approx(0.1, rel=0.1)
    with pytest.raises(ValueError, match="sigma_max"):
        denoising_objective(sigma_min=0.2, sigma_max=0.1)
    with pytest.raises(ValueError, match="larger than the images"):
        denoising_objective(patch_size=32)(identity, (x,))
    with pytest.raises(ValueError, match="gradient-step denoiser"):
        denoising_objective(jacobian_weight=1.0)(DnCNN(channels=2, depth=2), (x,))


def test_jacobian_penalty_pushes_the_lipschitz_constant_down():
    torch.manual_seed(0)
    gs = GSDenoiser(channels=4, depth=1, n_blocks=1)
    x = discs(4, size=8)
    plain = denoising_objective(sigma_min=0.1, sigma_max=0.1)
    penalised = denoising_objective(
        sigma_min=0.1, sigma_max=0.1, jacobian_weight=10.0, jacobian_target=0.1, jacobian_iter=3
    )
    torch.manual_seed(1)
    a = plain(gs, (x,))
    torch.manual_seed(1)
    b = penalised(gs, (x,))
    assert b > a  # the untrained network's ∇²g is larger than 0.1
    b.backward()
    assert all(p.grad is not None for p in gs.parameters())


def test_objective_config():
    task = instantiate(OmegaConf.load(CONF_DIR / "objective" / "denoising.yaml"), op=None)
    assert isinstance(task, DenoisingTask)
    x = torch.rand(2, 1, 16, 16)
    assert task.loss(DnCNN(channels=2, depth=2), (x, None), step=1).ndim == 0
    assert task.predict(DnCNN(channels=2, depth=2), (x, None))[1] is x
