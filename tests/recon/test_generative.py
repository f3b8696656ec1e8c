"""Tests of recon.generative: the three formulations against analytic solutions with a linear
generator, the λ → ∞ limit of sparse deviations, the lasso optimality of the deviations, restarts,
the encoder start, divergence and input errors; configs and the benchmark's quick mode."""

from __future__ import annotations

import doctest
import json

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

import recon.generative
from models import Autoencoder
from operators import CountingOperator, MatrixOperator, Parallel2D, RayTransform
from recon.base import Reconstructor
from recon.classical import fbp
from recon.evaluate import evaluate
from recon.generative import (
    HardGenerative,
    SoftGenerative,
    SparseDeviationGenerative,
    hard_generative,
    hard_objective,
    load_generator,
    soft_generative,
    soft_objective,
    sparse_deviation_generative,
    sparse_deviation_objective,
    train_generative,
)
from recon.search import grid_search
from recon.train import CONF_DIR, train

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


def test_reconstructors_work_under_no_grad_and_leave_the_generator_alone():
    torch.manual_seed(0)
    op = CountingOperator(RayTransform(Parallel2D((16, 16), n_angles=8), backend="matrix"))
    ae = Autoencoder(image_size=16, latent_dim=4, channels=2).train()
    before = {k: v.clone() for k, v in ae.state_dict().items()}
    y = op(torch.rand(2, 3, 1, 16, 16))  # batch shape (2, 3, 1)
    for cls, weights in [
        (HardGenerative, {"alpha": 1.0}),
        (SoftGenerative, {"lam": 10.0, "mu": 0.1}),
        (SparseDeviationGenerative, {"lam": 1.0, "mu": 0.1}),
    ]:
        op.reset()
        with torch.no_grad():
            x = cls(generator=ae, n_iter=3, n_restarts=2, **weights)(y, op)
        assert isinstance(x, torch.Tensor) and x.shape == (2, 3, 1, 16, 16)
        assert torch.isfinite(x).all() and not x.requires_grad
        if cls is HardGenerative:  # 6 images x 2 restarts; the adjoint is applied explicitly
            assert (op.forward_count, op.adjoint_count) == (12 * (3 + 1), 12 * 3)
    assert ae.training  # its mode is restored ...
    for k, v in ae.state_dict().items():  # ... and eval mode kept batch-norm statistics fixed
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in ae.parameters())


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


def test_docstring_examples_run():
    result = doctest.testmod(recon.generative)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------- configs
