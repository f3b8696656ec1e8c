"""Tests of recon.mirror: the smoothed-TV objective, the baselines, learned mirror descent against
gradient descent with the Euclidean mirror map, the Newton inverse, the accelerated scheme against
its formulas, bounded steps, short trainings, the configs, errors and the benchmark's quick mode."""

from __future__ import annotations

import doctest
import json
import math

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import recon.mirror
from models import ICNN, InverseSpectralQuadratic, Quadratic, input_gradient
from operators import MatrixOperator, Parallel2D, RayTransform
from recon.base import Reconstructor
from recon.classical import fbp
from recon.mirror import (
    LearnedMirrorDescent,
    MirrorTrace,
    SmoothedTV,
    gradient_descent,
    mirror_objective,
    nesterov_gradient,
    smoothed_tv,
    smoothed_tv_gradient,
)
from recon.train import CONF_DIR
from recon.training import Trainer

F64 = torch.float64


@pytest.fixture(scope="module")
def ray():
    return RayTransform(Parallel2D((16, 16), n_angles=8), backend="matrix")


@pytest.fixture(scope="module")
def problem(ray):
    """Three 16² disc images, their noisy sinograms (float64) and the TV objective."""
    c = torch.linspace(-1, 1, 16, dtype=F64)
    rows, cols = torch.meshgrid(c, c, indexing="ij")
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(3, 1, 16, 16, dtype=F64)
    for i in range(3):
        cy, cx = (torch.rand(2, generator=gen, dtype=F64) - 0.5).tolist()
        x[i, 0] = 0.3 + 0.7 * ((rows - cy) ** 2 + (cols - cx) ** 2 <= 0.3)
    y = ray(x)
    y = y + 0.02 * y.abs().mean() * torch.randn(y.shape, generator=gen, dtype=F64)
    return x, y, SmoothedTV(lam=0.3, eps=0.05)


def _icnn(seed=0, **kwargs) -> ICNN:
    torch.manual_seed(seed)
    options = {"channels": 4, "n_layers": 2, "quadratic": 0.9, "output_scale": 0.05}
    return ICNN(**(options | kwargs))


def _lmd(**kwargs) -> LearnedMirrorDescent:
    options = {
        "mirror_map": _icnn(0),
        "inverse_map": _icnn(1),
        "objective": SmoothedTV(lam=0.3, eps=0.05),
        "n_iter": 3,
    }
    return LearnedMirrorDescent(**(options | kwargs))


# --------------------------------------------------------------------------- the objective


@pytest.mark.parametrize("ndim", [2, 3])
def test_smoothed_tv_gradient_is_its_gradient_and_tends_to_tv(ndim):
    x = torch.randn(2, *([5] * ndim), dtype=F64, requires_grad=True)
    smoothed_tv(x, eps=0.1, ndim=ndim).sum().backward()
    torch.testing.assert_close(smoothed_tv_gradient(x.detach(), eps=0.1, ndim=ndim), x.grad)
    from recon.classical import gradient2d, gradient3d

    grad = (gradient2d if ndim == 2 else gradient3d)(x.detach())
    tv = grad.square().sum(dim=-ndim - 1).sqrt().flatten(1).sum(1)
    gap = tv - smoothed_tv(x.detach(), eps=1e-3, ndim=ndim)
    assert (gap >= 0).all() and (gap <= 1e-3 * 5**ndim).all()


def test_objective_value_gradient_and_lipschitz_bound(ray, problem):
    _, y, f = problem
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, 16, 16, generator=gen, dtype=F64).requires_grad_(True)
    value, grad = f.value_and_gradient(x.detach(), y, ray)
    f(x, y, ray).sum().backward()
    torch.testing.assert_close(grad, x.grad)
    torch.testing.assert_close(value, f(x.detach(), y, ray))
    assert value.shape == (3, 1)
    lipschitz = f.lipschitz(ray)
    assert lipschitz == pytest.approx(ray.norm() ** 2 + 8 * 0.3 / 0.05)
    other = x.detach() + 0.1 * torch.randn(x.shape, generator=gen, dtype=F64)
    change = (f.gradient(other, y, ray) - grad).flatten(1).norm(dim=1)
    assert (change <= lipschitz * (other - x.detach()).flatten(1).norm(dim=1)).all()


