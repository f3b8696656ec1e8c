"""recon.dip.weight_prior: block priors against their dense closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models import UNet
from models.dip_unet import DIPUNet
from recon.dip.weight_prior import (
    PriorBlock,
    WeightPrior,
    conv_prior_blocks,
    default_prior_blocks,
    gprior_blocks,
    matern_offsets_distance,
)

F64 = torch.float64
SHAPES = {"a": (2, 3, 3, 3), "b": (4, 1, 1, 1), "c": (1, 2, 3, 3), "d": (5,)}


def make_prior(**kw):
    blocks = [
        PriorBlock("conv", "matern", ("a", "c")),
        PriorBlock("pointwise", "normal", ("b",)),
        PriorBlock("other", "normal", ("d",)),
    ]
    prior = WeightPrior(blocks, SHAPES, dtype=F64, **kw)
    with torch.no_grad():
        prior.log_variance.copy_(torch.tensor([0.3, -0.5, 1.2], dtype=F64))
        prior.log_lengthscale.copy_(torch.tensor([math.log(0.8)], dtype=F64))
    return prior


def dense_reference(prior):
    """Σ built by hand: kron(I_filters, K) for the Matérn block, σ² I for the others."""
    d = matern_offsets_distance((3, 3))
    var = prior.log_variance.detach().exp()
    k = var[0] * (torch.exp(-d / 0.8) + prior.jitter * torch.eye(9, dtype=F64))
    n_filters = 2 * 3 + 1 * 2
    return torch.block_diag(
        torch.kron(torch.eye(n_filters, dtype=F64), k),
        var[1] * torch.eye(4, dtype=F64),
        var[2] * torch.eye(5, dtype=F64),
    )


def test_matern_filter_covariance_is_exponential_in_offset_distance():
    prior = make_prior(jitter=0.0)
    k = prior.block_cov(0).detach()
    var = math.exp(0.3)
    assert k[0, 0].item() == pytest.approx(var)
    assert k[0, 1].item() == pytest.approx(var * math.exp(-1 / 0.8))  # neighbours
    assert k[0, 4].item() == pytest.approx(var * math.exp(-math.sqrt(2) / 0.8))  # diagonal
    assert k[0, 8].item() == pytest.approx(var * math.exp(-math.sqrt(8) / 0.8))  # corners
    assert torch.allclose(k, k.T)


def test_products_match_the_dense_covariance():
    prior = make_prior()
    sigma = dense_reference(prior)
    assert prior.n_params == sigma.shape[0] == 54 + 18 + 4 + 5
    v = torch.randn(3, prior.n_params, dtype=F64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(prior.cov_mv(v), v @ sigma, rtol=1e-12)
    assert torch.allclose(prior.dense(), sigma, rtol=1e-12)
    assert torch.allclose(prior.inv_mv(prior.cov_mv(v)), v, rtol=1e-8)
    root = prior.sqrt_mv(torch.eye(prior.n_params, dtype=F64))
    assert torch.allclose(root.T @ root, sigma, rtol=1e-10, atol=1e-14)
    assert prior.log_det().item() == pytest.approx(torch.logdet(sigma).item(), rel=1e-10)


def test_samples_have_the_prior_covariance():
    prior = make_prior()
    n = 40000
    samples = prior.sample(n, generator=torch.Generator().manual_seed(1))
    emp = samples.T @ samples / n
    sigma = dense_reference(prior)
    # Monte-Carlo error of a covariance entry: sqrt((Σ_ii Σ_jj + Σ_ij²) / n) ≤ 5 sigma
    tol = 5 * torch.sqrt((sigma.diagonal()[:, None] * sigma.diagonal()[None] + sigma**2) / n)
    assert bool(((emp - sigma).abs() <= tol).all())


def test_hyperparameter_gradients_are_analytic():
    prior = make_prior(jitter=0.0)
    v = torch.randn(1, prior.n_params, dtype=F64, generator=torch.Generator().manual_seed(2))
    quad = (prior.cov_mv(v) * v).sum()
    g_var, g_len = torch.autograd.grad(quad, (prior.log_variance, prior.log_lengthscale))
    # d/dlog σ² (vᵀ σ² K v) = vᵀ σ² K v per block
    parts = [v[:, :72], v[:, 72:76], v[:, 76:]]
    sigma = dense_reference(prior)
    blocks = [sigma[:72, :72], sigma[72:76, 72:76], sigma[76:, 76:]]
    expect = torch.stack([(p @ b @ p.T).squeeze() for p, b in zip(parts, blocks, strict=True)])
    assert torch.allclose(g_var, expect, rtol=1e-10)
    # d/dlog ℓ exp(-d/ℓ) = (d/ℓ) exp(-d/ℓ)
    d = matern_offsets_distance((3, 3))
    dk = math.exp(0.3) * (d / 0.8) * torch.exp(-d / 0.8)
    filters = parts[0].reshape(-1, 9)
    assert g_len.item() == pytest.approx((filters @ dk * filters).sum().item(), rel=1e-10)


def test_gprior_scales_each_weight():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 1, 1)).to(F64)
    prior = WeightPrior.for_network(net, gprior=True, variance=2.0)
    assert [b.kind for b in prior.blocks] == ["gprior"] and prior.n_params == 20
    scale = torch.linspace(0.5, 2.0, 20, dtype=F64)
    prior.set_gprior_scale(scale)
    v = torch.ones(1, 20, dtype=F64)
    assert torch.allclose(prior.cov_mv(v)[0], 2.0 * scale**2)
    assert prior.log_det().item() == pytest.approx(
        (20 * math.log(2.0) + 2 * scale.log().sum()).item()
    )
    with pytest.raises(ValueError, match="positive"):
        prior.set_gprior_scale(-scale)
    with pytest.raises(ValueError, match=r"shape \(20,\)"):
        prior.set_gprior_scale(scale[:3])


def test_default_blocks_follow_the_network():
    unet = UNet(channels=2, depth=2, norm=None, upsampling="transpose")
    blocks = default_prior_blocks(unet)
    assert [(b.name, b.kind) for b in blocks] == [
        ("encoder.0", "matern"),
        ("encoder.1", "matern"),
        ("encoder.2", "matern"),
        ("upsamplers.0", "normal"),  # 2×2 transposed convolutions are isotropic
        ("upsamplers.1", "normal"),
        ("decoder.0", "matern"),
        ("decoder.1", "matern"),
        ("out_conv", "normal"),
    ]
    assert blocks[0].params == ("encoder.0.0.conv.weight", "encoder.0.1.conv.weight")
    dip = DIPUNet(channels=3, scales=2, skip_channels=1)
    names = [(b.name, b.kind) for b in default_prior_blocks(dip)]
    assert names == [
        ("inc", "matern"),
        ("down.0", "matern"),
        ("skips.0", "normal"),
        ("up_convs.0", "matern"),
        ("out_conv", "normal"),
    ]
    prior = WeightPrior.for_network(dip)
    weights = {n for n, p in dip.named_parameters() if p.ndim == 4}
    assert set(prior.names) == weights  # every convolution weight, no bias or norm parameter
    mixed = nn.Sequential(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 1, 1)))
    assert [b.name for b in default_prior_blocks(mixed)] == ["0:matern", "0:normal"]
    assert len(conv_prior_blocks(unet)) == 2 * 3 + 2 + 2 * 2 + 1
    every = {p for block in conv_prior_blocks(unet) for p in block.params}
    assert set(gprior_blocks(unet)[0].params) == every == {p for b in blocks for p in b.params}


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="unknown kind 'rbf'"):
        WeightPrior([PriorBlock("x", "rbf", ("a",))], SHAPES)
    with pytest.raises(ValueError, match="in two blocks"):
        WeightPrior([PriorBlock("x", "normal", ("a",)), PriorBlock("y", "normal", ("a",))], SHAPES)
    with pytest.raises(ValueError, match="one kernel size"):
        WeightPrior([PriorBlock("x", "matern", ("a", "b"))], SHAPES)
    with pytest.raises(ValueError, match="one kernel size"):
        WeightPrior([PriorBlock("x", "matern", ("d",))], SHAPES)
    with pytest.raises(ValueError, match="no shape given for 'e'"):
        WeightPrior([PriorBlock("x", "normal", ("e",))], SHAPES)
    with pytest.raises(ValueError, match="variance must be a positive number"):
        WeightPrior([PriorBlock("x", "normal", ("a",))], SHAPES, variance=0.0)
    with pytest.raises(ValueError, match="non-empty sequence of PriorBlock"):
        WeightPrior([], SHAPES)
    with pytest.raises(ValueError, match="no convolution"):
        WeightPrior.for_network(nn.Linear(2, 2))
    prior = make_prior()
    with pytest.raises(ValueError, match=r"shape \(B, 81\)"):
        prior.cov_mv(torch.zeros(81))
    with pytest.raises(ValueError, match="not a Matérn block"):
        prior.block_cov(1)
    with pytest.raises(ValueError, match="positive int"):
        prior.sample(0)
