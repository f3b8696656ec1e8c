"""Tests of recon.mirror.learned: learned mirror descent against gradient descent with the
Euclidean mirror map, the Newton inverse, the accelerated schemes against their formulas, bounded
steps, the configs and errors (the benchmark's tests: tests/benchmarks/test_mirror.py)."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from models import ICNN, Quadratic, input_gradient
from operators import MatrixOperator
from recon.base import Reconstructor
from recon.classical import fbp
from recon.cli.config import config_dir
from recon.mirror import LearnedMirrorDescent, MirrorTrace, gradient_descent, nesterov_gradient
from recon.solvers import SmoothedTV
from recon.training.tasks import MirrorTask

F64 = torch.float64


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
    task = MirrorTask(op=ray)
    for _ in range(5):
        optimiser.zero_grad()
        task.loss(lmd, (None, y), step=1).backward()
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
        MirrorTask(op=ray, consistency=1.0)
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
    "path", sorted((config_dir() / "recon").glob("mirror*.yaml")), ids=lambda p: p.stem
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