def test_baselines_decrease_the_objective_and_nesterov_is_faster(ray, problem):
    _, y, f = problem
    x0 = fbp(y, ray, filter="hann")
    _, gd = gradient_descent(y, ray, objective=f, n_iter=40, x0=x0, return_objective=True)
    _, nag = nesterov_gradient(y, ray, objective=f, n_iter=40, x0=x0, return_objective=True)
    assert gd.shape == nag.shape == (40, 3, 1)
    assert (gd[1:] <= gd[:-1] + 1e-12).all()  # step 1/L: monotone
    assert (f(x0, y, ray) > gd[0]).all()
    assert (nag[-1] < gd[-1]).all()

    # a generic differentiable objective (gradient by autograd) gives the same iterates
    def data_fit(x, y, op):
        return 0.5 * (op(x) - y).square().sum(dim=(-2, -1))

    data_only = SmoothedTV(lam=0.0)
    step = 1 / data_only.lipschitz(ray)
    a = gradient_descent(y, ray, objective=data_fit, n_iter=5, step=step)
    b = gradient_descent(y, ray, objective=data_only, n_iter=5)
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="lipschitz"):
        gradient_descent(y, ray, objective=data_fit, n_iter=5)


# --------------------------------------------------------------------------- the algorithm


def _reference_gd(y, op, f, steps, x0):
    x, xs = x0, [x0]
    for t in steps:
        x = x - t * f.gradient(x, y, op)
        xs.append(x)
    return xs


