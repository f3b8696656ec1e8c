"""Tests of models.icnn: convexity along lines, monotone and strongly monotone gradients, the
non-negative parametrisation surviving optimisation, the quadratic terms (also the spectral one:
a symmetric positive-definite periodic convolution with an exact inverse), shapes and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models import ICNN, ICNN_ACTIVATIONS, NonNegativeConv, Quadratic, input_gradient
from models.icnn import InverseSpectralQuadratic, SpectralQuadratic


def _scrambled(net: ICNN, seed: int = 0) -> ICNN:
    """``net`` with large random raw weights everywhere: far from its gentle initialisation."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 2)
    return net


def _net(activation="softplus", ndim=2, s=0.0, seed=0, **kwargs) -> ICNN:
    torch.manual_seed(seed)
    net = ICNN(
        channels=4, n_layers=3, activation=activation, strong_convexity=s, ndim=ndim, **kwargs
    )
    return _scrambled(net.double(), seed)


def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).flatten(1).sum(1)


@pytest.mark.parametrize("activation", ICNN_ACTIVATIONS)
@pytest.mark.parametrize("ndim", [2, 3])
def test_convex_along_random_lines(activation, ndim):
    net = _net(activation, ndim, quadratic=0.5, quadratic_kernel=3, quadratic_channels=2)
    gen = torch.Generator().manual_seed(1)
    shape = (6, 1, *([5] * ndim))
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    d = torch.randn(shape, generator=gen, dtype=torch.float64)
    ts = torch.linspace(-3, 3, 41, dtype=torch.float64)
    values = torch.stack([net(x + t * d) for t in ts])  # (41, 6): ψ along 6 lines
    second = values[:-2] - 2 * values[1:-1] + values[2:]
    scale = values.abs().max()
    assert second.min() >= -1e-10 * scale  # convex: every second difference is >= 0
    assert second.max() > 1e-6 * scale  # and not trivially affine: the test can fail
    # Jensen at the midpoints of random pairs
    y = torch.randn(shape, generator=gen, dtype=torch.float64)
    assert (net((x + y) / 2) <= (net(x) + net(y)) / 2 + 1e-10 * scale).all()


def test_a_net_with_negative_hidden_weights_would_fail_the_convexity_check():
    """The line test above detects non-convexity: flip the hidden path's sign and it fails."""
    net = _net("softplus")

    def flipped(x):
        return -net(x)

    gen = torch.Generator().manual_seed(2)
    x = torch.randn(4, 1, 5, 5, generator=gen, dtype=torch.float64)
    d = torch.randn(4, 1, 5, 5, generator=gen, dtype=torch.float64)
    values = torch.stack([flipped(x + t * d) for t in torch.linspace(-3, 3, 41)])
    assert (values[:-2] - 2 * values[1:-1] + values[2:]).min() < 0


@pytest.mark.parametrize("activation", ICNN_ACTIVATIONS)
@pytest.mark.parametrize("s", [0.0, 0.1, 1.0])
def test_gradient_is_strongly_monotone(activation, s):
    net = _net(activation, s=s, quadratic=0.3, quadratic_kernel=3)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(16, 1, 6, 7, generator=gen, dtype=torch.float64)
    y = x + torch.randn(16, 1, 6, 7, generator=gen, dtype=torch.float64) * torch.logspace(
        -3, 1, 16, dtype=torch.float64
    ).reshape(-1, 1, 1, 1)
    gap = _inner(input_gradient(net, x) - input_gradient(net, y), x - y)
    assert (gap >= s * _inner(x - y, x - y) * (1 - 1e-9) - 1e-12).all()


def test_strong_convexity_constant_is_the_configured_one():
    """With a negligible network and no learnable quadratic, ∇ψ(x) − ∇ψ(y) = s (x − y)."""
    torch.manual_seed(0)
    s = 0.3
    net = ICNN(channels=4, n_layers=2, strong_convexity=s, output_scale=1e-9).double()
    gen = torch.Generator().manual_seed(4)
    x, y = (torch.randn(5, 1, 8, 8, generator=gen, dtype=torch.float64) for _ in range(2))
    ratio = _inner(input_gradient(net, x) - input_gradient(net, y), x - y) / _inner(x - y, x - y)
    torch.testing.assert_close(ratio, torch.full_like(ratio, s), rtol=1e-5, atol=0)


