"""Tests of models.dip_unet.DIPUNet: shapes at any size, narrow skips, per-sample behaviour (what
the batched deep image prior relies on), vmap over per-sample weights, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, vmap

from models.dip_unet import DIPUNet


@pytest.mark.parametrize("norm", ["group", None])
@pytest.mark.parametrize("size", [(32, 32), (30, 34), (17, 9)], ids=str)
def test_output_has_the_input_shape(norm, size):
    net = DIPUNet(channels=4, scales=3, norm=norm)
    assert net(torch.randn(2, 1, *size)).shape == (2, 1, *size)
    assert DIPUNet(channels=4, scales=1)(torch.randn(1, 1, *size)).shape == (1, 1, *size)


def test_levels_channels_and_skips_follow_the_arguments():
    net = DIPUNet(
        in_channels=2, out_channels=3, channels=[4, 8, 6], scales=3, skip_channels=[2, 0, 5]
    )
    assert net.channels == [4, 8, 6] and net.skip_channels == [2, 0, 5]
    assert [block[0][0].stride for block in net.down] == [(2, 2), (2, 2)]  # strided downsampling
    # the level-1 skip is dropped; the coarsest level's entry (5) has no skip to size
    assert set(net.skips) == {"0"} and net.skips["0"][0].out_channels == 2
    first_up = [blk[0][0] for blk in net.up_convs]  # coarsest first
    assert [(c.in_channels, c.out_channels) for c in first_up] == [(6 + 0, 8), (8 + 2, 4)]
    assert net(torch.randn(1, 2, 16, 16)).shape == (1, 3, 16, 16)


def test_convolutions_have_no_bias_before_a_normalisation():
    with_norm = DIPUNet(channels=4, scales=2, norm="group")
    convs = [m for m in with_norm.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is None for c in convs[:-1]) and convs[-1] is with_norm.out_conv
    assert with_norm.out_conv.bias is not None
    without = DIPUNet(channels=4, scales=2, norm=None)
    assert all(m.bias is not None for m in without.modules() if isinstance(m, nn.Conv2d))


def test_group_norm_uses_a_divisor_of_the_channels():
    net = DIPUNet(channels=6, scales=2, groups=4, skip_channels=3)
    groups = {m.num_channels: m.num_groups for m in net.modules() if isinstance(m, nn.GroupNorm)}
    assert groups == {6: 2, 3: 1}


def test_sigmoid_output_lies_in_the_unit_interval_and_never_saturates():
    net = DIPUNet(channels=4, scales=2, output="sigmoid", sigmoid_clamp=2.0)
    with torch.no_grad():
        net.out_conv.bias.fill_(100.0)
    out = net(torch.randn(2, 1, 8, 8))
    assert torch.allclose(out, torch.sigmoid(torch.tensor(2.0)).expand_as(out))


def test_samples_are_independent_and_vmap_over_weights_matches_a_loop():
    torch.manual_seed(0)
    net = DIPUNet(channels=4, scales=3).double()
    x = torch.randn(3, 1, 16, 12, dtype=torch.float64)
    together = net(x)
    alone = torch.cat([net(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone)  # group norm is per sample
    stacked = {
        k: torch.stack([v * (1 + 0.1 * i) for i in range(3)]) for k, v in net.named_parameters()
    }

    def one(params, z):
        return functional_call(net, params, (z.unsqueeze(0),)).squeeze(0)

    batched = vmap(one)(stacked, x)
    looped = torch.stack([one({k: v[i] for k, v in stacked.items()}, x[i]) for i in range(3)])
    torch.testing.assert_close(batched, looped)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channels": [4, 4]}, "one entry per scale"),
        ({"skip_channels": -1}, "skip_channels must be an int >= 0"),
        ({"channels": "wide"}, "channels must be an int or a list"),
        ({"scales": 0}, "scales must be an int >= 1"),
        ({"norm": "batch"}, "unknown norm 'batch'"),
        ({"output": "tanh"}, "unknown output 'tanh'"),
        ({"sigmoid_clamp": 0.0}, "sigmoid_clamp must be a finite positive"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DIPUNet(**{"scales": 3, **kwargs})


def test_wrong_input_shape_raises():
    with pytest.raises(ValueError, match=r"expects input of shape \(B, 1, H, W\)"):
        DIPUNet(channels=4, scales=2)(torch.zeros(1, 2, 8, 8))
