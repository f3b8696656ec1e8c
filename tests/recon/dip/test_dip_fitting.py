"""Tests of recon.dip.fitting: the input, the loss, and the batched Adam loop (a batch gives what
its images give one by one; the lowest-loss iterate is returned; divergence raises)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from data_tools.noise import gaussian_noise
from data_tools.phantoms import random_ellipses
from models.dip_unet import DIPUNet
from operators import IdentityOperator, MatrixOperator, Parallel2D, RayTransform
from recon.classical import fbp
from recon.dip import DIPResult, dip_input, dip_loss, fit_dip, initial_weights, load_weights
from recon.solvers import DivergenceError


@pytest.fixture(autouse=True)
def _one_thread():
    """Small convolutions run fastest on one thread (two threads on a loaded machine wait for
    each other at every operation)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _problem(n: int = 2, size: int = 16, dtype=torch.float32):
    op = RayTransform(Parallel2D((size, size), n_angles=8, n_detectors=24), backend="matrix")
    x = random_ellipses((size, size), n=n, seed=7).to(dtype)
    y = gaussian_noise(op(x), relative=0.025, generator=torch.Generator().manual_seed(1))
    return op, x, y


def _net(dtype=torch.float32, **kwargs) -> DIPUNet:
    net = DIPUNet(**{"channels": 4, "scales": 3, "output": "sigmoid", **kwargs}).to(dtype)
    initial_weights(net, seed=0)
    return net


# --------------------------------------------------------------------------- loss and input
def test_loss_is_the_mean_squared_residual_plus_anisotropic_tv():
    op = IdentityOperator((3, 4))
    x = torch.zeros(2, 3, 4)
    x[0, :, 2:] = 1.0  # one vertical edge of height 1 across 3 rows: TV 3
    x[1, 1, 1] = 2.0  # one spike of height 2: four differences of 2 (Neumann boundary)
    y = torch.ones(2, 3, 4)
    data = (x - y).square().mean(dim=(1, 2))
    torch.testing.assert_close(dip_loss(x, y, op, gamma=0.0), data)
    torch.testing.assert_close(dip_loss(x, y, op, gamma=0.5), data + 0.5 * torch.tensor([3.0, 8.0]))


def test_fbp_input_is_recon_classical_fbp():
    op, _, y = _problem()
    z = dip_input(y, op, kind="fbp", fbp_filter="cosine", fbp_frequency_scaling=0.8)
    expected = fbp(y, op, filter="cosine", frequency_scaling=0.8)
    assert z.shape == (2, 1, 16, 16)
    torch.testing.assert_close(z[:, 0], expected)


def test_adjoint_input_is_the_best_fitting_multiple_of_the_backprojection():
    torch.manual_seed(0)
    op = MatrixOperator(torch.randn(30, 16, dtype=torch.float64), domain_shape=(4, 4))
    y = torch.randn(3, 30, dtype=torch.float64)
    # an operator without CT geometry: "fbp" falls back to the scaled adjoint
    z = dip_input(y, op, kind="fbp")
    torch.testing.assert_close(z, dip_input(y, op, kind="adjoint"))
    back = op.T(y)
    for i in range(3):  # the residual is orthogonal to A Aᵀy: s minimises ‖s A Aᵀy − y‖
        scale = (z[i, 0] / back[i]).mean()
        torch.testing.assert_close(z[i, 0], scale * back[i])
        residual = op(z[i, 0]) - y[i]
        assert abs(float(residual @ op(back[i]))) < 1e-9


def test_noise_input_is_seeded_and_the_same_for_every_image():
    op, _, y = _problem(n=3)
    z = dip_input(y, op, kind="noise", noise_std=0.5, seed=3)
    assert torch.equal(z[0], z[2]) and torch.equal(
        z, dip_input(y, op, kind="noise", noise_std=0.5, seed=3)
    )
    assert not torch.equal(z, dip_input(y, op, kind="noise", noise_std=0.5, seed=4))
    assert 0.4 < float(z.std()) < 0.6


def test_input_errors_name_the_argument():
    op, _, y = _problem()
    with pytest.raises(
        ValueError, match="unknown input 'zeros'; choose one of fbp, adjoint, noise"
    ):
        dip_input(y, op, kind="zeros")
    with pytest.raises(ValueError, match="reconstructs 2D images"):
        dip_input(torch.zeros(5), IdentityOperator((5,)), kind="adjoint")
    with pytest.raises(ValueError, match="noise_std"):
        dip_input(y, op, kind="noise", noise_std=-1.0)