@pytest.fixture
def compose_cfg():
    def _compose(name: str, *overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(name, overrides=list(overrides))

    yield _compose
    GlobalHydra.instance().clear()


SMALL_OP = ["operator.geometry.image_shape=[16,16]", "operator.geometry.n_detectors=23"]
TINY_DATA = ["data.splits.train.size=8", "data.splits.validation.size=2", "data.splits.test.size=2"]


@pytest.mark.parametrize("kind", ["ae", "vae", "gan"])
def test_training_experiments_run_a_few_steps(compose_cfg, tmp_path, kind):
    size = "model.generator.image_size=16" if kind == "gan" else "model.image_size=16"
    channels = (
        ["model.generator.channels=2", "model.critic.channels=2"]
        if kind == "gan"
        else ["model.channels=2"]
    )
    cfg = compose_cfg(
        "config", f"experiment=ellipses64_{kind}_generative", *SMALL_OP, *TINY_DATA, size,
        *channels, "model.latent_dim=4" if kind != "gan" else "model.generator.latent_dim=4",
        "trainer.max_steps=2", "trainer.batch_size=2", "trainer.val_every=2",
        "trainer.ckpt_every=2", "trainer.warmup_steps=0", "trainer.progress=false",
    )  # fmt: skip
    assert cfg.operator.geometry.n_angles == 15 and cfg.data.noise.relative == 0.05
    result = train_generative(cfg, output_dir=tmp_path)
    assert result["step"] == 2
    checkpoint = tmp_path / "checkpoints" / ("last.pt" if kind == "gan" else "best.pt")
    generator = load_generator(model=instantiate(cfg.model), checkpoint=checkpoint)
    assert generator.generate(torch.zeros(1, 4)).shape == (1, 1, 16, 16)


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_recon_train_takes_the_autoencoder_objective_node(compose_cfg, tmp_path, kind):
    cfg = compose_cfg(
        "config", f"experiment=ellipses64_{kind}_generative", *SMALL_OP, *TINY_DATA,
        "model.image_size=16", "model.channels=2", "model.latent_dim=4", "trainer.max_steps=2",
        "trainer.batch_size=2", "trainer.val_every=2", "trainer.ckpt_every=2",
        "trainer.warmup_steps=0", "trainer.progress=false",
    )  # fmt: skip
    result = train(cfg, output_dir=tmp_path)
    assert result["step"] == 2 and result["best_psnr"] is not None


@pytest.mark.parametrize("kind", ["ae", "vae", "gan"])
def test_full_size_model_configs_instantiate(kind):
    model = instantiate(OmegaConf.load(CONF_DIR / "model" / f"{kind}.yaml"))
    assert model.latent_dim == 128
    assert model.generate(torch.zeros(1, 128)).shape == (1, 1, 64, 64)


def test_operator_config_is_sparse_angle_64():
    op = instantiate(OmegaConf.load(CONF_DIR / "operator" / "parallel64_15.yaml"))
    assert op.domain_shape == (64, 64) and op.range_shape == (15, 91)


@pytest.mark.parametrize("name", ["hard", "soft", "sparse"])
def test_recon_configs_instantiate_standalone(name):
    method = instantiate(OmegaConf.load(CONF_DIR / "recon" / f"generative_{name}.yaml"))
    assert isinstance(method, Reconstructor) and not method.generator.training


def test_eval_experiment_loads_the_checkpoint_into_every_method(compose_cfg, tmp_path):
    overrides = ["generator_model.image_size=16", "generator_model.channels=2",
                 "generator_model.latent_dim=4"]  # fmt: skip
    probe = compose_cfg("eval", "experiment=ellipses64_eval_generative", "generator_checkpoint=x",
                        *overrides)  # fmt: skip
    trained = instantiate(probe.generator_model)
    with torch.no_grad():
        trained.decoder.out_conv.bias.fill_(0.25)  # recognisable weights
    torch.save({"model": trained.state_dict()}, tmp_path / "g.pt")
    cfg = compose_cfg(
        "eval", "experiment=ellipses64_eval_generative",
        f"generator_checkpoint={tmp_path / 'g.pt'}", *overrides, *SMALL_OP, *TINY_DATA,
        "methods.tv.n_iter=3", "methods.hard.n_iter=2", "methods.soft.n_iter=2",
        "methods.sparse.n_iter=2", "batch_size=2",
    )  # fmt: skip
    assert set(cfg.methods) == {"fbp", "tv", "hard", "soft", "sparse"}
    for name in ("hard", "soft", "sparse"):
        method = instantiate(cfg.methods[name])
        assert method.generator.decoder.out_conv.bias.item() == 0.25
    assert set(cfg.search_grid) == {"tv", "hard", "soft", "sparse"}
    results = evaluate(cfg, output_dir=tmp_path / "eval")
    assert set(results) == {"fbp", "tv", "hard", "soft", "sparse"}
    # hard: 4 restarts x (2 steps + the end) forward and 4 x 2 adjoint applications (FBP: none)
    assert results["hard"]["op_applications_per_image"] == 4 * 3 + 4 * 2


# --------------------------------------------------------------------------- benchmark
def test_benchmark_quick_mode_runs_and_reports(tmp_path):
    from recon.bench_generative import main

    out = tmp_path / "bench.json"
    summary = main(["--quick", "--models", "ae", "--work-dir", str(tmp_path / "runs"),
                    "--out", str(out), "--png", str(tmp_path / "ood.png")])  # fmt: skip
    assert json.loads(out.read_text())["quick"] is True
    assert (tmp_path / "ood.png").stat().st_size > 0
    results = summary["results"]
    assert set(results) == {"fbp", "tv", "ae/hard", "ae/soft", "ae/sparse"}
    for name, row in results.items():
        for key in ("id_psnr", "ood_psnr", "feature_psnr", "contrast", "seconds_per_image"):
            assert isinstance(row[key], float), (name, key)
    assert results["ae/sparse"]["restarts"] == 2 and results["tv"]["restarts"] == 1
    assert set(summary["tuned"]["ae/soft"]["params"]) == {"lam", "mu"}
    for name, row in summary["tuned"].items():  # edges flagged: each names a tuned parameter
        assert set(row["at_grid_edge"]) <= set(row["params"]), name
    assert summary["tuned"]["ae/soft"]["at_grid_edge"] == ["lam"]  # lam: 2 values, mu: 1
    # the same generators on a harder problem: fewer angles, more noise
    harder = main(["--quick", "--models", "ae", "--work-dir", str(tmp_path / "runs"),
                   "--out", str(tmp_path / "harder.json"), "--png", str(tmp_path / "h.png"),
                   "--n-angles", "5", "--noise", "0.2"])  # fmt: skip
    assert harder["settings"]["n_angles"] == 5 and "5 angles" in harder["geometry"]
    assert "20 % Gaussian noise" in harder["geometry"] and "5 %" in summary["geometry"]
    assert harder["training"]["ae"]["steps"] == summary["training"]["ae"]["steps"]  # reused
    assert harder["results"]["fbp"]["id_psnr"] < results["fbp"]["id_psnr"] - 1.0
    for bad in (["--n-angles", "0"], ["--noise", "-0.1"]):
        with pytest.raises(SystemExit, match="must be"):
            main(["--quick", "--models", "ae", "--work-dir", str(tmp_path / "runs"), *bad])


def test_benchmark_ood_twins_are_the_test_split_plus_a_disc():
    from operators import Parallel2D
    from recon.bench_generative import DATA_CONFIGS, QUICK, _data_config, ood_test_pairs
    from recon.data import build_split

    geometry = Parallel2D((QUICK.image_size,) * 2, n_angles=QUICK.n_angles)
    assert set(DATA_CONFIGS) == {"few_ellipses_5pct", "smooth_ellipses_5pct", "ellipses_5pct"}
    for name in DATA_CONFIGS:  # every data config of the benchmark
        cfg = _data_config(QUICK, name)
        test = ood_test_pairs(geometry, cfg, QUICK)
        split = build_split(cfg, "test", geometry)
        for i in range(QUICK.test_images):
            x, y = split[i]
            torch.testing.assert_close(test["x_id"][i], x, rtol=0, atol=0)
            torch.testing.assert_close(test["y_id"][i], y, rtol=0, atol=0)
        added = test["x_ood"] - test["x_id"]
        torch.testing.assert_close(added, test["disc"], rtol=0, atol=1e-6)
        assert float(test["disc"].amax()) > 0.3


def test_benchmark_refuses_a_work_dir_trained_on_other_data(tmp_path):
    from recon.bench_generative import main

    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "data.txt").write_text("ellipses_5pct\n")
    with pytest.raises(SystemExit, match="trained on --data ellipses_5pct"):
        main(["--quick", "--models", "ae", "--work-dir", str(tmp_path / "runs")])
    (tmp_path / "old" / "ae").mkdir(parents=True)  # an unmarked earlier run
    with pytest.raises(SystemExit, match="unknown data"):
        main(["--quick", "--models", "ae", "--work-dir", str(tmp_path / "old")])


def test_benchmark_feature_metrics():
    import recon.bench_generative as bench

    truth = torch.zeros(1, 1, 8, 8)
    disc = torch.zeros(1, 1, 8, 8)
    disc[..., 3:5, 3:5] = 0.5
    lost = bench.feature_metrics(truth, truth + disc, truth, disc, 0.5)
    found = bench.feature_metrics(truth + disc, truth + disc, truth, disc, 0.5)
    assert lost["contrast"] == 0.0 and found["contrast"] == 1.0
    assert found["feature_psnr"] > 100 > lost["feature_psnr"]
    result = doctest.testmod(bench)
    assert result.attempted > 0 and result.failed == 0
