"""Tests of recon.dip.DeepImagePrior: the reconstructor contract, seeding, the warm start's first
iterate, errors, and DIP + TV against FBP on a small noisy ellipse image."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from data_tools.metrics import psnr
from data_tools.noise import gaussian_noise
from data_tools.phantoms import random_ellipses
from models.dip_unet import DIPUNet
from operators import MatrixOperator, Parallel2D, RayTransform
from recon.base import Reconstructor
from recon.classical import fbp
from recon.dip import DeepImagePrior, default_dip_network, dip_loss, initial_weights


@pytest.fixture(autouse=True)
def _one_thread():
    """Small convolutions run fastest on one thread; two threads on a loaded machine wait for
    each other at every operation (measured on a loaded
    2-core machine: 200 steps in 2 s on one thread, 38 s on two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _op(size: int = 16, n_angles: int = 8, n_detectors: int = 24) -> RayTransform:
    return RayTransform(Parallel2D((size, size), n_angles=n_angles, n_detectors=n_detectors),
                        backend="matrix")  # fmt: skip


def _tiny(**kwargs) -> DIPUNet:
    return DIPUNet(**{"channels": 4, "scales": 2, "output": "sigmoid", **kwargs})


def test_contract_shape_dtype_and_no_gradient_leaks():
    op = _op()
    y = op(random_ellipses((16, 16), n=3, seed=0)).reshape(3, 1, *op.range_shape)
    dip = DeepImagePrior(network=_tiny(), n_iter=3, progress=False)
    assert isinstance(dip, Reconstructor)
    before = {k: v.clone() for k, v in dip.state_dict().items()}
    x = dip(y, op)  # with gradients enabled ...
    assert x.shape == (3, 1, 16, 16) and x.dtype == torch.float32 and not x.requires_grad
    with torch.no_grad():  # ... and without, as recon-eval calls it
        again = dip(y, op)
    assert torch.equal(x, again)  # repeatable: the reconstructor's network is never changed
    assert all(p.grad is None for p in dip.parameters())
    for k, v in dip.state_dict().items():
        assert torch.equal(v, before[k]), k
    double = DeepImagePrior(network=_tiny().double(), n_iter=2, progress=False)
    assert double(y.double(), op).dtype == torch.float64
    with pytest.raises(ValueError, match="this network's weights are torch.float64"):
        double(y, op)


def test_the_cold_start_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(1)
    a = DeepImagePrior(network=_tiny(), seed=3)
    state = torch.get_rng_state()
    torch.manual_seed(2)
    b = DeepImagePrior(network=_tiny(), seed=3)
    c = DeepImagePrior(network=_tiny(), seed=4)
    for (name, p), q in zip(a.network.named_parameters(), b.network.parameters(), strict=True):
        assert torch.equal(p, q), name
    assert not torch.equal(a.network.out_conv.weight, c.network.out_conv.weight)
    torch.manual_seed(1)
    DeepImagePrior(network=_tiny(), seed=3)
    assert torch.equal(torch.get_rng_state(), state)


def test_the_warm_start_begins_at_the_given_networks_prediction():
    op = _op()
    y = gaussian_noise(op(random_ellipses((16, 16), n=2, seed=1)), relative=0.025,
                       generator=torch.Generator().manual_seed(0))  # fmt: skip
    pretrained = _tiny()
    initial_weights(pretrained, seed=11)  # stands in for trained weights
    kept = {k: v.clone() for k, v in pretrained.state_dict().items()}
    dip = DeepImagePrior(network=pretrained, init="network", n_iter=3, lr=1e-3,
                         fbp_filter="hann", fbp_frequency_scaling=0.7, progress=False)  # fmt: skip
    for k, v in dip.network.state_dict().items():
        assert torch.equal(v, kept[k]), k  # init="network" keeps the weights
    seen = {}
    result = dip.solve(y, op, callback=lambda k, x: seen.setdefault(k, x.clone()))
    with torch.no_grad():
        expected = pretrained(fbp(y, op, filter="hann", frequency_scaling=0.7).unsqueeze(1))[:, 0]
    torch.testing.assert_close(seen[0], expected)
    torch.testing.assert_close(result.losses[:, 0], dip_loss(expected, y, op, gamma=dip.gamma))
    assert sorted(seen) == [0, 1, 2, 3]


def test_trained_network_reproduces_the_reconstruction():
    op = _op()
    y = op(random_ellipses((16, 16), n=2, seed=2))
    dip = DeepImagePrior(network=_tiny(), n_iter=5, lr=3e-3, progress=False)
    result = dip.solve(y, op)
    net = dip.trained_network(result, 1)
    assert not net.training and net is not dip.network
    with torch.no_grad():
        torch.testing.assert_close(
            net(result.net_input[1:])[0, 0], result.x[1], rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("kind", ["noise", "adjoint", "fbp"])
def test_every_input_kind_runs_on_any_operator(kind):
    torch.manual_seed(0)
    op = MatrixOperator(torch.randn(40, 64), domain_shape=(8, 8))  # no CT geometry
    y = op(torch.rand(2, 8, 8))
    x = DeepImagePrior(network=_tiny(), input=kind, n_iter=2, progress=False)(y, op)
    assert x.shape == (2, 8, 8) and torch.isfinite(x).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gamma": -1e-4}, "gamma must be a finite non-negative number"),
        ({"n_iter": 0}, "n_iter must be >= 1"),
        ({"lr": -1.0}, "lr must be a finite positive number"),
        ({"input": "zeros"}, "unknown input 'zeros'; choose one of fbp, adjoint, noise"),
        ({"init": "pretrained"}, "unknown init 'pretrained'; choose one of seed, network"),
        ({"keep": "median"}, "unknown keep 'median'"),
        ({"batch_mode": "threads"}, "unknown batch_mode"),
        ({"network": "unet"}, "network must be a torch.nn.Module"),
        ({"fbp_filter": "gauss"}, "unknown filter 'gauss'"),
        ({"progress": "yes"}, "progress must be a bool"),
        ({"seed": -1}, "seed must be an int >= 0"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DeepImagePrior(**{"network": _tiny(), **kwargs})


def test_default_network_is_the_small_dip_unet():
    net = DeepImagePrior().network
    assert isinstance(net, DIPUNet) and net.channels == default_dip_network().channels
    assert net.output == "linear" and net.norm == "group"


def test_misshapen_measurements_raise():
    op = _op()
    with pytest.raises(ValueError, match="range_shape"):
        DeepImagePrior(network=_tiny(), progress=False)(torch.zeros(2, 5, 5), op)
    with pytest.raises(ValueError, match="network must map"):
        DeepImagePrior(network=nn.Conv2d(1, 3, 1), n_iter=1, progress=False)(
            op(torch.zeros(16, 16)), op
        )


def test_dip_with_tv_beats_fbp_on_a_noisy_ellipse_image():
    """32², 20 angles, 2.5 % noise, a small U-Net, 200 Adam steps."""
    op = _op(32, 20, 46)
    truth = random_ellipses((32, 32), n=1, seed=0)
    y = gaussian_noise(op(truth), relative=0.025, generator=torch.Generator().manual_seed(0))
    best_fbp = max(
        float(psnr(fbp(y, op, filter="hann", frequency_scaling=s), truth)) for s in (0.5, 0.7, 1.0)
    )
    net = DIPUNet(channels=8, scales=3, output="sigmoid")
    dip = DeepImagePrior(network=net, gamma=3e-4, n_iter=200, lr=3e-3, fbp_frequency_scaling=1.0,
                         progress=False)  # fmt: skip
    value = float(psnr(dip(y, op), truth))
    assert value > best_fbp + 1.0, (value, best_fbp)  # measured: 23.90 dB against 22.40 dB
