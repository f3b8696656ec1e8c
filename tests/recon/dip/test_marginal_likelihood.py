"""recon.dip.marginal_likelihood: K_yy matrix-free against dense matrices on a 16² CT problem,
the Hutchinson + CG log-determinant gradient against autograd through the exact slogdet, and
the resumable type-II ML loop."""

from __future__ import annotations

import pytest
import torch

from models import UNet
from operators import IdentityOperator, Parallel2D, RayTransform
from recon.dip.linearised import Linearisation
from recon.dip.marginal_likelihood import (
    MarginalLikelihoodFit,
    ObservationCov,
    exact_log_det,
    gprior_scale,
    log_det_grad_hutchinson,
    negative_log_evidence,
)
from recon.dip.pcg import pcg
from recon.dip.weight_prior import WeightPrior

F64 = torch.float64


def build(noise_variance=0.01, lengthscale=1.0):
    torch.manual_seed(0)
    net = UNet(channels=2, depth=1, norm=None, residual=False).to(F64).eval()
    z = torch.randn(1, 1, 16, 16, dtype=F64)
    op = RayTransform(Parallel2D((16, 16), n_angles=8), backend="matrix")
    prior = WeightPrior.for_network(net, lengthscale=lengthscale)
    lin = Linearisation(net, z, names=prior.names)
    return ObservationCov(lin, prior, op, noise_variance=noise_variance)


@pytest.fixture(scope="module")
def problem():
    """The 16² problem with its dense pieces: J (256 × 388), A (184 × 256), Σ_θ (388 × 388)."""
    cov = build()
    with torch.no_grad():
        cov.prior.log_variance.copy_(torch.linspace(-0.5, 0.5, len(cov.prior.blocks), dtype=F64))
    jac = cov.jacobian()
    eye = torch.eye(256, dtype=F64).reshape(256, 16, 16)
    a = cov.op(eye).reshape(256, -1).T
    sigma = cov.prior.dense().detach()
    dense = a @ jac @ sigma @ jac.T @ a.T + 0.01 * torch.eye(a.shape[0], dtype=F64)
    y = cov.op(cov.linearisation.image[0]) + 0.1 * torch.randn(8, 23, dtype=F64)
    return cov, a, jac, sigma, dense, y


def flat_grads(cov, grads):
    return torch.cat(
        [grads["log_variance"], grads["log_lengthscale"], grads["log_noise_variance"].reshape(1)]
    )


def test_products_match_dense_matrices(problem):
    cov, a, jac, sigma, dense, _ = problem
    assert (cov.n_obs, cov.n_pixels, cov.linearisation.n_params) == (184, 256, 388)
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(4, cov.n_obs, dtype=F64, generator=gen)
    theta = torch.randn(4, 388, dtype=F64, generator=gen)
    assert torch.allclose(cov.jvp(theta), theta @ jac.T, rtol=1e-12, atol=1e-12)
    assert torch.allclose(cov.vjp(v @ a), v @ a @ jac, rtol=1e-12, atol=1e-12)
    assert torch.allclose(cov.forward_op(theta @ jac.T), theta @ jac.T @ a.T, atol=1e-12)
    # K_yy: matrix-free, assembled, and from the dense pieces
    assert torch.allclose(cov(v), v @ dense, rtol=1e-11, atol=1e-11)
    assert torch.allclose(cov.assemble().detach(), dense, rtol=1e-11, atol=1e-11)
    image_cov = cov.assemble_image_cov().detach()
    assert torch.allclose(image_cov, jac @ sigma @ jac.T, rtol=1e-11, atol=1e-11)
    u = torch.randn(2, 256, dtype=F64, generator=gen)
    assert torch.allclose(cov.image_cov_mv(u), u @ image_cov, rtol=1e-11, atol=1e-11)


