"""Tests of models.unet.UNet: shapes for any size, the residual identity, gradients, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models import UNet


def _zero(conv: nn.Module) -> None:
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()


@pytest.mark.parametrize("upsampling", ["bilinear", "transpose"])
@pytest.mark.parametrize("norm", ["batch", "instance", None])
@pytest.mark.parametrize("size", [(32, 32), (30, 34), (17, 9)], ids=str)
def test_output_has_the_input_shape(upsampling, norm, size):
    net = UNet(channels=4, depth=3, norm=norm, upsampling=upsampling)
    assert net(torch.randn(2, 1, *size)).shape == (2, 1, *size)


def test_channels_double_per_level_and_depth_counts_poolings():
    net = UNet(in_channels=2, out_channels=3, channels=8, depth=3, residual=False)
    first_convs = [block[0].conv for block in net.encoder]
    assert [(c.in_channels, c.out_channels) for c in first_convs] == [
        (2, 8),
        (8, 16),
        (16, 32),
        (32, 64),
    ]
    assert len(net.decoder) == 3
    assert net(torch.randn(1, 2, 24, 40)).shape == (1, 3, 24, 40)
    assert UNet(channels=4, depth=0)(torch.randn(1, 1, 5, 7)).shape == (1, 1, 5, 7)


@pytest.mark.parametrize("size", [(32, 32), (30, 34)], ids=str)
def test_residual_unet_with_zeroed_last_conv_returns_its_input_exactly(size):
    net = UNet(channels=4, depth=2, residual=True)
    _zero(net.out_conv)
    x = torch.randn(3, 1, *size)
    assert torch.equal(net(x), x)
    plain = UNet(channels=4, depth=2, residual=False)
    _zero(plain.out_conv)
    assert torch.equal(plain(x), torch.zeros_like(x))


def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    net = UNet(channels=4, depth=2, norm="instance", upsampling="transpose")
    net(torch.randn(2, 1, 30, 34)).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_eval_mode_treats_batch_elements_independently():
    torch.manual_seed(0)
    net = UNet(channels=4, depth=2, norm="batch").eval()
    x = torch.randn(3, 1, 20, 20)
    joint = net(x)
    single = torch.cat([net(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(joint, single)


def test_3d_unet():
    for upsampling in ("bilinear", "transpose"):
        net = UNet(channels=2, depth=2, ndim=3, norm="instance", upsampling=upsampling)
        assert net(torch.randn(1, 1, 9, 10, 12)).shape == (1, 1, 9, 10, 12)


def test_float64():
    net = UNet(channels=4, depth=2).double()
    assert net(torch.randn(1, 1, 12, 12, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"in_channels": 2, "out_channels": 1}, id="residual-channel-mismatch"),
        pytest.param({"depth": -1}, id="negative-depth"),
        pytest.param({"channels": 0}, id="zero-channels"),
        pytest.param({"norm": "group"}, id="unknown-norm"),
        pytest.param({"activation": "swish"}, id="unknown-activation"),
        pytest.param({"upsampling": "nearest"}, id="unknown-upsampling"),
        pytest.param({"residual": "yes"}, id="residual-not-bool"),
        pytest.param({"ndim": 4}, id="ndim-4"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        UNet(**kwargs)


def test_wrong_input_shape_raises_value_error():
    net = UNet(channels=4, depth=2)
    with pytest.raises(ValueError, match="UNet expects"):
        net(torch.randn(1, 2, 16, 16))
    with pytest.raises(ValueError, match="UNet expects"):
        net(torch.randn(16, 16))


def test_typo_in_keyword_raises_type_error():
    with pytest.raises(TypeError):
        UNet(chanels=8)
    with pytest.raises(TypeError):
        UNet(1, 1)  # keyword-only
