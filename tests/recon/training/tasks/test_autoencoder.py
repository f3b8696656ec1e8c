"""Tests of recon.training.tasks.autoencoder: the VAE loss is the negative ELBO per pixel, the
tasks refuse the wrong model, a short training run lowers the reconstruction error, the sample grid
is logged, and the docstring examples run."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from data_tools.phantoms import random_ellipses
from models import Autoencoder, VariationalAutoencoder, gaussian_elbo
from recon.training import Trainer
from recon.training.tasks import AutoencoderTask, VAETask


def test_vae_loss_is_the_negative_elbo_per_pixel_up_to_its_constant():
    torch.manual_seed(0)
    vae = VariationalAutoencoder(image_size=16, latent_dim=4, channels=4).eval()  # z = mean
    x = torch.rand(3, 1, 16, 16)
    s, beta, n = 0.2, 0.7, 256
    out = vae(x)
    elbo = gaussian_elbo(x, out.reconstruction, out.mean, out.logvar, noise_std=s, beta=beta)
    constant = 0.5 * n * math.log(2 * math.pi * s**2)
    expected = -(elbo + constant).mean() / n
    loss = VAETask(noise_std=s, beta=beta).loss(vae, (x, None), step=1)
    torch.testing.assert_close(loss, expected)


def test_the_tasks_refuse_the_wrong_model():
    ae = Autoencoder(image_size=8, latent_dim=2, channels=2)
    vae = VariationalAutoencoder(image_size=8, latent_dim=2, channels=2)
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="VAETask"):
        AutoencoderTask().loss(vae, x, step=1)
    with pytest.raises(ValueError, match="VAEOutput"):
        VAETask().loss(ae, x, step=1)
    with pytest.raises(ValueError, match="batch of images"):
        AutoencoderTask().loss(ae, "x", step=1)


@pytest.mark.parametrize(
    ("kind", "task"),
    [("ae", AutoencoderTask()), ("vae", VAETask(noise_std=0.1))],
    ids=["ae", "vae"],
)
def test_a_few_dozen_training_steps_lower_the_reconstruction_error(tmp_path, kind, task):
    images = random_ellipses(16, n=64, seed=0)[:, None]
    data = torch.utils.data.TensorDataset(images)
    torch.manual_seed(0)
    cls = Autoencoder if kind == "ae" else VariationalAutoencoder
    model = cls(image_size=16, latent_dim=16, channels=8)
    predict = task.predict

    def error() -> float:
        model.eval()
        with torch.no_grad():
            estimate, truth = predict(model, (images,))
        return float((estimate - truth).square().mean())

    before = error()
    trainer = Trainer(
        model,
        train_data=data,
        val_data=data,
        task=task,
        out_dir=tmp_path,
        max_steps=40,
        batch_size=16,
        optimizer=partial(torch.optim.AdamW, lr=3e-3),
        val_indices=range(4),
        progress=False,
    )
    result = trainer.fit()
    after = error()
    assert result["step"] == 40 and math.isfinite(result["last_loss"])
    assert after < 0.7 * before, (before, after)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_the_tasks_log_a_grid_of_decoded_prior_samples(tmp_path):
    vae = VariationalAutoencoder(image_size=8, latent_dim=2, channels=2).train()
    grid = VAETask().images(vae)["samples"]
    assert grid.shape == (4 * 8 + 3 * 2, 4 * 8 + 3 * 2) and vae.training  # 16 samples, mode kept
    assert 0.0 <= grid.min() and grid.max() <= 1.0
    assert AutoencoderTask(n_samples=0).images(vae) == {}
    data = torch.utils.data.TensorDataset(torch.rand(8, 1, 8, 8))
    Trainer(Autoencoder(image_size=8, latent_dim=2, channels=2), train_data=data, val_data=data,
            task=AutoencoderTask(n_samples=4), out_dir=tmp_path, max_steps=2, batch_size=4,
            val_every=1, progress=False).fit()  # fmt: skip
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    acc.Reload()
    assert [event.step for event in acc.Images("samples")] == [1, 2]
    assert {"samples", "val/images"} <= set(acc.Tags()["images"])


def test_typos_in_keyword_arguments_raise_type_error():
    with pytest.raises(TypeError, match="noise_sdt"):
        VAETask(noise_sdt=0.1)
    with pytest.raises(TypeError, match="beta"):
        AutoencoderTask(beta=1.0)
