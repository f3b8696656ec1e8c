"""Tests of recon.pnp.unfolded: untrained, UnfoldedPnP is the hand-set algorithm; its schedule
(and optionally its denoiser) trains end to end; its model config builds."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from recon.pnp import UnfoldedPnP, pnp_admm, pnp_hqs, pnp_pgd

TINY_OP = ["operator.geometry.image_shape=[32,32]", "operator.geometry.n_detectors=46"]


# --------------------------------------------------------------------------- learned schedule
@pytest.mark.parametrize(
    ("algorithm", "reference"),
    [
        ("pgd", lambda d, y, op: pnp_pgd(y, op, d, sigma=0.04, n_iter=3, step=0.8)),
        ("admm", lambda d, y, op: pnp_admm(y, op, d, sigma=0.04, n_iter=3, rho=0.3, inner_iter=2)),
        (
            "hqs",
            lambda d, y, op: pnp_hqs(
                y, op, d, n_iter=3, sigma_start=0.1, sigma_end=0.01, lam=0.2, inner_iter=2
            ),
        ),
    ],
)
def test_untrained_unfolded_pnp_is_the_hand_set_algorithm(
    ray, algorithm, reference, discs, smoothing
):
    sigmas = {"pgd": (0.04, 0.04), "admm": (0.04, 0.04), "hqs": (0.1, 0.01)}[algorithm]
    step = {"pgd": {"step": 0.8}, "admm": {"rho": 0.3}, "hqs": {"lam": 0.2}}[algorithm]
    denoiser = smoothing()
    net = UnfoldedPnP(
        denoiser=denoiser,
        algorithm=algorithm,
        n_iter=3,
        sigma_start=sigmas[0],
        sigma_end=sigmas[1],
        inner_iter=2,
        **step,
    )
    y = ray(discs(2))
    with torch.no_grad():
        assert torch.allclose(net(y, ray), reference(denoiser, y, ray), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("train_denoiser", [False, True], ids=["frozen", "fine-tuned"])
def test_learned_schedule_trains_end_to_end(ray, train_denoiser, discs, smoothing):
    torch.manual_seed(0)
    x = discs(2, seed=1)
    y = ray(x)
    y = y + 0.05 * y.abs().mean() * torch.randn_like(y)
    # a poor hand-set schedule (data weight far too large, denoiser nearly off): room to learn
    net = UnfoldedPnP(
        denoiser=smoothing(),
        algorithm="hqs",
        n_iter=3,
        sigma_start=0.01,
        sigma_end=0.01,
        lam=5.0,
        inner_iter=2,
        train_denoiser=train_denoiser,
    )
    before = net.denoiser.conv.weight.detach().clone()
    net.train()
    assert net.denoiser.training == train_denoiser  # a frozen denoiser stays in eval mode
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=0.2)
    losses = []
    for step in range(10):
        loss = (net(y, ray) - x).square().mean()
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            assert net.log_sigma.grad.abs().min() > 0 and net.log_step.grad.abs().min() > 0
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]
    changed = not torch.equal(net.denoiser.conv.weight, before)
    assert changed == train_denoiser
    assert net.denoiser.conv.weight.requires_grad == train_denoiser


def test_unfolded_model_config(ray, compose_cfg, discs):
    cfg = compose_cfg("config", "model=pnp_unfolded", *TINY_OP, "model.n_iter=1")
    model = instantiate(cfg.model)
    assert isinstance(model, UnfoldedPnP) and model.algorithm == "hqs"
    with torch.no_grad():
        assert model(ray(discs(1)), ray).shape == (1, 1, 32, 32)
