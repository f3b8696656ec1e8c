"""Tests of recon.unrolled.FBPUNet: the contract, FBP + identity at zero correction,
gradients, errors, and a small overfit against FBP."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models import UNet
from operators import MatrixOperator, Parallel2D, RayTransform
from recon.base import Reconstructor
from recon.classical import fbp
from recon.unrolled import FBPUNet


@pytest.fixture(scope="module")
def ray():
    return RayTransform(Parallel2D((32, 32), n_angles=10), backend="matrix")


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


def _small(**kwargs) -> FBPUNet:
    torch.manual_seed(0)
    return FBPUNet(channels=8, depth=2, **kwargs)


@pytest.mark.parametrize(
    ("batch_shape", "expected"),
    [((2, 1), (2, 1)), ((), ()), ((3,), (3,)), ((2, 3), (2, 3))],
    ids=["B1", "unbatched", "flat", "nested"],
)
def test_contract_and_batch_shapes(batch_shape, expected, ray):
    recon = _small()
    assert isinstance(recon, Reconstructor)
    out = recon(torch.rand(*batch_shape, *ray.range_shape), ray)
    assert out.shape == (*expected, 32, 32) and out.dtype == torch.float32


def test_defaults_build_the_fbpconvnet_unet():
    recon = FBPUNet()
    assert isinstance(recon.unet, UNet) and recon.unet.residual
    assert (recon.unet.channels, recon.unet.depth) == (32, 4)
    assert recon.filter == "hann"
    n_params = sum(p.numel() for p in recon.parameters())
    assert n_params == sum(p.numel() for p in UNet(channels=32, depth=4).parameters())


@pytest.mark.parametrize("filter", ["ram-lak", "hann"])
def test_zero_correction_gives_fbp_exactly(filter, ray):
    unet = UNet(channels=4, depth=2)
    with torch.no_grad():
        unet.out_conv.weight.zero_()
        unet.out_conv.bias.zero_()
    recon = FBPUNet(unet=unet, filter=filter, frequency_scaling=0.8)
    y = ray(discs(2))
    expected = fbp(y, ray, filter=filter, frequency_scaling=0.8)
    assert torch.equal(recon(y, ray), expected)


def test_zero_init_starts_as_fbp(ray):
    recon = FBPUNet(channels=4, depth=2, zero_init=True, frequency_scaling=0.8)
    y = ray(discs(2))
    assert torch.equal(recon(y, ray), fbp(y, ray, filter="hann", frequency_scaling=0.8))
    assert recon.unet.out_conv.weight.abs().max() == 0


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_norm_sets_the_default_unet_normalisation(norm):
    recon = FBPUNet(channels=4, depth=1, norm=norm)
    kinds = {type(m) for m in recon.modules()}
    assert (nn.BatchNorm2d in kinds) == (norm == "batch")
    assert (nn.InstanceNorm2d in kinds) == (norm == "instance")


def test_channels_last_changes_the_layout_not_the_result(ray):
    y = ray(discs(2))
    torch.manual_seed(0)
    plain = FBPUNet(channels=8, depth=2).eval()
    torch.manual_seed(0)
    fast = FBPUNet(channels=8, depth=2, channels_last=True).eval()
    weight = fast.unet.encoder[0][1].conv.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    torch.testing.assert_close(fast(y, ray), plain(y, ray), rtol=1e-4, atol=1e-5)


def test_any_module_may_post_process(ray):
    recon = FBPUNet(unet=nn.Identity(), filter="cosine")
    y = ray(discs(2))
    assert torch.equal(recon(y, ray), fbp(y, ray, filter="cosine"))


def test_gradient_reaches_every_parameter(ray):
    recon = _small()
    x = discs(2)
    (recon(ray(x), ray) - x).square().mean().backward()
    for name, p in recon.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_overfits_four_images_better_than_fbp(ray):
    """A small U-Net trained with Adam on four fixed disc images improves on their FBP."""
    x = discs(4, seed=1)
    y = ray(x)
    x0 = fbp(y, ray, filter="hann")
    fbp_mse = (x0 - x).square().mean().item()
    torch.manual_seed(0)
    recon = FBPUNet(unet=UNet(channels=8, depth=2, norm="instance"))
    optimiser = torch.optim.Adam(recon.parameters(), lr=1e-2)
    for _ in range(80):  # FBP has no parameters: train the U-Net on the fixed FBP images
        optimiser.zero_grad()
        (recon.unet(x0) - x).square().mean().backward()
        optimiser.step()
    with torch.no_grad():
        final = (recon(y, ray) - x).square().mean().item()
    assert final < 0.8 * fbp_mse


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: FBPUNet(unet=UNet(channels=4), channels=8), id="unet-and-channels"),
        pytest.param(lambda: FBPUNet(unet=UNet(channels=4), depth=2), id="unet-and-depth"),
        pytest.param(
            lambda: FBPUNet(unet=UNet(in_channels=2, out_channels=1, residual=False)),
            id="two-channel-unet",
        ),
        pytest.param(lambda: FBPUNet(unet="unet"), id="unet-not-module"),
        pytest.param(lambda: FBPUNet(filter="gauss"), id="unknown-filter"),
        pytest.param(lambda: FBPUNet(frequency_scaling=1.5), id="bad-frequency-scaling"),
        pytest.param(lambda: FBPUNet(depth=-1), id="bad-depth"),
        pytest.param(lambda: FBPUNet(unet=UNet(channels=4), norm="none"), id="unet-and-norm"),
        pytest.param(lambda: FBPUNet(norm="layer"), id="unknown-norm"),
        pytest.param(lambda: FBPUNet(unet=nn.Identity(), zero_init=True), id="zero-init-no-unet"),
        pytest.param(lambda: FBPUNet(zero_init="yes"), id="zero-init-not-bool"),
        pytest.param(lambda: FBPUNet(channels_last=1), id="channels-last-not-bool"),
    ],
)
def test_bad_arguments_raise_value_error(make):
    with pytest.raises(ValueError):
        make()


def test_typos_raise_type_error():
    with pytest.raises(TypeError):
        FBPUNet(filtr="hann")
    with pytest.raises(TypeError):
        FBPUNet(UNet())  # keyword-only


def test_bad_measurements_and_operators_raise_value_error(ray):
    recon = _small()
    with pytest.raises(ValueError, match="range_shape"):
        recon(torch.zeros(2, 1, 10, 45), ray)
    with pytest.raises(ValueError, match="NaN"):
        recon(torch.full((1, *ray.range_shape), float("nan")), ray)
    toy = MatrixOperator(torch.randn(20, 36), domain_shape=(6, 6), range_shape=(4, 5))
    with pytest.raises(ValueError, match="geometry"):
        recon(torch.zeros(1, 4, 5), toy)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(ray):
    recon = _small().eval()
    y = ray(discs(2))
    cpu = recon(y, ray)
    gpu = recon.cuda()(y.cuda(), ray)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-4)