def test_exact_log_det_and_its_gradient(problem):
    cov, *_, dense, _ = problem
    assert exact_log_det(cov).item() == pytest.approx(torch.logdet(dense).item(), rel=1e-12)
    params = [cov.prior.log_variance, cov.prior.log_lengthscale, cov.log_noise_variance]
    grads = torch.autograd.grad(exact_log_det(cov), params)
    # central differences of the exact log-determinant along each hyper-parameter
    h = 1e-4
    for param, grad in zip(params, grads, strict=True):
        for i in range(param.numel()):
            with torch.no_grad():
                param.view(-1)[i] += h
                up = exact_log_det(cov).item()
                param.view(-1)[i] -= 2 * h
                down = exact_log_det(cov).item()
                param.view(-1)[i] += h
            assert grad.view(-1)[i].item() == pytest.approx(
                (up - down) / (2 * h), rel=1e-5, abs=1e-6
            )


@pytest.mark.parametrize("probes", ["preconditioned", "rademacher"])
def test_hutchinson_gradient_within_2_percent_of_exact(problem, probes):
    cov = problem[0]
    params = [cov.prior.log_variance, cov.prior.log_lengthscale, cov.log_noise_variance]
    exact = torch.cat(
        [g.reshape(-1) for g in torch.autograd.grad(0.5 * exact_log_det(cov), params)]
    )
    gen = torch.Generator().manual_seed(0)
    precond = cov.preconditioner(100, generator=gen)
    grads, info = log_det_grad_hutchinson(
        cov,
        n_probes=512,
        precond=precond,
        probes=probes,
        cg_tol=1e-8,
        cg_max_iter=200,
        generator=gen,
    )
    assert float(info.residual.max()) < 1e-8
    error = float((flat_grads(cov, grads) - exact).norm() / exact.norm())
    print(f"Hutchinson ({probes}, 512 probes) vs exact: relative error {error:.4f}")
    assert error < 0.02


