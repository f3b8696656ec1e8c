"""recon.dip.posterior: the closed form of a linear network, and Matheron samples against the
exact covariance of a 16² CT problem."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models import UNet
from operators import MatrixOperator, Parallel2D, RayTransform
from recon.dip.linearised import Linearisation
from recon.dip.marginal_likelihood import ObservationCov, negative_log_evidence
from recon.dip.posterior import (
    PredictivePosterior,
    exact_posterior,
    linearised_mean,
    sample_posterior,
)
from recon.dip.weight_prior import PriorBlock, WeightPrior

F64 = torch.float64


class LinearNet(nn.Module):
    """f(θ) = W θ on a 6×6 image, θ = (3 filters 3×3, 4 extra weights); z is ignored."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 1, 3, 3, dtype=F64))
        self.extra = nn.Parameter(torch.randn(4, dtype=F64))
        self.register_buffer("w", w)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        theta = torch.cat([self.weight.reshape(-1), self.extra])
        return (self.w @ theta).reshape(1, 1, 6, 6)


@pytest.fixture(scope="module")
def linear():
    gen = torch.Generator().manual_seed(0)
    net = LinearNet(torch.randn(36, 31, dtype=F64, generator=gen))
    op = MatrixOperator(torch.randn(20, 36, dtype=F64, generator=gen), domain_shape=(6, 6))
    blocks = [PriorBlock("w", "matern", ("weight",)), PriorBlock("e", "normal", ("extra",))]
    prior = WeightPrior(blocks, {n: p.shape for n, p in net.named_parameters()}, dtype=F64)
    with torch.no_grad():
        prior.log_variance.copy_(torch.tensor([0.4, -0.3], dtype=F64))
        prior.log_lengthscale.fill_(math.log(1.3))
    lin = Linearisation(net, torch.zeros(1, 1, 6, 6, dtype=F64), names=prior.names)
    cov = ObservationCov(lin, prior, op, noise_variance=0.3)
    y = torch.randn(20, dtype=F64, generator=gen)
    # the closed form, in information form: Cov_θ = (Σ⁻¹ + WᵀAᵀAW/σ²)⁻¹
    w, a, sigma = net.w, op.matrix.to(F64), prior.dense().detach()
    aw = a @ w
    post_theta = torch.linalg.inv(torch.linalg.inv(sigma) + aw.T @ aw / 0.3)
    mean_theta = post_theta @ aw.T @ y / 0.3
    return cov, y, w @ mean_theta, w @ post_theta @ w.T, mean_theta


def test_linear_network_matches_the_closed_form(linear):
    cov, y, mean, post, _ = linear
    result = exact_posterior(cov, y, mean="linearised")
    assert isinstance(result, PredictivePosterior) and result.samples is None
    assert result.mean.shape == (6, 6) and result.cov.shape == (36, 36)
    assert torch.allclose(result.mean.reshape(-1), mean, rtol=0, atol=1e-6 * mean.abs().max())
    assert torch.allclose(result.cov, post, rtol=0, atol=1e-6 * post.abs().max())
    assert torch.allclose(result.std.reshape(-1), post.diagonal().sqrt(), rtol=1e-6)
    cg_mean = linearised_mean(cov, y, solver="cg", cg_tol=1e-12, cg_max_iter=500)
    assert torch.allclose(cg_mean.reshape(-1), mean, atol=1e-8 * mean.abs().max())
    # mean="map" keeps the covariance and centres on f(θ*)
    map_result = exact_posterior(cov)
    assert torch.equal(map_result.mean, cov.linearisation.image.reshape(6, 6))
    assert torch.allclose(map_result.cov, result.cov)


def test_evidence_at_the_map_weights_is_the_exact_gaussian_evidence(linear):
    """At θ* = the linear model's MAP, MacKay's form equals -log N(y; 0, K_yy) exactly."""
    cov, y, _, _, mean_theta = linear
    lin = cov.linearisation
    at_map = Linearisation(lin.network, lin.z, params=lin.unflatten(mean_theta), names=lin.names)
    cov_map = ObservationCov(at_map, cov.prior, cov.op, noise_variance=0.3)
    k = cov_map.assemble().detach()
    exact = -torch.distributions.MultivariateNormal(torch.zeros(20, dtype=F64), k).log_prob(y)
    assert negative_log_evidence(cov_map, y).item() == pytest.approx(exact.item(), rel=1e-10)


