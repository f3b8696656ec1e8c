"""data_tools.uq_metrics on known Gaussians: expected log-likelihoods, nominal coverage, ranks."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

from data_tools.uq_metrics import (
    calibration_curve,
    error_std_correlation,
    gaussian_log_likelihood,
    interval_coverage,
    patch_covariances,
    patch_indices,
    spearman,
    uq_metrics,
)

F64 = torch.float64
SHAPE = (8, 8)


def matern_image_cov(shape=SHAPE, lengthscale=2.0, jitter=0.05):
    """A Matérn-½ covariance over the pixels with a varying variance (correlated pixels)."""
    rows, cols = torch.meshgrid(
        torch.arange(shape[0], dtype=F64), torch.arange(shape[1], dtype=F64), indexing="ij"
    )
    coords = torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=1)
    scale = 0.5 + coords[:, 1] / shape[1]
    cov = torch.exp(-torch.cdist(coords, coords) / lengthscale) * scale[:, None] * scale[None]
    return cov + jitter * torch.eye(len(coords), dtype=F64)


def expected_log_likelihood(cov, patch_size):
    """E[per-pixel log-likelihood] of x ~ N(μ, C) under patch Gaussians with the true C_p:
    -(1/N) Σ_p (|p| log 2π + log det C_p + |p|) / 2."""
    total = 0.0
    for p in patch_indices(SHAPE, patch_size):
        c = cov[p][:, p]
        total -= 0.5 * (len(p) * math.log(2 * math.pi) + torch.logdet(c).item() + len(p))
    return total / cov.shape[0]


@pytest.mark.parametrize("patch_size", [1, 2, 4, 8])
def test_log_likelihood_of_draws_matches_its_expectation(patch_size):
    cov = matern_image_cov()
    mean = torch.linspace(-1, 1, 64, dtype=F64).reshape(SHAPE)
    chol = torch.linalg.cholesky(cov)
    gen = torch.Generator().manual_seed(patch_size)
    n = 400
    draws = mean + (torch.randn(n, 64, dtype=F64, generator=gen) @ chol.T).reshape(n, *SHAPE)
    values = torch.tensor(
        [gaussian_log_likelihood(x, mean, cov=cov, patch_size=patch_size) for x in draws],
        dtype=F64,
    )
    expected = expected_log_likelihood(cov, patch_size)
    # the per-image value is -(χ²_N/N + const)/2, of std sqrt(2N)/(2N); 4 sigma of the mean
    tol = 4 * math.sqrt(2 * 64) / (2 * 64) / math.sqrt(n)
    assert values.mean().item() == pytest.approx(expected, abs=tol)
    if patch_size == 1:
        std = cov.diagonal().sqrt().reshape(SHAPE)
        direct = gaussian_log_likelihood(draws[0], mean, std=std)
        assert direct == pytest.approx(values[0].item(), rel=1e-12)
    # correlations help: the full-image Gaussian explains correlated draws better than pixels
    if patch_size == 8:
        assert expected > expected_log_likelihood(cov, 1)


def test_log_likelihood_from_samples_approaches_the_exact_one():
    cov = matern_image_cov()
    mean = torch.zeros(SHAPE, dtype=F64)
    chol = torch.linalg.cholesky(cov)
    gen = torch.Generator().manual_seed(10)
    truth = (chol @ torch.randn(64, dtype=F64, generator=gen)).reshape(SHAPE)
    samples = (torch.randn(20000, 64, dtype=F64, generator=gen) @ chol.T).reshape(-1, *SHAPE)
    for patch_size in (1, 2, 4):
        exact = gaussian_log_likelihood(truth, mean, cov=cov, patch_size=patch_size)
        sampled = gaussian_log_likelihood(truth, mean, samples=samples, patch_size=patch_size)
        assert sampled == pytest.approx(exact, abs=0.02)
    small = gaussian_log_likelihood(truth, mean, std=torch.full(SHAPE, 1e-3, dtype=F64))
    assert small < gaussian_log_likelihood(truth, mean, cov=cov)  # overconfidence is penalised


def test_coverage_of_a_calibrated_predictive_is_nominal():
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(50, 64, 64, generator=gen)
    std = 0.1 + torch.rand(50, 64, 64, generator=gen)
    truth = mean + std * torch.randn(50, 64, 64, generator=gen)
    n = truth.numel()
    coverage = interval_coverage(truth, mean, std)
    for level, value in coverage.items():
        assert value == pytest.approx(level, abs=4 * math.sqrt(level * (1 - level) / n))
    low = interval_coverage(truth, mean, 0.5 * std)  # overconfident: intervals too narrow
    assert all(low[q] < coverage[q] - 0.1 for q in coverage)
    levels, observed = calibration_curve(truth, mean, std)
    assert levels[0] == 0.05 and levels[-1] == 0.95 and len(observed) == 19
    assert max(abs(a - b) for a, b in zip(levels, observed, strict=True)) < 0.01


def test_spearman_matches_scipy_with_ties():
    gen = torch.Generator().manual_seed(1)
    a = torch.randint(0, 5, (200,), generator=gen).to(F64)  # many ties
    b = a + torch.randn(200, dtype=F64, generator=gen)
    assert spearman(a, b) == pytest.approx(scipy.stats.spearmanr(a, b).statistic, rel=1e-12)
    assert spearman(a, -a) == pytest.approx(-1.0)


def test_error_std_correlation_sees_heteroscedastic_errors():
    gen = torch.Generator().manual_seed(2)
    std = 0.05 + torch.rand(32, 32, generator=gen)
    truth = std * torch.randn(32, 32, generator=gen)
    mean = torch.zeros(32, 32)
    rho = error_std_correlation(truth, mean, std)
    assert rho > 0.3
    flat = error_std_correlation(truth, mean, torch.rand(32, 32, generator=gen))
    assert abs(flat) < 0.15  # an uninformative std


def test_patches_tile_the_image():
    for shape, size in (((28, 28), 10), ((28, 28), 2), ((9, 7), 3), ((5, 5), 10)):
        patches = patch_indices(shape, size)
        every = torch.cat(patches).sort().values
        assert torch.equal(every, torch.arange(shape[0] * shape[1]))
    assert [len(p) for p in patch_indices((28, 28), 10)] == [100, 180, 180, 324]
    cov = matern_image_cov()
    blocks = patch_covariances(SHAPE, 4, cov=cov)
    first = torch.tensor([8 * r + c for r in range(4) for c in range(4)])
    assert len(blocks) == 4 and torch.equal(blocks[0], cov[first][:, first])


def test_uq_metrics_collects_everything():
    cov = matern_image_cov()
    chol = torch.linalg.cholesky(cov)
    truth = chol @ torch.randn(64, dtype=F64, generator=torch.Generator().manual_seed(3))
    truth = truth.reshape(SHAPE)
    mean = torch.zeros(SHAPE, dtype=F64)
    std = cov.diagonal().sqrt().reshape(SHAPE)
    out = uq_metrics(truth, mean, std, cov=cov, patch_sizes=(1, 2, 4))
    assert set(out) == {
        "log_likelihood_1x1",
        "log_likelihood_2x2",
        "log_likelihood_4x4",
        "coverage_0.5",
        "coverage_0.9",
        "coverage_0.95",
        "error_std_spearman",
    }
    assert out["log_likelihood_2x2"] == gaussian_log_likelihood(truth, mean, cov=cov, patch_size=2)


def test_bad_input_raises_clear_errors():
    x = torch.zeros(4, 4)
    with pytest.raises(ValueError, match="exactly one of std, cov and samples"):
        gaussian_log_likelihood(x, x)
    with pytest.raises(ValueError, match="mean must have the shape"):
        gaussian_log_likelihood(x, torch.zeros(3, 3), std=x + 1)
    with pytest.raises(ValueError, match="std must be positive"):
        gaussian_log_likelihood(x, x, std=x)
    with pytest.raises(ValueError, match="not positive definite; pass eps > 0"):
        gaussian_log_likelihood(x, x, cov=torch.zeros(16, 16), patch_size=2)
    with pytest.raises(ValueError, match="patch_size must be a positive int"):
        patch_indices((4, 4), 0)
    with pytest.raises(ValueError, match="levels must lie in"):
        interval_coverage(x, x, x + 1, levels=(1.5,))
    with pytest.raises(ValueError, match="one shape"):
        interval_coverage(x, x, torch.ones(3))
    with pytest.raises(ValueError, match="constant values"):
        spearman(torch.ones(3), torch.arange(3.0))
    with pytest.raises(ValueError, match=r"samples must have shape \(n, 4, 4\)"):
        patch_covariances((4, 4), 1, samples=torch.zeros(2, 3, 3))
    with pytest.raises(TypeError, match="floating-point"):
        gaussian_log_likelihood(torch.zeros(4, 4, dtype=torch.long), x, std=x + 1)
