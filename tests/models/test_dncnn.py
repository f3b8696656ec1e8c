"""Tests of models.dncnn.DnCNN: shapes, the residual form, the noise-level input, the Lipschitz
bound of spectral normalisation (measured, and exceeded without it), argument errors."""

from __future__ import annotations

import pytest
import torch

from models.denoising import conv_operator_norm
from models.dncnn import DnCNN


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("norm", ["batch", "instance", None])
@pytest.mark.parametrize("size", [(32, 32), (17, 9)], ids=str)
def test_output_has_the_input_shape(norm, size):
    net = DnCNN(channels=8, depth=4, norm=norm)
    assert net(torch.rand(3, 1, *size), 0.1).shape == (3, 1, *size)


def test_3d_multichannel_and_float64():
    net = DnCNN(in_channels=2, channels=4, depth=3, ndim=3, norm=None).double()
    x = torch.rand(1, 2, 5, 6, 7, dtype=torch.float64)
    out = net(x)
    assert out.shape == x.shape and out.dtype == torch.float64


def test_denoiser_subtracts_the_predicted_noise_and_is_the_identity_when_it_is_zero():
    torch.manual_seed(0)
    net = DnCNN(channels=8, depth=4, norm=None)
    x = torch.rand(2, 1, 12, 12)
    assert torch.allclose(net(x), x - net.residual(x), atol=1e-6)
    assert not torch.allclose(net(x), x)
    with torch.no_grad():
        net.body[-1].weight.zero_()
        net.body[-1].bias.zero_()
    assert torch.equal(net(x), x)


def test_noise_level_input_is_used_only_when_asked():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 16, 16)
    blind = DnCNN(channels=8, depth=3, norm=None)
    assert torch.equal(blind(x, 0.01), blind(x, 0.5))
    aware = DnCNN(channels=8, depth=3, norm=None, sigma_input=True)
    assert aware.body[0].conv.in_channels == 2
    assert not torch.allclose(aware(x, 0.01), aware(x, 0.5))
    # one level per image equals each image at its own level
    both = aware(x, torch.tensor([0.01, 0.5]))
    assert torch.allclose(both[1:], aware(x[1:], 0.5), atol=1e-6)
    with pytest.raises(ValueError, match="pass the noise level sigma"):
        aware(x)


def _jacobian_norm(f, x: torch.Tensor, n_iter: int = 100) -> float:
    """Power iteration on JᵀJ of f at x (autograd), from a seeded start."""
    jvp, vjp = torch.autograd.functional.jvp, torch.autograd.functional.vjp
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    v = v / v.norm()
    for _ in range(n_iter):
        jtjv = vjp(f, x, jvp(f, x, v)[1])[1]
        v = jtjv / jtjv.norm()
    return float(jvp(f, x, v)[1].norm())


def test_spectral_normalisation_bounds_the_residual_lipschitz_constant():
    torch.manual_seed(0)
    lipschitz, depth, size = 0.5, 3, 16
    net = DnCNN(channels=4, depth=depth, norm=None, spectral_norm=True, lipschitz=lipschitz,
                spectral_size=size)  # fmt: skip
    raw = DnCNN(channels=4, depth=depth, norm=None)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    raw_convs = [m for m in raw.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():  # large weights, so that the constraint is active
        for conv, twin in zip(convs, raw_convs, strict=True):
            conv.parametrizations.weight.original.mul_(4.0)
            twin.weight.copy_(conv.parametrizations.weight.original)
            twin.bias.copy_(conv.bias)
    net.train()
    for _ in range(30):  # the power iteration follows the weights in training mode
        net(torch.rand(1, 1, size, size))
    net.eval()
    per_layer = lipschitz ** (1 / depth)
    for conv, twin in zip(convs, raw_convs, strict=True):
        shape = (conv.in_channels, size, size)
        assert conv_operator_norm(conv, shape, n_iter=100) <= per_layer * 1.005
        # on larger images the bound still holds to ~1 %
        assert conv_operator_norm(conv, (conv.in_channels, 40, 40), n_iter=60) <= per_layer * 1.02
        assert conv_operator_norm(twin, shape, n_iter=30) > 1.5 * per_layer  # it was active
    x = torch.rand(1, 1, size, size)
    assert _jacobian_norm(net.residual, x, n_iter=15) <= lipschitz * 1.005
    # pairs of images: the residual moves them apart by at most L times their distance
    z = x + 0.3 * torch.randn(4, 1, size, size)
    with torch.no_grad():
        moved = (net.residual(x) - net.residual(z)).flatten(1).norm(dim=1)
    assert (moved <= lipschitz * (x - z).flatten(1).norm(dim=1)).all()
    assert _jacobian_norm(raw.residual, x, n_iter=5) > lipschitz  # the same weights, unconstrained


def test_spectral_norm_state_survives_a_state_dict_round_trip():
    torch.manual_seed(0)
    net = DnCNN(channels=4, depth=3, norm=None, spectral_norm=True, spectral_size=4).eval()
    twin = DnCNN(channels=4, depth=3, norm=None, spectral_norm=True, spectral_size=4).eval()
    twin.load_state_dict(net.state_dict())
    x = torch.rand(1, 1, 8, 8)
    assert torch.equal(twin(x), net(x))


def test_typo_in_an_argument_raises_type_error():
    with pytest.raises(TypeError, match="chanels"):
        DnCNN(chanels=8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"depth": 1}, "depth must be an int >= 2"),
        ({"channels": 0}, "channels must be an int >= 1"),
        ({"sigma_input": "yes"}, "sigma_input must be a bool"),
        ({"spectral_norm": True}, "pass norm=None"),
        ({"norm": "group"}, "unknown norm"),
        ({"ndim": 4}, "ndim must be 2 or 3"),
    ],
)
def test_invalid_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DnCNN(**kwargs)


def test_wrong_input_shape_or_sigma_raises():
    net = DnCNN(channels=4, depth=3, sigma_input=True)
    with pytest.raises(ValueError, match="expects images of shape"):
        net(torch.rand(1, 2, 8, 8), 0.1)
    with pytest.raises(ValueError, match="non-negative"):
        net(torch.rand(1, 1, 8, 8), -0.1)
    with pytest.raises(ValueError, match="one value per image"):
        net(torch.rand(2, 1, 8, 8), torch.tensor([0.1, 0.2, 0.3]))
