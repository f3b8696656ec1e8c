"""Tests of recon.pnp: the reconstructor contract on any batch, reductions to known iterations
(Landweber, ADMM/HQS/RED with exact proximal maps of quadratics, Tikhonov steps of the DPIR
schedule), provable convergence with a gradient-step denoiser, the learned schedule, denoiser
training, divergence and argument errors, and every PnP config file through recon-train/eval."""

from __future__ import annotations

import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from models.dncnn import DnCNN
from models.drunet import DRUNet
from models.gsdenoiser import GSDenoiser
from operators import MatrixOperator, Parallel2D, RayTransform
from recon.base import Reconstructor
from recon.classical import landweber
from recon.pnp import (
    RED,
    DivergenceError,
    PnPADMM,
    PnPHQS,
    PnPPGD,
    UnfoldedPnP,
    denoising_objective,
    denoising_predict,
    dpir_schedule,
    pnp_admm,
    pnp_hqs,
    pnp_pgd,
    red,
)
from recon.training import Trainer

# --------------------------------------------------------------------------- fixtures, helpers


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread is fastest on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ray():
    """A small parallel-beam ray transform (32², 8 angles)."""
    return RayTransform(Parallel2D((32, 32), n_angles=8), backend="matrix")


@pytest.fixture(scope="module")
def toy():
    """A well-conditioned random operator from 6×6 images to 80 values, in float64."""
    gen = torch.Generator().manual_seed(0)
    return MatrixOperator(
        torch.randn(80, 36, generator=gen, dtype=torch.float64), domain_shape=(6, 6)
    )