def test_quadratic_layer_starts_as_a_multiple_of_the_identity():
    torch.manual_seed(0)
    net = ICNN(channels=4, strong_convexity=0.1, quadratic=0.9, quadratic_kernel=5,
               quadratic_channels=4, output_scale=1e-9).double()  # fmt: skip
    x = torch.randn(3, 1, 12, 12, dtype=torch.float64)
    g = input_gradient(net, x)
    # ∇ψ(x) = (0.1 + CᵀC) x with C ≈ √0.9·identity plus noise of relative size 1e-2
    assert ((g - x).norm() / x.norm()).item() < 0.05
    centre = net.quadratic_layer.weight[0, 0, 2, 2].item()
    assert centre == pytest.approx(0.9**0.5)


def test_hidden_weights_stay_non_negative_under_optimisation():
    """The parametrisation, not clipping, keeps the hidden path non-negative: an optimiser that
    pushes every hidden weight down hard leaves them >= 0 and the network convex."""
    net = _net("elu")
    hidden = [*net.hidden_layers, net.output_layer]
    for layer in hidden:
        assert isinstance(layer, NonNegativeConv)
        assert not isinstance(layer.weight, nn.Parameter)  # computed from raw_weight
    opt = torch.optim.SGD(net.parameters(), lr=100.0)
    for _ in range(5):
        opt.zero_grad()
        sum(layer.weight.sum() for layer in hidden).backward()
        opt.step()
    assert all((layer.weight >= 0).all() for layer in hidden)
    assert min(layer.raw_weight.min().item() for layer in hidden) < -50  # really pushed
    x, d = torch.randn(2, 3, 1, 5, 5, dtype=torch.float64)
    values = torch.stack([net(x + t * d) for t in torch.linspace(-2, 2, 21)])
    assert (values[:-2] - 2 * values[1:-1] + values[2:]).min() >= -1e-10 * values.abs().max()


def test_shapes_dilations_and_3d():
    net = ICNN(channels=4, n_layers=3, dilations=[1, 2, 4])
    assert net(torch.randn(2, 1, 17, 20)).shape == (2,)
    assert [layer.dilation for layer in net.hidden_layers] == [2, 4]
    assert ICNN(in_channels=2, channels=3, ndim=3)(torch.randn(3, 2, 4, 5, 6)).shape == (3,)


def test_input_gradient_without_and_with_graph():
    net = _net("softplus", s=0.1)
    x = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        g = input_gradient(net, x)  # works where recon-eval disables gradients
    assert not g.requires_grad
    x_leaf = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(net(x_leaf).sum(), x_leaf)
    torch.testing.assert_close(g, expected)
    g = input_gradient(net, x, create_graph=True)  # differentiable in the parameters
    g.square().sum().backward()
    assert net.input_layers[0].weight.grad.abs().sum() > 0


