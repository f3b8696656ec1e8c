"""Tests of models.autoencoder: shapes at every size, the ELBO's terms against closed forms and
torch.distributions, the VAE's sampling, errors (the training tasks:
tests/recon/training/tasks/test_autoencoder.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from models import (
    Autoencoder,
    ConvDecoder,
    ConvEncoder,
    VAEOutput,
    VariationalAutoencoder,
    gaussian_elbo,
    kl_standard_normal,
)
from models.autoencoder import gaussian_log_likelihood


@pytest.mark.parametrize("size", [8, 16, 64, 128])
@pytest.mark.parametrize("cls", [Autoencoder, VariationalAutoencoder])
def test_shapes_at_every_size(cls, size):
    model = cls(image_size=size, latent_dim=6, channels=2, max_channels=8).eval()
    x = torch.rand(3, 1, size, size)
    z = model.latent(x)
    assert z.shape == (3, 6)
    assert model.generate(z).shape == (3, 1, size, size)
    out = model(x)
    reconstruction = out.reconstruction if isinstance(out, VAEOutput) else out
    assert reconstruction.shape == x.shape


def test_channels_double_per_level_and_are_capped():
    encoder = ConvEncoder(image_size=64, out_features=5, channels=8, max_channels=32)
    strided = [m for m in encoder.down if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in strided] == [
        (8, 16),
        (16, 32),
        (32, 32),
        (32, 32),
    ]
    decoder = ConvDecoder(image_size=64, latent_dim=5, channels=8, max_channels=32)
    assert decoder.linear.out_features == 32 * 4 * 4
    assert decoder.out_conv.in_channels == 8


def test_sigmoid_output_lies_in_the_unit_interval():
    decoder = ConvDecoder(image_size=16, latent_dim=3, channels=4, output_activation="sigmoid")
    out = decoder(100 * torch.randn(5, 3))
    assert out.min() >= 0 and out.max() <= 1


def test_vae_latent_is_the_posterior_mean_and_eval_mode_decodes_it():
    torch.manual_seed(0)
    vae = VariationalAutoencoder(image_size=16, latent_dim=4, channels=4).eval()
    x = torch.rand(2, 1, 16, 16)
    mean, logvar = vae.encode(x)
    torch.testing.assert_close(vae.latent(x), mean)
    out = vae(x)
    torch.testing.assert_close(out.reconstruction, vae.decode(mean))
    torch.testing.assert_close(out.logvar, logvar)


def test_vae_training_mode_samples_with_the_posterior_moments():
    vae = VariationalAutoencoder(image_size=8, latent_dim=2, channels=2).train()
    mean, logvar = torch.tensor([1.5, -0.5]), torch.tensor([math.log(0.25), math.log(4.0)])
    with torch.no_grad():  # encoder output = (mean, logvar) for every input
        vae.encoder.linear.weight.zero_()
        vae.encoder.linear.bias.copy_(torch.cat([mean, logvar]))
    vae.decode = lambda z: z  # observe the sampled codes directly
    torch.manual_seed(0)
    z = vae(torch.rand(20000, 1, 8, 8)).reconstruction
    torch.testing.assert_close(z.mean(0), mean, atol=0.05, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([0.5, 2.0]), atol=0.05, rtol=0)


def test_kl_of_the_standard_normal_is_zero_and_matches_torch_elsewhere():
    assert torch.equal(kl_standard_normal(torch.zeros(3, 7), torch.zeros(3, 7)), torch.zeros(3))
    torch.manual_seed(0)
    mean, logvar = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    expected = kl_divergence(
        Normal(mean, (0.5 * logvar).exp()), Normal(torch.zeros_like(mean), torch.ones_like(mean))
    ).sum(1)
    torch.testing.assert_close(kl_standard_normal(mean, logvar), expected)
    assert (kl_standard_normal(mean, logvar) > 0).all()


def test_elbo_terms_match_their_closed_forms():
    torch.manual_seed(1)
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    x_hat = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    s = 0.3
    loglik = Normal(x_hat, s).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(gaussian_log_likelihood(x, x_hat, noise_std=s), loglik)
    mean, logvar = torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    kl = kl_standard_normal(mean, logvar)
    torch.testing.assert_close(
        gaussian_elbo(x, x_hat, mean, logvar, noise_std=s, beta=0.5), loglik - 0.5 * kl
    )
    # the known case: perfect reconstruction, posterior = prior: ELBO = -(n/2) log(2π s²)
    zero = torch.zeros(3, 2, dtype=torch.float64)
    torch.testing.assert_close(
        gaussian_elbo(x, x, zero, zero, noise_std=s),
        torch.full((3,), -8 * math.log(2 * math.pi * s**2), dtype=torch.float64),
    )


def test_invalid_sizes_and_inputs_raise():
    for size in (4, 48, 100):
        with pytest.raises(ValueError, match="image_size"):
            Autoencoder(image_size=size)
    ae = Autoencoder(image_size=16, latent_dim=3, channels=2)
    with pytest.raises(ValueError, match=r"\(B, 1, 16, 16\)"):
        ae(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        ae.generate(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="output_activation"):
        ConvDecoder(image_size=16, latent_dim=2, output_activation="softmax")
    with pytest.raises(ValueError, match="noise_std"):
        gaussian_log_likelihood(torch.zeros(1, 1), torch.zeros(1, 1), noise_std=0.0)


@pytest.mark.parametrize("cls", [Autoencoder, VariationalAutoencoder, ConvEncoder, ConvDecoder])
def test_typos_in_keyword_arguments_raise_type_error(cls):
    with pytest.raises(TypeError, match="latent_size"):
        cls(image_size=16, latent_size=4)