def test_matheron_samples_of_the_linear_network(linear):
    cov, y, mean, post, _ = linear
    n = 4096
    result = sample_posterior(
        cov,
        y,
        n_samples=n,
        batch_size=1000,
        mean="linearised",
        solver="cg",
        cg_tol=1e-10,
        precond_rank=10,
        generator=torch.Generator().manual_seed(1),
        progress=False,
    )
    assert result.samples.shape == (n, 6, 6) and result.cov is None
    assert torch.allclose(result.mean.reshape(-1), mean, atol=1e-6 * mean.abs().max())
    emp = torch.cov(result.samples.reshape(n, -1).T, correction=0)
    # Monte-Carlo error of a covariance entry: sqrt((C_ii C_jj + C_ij²) / n)
    tol = 5 * torch.sqrt((post.diagonal()[:, None] * post.diagonal()[None] + post**2) / n)
    assert bool(((emp - post).abs() <= tol).all())


@pytest.fixture(scope="module")
def ct():
    """A 16² CT problem (tiny U-Net, 8 angles) and its exact posterior."""
    torch.manual_seed(0)
    net = UNet(channels=2, depth=1, norm=None, residual=False).to(F64).eval()
    op = RayTransform(Parallel2D((16, 16), n_angles=8), backend="matrix")
    prior = WeightPrior.for_network(net, lengthscale=1.0)
    lin = Linearisation(net, torch.randn(1, 1, 16, 16, dtype=F64), names=prior.names)
    cov = ObservationCov(lin, prior, op, noise_variance=0.01)
    return cov, exact_posterior(cov)


def sampled_variance_error(cov, exact, n, solver, seed):
    result = sample_posterior(
        cov,
        n_samples=n,
        batch_size=2048,
        solver=solver,
        cg_tol=1e-9,
        precond_rank=100,
        generator=torch.Generator().manual_seed(seed),
        progress=False,
        keep_samples=False,
    )
    assert result.samples is None and torch.equal(result.mean, exact.mean)
    return ((result.std**2 - exact.std**2) / exact.std**2).abs()


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_matheron_variances_agree_with_the_exact_covariance_fast(ct, solver):
    """2¹¹ samples: the relative error of a sample variance has std sqrt(2/n) (3.1 %); every
    pixel must lie within 5.5 of those (a 5.5-sigma bound over 256 pixels)."""
    cov, exact = ct
    n = 2**11
    error = sampled_variance_error(cov, exact, n, solver, seed=2)
    print(f"{solver}, {n} samples: max relative variance error {float(error.max()):.4f}")
    assert float(error.max()) < 5.5 * math.sqrt(2 / n)
    assert float(error.mean()) < 1.5 * math.sqrt(2 / n)


@pytest.mark.slow
def test_matheron_variances_agree_with_the_exact_covariance_2_14_samples(ct):
    """The issue's check: 2¹⁴ CG-Matheron samples, every per-pixel variance within 5 %."""
    cov, exact = ct
    error = sampled_variance_error(cov, exact, 2**14, "cg", seed=3)
    print(f"cg, 2^14 samples: max relative variance error {float(error.max()):.4f}")
    assert float(error.max()) < 0.05


def test_patch_covariances(ct):
    cov, exact = ct
    patches = exact.patch_covariances(2)
    assert len(patches) == 64 and patches[0].shape == (4, 4)
    index = torch.tensor([0, 1, 16, 17])
    assert torch.equal(patches[0], exact.cov[index][:, index])
    result = sample_posterior(
        cov,
        n_samples=2048,
        batch_size=2048,
        solver="cholesky",
        generator=torch.Generator().manual_seed(4),
        progress=False,
    )
    sampled = result.patch_covariances(2)
    scale = torch.stack([p.diagonal().max() for p in patches])
    diffs = torch.stack([(s - p).abs().max() for s, p in zip(sampled, patches, strict=True)])
    assert bool((diffs <= 0.2 * scale).all())


def test_progress_bar_and_bad_input(ct, capsys):
    cov, _ = ct
    sample_posterior(cov, n_samples=3, batch_size=2, solver="cholesky", progress=True)
    assert "Matheron samples" in capsys.readouterr().err
    with pytest.raises(ValueError, match='mean="linearised" needs y of shape'):
        exact_posterior(cov, mean="linearised")
    with pytest.raises(ValueError, match="unknown mean 'mode'"):
        exact_posterior(cov, mean="mode")
    with pytest.raises(ValueError, match="n_samples must be an int >= 1"):
        sample_posterior(cov, n_samples=0)
    with pytest.raises(ValueError, match="unknown solver 'lu'"):
        sample_posterior(cov, n_samples=2, solver="lu")
    with pytest.raises(ValueError, match="neither a covariance nor samples"):
        PredictivePosterior(mean=torch.zeros(2, 2), std=torch.ones(2, 2)).patch_covariances(1)
