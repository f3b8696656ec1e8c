"""Tests of models.blocks: shapes in 2D and 3D, the options, zeroed layers, and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models import (
    ACTIVATIONS,
    ConvBlock,
    ConvNet,
    ResidualBlock,
    conv_layer,
    make_activation,
    make_norm,
)


@pytest.mark.parametrize("norm", ["batch", "instance", None, "none"])
@pytest.mark.parametrize("activation", [a for a in ACTIVATIONS] + [None])
def test_conv_block_keeps_spatial_size(norm, activation):
    block = ConvBlock(in_channels=3, out_channels=6, norm=norm, activation=activation)
    assert block(torch.randn(2, 3, 11, 14)).shape == (2, 6, 11, 14)


def test_conv_block_3d_and_kernel_size():
    block = ConvBlock(in_channels=2, out_channels=4, kernel_size=5, norm="batch", ndim=3)
    assert isinstance(block.conv, nn.Conv3d) and isinstance(block.norm, nn.BatchNorm3d)
    assert block(torch.randn(2, 2, 5, 6, 7)).shape == (2, 4, 5, 6, 7)


def test_conv_block_bias_is_dropped_only_before_batch_norm():
    assert ConvBlock(in_channels=1, out_channels=2, norm="batch").conv.bias is None
    assert ConvBlock(in_channels=1, out_channels=2, norm="instance").conv.bias is not None
    assert ConvBlock(in_channels=1, out_channels=2, norm=None).conv.bias is not None
    assert ConvBlock(in_channels=1, out_channels=2, norm="batch", bias=True).conv.bias is not None


def test_prelu_learns_one_slope_per_channel():
    act = make_activation("prelu", 7)
    assert isinstance(act, nn.PReLU) and act.weight.numel() == 7


def test_instance_norm_is_affine():
    norm = make_norm("instance", 4)
    assert isinstance(norm, nn.InstanceNorm2d) and norm.affine


def test_residual_block_with_zeroed_body_is_the_activation_of_its_input():
    block = ResidualBlock(channels=4, activation="relu")
    last = block.body[-1].conv
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    x = torch.randn(2, 4, 8, 9)
    assert torch.equal(block(x), torch.relu(x))
    block = ResidualBlock(channels=4, norm="instance", activation="prelu", ndim=3)
    assert block(torch.randn(1, 4, 4, 5, 6)).shape == (1, 4, 4, 5, 6)


def test_conv_net_architecture_and_zero_last():
    net = ConvNet(in_channels=7, out_channels=5, hidden_channels=32, n_layers=3)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (7, 32, (3, 3)),
        (32, 32, (3, 3)),
        (32, 5, (3, 3)),
    ]
    assert sum(isinstance(m, nn.PReLU) for m in net.modules()) == 2
    x = torch.randn(2, 7, 10, 10)
    assert net(x).abs().sum() > 0
    net.zero_last()
    assert torch.equal(net(x), torch.zeros(2, 5, 10, 10))
    assert ConvNet(in_channels=2, out_channels=3, n_layers=1)(torch.randn(1, 2, 4, 4)).shape == (
        1,
        3,
        4,
        4,
    )


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: make_norm("layer", 3), id="unknown-norm"),
        pytest.param(lambda: make_activation("relu6"), id="unknown-activation"),
        pytest.param(lambda: conv_layer(1, 1, kernel_size=4), id="even-kernel"),
        pytest.param(lambda: conv_layer(0, 1), id="zero-channels"),
        pytest.param(lambda: conv_layer(1, 1, ndim=1), id="ndim-1"),
        pytest.param(lambda: ConvNet(in_channels=1, out_channels=1, n_layers=0), id="no-layers"),
        pytest.param(lambda: ConvBlock(in_channels=True, out_channels=2), id="bool-channels"),
    ],
)
def test_bad_arguments_raise_value_error(make):
    with pytest.raises(ValueError):
        make()


def test_unknown_keyword_raises_type_error():
    with pytest.raises(TypeError):
        ConvBlock(in_channels=1, out_channels=2, activaton="relu")
    with pytest.raises(TypeError):
        ConvBlock(1, 2)  # keyword-only