def test_pcg_solves_and_the_preconditioner_helps(problem):
    cov, *_, dense, _ = problem
    b = torch.randn(3, cov.n_obs, dtype=F64, generator=torch.Generator().manual_seed(3))
    exact = torch.linalg.solve(dense, b.T).T
    plain, info_plain = pcg(cov, b, tol=1e-10, max_iter=1000)
    precond = cov.preconditioner(100, generator=torch.Generator().manual_seed(4))
    fast, info_fast = pcg(cov, b, precond=precond.inverse, tol=1e-10, max_iter=1000)
    for x in (plain, fast):
        assert torch.allclose(x, exact, rtol=1e-7, atol=1e-9)
    assert info_fast.n_iter < info_plain.n_iter / 4
    # at full rank the Nyström preconditioner is K itself (up to the stabilising shift)
    full = cov.preconditioner(cov.n_obs, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(full.inverse(b @ dense), b, rtol=1e-5, atol=1e-6)
    samples = full.sample(20000, generator=torch.Generator().manual_seed(6))
    emp = samples.T @ samples / 20000
    assert float((emp - dense).abs().max() / dense.abs().max()) < 0.05


def test_negative_log_evidence_terms(problem):
    cov, *_, dense, y = problem
    lin = cov.linearisation
    residual = y.reshape(-1) - cov.forward_op(lin.image.reshape(1, -1))[0]
    sigma_inv_theta = torch.linalg.solve(cov.prior.dense().detach(), lin.theta)
    expected = 0.5 * (
        (residual**2).sum() / 0.01
        + lin.theta @ sigma_inv_theta
        + torch.logdet(dense)
        + 184 * torch.log(torch.tensor(2 * torch.pi, dtype=F64))
    )
    assert negative_log_evidence(cov, y).item() == pytest.approx(expected.item(), rel=1e-9)


def test_gprior_scale_normalises_the_columns_of_aj(problem):
    cov = problem[0]
    scale = gprior_scale(cov)
    col_ms = (cov.obs_jacobian() ** 2).mean(dim=0)
    live = col_ms > 1e-10  # weights of filters that never fire have no effect (scale 1/eps)
    assert 0.5 * len(live) < int(live.sum()) < len(live)
    assert torch.allclose(col_ms[live] * scale[live] ** 2, torch.ones_like(col_ms[live]))
    assert bool((scale[~live] == 1e6).all())
    estimate = gprior_scale(cov, n_probes=4000, generator=torch.Generator().manual_seed(7))
    assert float(((estimate - scale) / scale)[live].abs().median()) < 0.05


def snapshot(cov):
    return torch.cat([p.detach().reshape(-1).clone() for p in cov.parameters()])


@pytest.mark.parametrize("method", ["exact", "hutchinson"])
def test_fit_resumes_exactly_and_decreases_the_loss(method, capsys):
    kw = {"method": method, "lr": 0.05, "n_probes": 16, "precond_rank": 60, "precond_every": 3}
    cov = build(noise_variance=1.0)
    y = cov.op(cov.linearisation.image[0]) + 0.05 * torch.randn(
        8, 23, dtype=F64, generator=torch.Generator().manual_seed(8)
    )
    start = negative_log_evidence(cov, y).item()
    full = MarginalLikelihoodFit(cov, y, **kw)
    history = full.run(4, progress=True)
    assert "type-II ML" in capsys.readouterr().err
    assert [r["step"] for r in history] == [1, 2, 3, 4]
    reference = snapshot(cov)
    assert negative_log_evidence(cov, y).item() < start

    cov2 = build(noise_variance=1.0)
    first = MarginalLikelihoodFit(cov2, y, **kw)
    first.run(2, progress=False)
    state = first.state_dict()
    cov3 = build(noise_variance=1.0)
    resumed = MarginalLikelihoodFit(cov3, y, **kw)
    resumed.load_state_dict(state)
    resumed.run(2, progress=False)
    assert resumed.step_count == 4
    assert torch.allclose(snapshot(cov3), reference, rtol=0, atol=1e-12)


def test_hutchinson_steps_follow_the_exact_gradient():
    """Adam's first step moves each hyper-parameter by -lr·sign(gradient): the estimated
    gradient must have the exact one's signs where the exact gradient is not small."""
    cov_e, cov_h = build(noise_variance=0.5), build(noise_variance=0.5)
    y = cov_e.op(cov_e.linearisation.image[0])
    params = [cov_e.log_noise_variance, cov_e.prior.log_variance, cov_e.prior.log_lengthscale]
    grad = torch.cat(
        [g.reshape(-1) for g in torch.autograd.grad(negative_log_evidence(cov_e, y), params)]
    )
    MarginalLikelihoodFit(cov_e, y, lr=0.01).step()
    MarginalLikelihoodFit(cov_h, y, lr=0.01, method="hutchinson", n_probes=64).step()
    big = grad.abs() > 0.1 * grad.abs().max()
    moved_e, moved_h = snapshot(cov_e), snapshot(cov_h)
    assert torch.allclose(moved_e[big], moved_h[big], atol=1e-6)


def test_bad_input_raises_clear_errors(problem):
    cov, *_, y = problem
    with pytest.raises(ValueError, match=r"y must be one measurement of shape \(8, 23\)"):
        MarginalLikelihoodFit(cov, y[:4])
    with pytest.raises(ValueError, match="unknown method 'adam'"):
        MarginalLikelihoodFit(cov, y, method="adam")
    with pytest.raises(ValueError, match="needs precond_rank > 0"):
        MarginalLikelihoodFit(cov, y, probes="preconditioned", precond_rank=0)
    with pytest.raises(ValueError, match="missing"):
        MarginalLikelihoodFit(cov, y).load_state_dict({"step": 3})
    with pytest.raises(ValueError, match=r"shape \(B, 184\)"):
        cov(torch.zeros(184, dtype=F64))
    with pytest.raises(ValueError, match="needs a preconditioner"):
        log_det_grad_hutchinson(cov, probes="preconditioned")
    lin, prior = cov.linearisation, cov.prior
    with pytest.raises(ValueError, match="differ in size"):
        ObservationCov(lin, prior, IdentityOperator((8, 8)))
    other = Linearisation(lin.network, lin.z, names=list(reversed(prior.names)))
    with pytest.raises(ValueError, match="names=prior.names"):
        ObservationCov(other, prior, cov.op)
    with pytest.raises(ValueError, match="noise_variance must be a finite positive"):
        ObservationCov(lin, prior, cov.op, noise_variance=-1.0)