@pytest.mark.parametrize("scale", [1.0, 4.0])
@pytest.mark.parametrize("init", ["zero", "adjoint", "fbp"])
def test_euclidean_mirror_map_is_gradient_descent(ray, problem, scale, init):
    """ψ = (c/2)‖x‖² with the exact inverse φ = (1/2c)‖z‖²: MD is GD with steps t_k / c."""
    _, y, f = problem
    lmd = LearnedMirrorDescent(mirror_map=Quadratic(scale=scale),
                               inverse_map=Quadratic(scale=1 / scale), objective=f, n_iter=4,
                               init=init).double()  # fmt: skip
    with torch.no_grad():
        lmd.step_logits.copy_(torch.tensor([0.3, -1.0, 2.0, 0.0]) / lmd.logit_scale)
        trace = lmd(y, ray, trace=True)
    steps = lmd.steps().detach() / f.lipschitz(ray) / scale
    x0 = trace.iterates[0]
    if init == "zero":
        assert torch.equal(x0, torch.zeros_like(x0))
    elif init == "adjoint":
        torch.testing.assert_close(x0, ray.T(y) / ray.norm() ** 2)
    else:
        torch.testing.assert_close(x0, fbp(y, ray, filter="hann"))
    reference = _reference_gd(y, ray, f, steps.tolist(), x0)
    for ours, theirs in zip(trace.iterates, reference, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    if init != "zero":
        return
    # one fixed step: the library's gradient_descent gives the same iterates
    with torch.no_grad():
        lmd.step_logits.fill_(0.7 / lmd.logit_scale)
    fixed = lmd.steps()[0].item() / f.lipschitz(ray) / scale
    torch.testing.assert_close(
        lmd(y, ray).detach(),
        gradient_descent(y, ray, objective=f, n_iter=4, step=fixed),
        rtol=1e-12,
        atol=1e-12,
    )


def test_trace_objective_and_consistency(ray, problem):
    _, y, f = problem
    lmd = _lmd().double()
    with torch.no_grad():
        trace = lmd(y, ray, trace=True)
    assert isinstance(trace, MirrorTrace)
    assert trace.iterates.shape == (4, 3, 1, 16, 16)
    assert trace.objective.shape == (4, 3) and trace.consistency.shape == (3, 3)
    for k in range(4):
        torch.testing.assert_close(trace.objective[k], f(trace.iterates[k], y, ray).reshape(3))
    x = trace.iterates[1]
    back = input_gradient(lmd.inverse_map, input_gradient(lmd.mirror_map, x))
    torch.testing.assert_close(trace.consistency[1], (back - x).abs().flatten(1).mean(1))
    relative = (back - x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
    torch.testing.assert_close(lmd.consistency_error(x), relative)
    torch.testing.assert_close(trace.x, trace.iterates[-1])


def test_steps_stay_in_their_range_and_extra_iterations_use_a_constant_step(ray, problem):
    _, y, f = problem
    lmd = LearnedMirrorDescent(mirror_map=Quadratic(), inverse_map=Quadratic(), objective=f,
                               n_iter=3, step_range=(0.5, 3.0), init="zero").double()  # fmt: skip
    with torch.no_grad():
        lmd.step_logits.copy_(torch.tensor([-1e4, 1e4, 0.4 / lmd.logit_scale]))
    steps = lmd.steps().detach()
    assert steps.min() >= 0.5 and steps.max() <= 3.0
    assert steps[0] == pytest.approx(0.5) and steps[1] == pytest.approx(3.0)
    lipschitz = f.lipschitz(ray)
    # 5 iterations: the 3 learned steps, then the default extra step 1/L twice
    out = lmd(y, ray, n_iter=5).detach()
    plan = [s / lipschitz for s in steps.tolist()] + [1.0 / lipschitz] * 2
    torch.testing.assert_close(
        out, _reference_gd(y, ray, f, plan, torch.zeros_like(out))[-1], rtol=1e-12, atol=1e-12
    )
    # extra_step=None: the last learned one
    lmd.extra_step = None
    out = lmd(y, ray, n_iter=5).detach()
    plan = [s / lipschitz for s in steps.tolist()] + [steps[-1].item() / lipschitz] * 2
    torch.testing.assert_close(
        out, _reference_gd(y, ray, f, plan, torch.zeros_like(out))[-1], rtol=1e-12, atol=1e-12
    )
    # or a configured extra step
    lmd.extra_step = 0.25
    out = lmd(y, ray, n_iter=5).detach()
    plan = [s / lipschitz for s in steps.tolist()] + [0.25 / lipschitz] * 2
    torch.testing.assert_close(
        out, _reference_gd(y, ray, f, plan, torch.zeros_like(out))[-1], rtol=1e-12, atol=1e-12
    )
    # training keeps them in range
    lmd = _lmd(step_range=(0.5, 3.0), step_init=2.9)
    opt = torch.optim.SGD(lmd.parameters(), lr=1e3)
    for _ in range(2):
        opt.zero_grad()
        (-lmd.steps().sum()).backward()
        opt.step()
    assert lmd.steps().max() <= 3.0 and lmd.steps().min() >= 0.5


def test_iterations_past_the_trained_ones_keep_the_dual_variable(ray, problem):
    # ψ = ½·2‖x‖², φ = ½·0.4‖x‖²: ∇φ∘∇ψ = 0.8·I, an inconsistent pair. A round trip per
    # iteration would shrink x by 0.8 each time; past n_iter the scheme stays in the dual space,
    # z ← z − t∇f(x), x = 0.4 z, which is gradient descent on x with step 0.4·t exactly.
    _, y, f = problem
    lmd = LearnedMirrorDescent(mirror_map=Quadratic(scale=2.0),
                               inverse_map=Quadratic(scale=0.4), objective=f, n_iter=2,
                               extra_step=0.5, init="zero").double()  # fmt: skip
    lipschitz = f.lipschitz(ray)
    t = [float(s) / lipschitz for s in lmd.steps().detach()]
    trace = lmd(y, ray, n_iter=6, trace=True)
    x = trace.iterates
    # learned iterations: x_{k+1} = 0.4 (2 x_k − t_k ∇f(x_k)), round trips included
    x1 = 0.4 * (2 * x[0] - t[0] * f.gradient(x[0], y, ray))
    x2 = 0.4 * (2 * x1 - t[1] * f.gradient(x1, y, ray))
    torch.testing.assert_close(x[1], x1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x[2], x2, rtol=1e-12, atol=1e-12)
    # past them: gradient descent with step 0.4 · 0.5/L, no 0.8 shrinkage
    plan = [0.4 * 0.5 / lipschitz] * 4
    expected = _reference_gd(y, ray, f, plan, x2.detach())
    torch.testing.assert_close(x[3:], torch.stack(expected[1:]), rtol=1e-10, atol=1e-12)
    # the trace still reports the round-trip residual there: |0.8 x − x| = 0.2 |x|
    torch.testing.assert_close(
        trace.consistency[3], 0.2 * x[3].abs().flatten(1).mean(1), rtol=1e-10, atol=1e-14
    )


@pytest.mark.parametrize("nonneg", [False, True])
def test_accelerated_scheme_follows_its_formulas(ray, problem, nonneg):
    _, y, f = problem
    if nonneg:  # a truth with negative parts, so that the projection acts
        y = y - ray(torch.full((1, 1, 16, 16), 0.6, dtype=F64))
    lmd = LearnedMirrorDescent(mirror_map=Quadratic(scale=2.0),
                               inverse_map=Quadratic(scale=0.5), objective=f, n_iter=4,
                               scheme="krichene", r=3.0, init="fbp",
                               nonneg=nonneg).double()  # fmt: skip
    with torch.no_grad():
        lmd.step_logits.copy_(torch.tensor([0.1, 0.5, -0.3, 1.0]) / lmd.logit_scale)
        lmd.gamma_logits.copy_(torch.tensor([-0.2, 0.0, 0.4, 0.8]) / lmd.logit_scale)
        out = lmd(y, ray)
    lipschitz = f.lipschitz(ray)
    t = lmd.steps().detach() / lipschitz
    gamma = lmd.gammas().detach() / lipschitz
    x_tilde = fbp(y, ray, filter="hann")
    if nonneg:
        assert x_tilde.min() < -0.1
        x_tilde = x_tilde.clamp_min(0)
    z = 2.0 * x_tilde
    for k in range(4):
        mix = 3.0 / (3.0 + k)
        x_bar = mix * (0.5 * z) + (1 - mix) * x_tilde
        g = f.gradient(x_bar, y, ray)
        z = z - (k + 1) / 3.0 * t[k] * g
        x_tilde = x_bar - gamma[k] * g
        if nonneg:  # Krichene's primal step in the feasible set
            assert x_tilde.min() < 0
            x_tilde = x_tilde.clamp_min(0)
    torch.testing.assert_close(out, x_tilde, rtol=1e-12, atol=1e-12)


def test_non_negative_schemes_are_projected_gradient_methods(ray, problem):
    """With nonneg: GD and Nesterov are projected, and mirror descent with the Euclidean map
    is projected gradient descent; every iterate is >= 0 and the constrained objective falls."""
    _, y, f = problem
    y = y - ray(torch.full((1, 1, 16, 16), 0.6, dtype=F64))  # the truth has negative parts
    x0 = fbp(y, ray, filter="hann")
    lmd = LearnedMirrorDescent(mirror_map=Quadratic(), inverse_map=Quadratic(), objective=f,
                               n_iter=6, init="fbp", step_init=1.0,
                               nonneg=True).double()  # fmt: skip
    step = lmd.steps()[0].item() / f.lipschitz(ray)  # 1/L up to the logit's rounding
    x, reference = x0.clamp_min(0), []
    for _ in range(6):
        x = (x - step * f.gradient(x, y, ray)).clamp_min(0)
        reference.append(x)
    gd, values = gradient_descent(y, ray, objective=f, n_iter=6, x0=x0, nonneg=True, step=step,
                                  return_objective=True)  # fmt: skip
    torch.testing.assert_close(gd, reference[-1], rtol=1e-12, atol=1e-12)
    assert (values[1:] <= values[:-1] + 1e-12).all()
    free = gradient_descent(y, ray, objective=f, n_iter=6, x0=x0)
    assert free.min() < -0.05  # the constraint is active
    nag = nesterov_gradient(y, ray, objective=f, n_iter=60, x0=x0, nonneg=True)
    long_gd = gradient_descent(y, ray, objective=f, n_iter=60, x0=x0, nonneg=True)
    assert nag.min() >= 0 and (f(nag, y, ray) < f(long_gd, y, ray)).all()
    with torch.no_grad():
        trace = lmd(y, ray, trace=True)
    for ours, theirs in zip(trace.iterates[1:], reference, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    assert "nonneg=True" in repr(lmd)


@pytest.mark.parametrize("scheme", ["krichene", "nesterov"])
def test_accelerated_schemes_beat_plain_mirror_descent_with_the_same_steps(ray, problem, scheme):
    _, y, f = problem
    kwargs = {"mirror_map": Quadratic(), "inverse_map": Quadratic(), "objective": f,
              "n_iter": 30, "init": "fbp", "step_init": 1.0}  # fmt: skip
    with torch.no_grad():
        fast = LearnedMirrorDescent(scheme=scheme, **kwargs).double()(y, ray, trace=True)
        slow = LearnedMirrorDescent(**kwargs).double()(y, ray, trace=True)
    assert (fast.objective[-1] < slow.objective[-1]).all()
    assert fast.consistency.shape == (30, len(y)) and fast.consistency.max() < 1e-12


@pytest.mark.parametrize("nonneg", [False, True])
def test_nesterov_scheme_follows_its_formulas(ray, problem, nonneg):
    """v_k = x_k + β_k(x_k − x_{k−1}), x_{k+1} = ∇φ(∇ψ(v_k) − t_k∇f(v_k)); with nonneg the
    two-metric rule zeroes the pixels at the bound pushed outwards and masks their gradient.
    Past n_iter: momentum k/(k + r) and the constant extra step."""
    _, y, f = problem
    if nonneg:  # a truth with negative parts, so that the projection acts
        y = y - ray(torch.full((1, 1, 16, 16), 0.6, dtype=F64))
    lmd = LearnedMirrorDescent(mirror_map=Quadratic(scale=2.0),
                               inverse_map=Quadratic(scale=0.5), objective=f, n_iter=4,
                               scheme="nesterov", r=3.0, momentum_max=1.5, init="fbp",
                               extra_step=0.7, nonneg=nonneg,
                               two_metric=nonneg).double()  # fmt: skip
    assert lmd.gamma_logits is None
    with torch.no_grad():
        lmd.step_logits.copy_(torch.tensor([0.1, 0.5, -0.3, 1.0]) / lmd.logit_scale)
        lmd.momentum_logits.copy_(torch.tensor([0.0, 2.0, -1.0, 0.5]) / lmd.logit_scale)
        out = lmd(y, ray, n_iter=6)
    lipschitz = f.lipschitz(ray)
    t = [*(lmd.steps().detach() / lipschitz), 0.7 / lipschitz, 0.7 / lipschitz]
    beta = [*lmd.momenta().detach(), 4 / 7, 5 / 8]
    torch.testing.assert_close(beta[1], 1.5 * torch.sigmoid(torch.tensor(2.0, dtype=F64)))
    x = fbp(y, ray, filter="hann")
    if nonneg:
        x = x.clamp_min(0)
    x_previous, n_active = x, 0
    for k in range(6):
        v = x + beta[k] * (x - x_previous)
        g = f.gradient(v, y, ray)
        new = 0.5 * (2.0 * v - t[k] * g)
        if nonneg:  # two-metric: active pixels to 0, the others by the masked step
            active = (v <= 0) & (g > 0)
            n_active += int(active.sum())
            new = 0.5 * (2.0 * v - t[k] * torch.where(active, 0.0, g))
            new = torch.where(active, 0.0, new).clamp_min(0)
        x_previous, x = x, new
    if nonneg:
        assert n_active > 0 and out.min() >= 0
    torch.testing.assert_close(out, x, rtol=1e-12, atol=1e-12)


def test_two_metric_projection_converges_where_the_euclidean_one_stalls(ray, problem):
    """With a strongly non-diagonal preconditioner P, a fixed point of x = max(x − tP∇f(x), 0)
    need not minimise f on x ≥ 0: the Euclidean projection stalls far from the minimum, and the
    two-metric rule, from the same start with the same steps, converges."""
    _, y, f = problem
    y = y - ray(torch.full((1, 1, 16, 16), 0.6, dtype=F64))  # the constraint is active
    minimum = f(nesterov_gradient(y, ray, objective=f, n_iter=3000, nonneg=True), y, ray).flatten()
    psi = ICNN(channels=2, n_layers=1, output_scale=1e-12, strong_convexity=0.05, spectral=0.95,
               spectral_shape=(16, 16), spectral_rate=1.0)  # fmt: skip
    with torch.no_grad():  # M = ramp + 0.05: P = (M + 0.05)⁻¹ amplifies low frequencies 10×
        u = torch.fft.fftfreq(16).abs()
        ramp = (u[:, None] ** 2 + u[None, :] ** 2).sqrt()
        psi.spectral_layer.log_multiplier.copy_((0.95 * (ramp + 0.05)).log())
    gap = {}
    for two_metric in (False, True):
        phi = ICNN(channels=2, n_layers=1, output_scale=1e-12, strong_convexity=0.0)
        lmd = LearnedMirrorDescent(mirror_map=psi, inverse_map=phi, objective=f, n_iter=20,
                                   scheme="nesterov", nonneg=True, two_metric=two_metric,
                                   tie_spectral=True, step_init=0.5).double()  # fmt: skip
        with torch.no_grad():
            gap[two_metric] = lmd(y, ray, trace=True).objective - minimum
    euclidean, two_metric = gap[False], gap[True]
    assert (euclidean[-1] > 1.0).all()  # stalled: no progress over the last 10 iterations
    torch.testing.assert_close(euclidean[-1], euclidean[10], rtol=1e-6, atol=0.0)
    assert (two_metric[-1] < 1e-2).all() and (two_metric[-1] >= -1e-6).all()


def test_scheme_and_projection_settings_are_checked():
    base = {"mirror_map": Quadratic(), "inverse_map": Quadratic(),
            "objective": SmoothedTV(lam=0.1)}  # fmt: skip
    with pytest.raises(ValueError, match="unknown scheme 'fista'"):
        LearnedMirrorDescent(scheme="fista", **base)
    with pytest.raises(ValueError, match="momentum_max"):
        LearnedMirrorDescent(scheme="nesterov", momentum_max=0.0, **base)
    with pytest.raises(ValueError, match="two_metric is a projection rule of the nesterov"):
        LearnedMirrorDescent(scheme="plain", nonneg=True, two_metric=True, **base)
    with pytest.raises(ValueError, match="two_metric"):
        LearnedMirrorDescent(scheme="nesterov", nonneg=False, two_metric=True, **base)
    with pytest.raises(TypeError):
        LearnedMirrorDescent(accelerated=True, **base)  # the old flag is gone: scheme=...
    nesterov = LearnedMirrorDescent(scheme="nesterov", **base)
    assert nesterov.momenta() is not None and nesterov.gammas() is None
    assert "scheme='nesterov'" in repr(nesterov)


def test_tied_spectral_quadratics_stay_exact_inverses_while_training(ray, problem):
    """tie_spectral: φ's quadratic is (M + sI)⁻¹ of ψ's M, sharing its parameters; after
    training moves M, the maps (with negligible networks) are still consistent to rounding."""
    _, y, f = problem
    common = {"channels": 4, "n_layers": 2, "output_scale": 1e-9}
    torch.manual_seed(0)
    psi = ICNN(strong_convexity=0.05, spectral=0.95, spectral_shape=(16, 16), spectral_rate=50.0,
               **common)  # fmt: skip
    phi = ICNN(strong_convexity=0.0, **common)
    lmd = LearnedMirrorDescent(mirror_map=psi, inverse_map=phi, objective=f, n_iter=3,
                               scheme="krichene", tie_spectral=True).double()  # fmt: skip
    names = [name for name, _ in lmd.named_parameters()]
    assert sum("log_multiplier" in name for name in names) == 1  # one M, seen once
    trained = [psi.spectral_layer.log_multiplier, lmd.step_logits, lmd.gamma_logits]
    optimiser = torch.optim.Adam(trained, lr=1e-2)  # the networks stay negligible
    loss_fn = mirror_objective(ray)
    for _ in range(5):
        optimiser.zero_grad()
        loss_fn(lmd, (None, y)).backward()
        optimiser.step()
    m = psi.spectral_layer.multiplier()
    assert m.max() / m.min() > 1.5  # M has moved away from a multiple of the identity
    x = torch.randn(3, 1, 16, 16, dtype=F64)
    relative = lmd.consistency_error(x)
    assert relative.max() < 1e-6  # vs ~1e-1 for an untied φ with the initial ½‖z‖²
    untied = (psi.spectral_layer.gradient(x) + 0.05 * x - x).norm() / x.norm()
    assert untied > 1e-2


def test_tie_spectral_errors():
    f = SmoothedTV(lam=0.1)
    spectral = {"spectral": 1.0, "spectral_shape": (8, 8)}
    with pytest.raises(ValueError, match="spectral quadratic"):
        LearnedMirrorDescent(mirror_map=ICNN(), inverse_map=ICNN(), objective=f,
                             tie_spectral=True)  # fmt: skip
    with pytest.raises(ValueError, match="quadratic: 0"):
        LearnedMirrorDescent(mirror_map=ICNN(quadratic=0.5, **spectral), inverse_map=ICNN(),
                             objective=f, tie_spectral=True)  # fmt: skip
    with pytest.raises(ValueError, match="without a spectral term"):
        LearnedMirrorDescent(mirror_map=ICNN(**spectral), inverse_map=ICNN(**spectral),
                             objective=f, tie_spectral=True)  # fmt: skip
    with pytest.raises(ValueError, match="without a spectral term"):
        LearnedMirrorDescent(mirror_map=ICNN(**spectral), inverse="newton", objective=f,
                             tie_spectral=True)  # fmt: skip


def test_newton_inverse_solves_the_mirror_equation(ray, problem):
    _, y, f = problem
    lmd = LearnedMirrorDescent(mirror_map=_icnn(0, output_scale=0.5), objective=f, n_iter=2,
                               inverse="newton", newton_steps=4, cg_steps=20).double()  # fmt: skip
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(2, 1, 16, 16, generator=gen, dtype=F64)
    z = lmd.mirror_gradient(x)
    solved = lmd.inverse_gradient(z, start=torch.zeros_like(x))
    torch.testing.assert_close(solved, x, rtol=1e-8, atol=1e-8)
    assert lmd.consistency_error(x).max() < 1e-8
    # with the Euclidean mirror map, Newton-MD is gradient descent
    gd = LearnedMirrorDescent(mirror_map=Quadratic(), objective=f, n_iter=3, inverse="newton",
                              init="zero").double()  # fmt: skip
    steps = gd.steps().detach() / f.lipschitz(ray)
    with torch.no_grad():
        out = gd(y, ray)
    reference = _reference_gd(y, ray, f, steps.tolist(), torch.zeros_like(out))[-1]
    torch.testing.assert_close(out, reference, rtol=1e-10, atol=1e-10)


def test_contract_batches_dtypes_and_gradients(ray):
    lmd = _lmd()
    assert isinstance(lmd, Reconstructor)
    y = torch.rand(2, 1, *ray.range_shape)
    with torch.no_grad():  # as recon-eval runs it: ∇ψ is still available
        out = lmd(y, ray)
    assert out.shape == (2, 1, 16, 16) and out.dtype == torch.float32 and not out.requires_grad
    assert lmd(y[0, 0], ray).shape == (16, 16)  # unbatched
    joint = lmd(y, ray).detach()
    single = torch.cat([lmd(y[i : i + 1], ray).detach() for i in range(2)])
    torch.testing.assert_close(joint, single, rtol=1e-4, atol=1e-5)
    out = lmd(y, ray)
    out.square().sum().backward()  # differentiable in both networks and the steps
    assert lmd.step_logits.grad.abs().min() > 0
    assert lmd.mirror_map.input_layers[0].weight.grad.abs().sum() > 0
    assert lmd.inverse_map.output_layer.raw_weight.grad.abs().sum() > 0
    assert lmd.double()(y.double(), ray).dtype == F64


# --------------------------------------------------------------------------- training


def _batches(ray, n_batches, size=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    c = torch.linspace(-1, 1, 16)
    rows, cols = torch.meshgrid(c, c, indexing="ij")
    out = []
    for _ in range(n_batches):
        x = torch.zeros(size, 1, 16, 16)
        for i in range(size):
            cy, cx, r = torch.rand(3, generator=gen).tolist()
            x[i, 0] = (rows - cy + 0.5) ** 2 + (cols - cx + 0.5) ** 2 <= 0.1 + 0.4 * r
        y = ray(x)
        out.append((x, y + 0.02 * y.abs().mean() * torch.randn(y.shape, generator=gen)))
    return out


def test_short_training_lowers_the_objective(ray):
    torch.manual_seed(0)
    lmd = _lmd(step_range=(0.0, 10.0))
    loss_fn = mirror_objective(ray, consistency_weight=1.0)
    batches = _batches(ray, 2)
    _, y_test = _batches(ray, 1, seed=9)[0]

    def final_objective():
        with torch.no_grad():
            return lmd(y_test, ray, trace=True).objective[-1].mean().item()

    before, losses = final_objective(), []
    opt = torch.optim.Adam(lmd.parameters(), lr=2e-3)
    for step in range(12):
        loss = loss_fn(lmd, batches[step % 2])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert final_objective() < 0.95 * before
    assert sum(losses[-2:]) < sum(losses[:2])


def test_training_the_inverse_map_lowers_the_consistency_loss():
    torch.manual_seed(0)
    psi = _icnn(0, output_scale=0.3, quadratic=0.5, quadratic_kernel=3)
    phi = _icnn(1, output_scale=0.05)
    for p in psi.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 12, 12, generator=gen)
    z = input_gradient(psi, x)

    def loss():
        return (input_gradient(phi, z, create_graph=True) - x).abs().mean()

    opt = torch.optim.Adam(phi.parameters(), lr=0.02)
    first = loss().item()
    for _ in range(40):
        value = loss()
        opt.zero_grad()
        value.backward()
        opt.step()
    assert loss().item() < 0.5 * first


def test_trainer_runs_the_unsupervised_objective(ray, tmp_path):
    torch.manual_seed(0)
    batches = _batches(ray, 2)
    data = torch.utils.data.TensorDataset(torch.cat([x for x, _ in batches]),
                                          torch.cat([y for _, y in batches]))  # fmt: skip
    from recon.training import reconstruction_predict

    trainer = Trainer(_lmd(), train_data=data, val_data=data,
                      objective=mirror_objective(ray), predict=reconstruction_predict(ray),
                      out_dir=tmp_path, max_steps=2, batch_size=4, progress=False,
                      val_indices=[0, 1])  # fmt: skip
    result = trainer.fit()
    assert result["step"] == 2 and math.isfinite(result["last_loss"])
    assert math.isfinite(result["last_val"]["psnr"])


# --------------------------------------------------------------------------- errors


def test_errors(ray, problem):
    _, y, f = problem
    lmd = _lmd()
    bad = torch.rand(1, 1, *ray.range_shape)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        lmd(bad, ray)
    with pytest.raises(ValueError, match="range_shape"):
        lmd(torch.rand(1, 1, 5, 5), ray)
    with pytest.raises(TypeError, match="n_iters"):
        _lmd(n_iters=3)  # a typo in a config raises
    with pytest.raises(TypeError, match="lamda"):
        SmoothedTV(lamda=0.1)
    with pytest.raises(TypeError, match="consistency"):
        mirror_objective(ray, consistency=1.0)
    with pytest.raises(ValueError, match="step_init"):
        _lmd(step_range=(0.0, 1.0), step_init=2.0)
    with pytest.raises(ValueError, match="step_range"):
        _lmd(step_range=(1.0, 0.5))
    with pytest.raises(ValueError, match="inverse_map"):
        _lmd(inverse="newton")
    with pytest.raises(ValueError, match="inverse_map"):
        _lmd(inverse_map=None)
    with pytest.raises(ValueError, match="init"):
        _lmd(init="sirt")
    with pytest.raises(ValueError, match="eps"):
        SmoothedTV(lam=0.1, eps=0.0)
    with pytest.raises(ValueError, match="fbp needs"):
        op = MatrixOperator(torch.randn(20, 64), domain_shape=(8, 8), range_shape=(4, 5))
        _lmd()(torch.rand(1, 1, 4, 5), op)


# --------------------------------------------------------------------------- configs, bench


@pytest.mark.parametrize(
    "path", sorted((CONF_DIR / "recon").glob("mirror*.yaml")), ids=lambda p: p.stem
)
def test_recon_configs_instantiate_and_run(path, ray):
    method = instantiate(OmegaConf.load(path))
    assert isinstance(method, LearnedMirrorDescent)
    with torch.no_grad():
        out = method(torch.rand(1, 1, *ray.range_shape), ray, n_iter=1)
    assert out.shape == (1, 1, 16, 16) and torch.isfinite(out).all()


SMALL = [
    "operator.geometry.image_shape=[16,16]",
    "operator.geometry.n_detectors=24",
    "operator.geometry.n_angles=8",
]


def test_model_config_is_the_icnn(compose_cfg):
    cfg = compose_cfg("model=icnn", *SMALL)
    net = instantiate(cfg.model)
    assert isinstance(net, ICNN) and net.strong_convexity == 0.1
    x = torch.randn(2, 1, 16, 16)
    # it starts near ½‖x‖²: ∇ψ(x) ≈ x
    assert ((input_gradient(net, x) - x).norm() / x.norm()).item() < 0.01


def test_experiment_config_builds_the_model_and_its_loss(compose_cfg):
    cfg = compose_cfg("experiment=ellipses_mirror", *SMALL, "model.mirror_map.channels=4")
    op = instantiate(cfg.operator)
    model = instantiate(cfg.model)
    assert isinstance(model, LearnedMirrorDescent) and model.n_iter == 10
    assert model.mirror_map.channels == 4 and model.inverse_map.channels == 16
    assert model.objective.lam == 2.0 and cfg.trainer.max_steps > 0
    assert model.scheme == "nesterov" and model.nonneg and model.two_metric
    assert model.tie_spectral and model.momenta() is not None
    for net in (model.mirror_map, model.inverse_map):  # a global preconditioner on the grid
        assert net.spectral_layer.shape == (16, 16) and net.quadratic_layer is None
    tied = model.inverse_map.spectral_layer
    assert isinstance(tied, InverseSpectralQuadratic)
    assert tied.quadratic is model.mirror_map.spectral_layer
    loss_fn, predict = instantiate(cfg.objective, op=op)  # as recon-train calls it
    y = op(torch.rand(2, 1, 16, 16))
    loss = loss_fn(model, (None, y))
    loss.backward()
    assert loss.ndim == 0 and math.isfinite(loss.item())
    estimate, truth = predict(model.eval(), (torch.zeros(2, 1, 16, 16), y))
    assert estimate.shape == truth.shape == (2, 1, 16, 16)


def test_recon_train_runs_the_experiment(compose_cfg, tmp_path):
    from recon.train import train

    tiny = ["model.n_iter=2", "model.mirror_map.channels=4", "model.inverse_map.channels=4",
            "data.splits.train.size=4", "data.splits.validation.size=2", "trainer.max_steps=2",
            "trainer.batch_size=2", "trainer.warmup_steps=0", "trainer.val_every=2",
            "trainer.ckpt_every=2", "trainer.progress=false"]  # fmt: skip
    cfg = compose_cfg("experiment=ellipses_mirror", *SMALL, *tiny)
    result = train(cfg, output_dir=tmp_path)
    assert result["step"] == 2 and math.isfinite(result["last_loss"])
    assert math.isfinite(result["last_val"]["psnr"])


def test_docstring_examples():
    result = doctest.testmod(recon.mirror)
    assert result.attempted > 10 and result.failed == 0


def test_benchmark_quick_mode(tmp_path):
    from recon import bench_mirror

    result = bench_mirror.main(["--quick", "--out", str(tmp_path / "mirror.json"),
                                "--png", str(tmp_path / "mirror.png"), "--extra-step", "0.5",
                                "--work-dir", str(tmp_path / "work")])  # fmt: skip
    saved = json.loads((tmp_path / "mirror.json").read_text())
    assert saved["quick"] is True and saved == json.loads(json.dumps(result))
    for key in ("objective_learned", "gd_iterations", "nesterov_iterations", "psnr_learned",
                "psnr_tv", "psnr_tv_unconstrained", "psnr_f_minimiser",
                "consistency_error"):  # fmt: skip
        assert math.isfinite(saved[key])
    assert saved["objective_f_minimiser"] < saved["objective_learned"]
    assert saved["objective_learned"] < saved["objective_fbp"]
    assert 0 <= saved["consistency_error"] < 1
    assert saved["extra_step"] == 0.5
    assert (tmp_path / "mirror.png").stat().st_size > 1000


def test_benchmark_rejects_a_non_positive_extra_step(capsys):
    from recon import bench_mirror

    with pytest.raises(SystemExit):
        bench_mirror.main(["--quick", "--extra-step", "0"])
    assert "--extra-step must be positive" in capsys.readouterr().err


def test_best_baseline_prefers_a_step_that_stays_converged():
    from recon.bench_mirror import best_baseline

    # step 4: reaches the target first, then diverges; step 2: slower but stays below it
    curves = {
        1.0: torch.tensor([9.0, 8.0, 7.0, 6.0]),
        2.0: torch.tensor([6.0, 4.0, 3.0, 2.5]),
        4.0: torch.tensor([3.0, 2.0, 50.0, float("nan")]),
    }
    factor, needed, curve = best_baseline(curves.get, (1.0, 2.0, 4.0), lipschitz=1.0, target=4.0)
    assert (factor, needed) == (2.0, 2) and torch.equal(curve, curves[2.0])
    # when every step diverges the fastest is still reported, not nothing
    factor, needed, _ = best_baseline(curves.get, (4.0,), lipschitz=1.0, target=4.0)
    assert (factor, needed) == (4.0, 1)
