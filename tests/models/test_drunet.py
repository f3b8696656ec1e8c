"""Tests of models.drunet.DRUNet: any input size, the noise-level channel (per image), DPIR's
parameter count, gradients, spectral normalisation of every layer, argument errors."""

from __future__ import annotations

import pytest
import torch

from models.denoising import conv_operator_norm
from models.drunet import DRUNet


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("size", [(32, 32), (30, 34), (17, 9)], ids=str)
@pytest.mark.parametrize("depth", [0, 2])
def test_output_has_the_input_shape(size, depth):
    net = DRUNet(channels=4, depth=depth, n_blocks=1)
    assert net(torch.rand(2, 1, *size), 0.1).shape == (2, 1, *size)


def test_3d_multichannel_and_float64():
    net = DRUNet(in_channels=2, channels=2, depth=1, n_blocks=1, ndim=3).double()
    x = torch.rand(1, 2, 5, 6, 7, dtype=torch.float64)
    out = net(x, 0.1)
    assert out.shape == x.shape and out.dtype == torch.float64


def test_noise_level_is_an_input_channel_per_image():
    torch.manual_seed(0)
    net = DRUNet(channels=4, depth=2, n_blocks=1, bias=True)
    assert net.head.in_channels == 2
    x = torch.rand(2, 1, 16, 16)
    assert not torch.allclose(net(x, 0.01), net(x, 0.2))
    both = net(x, torch.tensor([0.01, 0.2]))
    assert torch.allclose(both[0], net(x[:1], 0.01)[0], atol=1e-6)
    assert torch.allclose(both[1], net(x[1:], 0.2)[0], atol=1e-6)


def test_dpir_configuration_has_dpirs_parameter_count():
    with torch.device("meta"):  # no memory, no initialisation: only the shapes
        net = DRUNet()  # channels 64, depth 3, 4 residual blocks, no bias: DPIR's DRUNet
    widths = [64, 128, 256]
    # head 2→64 and tail 64→1 (3×3); per level 2·4 blocks of two 3×3 convolutions (encoder and
    # decoder), a 2×2 strided and a 2×2 transposed convolution; 4 blocks at 512 channels
    per_level = sum(2 * 4 * 2 * 9 * c * c + 2 * 4 * c * 2 * c for c in widths)
    expected = 2 * 9 * 64 + 64 * 9 + per_level + 4 * 2 * 9 * 512 * 512
    assert sum(p.numel() for p in net.parameters()) == expected == 32_638_656


def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    net = DRUNet(channels=4, depth=2, n_blocks=1, bias=True)
    net(torch.randn(2, 1, 12, 20), torch.tensor([0.05, 0.1])).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_spectral_normalisation_bounds_every_layer():
    torch.manual_seed(0)
    net = DRUNet(channels=2, depth=1, n_blocks=1, spectral_norm=True, spectral_size=8)
    layers = [
        m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
    ]
    assert len(layers) == 2 + 1 + 1 + 3 * 2  # head, tail, down, up, 3 blocks of 2
    with torch.no_grad():
        for layer in layers:
            layer.parametrizations.weight.original.mul_(5.0)
    net.train()
    for _ in range(30):
        net(torch.rand(1, 1, 8, 8), 0.1)
    net.eval()
    for layer in layers:
        assert conv_operator_norm(layer, (layer.in_channels, 8, 8), n_iter=100) <= 1.005
    plain = DRUNet(channels=2, depth=1, n_blocks=1)
    norms = [conv_operator_norm(m, (m.in_channels, 8, 8), n_iter=30) for m in plain.modules()
             if isinstance(m, torch.nn.Conv2d)]  # fmt: skip
    assert max(norms) * 5 > 1.5  # the scaled weights exceeded the bound


def test_typo_in_an_argument_raises_type_error():
    with pytest.raises(TypeError, match="nblocks"):
        DRUNet(nblocks=2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"depth": -1}, "depth must be an int >= 0"),
        ({"n_blocks": 0}, "n_blocks must be an int >= 1"),
        ({"bias": 1}, "bias must be a bool"),
        ({"activation": "swish"}, "unknown activation"),
    ],
)
def test_invalid_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DRUNet(**({"channels": 2, "depth": 1, "n_blocks": 1} | kwargs))


def test_wrong_input_or_noise_level_raises():
    net = DRUNet(channels=2, depth=1, n_blocks=1)
    with pytest.raises(ValueError, match="expects images of shape"):
        net(torch.rand(1, 8, 8), 0.1)
    with pytest.raises(ValueError, match="finite and non-negative"):
        net(torch.rand(1, 1, 8, 8), float("nan"))
    with pytest.raises(TypeError):
        net(torch.rand(1, 1, 8, 8))  # the noise level is required


def test_residual_drunet_adds_its_input():
    torch.manual_seed(0)
    plain = DRUNet(channels=2, depth=1, n_blocks=1)
    residual = DRUNet(channels=2, depth=1, n_blocks=1, residual=True)
    residual.load_state_dict(plain.state_dict())
    x = torch.rand(2, 1, 10, 6)
    assert torch.allclose(residual(x, 0.1), x + plain(x, 0.1), atol=1e-6)