def discs(n: int, size: int = 32, *, seed: int = 0) -> torch.Tensor:
    """``n`` images ``(n, 1, size, size)``, each the sum of three random discs."""
    gen = torch.Generator().manual_seed(seed)
    c = torch.linspace(-1, 1, size)
    rows, cols = torch.meshgrid(c, c, indexing="ij")
    images = torch.zeros(n, 1, size, size)
    for i in range(n):
        for _ in range(3):
            cy, cx = (torch.rand(2, generator=gen) - 0.5).tolist()
            radius = 0.15 + 0.3 * torch.rand(1, generator=gen).item()
            value = 0.3 + 0.7 * torch.rand(1, generator=gen).item()
            images[i, 0] += value * ((rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2)
    return images


class Smoothing(nn.Module):
    """A noise-level-aware toy denoiser: ``x + w(σ)(Kx - x)``, ``w = σ/(σ + 0.05)``, K a
    trainable 3×3 convolution initialised to the box blur."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1, bias=False, padding_mode="replicate")
        with torch.no_grad():
            self.conv.weight.fill_(1 / 9)

    def forward(self, x, sigma):
        s = torch.as_tensor(sigma).to(x).reshape(-1, 1, 1, 1)
        return x + s / (s + 0.05) * (self.conv(x) - x)


class Record(nn.Module):
    """Wraps a function of (x, sigma); records every input and noise level."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn, self.inputs, self.sigmas = fn, [], []

    def forward(self, x, sigma):
        self.inputs.append(x.detach().clone())
        self.sigmas.append(float(sigma))
        return self.fn(x, sigma)


def _lstsq(op: MatrixOperator, y: torch.Tensor, mu: float) -> torch.Tensor:
    """(AᵀA + μI)⁻¹Aᵀy, reshaped to the domain."""
    M = op.matrix
    x = torch.linalg.solve(M.T @ M + mu * torch.eye(M.shape[1], dtype=M.dtype), M.T @ y)
    return x.reshape(op.domain_shape)


# --------------------------------------------------------------------------- the contract
RECONSTRUCTORS = [
    pytest.param(lambda d: PnPPGD(denoiser=d, sigma=0.05, n_iter=3), id="pgd"),
    pytest.param(lambda d: PnPPGD(denoiser=d, sigma=0.05, n_iter=2, init="fbp"), id="pgd-fbp"),
    pytest.param(lambda d: PnPADMM(denoiser=d, sigma=0.05, n_iter=2, inner_iter=2), id="admm"),
    pytest.param(
        lambda d: PnPADMM(denoiser=d, sigma=0.05, n_iter=2, inner="gradient"), id="admm-gradient"
    ),
    pytest.param(lambda d: PnPHQS(denoiser=d, n_iter=3, inner_iter=2), id="hqs"),
    pytest.param(lambda d: RED(denoiser=d, sigma=0.05, n_iter=3), id="red"),
    pytest.param(
        lambda d: RED(denoiser=d, sigma=0.05, n_iter=2, mode="fixed_point"), id="red-fixed-point"
    ),
    pytest.param(lambda d: UnfoldedPnP(denoiser=d, algorithm="pgd", n_iter=2), id="unfolded-pgd"),
    pytest.param(
        lambda d: UnfoldedPnP(denoiser=d, algorithm="admm", n_iter=2, inner_iter=2),
        id="unfolded-admm",
    ),
    pytest.param(
        lambda d: UnfoldedPnP(denoiser=d, algorithm="hqs", n_iter=2, inner_iter=2),
        id="unfolded-hqs",
    ),
]


@pytest.mark.parametrize("make", RECONSTRUCTORS)
@pytest.mark.parametrize("batch", [(), (3,), (2, 1)], ids=str)
def test_reconstructors_map_any_batch(ray, make, batch):
    recon = make(Smoothing())
    assert isinstance(recon, Reconstructor)
    x = discs(math.prod(batch) or 1).reshape(*batch, 32, 32)
    out = recon(ray(x), ray)
    assert out.shape == (*batch, 32, 32) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.abs().max() > 0


def test_a_real_denoiser_works_in_every_algorithm_and_float64(ray):
    x = discs(2).double()
    for denoiser in (
        DnCNN(channels=4, depth=3).double(),
        DRUNet(channels=4, depth=1, n_blocks=1).double(),
        GSDenoiser(channels=4, depth=1, n_blocks=1).double(),
    ):
        for recon in (
            PnPPGD(denoiser=denoiser, sigma=0.05, n_iter=1),
            PnPHQS(denoiser=denoiser, n_iter=1, inner_iter=1),
        ):
            with torch.no_grad():
                out = recon(ray(x), ray)
            assert out.shape == x.shape and out.dtype == torch.float64


# --------------------------------------------------------------------------- known iterations
def test_pgd_with_the_identity_is_landweber(toy):
    y = torch.randn(2, 80, dtype=torch.float64)
    ours, theirs = [], []
    x = pnp_pgd(
        y,
        toy,
        lambda v, s: v,
        sigma=0.0,
        n_iter=7,
        step=1.5,
        callback=lambda k, v: ours.append(v.clone()),
    )
    ref = landweber(
        y, toy, n_iter=7, step=1.5 / toy.norm() ** 2, callback=lambda k, v: theirs.append(v.clone())
    )
    assert torch.allclose(x, ref, rtol=1e-12, atol=1e-12)
    assert len(ours) == 7 and all(
        torch.allclose(a, b, atol=1e-12) for a, b in zip(ours, theirs, strict=True)
    )


@pytest.mark.parametrize(("inner", "inner_iter"), [("cg", 12), ("cg", 3), ("gradient", 5)])
def test_admm_with_the_prox_of_a_quadratic_converges_to_the_analytic_solution(
    toy, inner, inner_iter
):
    """D(v) = ρv/(ρ + μ) is prox_{(μ/2)|·|²/ρ}: ADMM on |Ax - y|²/2 + μ|x|²/2."""
    y = torch.randn(3, 80, dtype=torch.float64)
    mu, rho = 3.0, 0.5 * toy.norm() ** 2
    exact = torch.stack([_lstsq(toy, yi, mu) for yi in y])
    x = pnp_admm(
        y,
        toy,
        lambda v, s: rho * v / (rho + mu),
        sigma=0.1,
        n_iter=200,
        rho=0.5,
        inner=inner,
        inner_iter=inner_iter,
    )
    assert torch.allclose(x, exact, atol=1e-9)
    early = pnp_admm(
        y,
        toy,
        lambda v, s: rho * v / (rho + mu),
        sigma=0.1,
        n_iter=2,
        rho=0.5,
        inner=inner,
        inner_iter=inner_iter,
    )
    assert not torch.allclose(early, exact, atol=1e-3)  # it does iterate


def test_hqs_follows_the_dpir_schedule_with_exact_tikhonov_steps(toy):
    y = torch.randn(80, dtype=torch.float64)
    zero = Record(lambda v, s: torch.zeros_like(v))
    lam, n = 0.3, 5
    pnp_hqs(y, toy, zero, n_iter=n, sigma_start=0.2, sigma_end=0.01, lam=lam, inner_iter=36)
    sigmas = dpir_schedule(0.2, 0.01, n)
    assert zero.sigmas == pytest.approx(sigmas, rel=1e-12)
    assert sigmas[0] == 0.2 and sigmas[-1] == pytest.approx(0.01)
    for x, sigma in zip(zero.inputs, sigmas, strict=True):
        alpha = lam * toy.norm() ** 2 * (0.01 / sigma) ** 2  # z = 0: x is Tikhonov with α_k
        assert torch.allclose(x.reshape(6, 6), _lstsq(toy, y, alpha), atol=1e-10)


def test_hqs_with_a_fixed_level_and_a_shrinking_denoiser_converges_to_the_fixed_point(toy):
    y = torch.randn(80, dtype=torch.float64)
    c, lam = 0.5, 0.2
    z = pnp_hqs(
        y,
        toy,
        lambda v, s: c * v,
        n_iter=40,
        sigma_start=0.05,
        sigma_end=0.05,
        lam=lam,
        inner_iter=20,
    )
    alpha = lam * toy.norm() ** 2
    assert torch.allclose(z, c * _lstsq(toy, y, alpha * (1 - c)), atol=1e-10)


@pytest.mark.parametrize("mode", ["gradient", "fixed_point"])
def test_red_with_a_linear_denoiser_converges_to_the_regularised_solution(toy, mode):
    y = torch.randn(2, 80, dtype=torch.float64)
    c, lam = 0.6, 0.05
    x = red(
        y,
        toy,
        lambda v, s: c * v,
        sigma=0.1,
        n_iter=300 if mode == "gradient" else 50,
        lam=lam,
        mode=mode,
        step=1.9,
        inner_iter=5,
    )
    exact = torch.stack([_lstsq(toy, yi, lam * toy.norm() ** 2 * (1 - c)) for yi in y])
    assert torch.allclose(x, exact, atol=1e-8)


# --------------------------------------------------------------------------- convergence
class TanhResidual(nn.Module):
    """N(x) = x - a·tanh(Wx): g = a²|tanh(Wx)|²/2 has ∇²g ≤ a²‖W‖² (here ≤ 0.25·1.0)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(1, 1, 3, padding=1, bias=True).double()
        with torch.no_grad():
            self.conv.weight.mul_(1.0 / float(self.conv.weight.abs().sum()))  # ‖W‖ ≤ Σ|w| = 1
            self.conv.bias.fill_(0.3)

    def forward(self, x, sigma):
        return x - 0.5 * torch.tanh(self.conv(x) / sigma * 0.1)


def test_gradient_step_pgd_decreases_its_objective_and_converges(toy):
    gs = GSDenoiser(network=TanhResidual())
    y = toy(torch.rand(2, 6, 6, dtype=torch.float64)) + 0.1 * torch.randn(
        2, 80, dtype=torch.float64
    )
    step = 0.9
    x0 = torch.zeros(2, 6, 6, dtype=torch.float64)
    iterates = [x0]
    x, objective = pnp_pgd(
        y,
        toy,
        gs,
        sigma=0.1,
        n_iter=300,
        step=step,
        x0=x0,
        return_objective=True,
        callback=lambda k, v: iterates.append(v),
    )
    assert objective.shape == (300, 2)
    # the premise: ∇g is L-Lipschitz with L < 1 (here the Hessian norm at the solution)
    assert gs.hessian_norm(x.reshape(2, 1, 6, 6), 0.1, n_iter=50).max() < 0.3
    steps = torch.stack(
        [
            (b - a).square().sum(dim=(-2, -1))
            for a, b in zip(iterates[1:], iterates[2:], strict=False)
        ]
    )
    decrease = objective[:-1] - objective[1:]
    # sufficient decrease: F(x_k) - F(x_k+1) >= (1 - τ‖A‖²)/2 · |x_k+1 - x_k|²
    assert (decrease >= 0.5 * (1 - step) * steps - 1e-12).all()
    assert (decrease > 0).sum() > 10  # not a trivial constant sequence
    residual = steps.sqrt()
    assert (residual[-1] < 1e-4 * residual[0]).all()  # the fixed-point residual goes to zero
    assert (steps.sum(0) <= 2 * (objective[0] - objective[-1]) / (1 - step) + 1e-12).all()


def test_pgd_objective_needs_a_gradient_step_denoiser(toy):
    with pytest.raises(ValueError, match="potential"):
        pnp_pgd(
            torch.randn(80, dtype=torch.float64),
            toy,
            lambda v, s: v,
            sigma=0.1,
            n_iter=2,
            return_objective=True,
        )


def test_tol_stops_early_and_the_callback_sees_every_iteration(toy):
    y = torch.randn(80, dtype=torch.float64)
    seen = []
    x = pnp_pgd(
        y,
        toy,
        lambda v, s: 0.9 * v,
        sigma=0.1,
        n_iter=1000,
        tol=1e-6,
        callback=lambda k, v: seen.append((k, v.clone())),
    )
    assert 1 < len(seen) < 1000 and [k for k, _ in seen] == list(range(len(seen)))
    last, before, earlier = seen[-1][1], seen[-2][1], seen[-3][1]
    assert (last - before).norm() < 1e-6 * before.norm()
    assert (before - earlier).norm() >= 1e-6 * earlier.norm()  # it did not stop too late
    assert torch.equal(x, last)


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
def test_untrained_unfolded_pnp_is_the_hand_set_algorithm(ray, algorithm, reference):
    sigmas = {"pgd": (0.04, 0.04), "admm": (0.04, 0.04), "hqs": (0.1, 0.01)}[algorithm]
    step = {"pgd": {"step": 0.8}, "admm": {"rho": 0.3}, "hqs": {"lam": 0.2}}[algorithm]
    denoiser = Smoothing()
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
def test_learned_schedule_trains_end_to_end(ray, train_denoiser):
    torch.manual_seed(0)
    x = discs(2, seed=1)
    y = ray(x)
    y = y + 0.05 * y.abs().mean() * torch.randn_like(y)
    # a poor hand-set schedule (data weight far too large, denoiser nearly off): room to learn
    net = UnfoldedPnP(
        denoiser=Smoothing(),
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


# --------------------------------------------------------------------------- denoiser training
DENOISERS = [
    pytest.param(lambda: DnCNN(channels=16, depth=5, norm=None), id="dncnn"),
    pytest.param(lambda: DRUNet(channels=8, depth=2, n_blocks=1, residual=True), id="drunet"),
    pytest.param(lambda: GSDenoiser(channels=8, depth=2, n_blocks=1), id="gsdenoiser"),
]


@pytest.mark.parametrize("make", DENOISERS)
def test_denoiser_training_beats_the_noisy_input(tmp_path, make):
    torch.manual_seed(0)
    train = torch.utils.data.TensorDataset(discs(64, size=24, seed=2))
    val = torch.utils.data.TensorDataset(discs(4, size=24, seed=3))
    trainer = Trainer(
        make(),
        train_data=train,
        val_data=val,
        out_dir=tmp_path,
        max_steps=50,
        batch_size=8,
        objective=denoising_objective(sigma_min=0.05, sigma_max=0.15),
        predict=denoising_predict(sigma=0.1),
        optimizer=lambda p: torch.optim.Adam(p, lr=2e-3),
        scheduler="constant",
        val_every=50,
        progress=False,
    )
    result = trainer.fit()
    model = trainer.module.eval()
    clean = discs(8, size=24, seed=4)
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        denoised = model(noisy, 0.1)
    mse_noisy = (noisy - clean).square().mean()
    assert (denoised - clean).square().mean() < 0.8 * mse_noisy
    assert math.isfinite(result["best_psnr"])


def test_denoising_objective_and_predictor():
    torch.manual_seed(0)
    x = torch.rand(4, 1, 16, 16)
    identity = lambda v, s: v  # noqa: E731
    loss = denoising_objective(sigma_min=0.1, sigma_max=0.1)(identity, (x, None))
    assert loss.item() == pytest.approx(0.01, rel=0.1)  # the noise variance
    patches = denoising_objective(patch_size=8)
    seen = []
    patches(lambda v, s: seen.append(v.shape) or v, (x,))
    assert seen == [(4, 1, 8, 8)]
    a, truth = denoising_predict(sigma=0.1, seed=3)(identity, (x,))
    b, _ = denoising_predict(sigma=0.1, seed=3)(identity, (x,))
    assert torch.equal(a, b) and torch.equal(truth, x)  # fixed, seeded validation noise
    assert (a - x).std().item() == pytest.approx(0.1, rel=0.1)
    with pytest.raises(ValueError, match="sigma_max"):
        denoising_objective(sigma_min=0.2, sigma_max=0.1)
    with pytest.raises(ValueError, match="larger than the images"):
        denoising_objective(patch_size=32)(identity, (x,))
    with pytest.raises(ValueError, match="gradient-step denoiser"):
        denoising_objective(jacobian_weight=1.0)(DnCNN(channels=2, depth=2), (x,))


def test_jacobian_penalty_pushes_the_lipschitz_constant_down():
    torch.manual_seed(0)
    gs = GSDenoiser(channels=4, depth=1, n_blocks=1)
    x = discs(4, size=8)
    plain = denoising_objective(sigma_min=0.1, sigma_max=0.1)
    penalised = denoising_objective(
        sigma_min=0.1, sigma_max=0.1, jacobian_weight=10.0, jacobian_target=0.1, jacobian_iter=3
    )
    torch.manual_seed(1)
    a = plain(gs, (x,))
    torch.manual_seed(1)
    b = penalised(gs, (x,))
    assert b > a  # the untrained network's ∇²g is larger than 0.1
    b.backward()
    assert all(p.grad is not None for p in gs.parameters())


# --------------------------------------------------------------------------- errors
def test_nan_measurements_raise(ray):
    y = ray(discs(1))
    y[0, 0, 0, 0] = math.nan
    for make in (p.values[0] for p in RECONSTRUCTORS):
        with pytest.raises(ValueError, match="NaN or infinite"):
            make(Smoothing())(y, ray)


def test_a_nan_denoiser_raises_a_divergence_error(ray):
    y = ray(discs(1))
    for algorithm in (pnp_pgd, pnp_admm, red):
        with pytest.raises(DivergenceError, match="denoiser returned NaN .* iteration 1"):
            algorithm(y, ray, lambda v, s: v * math.nan, sigma=0.1, n_iter=3)
    with pytest.raises(DivergenceError, match="denoiser returned NaN"):
        pnp_hqs(y, ray, lambda v, s: v * math.nan, n_iter=3)


def test_divergence_is_detected_with_a_clear_error(toy):
    y = torch.randn(80, dtype=torch.float64)
    with pytest.raises(DivergenceError, match=r"PnP-PGD diverged: at iteration \d+, \|\|x\|\|"):
        pnp_pgd(y, toy, lambda v, s: v, sigma=0.1, n_iter=200, step=2.5)  # |1 - 2.5| > 1
    with pytest.raises(DivergenceError, match="RED diverged"):
        red(y, toy, lambda v, s: v, sigma=0.1, n_iter=200, lam=0.01, step=2.5)
    x = pnp_pgd(y, toy, lambda v, s: v, sigma=0.1, n_iter=30, step=2.5, divergence_factor=None)
    assert x.norm() > 1e3 * y.norm() / toy.norm()  # unchecked, it does blow up
    with pytest.raises(DivergenceError, match="RED diverged: iterate 2 contains NaN or infinite"):
        red(y, toy, lambda v, s: v, sigma=0.1, n_iter=5, step=1e308, divergence_factor=None)


def test_a_denoiser_that_changes_the_shape_raises(toy):
    with pytest.raises(ValueError, match="must keep the shape"):
        pnp_pgd(
            torch.randn(80, dtype=torch.float64), toy, lambda v, s: v[..., :3], sigma=0.1, n_iter=1
        )


@pytest.mark.parametrize(
    "make",
    [
        lambda: PnPPGD(denoiser=Smoothing(), sigma=0.1, n_iters=3),
        lambda: PnPADMM(denoiser=Smoothing(), sigma=0.1, row=1.0),
        lambda: PnPHQS(denoiser=Smoothing(), sigma=0.1),
        lambda: RED(denoiser=Smoothing(), sigma=0.1, lambda_=0.1),
        lambda: UnfoldedPnP(denoiser=Smoothing(), n_iters=3),
    ],
    ids=["pgd", "admm", "hqs", "red", "unfolded"],
)
def test_typos_raise_type_error(make):
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        make()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PnPPGD(denoiser=Smoothing(), sigma=-0.1), "sigma must be a finite non-negative"),
        (lambda: PnPPGD(denoiser=Smoothing(), sigma=0.1, step=0), "step must be a finite positive"),
        (lambda: PnPPGD(denoiser=lambda x, s: x, sigma=0.1), "denoiser must be a torch.nn.Module"),
        (lambda: PnPPGD(denoiser=Smoothing(), sigma=0.1, init="fdk"), "unknown init 'fdk'"),
        (lambda: PnPADMM(denoiser=Smoothing(), sigma=0.1, inner="lsqr"), "unknown inner solver"),
        (lambda: PnPADMM(denoiser=Smoothing(), sigma=0.1, inner_iter=0), "inner_iter must be"),
        (
            lambda: PnPHQS(denoiser=Smoothing(), sigma_end=0.0),
            "sigma_end must be a finite positive",
        ),
        (lambda: RED(denoiser=Smoothing(), sigma=0.1, mode="fixed"), "unknown RED mode"),
        (lambda: PnPPGD(denoiser=Smoothing(), sigma=0.1, tol=math.nan), "tol must be a finite"),
        (
            lambda: UnfoldedPnP(denoiser=Smoothing(), algorithm="pgd", lam=0.2),
            "lam do\\(es\\) not apply to algorithm='pgd'",
        ),
        (lambda: UnfoldedPnP(denoiser=Smoothing(), algorithm="red"), "unknown algorithm 'red'"),
        (lambda: UnfoldedPnP(denoiser=Smoothing(), n_iter=0), "n_iter must be an int >= 1"),
    ],
)
def test_invalid_arguments_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_operators_without_a_norm_are_refused(toy):
    class NoNorm:
        domain_shape, range_shape = toy.domain_shape, toy.range_shape
        T = toy.T

        def __call__(self, x):
            return toy(x)

    with pytest.raises(ValueError, match="no norm\\(\\) method"):
        pnp_pgd(torch.randn(80, dtype=torch.float64), NoNorm(), lambda v, s: v, sigma=0.1, n_iter=1)


# --------------------------------------------------------------------------- configs, CLI
TINY_OP = ["operator.geometry.image_shape=[32,32]", "operator.geometry.n_detectors=46"]
TINY_DATA = [
    "data.splits.train.size=8",
    "data.splits.validation.size=2",
    "data.splits.test.size=2",
]
TINY_TRAINER = [
    "trainer.batch_size=2",
    "trainer.warmup_steps=0",
    "trainer.progress=false",
]


@pytest.fixture
def compose_cfg():
    from recon.train import CONF_DIR

    def _compose(name: str, *overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(name, overrides=list(overrides))

    yield _compose
    GlobalHydra.instance().clear()


@pytest.mark.parametrize("name", ["dncnn", "drunet", "drunet_small", "gsdenoiser"])
def test_denoiser_model_configs_instantiate_and_denoise(compose_cfg, name):
    model = instantiate(compose_cfg("config", f"model={name}").model)
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert model(x, 0.1).shape == x.shape
    with pytest.raises(Exception, match="chanels"):
        instantiate(compose_cfg("config", f"model={name}", "+model.chanels=4").model)


@pytest.mark.parametrize("name", ["pnp_pgd", "pnp_admm", "pnp_hqs", "red"])
def test_pnp_recon_configs_reconstruct(ray, compose_cfg, name):
    from recon.train import CONF_DIR

    cfg = OmegaConf.load(CONF_DIR / "recon" / f"{name}.yaml")
    cfg.n_iter = 1
    recon = instantiate(cfg)
    with torch.no_grad():
        assert recon(ray(discs(2)), ray).shape == (2, 1, 32, 32)


def test_objective_and_unfolded_model_configs(ray, compose_cfg):
    from recon.train import CONF_DIR

    objective, predict = instantiate(
        OmegaConf.load(CONF_DIR / "objective" / "denoising.yaml"), op=ray
    )
    x = torch.rand(2, 1, 16, 16)
    assert objective(DnCNN(channels=2, depth=2), (x, None)).ndim == 0
    assert predict(DnCNN(channels=2, depth=2), (x, None))[1] is x
    cfg = compose_cfg("config", "model=pnp_unfolded", *TINY_OP, "model.n_iter=1")
    model = instantiate(cfg.model)
    assert isinstance(model, UnfoldedPnP) and model.algorithm == "hqs"
    with torch.no_grad():
        assert model(ray(discs(1)), ray).shape == (1, 1, 32, 32)


def test_pnp_protocol_end_to_end(compose_cfg, tmp_path):
    """recon-train the denoiser, recon-eval the PnP algorithms with it, recon-train the learned
    schedule on top of it, recon-eval that: every PnP experiment file, tiny."""
    from recon.evaluate import evaluate
    from recon.train import load_run, train

    small_net = ["model.channels=4", "model.depth=1", "model.n_blocks=1"]
    cfg = compose_cfg(
        "config",
        "experiment=ellipses_pnp",
        *TINY_OP,
        *TINY_DATA,
        *TINY_TRAINER,
        *small_net,
        "objective.patch_size=16",
        "trainer.max_steps=3",
        "trainer.val_every=3",
        "trainer.ckpt_every=3",
    )
    assert cfg.objective._target_ == "recon.pnp.denoising_task"
    run = tmp_path / "denoiser"
    result = train(cfg, output_dir=run)
    assert result["step"] == 3 and math.isfinite(result["best_psnr"])
    (run / ".hydra").mkdir()
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")  # as recon-train's hydra.main does
    denoiser = load_run(run)
    assert isinstance(denoiser, DRUNet) and denoiser.channels == 4

    n_iter = [f"methods.{m}.n_iter=2" for m in ("pnp_pgd", "pnp_admm", "pnp_hqs", "red")]
    ev = compose_cfg(
        "eval",
        "experiment=ellipses_pnp_eval",
        *TINY_OP,
        "data.splits.test.size=2",
        "data.splits.validation.size=1",
        "search=true",  # the experiment's search grid, on the validation split
        "search_grid.pnp_pgd.sigma=[0.01,0.2]",
        "search_grid.pnp_hqs.n_iter=[2]",  # the experiment's grid tries 8 and 24 iterations
        "batch_size=2",
        f"runs.denoiser={run}",
        "methods.tv.n_iter=3",
        *n_iter,
    )
    results = evaluate(ev, output_dir=tmp_path / "eval")
    assert set(results) == {"fbp", "tv", "pnp_pgd", "pnp_admm", "pnp_hqs", "red"}
    assert all(math.isfinite(r["psnr_mean"]) for r in results.values())
    # PGD from FBP (no operator call): one A at the start, then A and Aᵀ per iteration
    assert results["pnp_pgd"]["op_applications_per_image"] == 1 + 2 * 2
    assert results["pnp_pgd"]["params"]["sigma"] in (0.01, 0.2)  # chosen by the search
    assert (tmp_path / "eval" / "search_red.json").is_file()
    # HQS: 5 CG iterations (one A, one Aᵀ each) plus the start of CGLS (one A, one Aᵀ)
    assert results["pnp_hqs"]["op_applications_per_image"] == 2 * (2 * 5 + 2)

    ucfg = compose_cfg(
        "config",
        "experiment=ellipses_pnp_unfolded",
        *TINY_OP,
        *TINY_DATA,
        *TINY_TRAINER,
        f"runs.denoiser={run}",
        "model.n_iter=2",
        "model.inner_iter=1",
        "trainer.max_steps=2",
        "trainer.val_every=2",
        "trainer.ckpt_every=2",
    )
    unfolded_run = tmp_path / "unfolded"
    assert train(ucfg, output_dir=unfolded_run)["step"] == 2
    (unfolded_run / ".hydra").mkdir()
    OmegaConf.save(ucfg, unfolded_run / ".hydra" / "config.yaml")
    unfolded = load_run(unfolded_run)
    for name, value in unfolded.denoiser.state_dict().items():  # frozen during training
        assert torch.equal(value, denoiser.state_dict()[name]), name
    uev = compose_cfg(
        "eval",
        "experiment=ellipses_pnp_unfolded_eval",
        *TINY_OP,
        "data.splits.test.size=2",
        f"runs.denoiser={run}",
        f"runs.unfolded={unfolded_run}",
        "methods.tv.n_iter=3",
        "methods.pnp_hqs.n_iter=2",
    )
    results = evaluate(uev, output_dir=tmp_path / "eval_unfolded")
    assert set(results) == {"fbp", "tv", "pnp_hqs", "unfolded"}
    assert all(math.isfinite(r["psnr_mean"]) for r in results.values())
