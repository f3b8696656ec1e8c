"""Tests of data_tools.noise: noise levels, Poisson statistics, seeding and input checks."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from data_tools.noise import (
    GaussianNoise,
    NoiseModel,
    NoNoise,
    PoissonNoise,
    gaussian_noise,
    poisson_noise,
)

MU_MAX = 81.35858


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sinograms() -> torch.Tensor:
    """Four positive 'sinograms' (B, 1, 128, 128) with mean |y| of about 1, 2, 5 and 10."""
    base = torch.rand((4, 1, 128, 128), generator=seeded(123), dtype=torch.float64) + 0.5
    return base * torch.tensor([1.0, 2.0, 5.0, 10.0], dtype=torch.float64)[:, None, None, None]


@pytest.mark.parametrize("relative", [0.025, 0.05])
def test_gaussian_noise_level_is_relative_to_the_mean_absolute_value_per_sample(relative):
    y = sinograms()
    y[0] *= -1  # |y| is what counts, not y
    noise = gaussian_noise(y, relative=relative, generator=seeded(0)) - y
    expected = relative * y.abs().mean(dim=(-2, -1))  # (4, 1): one level per sample
    torch.testing.assert_close(noise.std(dim=(-2, -1)), expected, rtol=0.03, atol=0)
    assert noise.mean(dim=(-2, -1)).abs().max() < 4 * expected.max() / 128
    # ndim=3 pools the channel dimension too; with one channel nothing changes.
    torch.testing.assert_close(
        gaussian_noise(y, relative=relative, ndim=3, generator=seeded(0)), y + noise
    )


def test_gaussian_noise_ndim_sets_what_one_sample_is():
    y = torch.ones(2, 3, 64, 64, dtype=torch.float64)
    y[:, 1] = 4.0  # channel means 1, 4, 1
    per_channel = gaussian_noise(y, relative=0.1, ndim=2, generator=seeded(0)) - y
    stds = per_channel.std(dim=(-2, -1))
    torch.testing.assert_close(
        stds[:, 1] / stds[:, 0], torch.full((2,), 4.0, dtype=torch.float64), rtol=0.05, atol=0
    )
    per_sample = gaussian_noise(y, relative=0.1, ndim=3, generator=seeded(0)) - y
    stds = per_sample.std(dim=(-2, -1))  # one σ = 0.1 · 2 for all channels
    torch.testing.assert_close(
        stds, torch.full((2, 3), 0.2, dtype=torch.float64), rtol=0.05, atol=0
    )


def test_gaussian_noise_is_seeded_and_differs_between_samples():
    y = torch.ones(3, 1, 30, 183)
    a = gaussian_noise(y, generator=seeded(1))
    assert torch.equal(a, gaussian_noise(y, generator=seeded(1)))
    assert not torch.equal(a, gaussian_noise(y, generator=seeded(2)))
    assert not torch.equal(a[0], a[1])  # the same clean sample gets different noise
    assert a.dtype == torch.float32 and a.shape == y.shape
    assert torch.equal(gaussian_noise(y, relative=0.0, generator=seeded(1)), y)


def test_gaussian_noise_relative_to_max_is_a_fraction_of_the_peak_per_sample():
    # PAT-like data: a few pulses in silence, so max|y| and mean|y| differ by a factor of ~50
    y = torch.zeros(3, 1, 64, 256, dtype=torch.float64)
    y[..., 100:104] = torch.tensor([1.0, -3.0, 0.5], dtype=torch.float64)[:, None, None, None]
    noise = gaussian_noise(y, relative=0.01, reference="max", generator=seeded(0)) - y
    expected = 0.01 * y.abs().amax(dim=(-2, -1))  # (3, 1): 0.01, 0.03, 0.005
    torch.testing.assert_close(noise.std(dim=(-2, -1)), expected, rtol=0.03, atol=0)
    # the default is unchanged: relative to the mean
    torch.testing.assert_close(
        GaussianNoise(relative=0.01)(y, generator=seeded(0)),
        gaussian_noise(y, relative=0.01, reference="mean", generator=seeded(0)),
    )
    torch.testing.assert_close(
        GaussianNoise(relative=0.01, reference="max")(y, generator=seeded(0)), y + noise
    )


def test_poisson_noise_matches_photon_statistics():
    photons, level = 4096, 0.01  # attenuation mu·y = 0.81: mean count λ ≈ 1822
    y = torch.full((200, 1000), level, dtype=torch.float64)
    noisy = poisson_noise(y, photons=photons, generator=seeded(0))
    rate = photons * math.exp(-MU_MAX * level)
    # Post-log data are unbiased to O(1/λ) with std 1 / (mu_max √λ).
    assert noisy.mean().item() == pytest.approx(level, rel=1e-3)
    assert noisy.std().item() == pytest.approx(1 / (MU_MAX * math.sqrt(rate)), rel=0.03)
    # The counts behind the data are whole numbers with mean and variance λ.
    counts = photons * torch.exp(-MU_MAX * noisy)
    torch.testing.assert_close(counts, counts.round(), rtol=0, atol=1e-6)
    assert counts.mean().item() == pytest.approx(rate, rel=1e-3)
    assert counts.var().item() == pytest.approx(rate, rel=0.03)


def test_poisson_noise_shrinks_with_the_photon_count():
    y = torch.full((100, 1000), 0.02, dtype=torch.float64)
    stds = [poisson_noise(y, photons=p, generator=seeded(0)).std().item() for p in (1e3, 1e5)]
    assert stds[0] / stds[1] == pytest.approx(10.0, rel=0.05)  # std ∝ 1 / √photons


def test_poisson_noise_replaces_zero_counts_by_a_tenth():
    y = torch.full((10, 10), 1.0)  # mu·y ≈ 81: no photon survives
    noisy = poisson_noise(y, generator=seeded(0))
    expected = -math.log(0.1 / 4096) / MU_MAX
    torch.testing.assert_close(noisy, torch.full_like(y, expected))
    assert torch.isfinite(noisy).all()


def test_poisson_noise_is_seeded_and_keeps_dtype():
    y = torch.full((2, 30, 183), 0.005)
    a = poisson_noise(y, generator=seeded(3))
    assert a.dtype == torch.float32 and a.shape == y.shape
    assert torch.equal(a, poisson_noise(y, generator=seeded(3)))
    assert not torch.equal(a, poisson_noise(y, generator=seeded(4)))
    assert not torch.equal(a[0], a[1])


def test_noise_classes_call_the_functions():
    y = sinograms().float()
    torch.testing.assert_close(
        GaussianNoise(relative=0.05)(y, generator=seeded(0)),
        gaussian_noise(y, relative=0.05, generator=seeded(0)),
    )
    y = y / 100
    torch.testing.assert_close(
        PoissonNoise(photons=1000, ndim=3)(y, generator=seeded(0)),
        poisson_noise(y, photons=1000, generator=seeded(0)),
    )
    assert NoNoise()(y, generator=seeded(0)) is y
    for model in (GaussianNoise(), PoissonNoise(), NoNoise()):
        assert isinstance(model, NoiseModel)
    assert GaussianNoise() == GaussianNoise(relative=0.025, ndim=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        GaussianNoise().relative = 0.1  # type: ignore[misc]
    with pytest.raises(TypeError):
        GaussianNoise(0.05)  # type: ignore[misc]  # keyword-only, so configs spell the name
    with pytest.raises(TypeError):
        PoissonNoise(photon=100)  # type: ignore[call-arg]  # a typo raises


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"]
)
@pytest.mark.parametrize("noise", [gaussian_noise, poisson_noise], ids=["gaussian", "poisson"])
def test_non_finite_input_raises(noise, value):
    y = torch.ones(4, 4)
    y[1, 2] = value
    with pytest.raises(ValueError, match="finite"):
        noise(y)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(
            lambda y: gaussian_noise(y, relative=-0.1), "relative", id="negative-relative"
        ),
        pytest.param(
            lambda y: gaussian_noise(y, relative=float("nan")), "relative", id="nan-relative"
        ),
        pytest.param(lambda y: gaussian_noise(y, ndim=3), "ndim", id="ndim-too-large"),
        pytest.param(lambda y: gaussian_noise(y, ndim=0), "ndim", id="ndim-zero"),
        pytest.param(lambda y: gaussian_noise(y.long()), "floating", id="integer-input"),
        pytest.param(lambda y: poisson_noise(y, photons=-5), "photons", id="negative-photons"),
        pytest.param(lambda y: poisson_noise(y, photons=0), "photons", id="zero-photons"),
        pytest.param(lambda y: poisson_noise(y, mu_max=0.0), "mu_max", id="zero-mu-max"),
        pytest.param(lambda y: GaussianNoise(relative=-1.0), "relative", id="class-relative"),
        pytest.param(lambda y: PoissonNoise(photons=-1.0), "photons", id="class-photons"),
        pytest.param(lambda y: GaussianNoise(ndim=0), "ndim", id="class-ndim"),
        pytest.param(
            lambda y: gaussian_noise(y, reference="peak"), "reference", id="bad-reference"
        ),
        pytest.param(
            lambda y: GaussianNoise(reference="median"), "reference", id="class-reference"
        ),
        pytest.param(lambda y: gaussian_noise(y, generator=7), "generator", id="bad-generator"),
    ],
)
def test_invalid_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call(torch.ones(4, 4))
