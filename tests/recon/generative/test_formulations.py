"""Tests of recon.generative.formulations and .latent: the three formulations against analytic
solutions with a linear generator, the λ → ∞ limit of sparse deviations, the lasso optimality of
the deviations, restarts, the encoder start, divergence and input errors (a generator whose images
do not fit the operator included), and the package's docstring examples."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models import Autoencoder
from operators import CountingOperator, MatrixOperator, Parallel2D, RayTransform
from recon.classical import fbp
from recon.generative import (
    HardGenerative,
    SoftGenerative,
    SparseDeviationGenerative,
    hard_generative,
    hard_objective,
    soft_generative,
    soft_objective,
    sparse_deviation_generative,
    sparse_deviation_objective,
)
from recon.runs.search import grid_search

F64 = torch.float64


class LinearGenerator(nn.Module):
    """``G(z) = W z + b`` as ``(B, 1, 4, 4)`` images: every formulation is a quadratic problem."""

    def __init__(self, W: torch.Tensor, b: torch.Tensor | None = None) -> None:
        super().__init__()
        self.W = nn.Parameter(W)
        self.b = nn.Parameter(torch.zeros(W.shape[0], dtype=W.dtype) if b is None else b)
        self.latent_dim = W.shape[1]

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return (z @ self.W.T + self.b).reshape(-1, 1, 4, 4)


class NaNGenerator(LinearGenerator):
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return super().generate(z) * float("nan")


@pytest.fixture
def problem():
    """A random 12 × 16 operator on 4 × 4 images, a linear generator with 5 latents, 3 data."""
    gen = torch.Generator().manual_seed(0)
    M = torch.randn(12, 16, generator=gen, dtype=F64)
    W = torch.randn(16, 5, generator=gen, dtype=F64)
    b = 0.1 * torch.randn(16, generator=gen, dtype=F64)
    y = torch.randn(3, 12, generator=gen, dtype=F64)
    return MatrixOperator(M, domain_shape=(4, 4)), LinearGenerator(W, b), M, W, b, y


def test_hard_formulation_with_a_linear_generator_is_regularised_least_squares(problem):
    op, G, M, W, b, y = problem
    alpha = 0.5
    AW = M @ W  # min_z ‖A(Wz + b) − y‖² + α‖z‖²  ⇔  (WᵀAᵀAW + αI) z = WᵀAᵀ(y − Ab)
    z_star = torch.linalg.solve(AW.T @ AW + alpha * torch.eye(5, dtype=F64), AW.T @ (y - M @ b).T).T
    result = hard_generative(y, op, G, alpha=alpha, n_iter=600, lr=0.1, n_restarts=2)
    torch.testing.assert_close(result.z, z_star, atol=1e-7, rtol=0)
    torch.testing.assert_close(result.x, (z_star @ W.T + b).reshape(3, 4, 4), atol=1e-6, rtol=0)
    torch.testing.assert_close(result.objective, hard_objective(result.z, y, op, G, alpha=alpha))
    assert result.u is None and result.x.shape == (3, 4, 4)


def test_soft_formulation_with_a_linear_generator_solves_the_joint_normal_equations(problem):
    op, G, M, W, b, y = problem
    lam, mu = 2.0, 0.3
    eye = torch.eye(16, dtype=F64)
    K = torch.zeros(
        21, 21, dtype=F64
    )  # the gradient of the joint objective in (x, z) is K·(x, z) − r
    K[:16, :16], K[:16, 16:] = M.T @ M + lam * eye, -lam * W
    K[16:, :16], K[16:, 16:] = -lam * W.T, lam * (mu * torch.eye(5, dtype=F64) + W.T @ W)
    rhs = torch.cat([M.T @ y.T + lam * b[:, None], -lam * W.T @ b[:, None].expand(-1, 3)])
    solution = torch.linalg.solve(K, rhs).T
    result = soft_generative(y, op, G, lam=lam, mu=mu, n_iter=1000, lr=0.1, n_restarts=1)
    torch.testing.assert_close(result.x.reshape(3, 16), solution[:, :16], atol=1e-7, rtol=0)
    torch.testing.assert_close(result.z, solution[:, 16:], atol=1e-7, rtol=0)
    expected = soft_objective(result.x, result.z, y, op, G, lam=lam, mu=mu)
    torch.testing.assert_close(result.objective, expected)


def test_sparse_deviations_with_large_lambda_recover_the_hard_solution_x_equals_g_z(problem):
    op, G, _, _, _, y = problem
    alpha, lam = 0.5, 2.0**20  # λμ = α exactly
    sparse = sparse_deviation_generative(
        y, op, G, lam=lam, mu=alpha / lam, n_iter=300, lr=0.1, n_restarts=2
    )
    hard = hard_generative(y, op, G, alpha=alpha, n_iter=300, lr=0.1, n_restarts=2)
    assert torch.equal(sparse.u, torch.zeros_like(sparse.u))
    torch.testing.assert_close(sparse.x, G.generate(sparse.z).reshape(3, 4, 4), rtol=0, atol=1e-12)
    torch.testing.assert_close(sparse.z, hard.z, rtol=0, atol=1e-12)
    torch.testing.assert_close(sparse.objective, hard.objective)


def test_sparse_deviations_satisfy_the_lasso_optimality_conditions(problem):
    op, _, M, W, _, y = problem
    zero = LinearGenerator(torch.zeros_like(W))  # G = 0: the u-problem alone, a lasso
    lam = 3.0
    result = sparse_deviation_generative(y, op, zero, lam=lam, mu=0.0, n_iter=400, n_restarts=1)
    u = result.u.reshape(3, 16)
    grad = 2 * (u @ M.T - y) @ M  # ∇ of ‖Au − y‖²; optimality: −grad ∈ λ ∂‖u‖₁
    active = u != 0
    assert 0 < int(active.sum()) < u.numel()
    torch.testing.assert_close(grad[active], -lam * torch.sign(u[active]), atol=1e-6, rtol=0)
    assert (grad[~active].abs() <= lam + 1e-6).all()
    expected = sparse_deviation_objective(result.z, result.u, y, op, zero, lam=lam, mu=0.0)
    torch.testing.assert_close(result.objective, expected)


@pytest.mark.parametrize("solver", ["hard", "soft", "sparse"])
def test_restarts_keep_the_best_objective_of_independent_runs(solver):
    torch.manual_seed(0)
    ae = Autoencoder(image_size=8, latent_dim=3, channels=2).eval()  # a non-convex generator
    op = MatrixOperator(torch.randn(20, 64) / 8, domain_shape=(8, 8))
    y = op(torch.rand(4, 8, 8))
    z0 = 2 * torch.randn(3, 4, 3, generator=torch.Generator().manual_seed(1))
    run = {
        "hard": partial_solver(hard_generative, alpha=0.1),
        "soft": partial_solver(soft_generative, lam=1.0, mu=0.1),
        "sparse": partial_solver(sparse_deviation_generative, lam=0.5, mu=0.1),
    }[solver]
    batched = run(y, op, ae, z0=z0)
    single = [run(y, op, ae, z0=z0[r : r + 1]) for r in range(3)]
    objectives = torch.stack([s.objective for s in single])
    torch.testing.assert_close(batched.restart_objectives, objectives, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(batched.objective, batched.restart_objectives.min(0).values)
    assert torch.equal(batched.best_restart, batched.restart_objectives.argmin(0))
    assert len(set(batched.best_restart.tolist())) > 1 or objectives.std(0).max() > 0
    for i, r in enumerate(batched.best_restart.tolist()):
        torch.testing.assert_close(batched.x[i], single[r].x[i], rtol=1e-3, atol=1e-4)


def partial_solver(solver, **weights):
    def run(y, op, generator, *, z0):
        return solver(
            y, op, generator, n_iter=15, lr=0.05, n_restarts=z0.shape[0], z0=z0, **weights
        )

    return run


def test_encoder_start_is_the_code_of_the_fbp_and_other_restarts_perturb_it():
    torch.manual_seed(0)
    op = RayTransform(Parallel2D((16, 16), n_angles=8), backend="matrix")
    ae = Autoencoder(image_size=16, latent_dim=4, channels=2).eval()
    y = op(torch.rand(2, 1, 16, 16))
    code = ae.latent(fbp(y, op, filter="hann")).reshape(2, 1, 4)
    result = hard_generative(y, op, ae, alpha=1.0, n_iter=0, n_restarts=3, restart_std=0.5)
    starts = result.restart_objectives
    torch.testing.assert_close(starts[0], hard_objective(code, y, op, ae, alpha=1.0))
    assert not torch.allclose(starts[1], starts[0])
    with pytest.raises(ValueError, match="latent"):
        hard_generative(y, op, LinearGenerator(torch.ones(256, 2)), alpha=1.0, init="encoder")


def test_callback_sees_every_restart_and_the_objective_decreases():
    torch.manual_seed(0)
    op = MatrixOperator(torch.randn(20, 16, dtype=F64), domain_shape=(4, 4))
    G = LinearGenerator(torch.randn(16, 5, dtype=F64))
    y = torch.randn(2, 20, dtype=F64)
    seen = []
    hard_generative(y, op, G, alpha=0.1, n_iter=50, n_restarts=3,
                    callback=lambda k, obj: seen.append((k, obj.clone())))  # fmt: skip
    assert [k for k, _ in seen] == list(range(50))
    assert all(obj.shape == (3, 2) for _, obj in seen)
    assert (seen[-1][1] < 0.5 * seen[0][1]).all()


def test_divergence_and_invalid_data_raise_clearly(problem):
    op, G, _, W, _, y = problem
    with pytest.raises(ValueError, match="NaN"):
        HardGenerative(generator=G, alpha=1.0)(y * float("nan"), op)
    for solver, weights in [
        (hard_generative, {"alpha": 1.0}),
        (soft_generative, {"lam": 1.0, "mu": 1.0}),
        (sparse_deviation_generative, {"lam": 1.0, "mu": 1.0}),
    ]:
        with pytest.raises(FloatingPointError, match="diverged.*iteration 0"):
            solver(y, op, NaNGenerator(W), n_iter=5, **weights)
    with pytest.raises(ValueError, match="do not fit"):
        hard_generative(torch.zeros(12, dtype=F64), MatrixOperator(torch.zeros(12, 9, dtype=F64)),
                        G, alpha=1.0)  # fmt: skip
    with pytest.raises(ValueError, match="z0 must have shape"):
        hard_generative(y, op, G, alpha=1.0, n_restarts=2, z0=torch.zeros(1, 3, 5, dtype=F64))
    with pytest.raises(ValueError, match="lam"):
        soft_generative(y, op, G, lam=0.0, mu=1.0)
    with pytest.raises(ValueError, match="unknown init"):
        HardGenerative(generator=G, alpha=1.0, init="prior")
    with pytest.raises(ValueError, match="latent_dim"):
        HardGenerative(generator=nn.Linear(2, 2), alpha=1.0)


def test_grid_search_chooses_the_weight_on_validation_data():
    torch.manual_seed(0)
    op = MatrixOperator(torch.randn(10, 16), domain_shape=(4, 4))
    G = LinearGenerator(torch.randn(16, 3))
    x = G.generate(torch.randn(6, 3)).detach()[:, 0]
    y = op(x) + 0.01 * torch.randn(6, 10)
    best, table = grid_search(
        lambda p: HardGenerative(generator=G, n_iter=150, lr=0.1, n_restarts=2, **p),
        {"alpha": [1e4, 1e-3]},
        y,
        x,
        op,
    )
    assert best == {"alpha": 1e-3}
    assert table[0]["psnr"] > table[1]["psnr"] + 10


@pytest.mark.parametrize(
    ("cls", "typo"),
    [
        (HardGenerative, {"alpha": 1.0, "n_iters": 3}),
        (SoftGenerative, {"lamda": 1.0, "mu": 1.0}),
        (SparseDeviationGenerative, {"lam": 1.0, "mu": 1.0, "inner_iters": 2}),
    ],
    ids=["hard", "soft", "sparse"],
)
def test_typos_in_keyword_arguments_raise_type_error(problem, cls, typo):
    G = problem[1]
    with pytest.raises(TypeError, match="unexpected keyword"):
        cls(generator=G, **typo)
    with pytest.raises(TypeError, match="n_restart"):
        hard_generative(problem[5], problem[0], G, alpha=1.0, n_restart=2)


@pytest.mark.parametrize("cls", [HardGenerative, SoftGenerative, SparseDeviationGenerative])
def test_a_generator_of_another_image_size_is_refused_before_any_work(cls):
    """Issue 31, item 12: a 64² generator with a 32² operator names both shapes and the fix."""
    op = CountingOperator(RayTransform(Parallel2D((32, 32), n_angles=8), backend="matrix"))
    y = torch.zeros(2, *op.range_shape)
    weights = {"alpha": 1.0} if cls is HardGenerative else {"lam": 1.0, "mu": 0.1}
    recon = cls(generator=Autoencoder(image_size=64, latent_dim=4, channels=2), **weights)
    with pytest.raises(ValueError, match="do not fit") as error:
        recon(y, op)
    message = str(error.value)
    assert "(1, 64, 64)" in message and "(32, 32)" in message
    assert "image_size=32" in message and "domain_shape (64, 64)" in message
    assert (op.forward_count, op.adjoint_count) == (0, 0)  # no FBP, no iteration
