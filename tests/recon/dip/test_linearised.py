"""recon.dip.linearised: J v and Jᵀ u by torch.func against finite differences and a dense J."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models import UNet
from recon.dip.linearised import Linearisation, check_eval_mode

F64 = torch.float64


@pytest.fixture(scope="module")
def lin():
    torch.manual_seed(0)
    net = UNet(channels=2, depth=1, norm=None, residual=False, activation="tanh").to(F64)
    z = torch.randn(1, 1, 8, 8, dtype=F64)
    names = [n for n, _ in net.named_parameters() if n.endswith("weight")]
    return Linearisation(net, z, names=names)


def test_shapes_and_image(lin):
    assert lin.out_shape == (1, 8, 8) and lin.n_pixels == 64
    assert lin.n_params == sum(
        p.numel() for n, p in lin.network.named_parameters() if "weight" in n
    )
    assert torch.equal(lin.image, lin.network(lin.z)[0].detach())
    assert torch.equal(lin(lin.theta), lin.image)
    assert torch.allclose(lin.linear(lin.theta), lin.image, atol=1e-14)
    assert torch.equal(lin.flatten(lin.unflatten(lin.theta)), lin.theta)


def test_jvp_matches_central_differences(lin):
    v = torch.randn(lin.n_params, dtype=F64, generator=torch.Generator().manual_seed(1))
    eps = 1e-5
    fd = (lin(lin.theta + eps * v) - lin(lin.theta - eps * v)) / (2 * eps)
    assert torch.allclose(lin.jvp(v), fd, rtol=1e-7, atol=1e-8)


def test_dot_test_and_dense_jacobian(lin):
    gen = torch.Generator().manual_seed(2)
    v = torch.randn(5, lin.n_params, dtype=F64, generator=gen)
    u = torch.randn(5, *lin.out_shape, dtype=F64, generator=gen)
    jv, jtu = lin.jvp(v), lin.vjp(u)
    assert jv.shape == (5, *lin.out_shape) and jtu.shape == (5, lin.n_params)
    lhs = (jv * u).sum(dim=(1, 2, 3))
    assert torch.allclose(lhs, (v * jtu).sum(dim=1), rtol=1e-12)
    jac = lin.dense(batch_size=7)
    assert jac.shape == (64, lin.n_params)
    assert torch.allclose(jv.reshape(5, -1), v @ jac.T, rtol=1e-12, atol=1e-13)
    assert torch.allclose(jtu, u.reshape(5, -1) @ jac, rtol=1e-12, atol=1e-13)
    # unbatched calls and vmap chunks give the same
    assert torch.allclose(lin.jvp(v[0]), jv[0], atol=1e-14)
    assert torch.allclose(lin.vjp(u[0]), jtu[0], atol=1e-14)
    chunked = Linearisation(lin.network, lin.z, names=lin.names, chunk_size=2)
    assert torch.allclose(chunked.jvp(v), jv, atol=1e-14)


def test_only_named_weights_move_and_params_override():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.Conv2d(2, 1, 1)).to(F64)
    z = torch.randn(1, 1, 5, 5, dtype=F64)
    params = {n: p.detach() + 0.1 for n, p in net.named_parameters()}
    lin = Linearisation(net, z, params=params, names=["2.weight"])
    assert lin.n_params == 2
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(params[name])
        expected = net(z)[0]
    assert torch.allclose(lin.image, expected)
    # f is linear in the last layer's weight: J v = f(θ* + v) - f(θ*) exactly
    v = torch.tensor([0.3, -0.2], dtype=F64)
    assert torch.allclose(lin.jvp(v), lin(lin.theta + v) - lin.image, atol=1e-14)


def test_bad_input_raises_clear_errors():
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.BatchNorm2d(1))
    z = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match=r"training mode; call network.eval\(\)"):
        Linearisation(net, z)
    net.eval()
    with pytest.raises(ValueError, match=r"shape \(1, C, \*spatial\)"):
        Linearisation(net, torch.zeros(2, 1, 4, 4))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        Linearisation(lambda x: x, z)
    with pytest.raises(TypeError, match="floating-point"):
        Linearisation(net, torch.zeros(1, 1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="does not have"):
        Linearisation(net, z, names=["0.wieght"])
    with pytest.raises(ValueError, match="repeat"):
        Linearisation(net, z, names=["0.weight", "0.weight"])
    with pytest.raises(ValueError, match=r"params\['0.weight'\] must have the shape"):
        Linearisation(net, z, params={"0.weight": torch.zeros(3)})
    with pytest.raises(ValueError, match="chunk_size"):
        Linearisation(net, z, chunk_size=0)
    lin = Linearisation(net, z, names=["0.weight"])
    with pytest.raises(ValueError, match=r"v must have shape \(9,\)"):
        lin.jvp(torch.zeros(3, 8))
    with pytest.raises(TypeError, match="dtype and device of theta"):
        lin.jvp(torch.zeros(9, dtype=F64))
    with pytest.raises(ValueError, match="u must have shape"):
        lin.vjp(torch.zeros(4, 4))


def test_check_eval_mode_accepts_eval_networks():
    check_eval_mode(nn.Sequential(nn.Conv2d(1, 1, 1), nn.Dropout()).eval())


def test_dip_unet_with_group_norm_passes_the_dot_test():
    from models.dip_unet import DIPUNet

    torch.manual_seed(1)
    net = DIPUNet(channels=4, scales=3, output="sigmoid").to(F64).eval()
    lin = Linearisation(net, torch.randn(1, 1, 12, 12, dtype=F64))
    gen = torch.Generator().manual_seed(3)
    v = torch.randn(2, lin.n_params, dtype=F64, generator=gen)
    u = torch.randn(2, *lin.out_shape, dtype=F64, generator=gen)
    assert torch.allclose((lin.jvp(v) * u).sum(), (v * lin.vjp(u)).sum(), rtol=1e-12)