def test_quadratic_potential():
    x = torch.randn(4, 1, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(input_gradient(Quadratic(scale=2.5), x), 2.5 * x)
    torch.testing.assert_close(Quadratic()(x), 0.5 * x.flatten(1).square().sum(1))


@pytest.mark.parametrize("shape", [(6, 7), (4, 5, 6)])
def test_spectral_quadratic_is_a_symmetric_positive_definite_convolution(shape):
    ndim = len(shape)
    torch.manual_seed(0)
    q = SpectralQuadratic(shape, init=0.7, rate=1.0, ndim=ndim).double()
    with torch.no_grad():
        q.log_multiplier.normal_(0.0, 1.5)  # multipliers spread over ~e^±4
    m = q.multiplier()
    dims = tuple(range(-ndim, 0))
    torch.testing.assert_close(m, torch.roll(torch.flip(m, dims), (1,) * ndim, dims))  # m(ω)=m(−ω)
    gen = torch.Generator().manual_seed(5)
    x, y = (torch.randn(3, 2, *shape, generator=gen, dtype=torch.float64) for _ in range(2))
    mx, my = q.gradient(x), q.gradient(y)
    torch.testing.assert_close(input_gradient(q, x), mx)  # ∇ψ = Mx, also by autograd
    torch.testing.assert_close(q(x), 0.5 * _inner(x, mx))
    torch.testing.assert_close(_inner(mx, y), _inner(x, my), rtol=1e-12, atol=1e-10)  # Mᵀ = M
    quad = _inner(x, mx) / _inner(x, x)
    assert (quad >= m.min() * (1 - 1e-12)).all() and (quad <= m.max() * (1 + 1e-12)).all()
    torch.testing.assert_close(q.inverse_gradient(mx), x)  # ∇ψ* = M⁻¹ exactly
    # a periodic convolution: it commutes with circular shifts
    shift = (1,) * ndim
    torch.testing.assert_close(q.gradient(torch.roll(x, shift, dims)), torch.roll(mx, shift, dims))
    # the tied conjugate of ½⟨x, (M + cI)x⟩ inverts its gradient exactly and shares ρ
    inverse = InverseSpectralQuadratic(q, shift=0.3)
    torch.testing.assert_close(input_gradient(inverse, mx + 0.3 * x), x)
    torch.testing.assert_close(inverse.inverse_gradient(x), mx + 0.3 * x)
    assert [p is q.log_multiplier for p in inverse.parameters()] == [True]


def test_icnn_with_a_spectral_term_is_convex_and_starts_near_a_multiple_of_the_identity():
    torch.manual_seed(0)
    net = ICNN(channels=4, strong_convexity=0.01, spectral=0.99, spectral_shape=(9, 8),
               output_scale=1e-9).double()  # fmt: skip
    x = torch.randn(3, 1, 9, 8, dtype=torch.float64)
    torch.testing.assert_close(input_gradient(net, x), x, rtol=1e-6, atol=1e-8)  # (s + m₀) x
    s = 0.01
    net = _net(s=s, spectral=0.5, spectral_shape=(6, 7))  # every weight and ρ scrambled
    assert net.spectral_layer.log_multiplier.abs().max() > 1
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(8, 1, 6, 7, generator=gen, dtype=torch.float64)
    y = x + torch.randn(8, 1, 6, 7, generator=gen, dtype=torch.float64)
    gap = _inner(input_gradient(net, x) - input_gradient(net, y), x - y)
    assert (gap >= s * _inner(x - y, x - y) * (1 - 1e-9)).all()
    values = torch.stack([net(x + t * (y - x)) for t in torch.linspace(-2, 2, 21)])
    assert (values[:-2] - 2 * values[1:-1] + values[2:]).min() >= -1e-10 * values.abs().max()


def test_errors():
    with pytest.raises(ValueError, match="activation"):
        ICNN(activation="relu6")
    with pytest.raises(ValueError, match="dilations"):
        ICNN(n_layers=3, dilations=[1, 2])
    with pytest.raises(ValueError, match="strong_convexity"):
        ICNN(strong_convexity=-0.1)
    with pytest.raises(ValueError, match="kernel_size"):
        NonNegativeConv(2, 2, kernel_size=2)
    with pytest.raises(ValueError, match="expects input"):
        ICNN(in_channels=1)(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="scale"):
        Quadratic(scale=0.0)
    with pytest.raises(TypeError, match="strong_convexty"):
        ICNN(strong_convexty=0.1)  # a typo in a config raises
    with pytest.raises(TypeError, match="chanels"):
        ICNN(chanels=8)
    with pytest.raises(ValueError, match="spectral_shape"):
        ICNN(spectral=1.0)
    with pytest.raises(ValueError, match="built for inputs"):
        ICNN(spectral=1.0, spectral_shape=(8, 8))(torch.zeros(2, 1, 8, 9))
    with pytest.raises(ValueError, match="shape must be 2"):
        SpectralQuadratic((8, 8, 8))
    with pytest.raises(ValueError, match="rate"):
        SpectralQuadratic((8, 8), rate=0.0)
    with pytest.raises(ValueError, match="SpectralQuadratic"):
        InverseSpectralQuadratic(Quadratic())
    with pytest.raises(ValueError, match="built for inputs"):
        InverseSpectralQuadratic(SpectralQuadratic((8, 8)))(torch.zeros(1, 1, 4, 4))
