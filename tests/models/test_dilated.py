"""DilatedCNN: shapes, receptive field, identity start, linear maps, errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from models.dilated import CircularPad, DilatedCNN, frozen_prelu


def test_shapes_and_identity_start():
    net = DilatedCNN(channels=4, dilations=(1, 2))
    x = torch.randn(3, 1, 12, 20)
    assert net(x).shape == x.shape
    net.zero_last()
    assert torch.equal(net(x), x)
    assert DilatedCNN(out_channels=2, residual=False, ndim=3)(torch.zeros(1, 1, 4, 4, 4)).shape == (
        1, 2, 4, 4, 4,
    )  # fmt: skip


def test_receptive_field_is_one_plus_twice_the_dilations_plus_the_last_layer():
    torch.manual_seed(0)
    net = DilatedCNN(channels=4, dilations=(1, 3, 9), residual=False)
    x = torch.zeros(1, 1, 61, 61, requires_grad=True)
    net(x)[0, 0, 30, 30].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
    assert int(rows.max() - rows.min()) + 1 == 1 + 2 * (1 + 3 + 9) + 2  # 29 pixels


def test_learns_a_signed_linear_map():
    """PReLU lets the residual net represent x -> 1.5 x on signed inputs (a model correction)."""
    torch.manual_seed(0)
    net = DilatedCNN(channels=4, dilations=(1,))
    net.zero_last()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(300):
        x = torch.randn(8, 1, 8, 8)
        loss = (net(x) - 1.5 * x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.randn(8, 1, 8, 8)
    assert (net(x) - 1.5 * x).norm() / (1.5 * x).norm() < 0.05


def test_errors():
    with pytest.raises(ValueError, match="at least one"):
        DilatedCNN(dilations=())
    with pytest.raises(ValueError, match="in_channels == out_channels"):
        DilatedCNN(out_channels=2)
    with pytest.raises(ValueError, match="expects input of shape"):
        DilatedCNN()(torch.zeros(1, 2, 8, 8))


def test_normalize_makes_the_net_scale_equivariant():
    torch.manual_seed(0)
    net = DilatedCNN(channels=4, dilations=(1, 2), normalize=True).double()
    x = torch.randn(3, 1, 10, 12, dtype=torch.float64)
    for alpha in (1e-3, 2.5, 40.0):
        assert torch.allclose(net(alpha * x), alpha * net(x), rtol=1e-10, atol=1e-12)
    at_zero = net(torch.zeros_like(x))  # s is clamped at 1e-12: finite, and 0 up to 1e-12·net(0)
    assert torch.isfinite(at_zero).all() and at_zero.abs().max() < 1e-10
    plain = DilatedCNN(channels=4, dilations=(1, 2)).double()
    assert not torch.allclose(plain(40.0 * x), 40.0 * plain(x))
    with pytest.raises(ValueError, match="normalize"):
        DilatedCNN(normalize=1)


@pytest.mark.parametrize("ndim", [2, 3])
def test_channels_last_layout_changes_speed_not_numbers(ndim):
    torch.manual_seed(0)
    plain = DilatedCNN(channels=4, dilations=(1, 2), normalize=True, ndim=ndim, channels_last=False)
    for p in plain.parameters():
        torch.nn.init.normal_(p, std=0.3)
    fast = DilatedCNN(channels=4, dilations=(1, 2), normalize=True, ndim=ndim)
    fast.load_state_dict(plain.state_dict())  # checkpoints move between the two layouts
    layout = torch.channels_last if ndim == 2 else torch.channels_last_3d
    assert fast.hidden[0].weight.is_contiguous(memory_format=layout)
    x = torch.randn(2, 1, *([9, 11, 7][:ndim]))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = plain(xa), fast(xb)
    assert yb.is_contiguous()

    def close(a, b):  # float32 rounding, relative to the largest entry
        a, b = a.detach(), b.detach()
        return float((a - b).abs().max()) <= 1e-5 * float(a.abs().max())

    assert close(ya, yb)
    ya.square().sum().backward()
    yb.square().sum().backward()
    assert close(xa.grad, xb.grad)
    assert close(plain.hidden[0].weight.grad, fast.hidden[0].weight.grad)
    with pytest.raises(ValueError, match="channels_last"):
        DilatedCNN(channels_last="yes")


def test_coordinates_let_the_net_learn_a_position_dependent_gain():
    # y = g(t)·x with g rising along the last axis: not translation invariant, so a plain CNN
    # can only guess the position from the zero padding; coordinate channels make it easy.
    torch.manual_seed(0)
    gain = torch.linspace(0.5, 2.0, 32)
    errors = {}
    for coordinates in (False, True):
        torch.manual_seed(1)
        net = DilatedCNN(channels=8, dilations=(1, 2), coordinates=coordinates, residual=False)
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(300):
            x = torch.randn(8, 1, 8, 32)
            loss = (net(x) - gain * x).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        x = torch.randn(16, 1, 8, 32)
        with torch.no_grad():
            errors[coordinates] = float((net(x) - gain * x).norm() / (gain * x).norm())
    assert errors[True] < 0.1 and errors[True] < 0.5 * errors[False]
    assert DilatedCNN(ndim=3, coordinates=True)(torch.zeros(1, 1, 4, 5, 6)).shape == (1, 1, 4, 5, 6)
    with pytest.raises(ValueError, match="coordinates"):
        DilatedCNN(coordinates=1)


def test_linear_path_starts_at_zero_and_fits_a_filter_exactly():
    torch.manual_seed(0)
    net = DilatedCNN(channels=4, dilations=(1, 2), linear_kernel=3, normalize=True).double()
    x = torch.randn(2, 1, 9, 11, dtype=torch.float64)
    assert torch.count_nonzero(net.linear.weight) == 0  # the linear path starts at zero
    with torch.no_grad():
        net.linear.weight.normal_()
    assert not torch.allclose(net(x), x)
    net.zero_last()
    assert torch.equal(net(x), x)  # zero_last zeroes the linear path as well
    # with the hidden stack silenced, the net is exactly x + K * x: a known 3×3 filter
    kernel = torch.tensor(
        [[0.0, 0.1, 0.0], [0.2, -0.5, 0.3], [0.0, 0.05, 0.0]], dtype=torch.float64
    )
    with torch.no_grad():
        net.linear.weight.copy_(kernel.view(1, 1, 3, 3))
    expected = x + torch.nn.functional.conv2d(x, kernel.view(1, 1, 3, 3), padding=1)
    assert torch.allclose(net(x), expected, atol=1e-14)
    for alpha in (1e-3, 7.0):  # still scale-equivariant with normalize=True
        assert torch.allclose(net(alpha * x), alpha * net(x), rtol=1e-10, atol=1e-14)
    assert "linear_kernel=3" in repr(net)
    assert DilatedCNN(linear_kernel=5, ndim=3)(torch.zeros(1, 1, 4, 5, 6)).shape == (1, 1, 4, 5, 6)
    for bad in (2, -1, True, 3.0):
        with pytest.raises(ValueError, match="linear_kernel"):
            DilatedCNN(linear_kernel=bad)


def test_unshuffle_blocks_are_pixel_unshuffle_and_invert_exactly():
    from models.dilated import from_blocks, to_blocks

    x = torch.randn(2, 3, 8, 12)
    torch.testing.assert_close(to_blocks(x, (2, 2)), torch.nn.functional.pixel_unshuffle(x, 2))
    assert to_blocks(x, (2, 3)).shape == (2, 18, 4, 4)
    assert torch.equal(from_blocks(to_blocks(x, (2, 3)), (2, 3)), x)
    v = torch.randn(1, 2, 4, 6, 8)
    assert torch.equal(from_blocks(to_blocks(v, (2, 3, 4)), (2, 3, 4)), v)
    assert to_blocks(x, (1, 1)) is x


@pytest.mark.parametrize("ndim", [2, 3])
def test_unshuffled_net_is_residual_identity_at_start_and_keeps_the_shape(ndim):
    factors = (1, 2) if ndim == 2 else (2, 1, 2)
    net = DilatedCNN(channels=4, dilations=(1, 2), ndim=ndim, unshuffle=factors,
                     coordinates=True, normalize=True)  # fmt: skip
    x = torch.randn(2, 1, *([4] * ndim))
    assert net(x).shape == x.shape
    assert net.out_conv.out_channels == (2 if ndim == 2 else 4)  # out_channels · Π factors
    net.zero_last()
    assert torch.equal(net(x), x)


def test_unshuffle_multiplies_the_receptive_field_by_the_factors():
    """Hidden layers on the (1, 2)-coarse grid: along the second axis a dilation-1 layer and the
    last layer reach 2·(1 + 2·1 + 2) = 10 pixels (the block holding the pixel included); along
    the first, unchanged, 1 + 2·1 + 2 = 5."""
    torch.manual_seed(0)
    net = DilatedCNN(channels=4, dilations=(1,), residual=False, unshuffle=(1, 2))
    x = torch.zeros(1, 1, 21, 40, requires_grad=True)
    net(x)[0, 0, 10, 20].backward()
    support = x.grad[0, 0].abs() > 0
    rows = torch.nonzero(support.any(1)).flatten()
    cols = torch.nonzero(support.any(0)).flatten()
    assert int(rows.max() - rows.min()) + 1 == 5
    assert int(cols.max() - cols.min()) + 1 == 10


def test_unshuffle_errors():
    with pytest.raises(ValueError, match="one factor per spatial axis"):
        DilatedCNN(unshuffle=(2, 2, 2))
    with pytest.raises(ValueError, match="unshuffle factor must be an int >= 1"):
        DilatedCNN(unshuffle=(0, 2))
    with pytest.raises(ValueError, match="multiples of the factors"):
        DilatedCNN(unshuffle=2)(torch.zeros(1, 1, 8, 7))


@pytest.mark.parametrize("ndim", [2, 3])
def test_compute_in_bfloat16_runs_the_convolutions_there_and_keeps_the_io_dtype(ndim):
    torch.manual_seed(0)
    net = DilatedCNN(channels=8, dilations=(1, 2), ndim=ndim, normalize=True, coordinates=True,
                     unshuffle=2, linear_kernel=3)  # fmt: skip
    for p in net.parameters():  # nonzero everywhere, so the nets differ from the identity
        p.data.normal_(0, 0.2)
    x = torch.randn(2, 1, *([8] * ndim))
    reference = net(x)
    reduced = copy.deepcopy(net).compute_in(torch.bfloat16)
    out = reduced(x)
    assert out.dtype == torch.float32 and out.shape == x.shape
    convs = [m for m in reduced.modules() if isinstance(m, nn.Conv2d | nn.Conv3d)]
    assert {m.weight.dtype for m in convs if m is not reduced.linear} == {torch.bfloat16}
    assert reduced.linear.weight.dtype == torch.float32  # the exact linear path stays
    prelus = [m for m in reduced.modules() if isinstance(m, nn.PReLU)]
    assert prelus and all(m.weight.dtype == torch.float32 for m in prelus)
    assert not any(p.requires_grad for p in reduced.parameters()) and not reduced.training
    # rounding to 8 bits of mantissa: close to, but not equal to, the float32 network
    correction = (reference - x).norm()
    assert 0 < (out - reference).norm() < 2e-2 * correction
    assert "compute_dtype=torch.bfloat16" in repr(reduced)
    with pytest.raises(ValueError, match="floating-point"):
        DilatedCNN().compute_in(torch.int32)


@pytest.mark.parametrize("ndim", [2, 3])
def test_frozen_prelu_equals_prelu_and_its_input_gradient(ndim):
    torch.manual_seed(0)
    h = torch.randn(2, 4, *([5] * ndim), requires_grad=True)
    slopes = torch.tensor([0.25, -0.5, 1.5, 0.0])  # any slope, not only those in [0, 1]
    out = frozen_prelu(h, slopes)
    torch.testing.assert_close(out, nn.functional.prelu(h, slopes))
    g = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, h, g)
    expected = torch.where(h > 0, g, g * slopes.reshape(1, -1, *([1] * ndim)))
    torch.testing.assert_close(grad, expected)


def test_compute_in_float32_keeps_the_network_and_its_input_gradient():
    torch.manual_seed(0)
    net = DilatedCNN(channels=8, dilations=(1, 2), unshuffle=2, coordinates=True)
    for p in net.parameters():
        p.data.normal_(0, 0.2)
    frozen = copy.deepcopy(net).compute_in(torch.float32)
    x = torch.randn(2, 1, 8, 8, requires_grad=True)
    out, ref = frozen(x), net(x)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(ref, x, g)[0])


def _randomised(net: DilatedCNN) -> DilatedCNN:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return net


@pytest.mark.parametrize(
    ("size", "unshuffle", "linear_kernel", "shift"),
    [((12, 10), 1, 0, 5), ((12, 10), 1, 5, 1), ((12, 10), (2, 1), 3, 4), ((5, 6), 1, 0, 2)],
)
def test_periodic_axis_makes_the_net_equivariant_to_circular_shifts(
    size, unshuffle, linear_kernel, shift
):
    """Padded circularly, the angle axis has no ends: rolling the input rolls the output (by
    whole blocks when unshuffled; dilations up to 8 also wrap an axis of 5 more than once)."""
    x = torch.randn(2, 1, *size, dtype=torch.float64)
    kwargs = dict(channels=4, dilations=(1, 2, 8), linear_kernel=linear_kernel, unshuffle=unshuffle)
    periodic = _randomised(DilatedCNN(periodic=(True, False), **kwargs).double())
    rolled = periodic(x.roll(shift, dims=2))
    torch.testing.assert_close(rolled, periodic(x).roll(shift, dims=2))
    zero_padded = _randomised(DilatedCNN(**kwargs).double())  # the same weights, zero padding
    assert not torch.allclose(zero_padded(x.roll(shift, dims=2)), zero_padded(x).roll(shift, 2))
    assert "periodic=(True, False)" in repr(periodic)
    periodic.zero_last()
    assert torch.equal(periodic(x), x)  # the identity at the start, linear path included


def test_periodic_net_in_bfloat16_and_its_errors():
    net = DilatedCNN(channels=4, dilations=(1, 2), periodic=True, linear_kernel=3)
    x = torch.randn(1, 1, 8, 8)
    reference = _randomised(net)(x)
    torch.testing.assert_close(net.compute_in(torch.bfloat16)(x), reference, atol=0.05, rtol=0.05)
    for bad in ([True], (True, False, True), "yes", (1, 0)):
        with pytest.raises(ValueError, match="periodic needs True/False per spatial axis"):
            DilatedCNN(periodic=bad)


def test_circular_pad_takes_values_from_the_other_end_any_amount():
    h = torch.arange(6.0).reshape(1, 1, 2, 3)
    padded = CircularPad((False, True), 4)(h)
    assert padded.shape == (1, 1, 2, 11)
    assert padded[0, 0, 0].tolist() == [2.0, 0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0]
    with pytest.raises(ValueError, match="amount"):
        CircularPad((True,), 0)