# --------------------------------------------------------------------------- the loop
def test_loss_decreases_and_the_network_is_left_alone():
    op, _, y = _problem()
    net = _net().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    z = dip_input(y, op)
    with torch.no_grad():  # as recon-eval calls reconstructors
        result = fit_dip(net, z, y, op, gamma=1e-4, n_iter=40, lr=3e-3, progress=False)
    assert isinstance(result, DIPResult) and result.losses.shape == (2, 41)
    assert (result.losses[:, -1] < 0.6 * result.losses[:, 0]).all()  # measured: 0.19, 0.40
    assert not result.x.requires_grad and all(not v.requires_grad for v in result.params.values())
    assert net.training and all(p.grad is None for p in net.parameters())
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_the_lowest_loss_iterate_is_returned_with_its_weights():
    op, _, y = _problem()
    net = nn.Conv2d(1, 1, 3, padding=1)  # a one-filter "network": Adam with lr 0.1 oscillates
    initial_weights(net, seed=0)
    z = dip_input(y, op)
    seen = []
    result = fit_dip(net, z, y, op, gamma=1e-4, n_iter=20, lr=0.1, progress=False,
                     callback=lambda k, x: seen.append(x.clone()))  # fmt: skip
    assert len(seen) == 21
    best = result.losses.argmin(dim=1)
    assert torch.equal(result.iteration, best)
    assert (best < 20).any(), "measured: iterates 20 and 13 have the lowest loss"
    torch.testing.assert_close(result.loss, result.losses.min(dim=1).values)
    for i in range(2):
        assert torch.equal(result.x[i], seen[int(best[i])][i])
        with torch.no_grad():  # the kept weights reproduce the kept image
            again = load_weights(net, result.params, i)(z[i : i + 1])[0, 0]
        torch.testing.assert_close(again, result.x[i], rtol=1e-5, atol=1e-6)
    last = fit_dip(net, z, y, op, gamma=1e-4, n_iter=20, lr=0.1, keep="last", progress=False)
    assert (last.iteration == 20).all() and torch.equal(last.x, seen[-1])
    torch.testing.assert_close(last.loss, result.losses[:, -1])


@pytest.mark.parametrize("batch_mode", ["vmap", "loop"])
def test_a_batch_gives_what_its_images_give_one_by_one(batch_mode):
    # float64: 20 Adam steps do not amplify rounding beyond the tolerance; clip_norm small so that
    # the per-image clipping is active (one clipping of the whole batch would differ)
    op, _, y = _problem(n=2, dtype=torch.float64)
    net = _net(torch.float64)
    z = dip_input(y, op)
    kwargs = {"gamma": 3e-4, "n_iter": 20, "lr": 3e-3, "clip_norm": 1e-3, "progress": False}
    together = fit_dip(net, z, y, op, batch_mode=batch_mode, **kwargs)
    for i in range(2):
        alone = fit_dip(net, z[i : i + 1], y[i : i + 1], op, **kwargs)
        torch.testing.assert_close(together.losses[i], alone.losses[0], rtol=1e-9, atol=0)
        torch.testing.assert_close(together.x[i], alone.x[0], rtol=1e-9, atol=1e-12)
        assert together.iteration[i] == alone.iteration[0]


def test_a_float32_batch_matches_one_by_one_over_a_few_steps():
    op, _, y = _problem(n=2)
    net = _net()
    z = dip_input(y, op)
    kwargs = {"gamma": 3e-4, "n_iter": 10, "lr": 3e-3, "progress": False}
    together = fit_dip(net, z, y, op, **kwargs)
    alone = fit_dip(net, z[1:], y[1:], op, **kwargs)
    torch.testing.assert_close(together.x[1], alone.x[0], rtol=1e-4, atol=1e-5)


def test_a_nan_loss_raises_a_divergence_error():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, z):
            return z * self.w * float("nan")

    op, _, y = _problem()
    with pytest.raises(DivergenceError, match="iterate 0.*lower lr"):
        fit_dip(Broken(), dip_input(y, op), y, op, gamma=0.0, n_iter=3, lr=1e-3, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gamma": -1.0}, "gamma must be a finite non-negative number"),
        ({"n_iter": 0}, "n_iter must be >= 1"),
        ({"n_iter": -2}, "n_iter must be a non-negative int"),
        ({"lr": 0.0}, "lr must be a finite positive number"),
        ({"clip_norm": -1.0}, "clip_norm"),
        ({"keep": "first"}, "unknown keep 'first'"),
        ({"batch_mode": "threads"}, "unknown batch_mode 'threads'"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, match):
    op, _, y = _problem()
    args = {"gamma": 1e-4, "n_iter": 2, "lr": 1e-3, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=match):
        fit_dip(_net(), dip_input(y, op), y, op, **args)


def test_misshapen_inputs_and_networks_raise():
    op, _, y = _problem()
    z = dip_input(y, op)
    with pytest.raises(ValueError, match=r"net_input of shape \(N, 1, \*op.domain_shape\)"):
        fit_dip(_net(), z[:1], y, op, gamma=0.0, n_iter=1, lr=1e-3, progress=False)
    with pytest.raises(ValueError, match="network must be a torch.nn.Module"):
        fit_dip(lambda z: z, z, y, op, gamma=0.0, n_iter=1, lr=1e-3, progress=False)
    with pytest.raises(ValueError, match="network must map"):
        fit_dip(nn.Conv2d(1, 2, 1), z, y, op, gamma=0.0, n_iter=1, lr=1e-3, progress=False)
