"""Tests of recon.correction: TV descent with linear and learned operators, the correction
objective (forward/adjoint losses, recursive schedule), its trainer integration and the error
report."""

from __future__ import annotations

import json

import pytest
import torch

from models.unet import UNet
from operators import LinearOperator, MatrixOperator, Parallel2D, RayTransform
from operators.learned import LearnedOperator
from recon.classical import tv_pdhg
from recon.correction import (
    CorrectionObjective,
    TVDescent,
    correction_task,
    data_gradient,
    operator_errors,
    tv_descent,
)
from recon.mirror import SmoothedTV
from recon.training import Trainer


class _ResidualConv(torch.nn.Module):
    """x + conv3x3(x): a linear correction network, exact for the toy mismatches below."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular").double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


def _small_net() -> UNet:
    torch.manual_seed(0)
    return UNet(channels=4, depth=1, residual=True, norm=None).double()


@pytest.fixture(scope="module")
def ct():
    return RayTransform(Parallel2D((16, 16), n_angles=12), backend="matrix")


def test_tv_descent_solves_least_squares_without_tv():
    torch.manual_seed(0)
    matrix = torch.randn(12, 6, dtype=torch.float64)
    op = MatrixOperator(matrix)
    truth = torch.randn(3, 6, dtype=torch.float64)
    y = op(truth)
    x = tv_descent(y, op, lam=0.0, n_iter=3000, nonneg=False)
    assert torch.allclose(x, truth, atol=1e-6)


def test_tv_descent_decreases_the_objective_and_matches_pdhg(ct):
    torch.manual_seed(1)
    truth = torch.zeros(2, 16, 16, dtype=torch.float64)
    truth[:, 4:12, 5:11] = 1.0
    y = ct(truth) + 0.05 * torch.randn(2, *ct.range_shape, dtype=torch.float64)
    objective = SmoothedTV(lam=0.05, eps=1e-3)
    values = []
    x = tv_descent(
        y, ct, lam=0.05, eps=1e-3, n_iter=400, nonneg=False,
        callback=lambda k, xk: values.append(objective(xk, y, ct).sum().item()),
    )  # fmt: skip
    assert values[-1] < values[0]
    assert values[-1] <= min(values) + 1e-6 * abs(min(values))
    reference = tv_pdhg(y, ct, lam=0.05, n_iter=2000)
    assert torch.linalg.vector_norm(x - reference) / torch.linalg.vector_norm(reference) < 0.05


def test_tv_descent_nonneg_and_errors(ct):
    y = ct(torch.rand(1, 16, 16, dtype=torch.float64))
    x = TVDescent(lam=0.01, n_iter=20)(y, ct)
    assert x.shape == (1, 16, 16) and x.min() >= 0
    with pytest.raises(ValueError, match="range_shape"):
        tv_descent(torch.zeros(1, 3, 3), ct, lam=0.1)
    with pytest.raises(ValueError, match="NaN"):
        tv_descent(torch.full_like(y, float("nan")), ct, lam=0.1)
    with pytest.raises(ValueError, match="lam"):
        TVDescent(lam=-1.0)
    with pytest.raises(FloatingPointError, match="diverged"):
        tv_descent(1e300 * y, ct, lam=0.0, n_iter=50, lipschitz=1e-3, nonneg=False)


def test_data_gradient_of_a_learned_operator_is_its_autograd_gradient(ct):
    model = LearnedOperator(ct, image_net=_small_net(), data_net=_small_net())
    x = torch.rand(2, 16, 16, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, *ct.range_shape, dtype=torch.float64)
    (0.5 * (model(x) - y).pow(2).sum()).backward()
    assert torch.allclose(data_gradient(model, x.detach(), y), x.grad, atol=1e-10)


@pytest.mark.parametrize("adjoint", ["linearised", "learned"])
def test_tv_descent_with_a_learned_operator_runs_without_a_graph(ct, adjoint):
    """Under no_grad (as the benchmark times it) TV descent with A_q gives what it gives with
    autograd enabled, and builds no graph through the nets' parameters."""
    nets = {"image_net": _small_net(), "data_net": _small_net()}
    if adjoint == "learned":
        nets |= {"adjoint_image_net": _small_net(), "adjoint_data_net": _small_net()}
    model = LearnedOperator(ct, adjoint=adjoint, **nets)
    y = ct(torch.rand(2, 16, 16, dtype=torch.float64))
    kwargs = {"lam": 0.01, "n_iter": 5, "lipschitz": 4 * float(ct.norm()) ** 2}
    with torch.no_grad():
        fast = tv_descent(y, model, **kwargs)
    with torch.enable_grad():
        slow = tv_descent(y, model, **kwargs)
    assert not fast.requires_grad and fast.grad_fn is None
    torch.testing.assert_close(fast, slow.detach(), rtol=1e-10, atol=1e-12)


def test_recursive_schedule_grows_and_is_reproducible(ct):
    objective = CorrectionObjective(accurate=ct, recursive_iter=4, grow_every=10, seed=3)
    assert [objective.iterations_at(s) for s in range(10)] == [0] * 10
    draws = [objective.iterations_at(s) for s in range(10, 200)]
    assert max(draws[:10]) <= 1 and max(draws) == 4 and min(draws) == 0
    again = CorrectionObjective(accurate=ct, recursive_iter=4, grow_every=10, seed=3)
    assert draws == [again.iterations_at(s) for s in range(10, 200)]
    with pytest.raises(ValueError, match="both 0"):
        CorrectionObjective(accurate=ct, forward_weight=0, adjoint_weight=0)
    with pytest.raises(ValueError, match="linear operator"):
        CorrectionObjective(accurate=object())


def test_truth_fraction_sets_how_often_the_ground_truth_is_drawn(ct):
    mixed = CorrectionObjective(accurate=ct, recursive_iter=5, grow_every=1, truth_fraction=0.5)
    draws = torch.tensor([mixed.iterations_at(s) for s in range(10, 2010)])
    assert abs(float((draws == 0).float().mean()) - 0.5) < 0.04  # binomial sd ≈ 0.011
    recursive = draws[draws > 0]
    assert set(recursive.tolist()) == {1, 2, 3, 4, 5}
    uniform = CorrectionObjective(accurate=ct, recursive_iter=5, grow_every=1)
    share = sum(uniform.iterations_at(s) == 0 for s in range(10, 2010)) / 2000
    assert abs(share - 1 / 6) < 0.04
    never = CorrectionObjective(accurate=ct, recursive_iter=5, grow_every=1, truth_fraction=0)
    assert all(never.iterations_at(s) > 0 for s in range(1, 200))
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="truth_fraction"):
            CorrectionObjective(accurate=ct, recursive_iter=5, truth_fraction=bad)


class _DetectorBlur(LinearOperator):
    """Circular [1/4, 1/2, 1/4] blur along the detector axis: symmetric, so self-adjoint."""

    native_autograd = True

    def _matvec(self, y):
        return 0.25 * y.roll(1, dims=-1) + 0.5 * y + 0.25 * y.roll(-1, dims=-1)

    _rmatvec = _matvec


def _mismatched_pair(ct, *, blur: bool = True):
    """(Ã, A) with A = 1.5 · blur ∘ Ã (or 1.5 · Ã), a structured mismatch a data-space net can
    learn (Ã underestimates the amplitude, as the PAT regridding model does)."""
    if not blur:
        return ct, 1.5 * ct
    kernel = _DetectorBlur(ct.range_shape, ct.range_shape, dtypes=(torch.float64,))
    return ct, 1.5 * (kernel @ ct)


def test_correction_objective_losses_and_predict(ct):
    approx, accurate = _mismatched_pair(ct)
    model = LearnedOperator(approx, data_net=_small_net(), zero_init=True)
    objective, predict = correction_task(op=approx, accurate=accurate, adjoint_weight=0.0)
    x = torch.rand(4, 1, 16, 16, dtype=torch.float64)
    y = accurate(x)
    # the untrained (zero-initialised) correction is Ã: the loss is Ã's relative error squared
    expected = operator_errors(model, approx, accurate, x[:, 0], y[:, 0])["forward_approx"]
    assert objective(model, (x, y), step=1).item() == pytest.approx(
        expected.pow(2).mean().item(), rel=1e-10
    )
    estimate, truth = predict(model, (x, y))
    assert estimate.shape == truth.shape == (4, 1, *ct.range_shape)
    assert torch.allclose(truth[:, 0], accurate(x[:, 0]))


def test_adjoint_only_training_validates_the_adjoint(ct):
    approx, accurate = _mismatched_pair(ct)
    torch.manual_seed(0)
    model = LearnedOperator(
        approx, data_net=_small_net(), adjoint_data_net=_small_net(), adjoint="learned"
    )
    objective, predict = correction_task(op=approx, accurate=accurate, forward_weight=0.0)
    x = torch.rand(3, 1, 16, 16, dtype=torch.float64)
    y = accurate(x) + 0.01
    estimate, truth = predict(model, (x, y))
    r = model(x[:, 0]) - y[:, 0]
    assert estimate.shape == truth.shape == (3, 1, 16, 16)
    assert torch.allclose(estimate[:, 0], model.adjoint(r))
    assert torch.allclose(truth[:, 0], accurate.T(r))
    assert not torch.allclose(estimate, truth)  # the random adjoint net is not Aᵀ
    objective(model, (x, y)).backward()  # only the adjoint networks get gradients
    assert all(p.grad is not None for p in model.adjoint_data_net.parameters())
    assert all(p.grad is None for p in model.data_net.parameters())
    linearised = LearnedOperator(approx, data_net=_small_net(), adjoint="linearised")
    with pytest.raises(ValueError, match="forward_weight=0 trains the adjoint networks alone"):
        predict(linearised, (x, y))


@pytest.mark.parametrize("mode", ["learned", "linearised"])
def test_training_the_correction_reduces_model_and_adjoint_errors(ct, mode, tmp_path):
    """Through the shared trainer, a data-space net (and a learned adjoint net) learn
    A = 1.5·blur·Ã; the model and adjoint errors of A_q fall well below those of Ã on held-out
    images. The nets are linear residual convolutions, which can represent the mismatch."""
    approx, accurate = _mismatched_pair(ct)
    torch.manual_seed(0)
    nets = {"data_net": _ResidualConv()}
    if mode == "learned":
        nets["adjoint_data_net"] = _ResidualConv()
    model = LearnedOperator(approx, adjoint=mode, zero_init=True, **nets)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(80, 1, 16, 16, generator=gen, dtype=torch.float64)
    y = accurate(x) + 0.01 * torch.randn(80, 1, *ct.range_shape, generator=gen, dtype=torch.float64)
    train = torch.utils.data.TensorDataset(x[:64], y[:64])
    objective, predict = correction_task(op=approx, accurate=accurate)
    trainer = Trainer(
        model, train_data=train, val_data=None, objective=objective, predict=None,
        out_dir=tmp_path, max_steps=150, batch_size=8, progress=False,
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-2),
    )  # fmt: skip
    trainer.fit()
    errors = operator_errors(model, approx, accurate, x[64:, 0], y[64:, 0])
    assert errors["forward_approx"].mean() > 0.3
    assert errors["forward_model"].mean() < errors["forward_approx"].mean() / 3
    assert errors["adjoint_model"].mean() < errors["adjoint_approx"].mean() / 3


def test_recursive_inputs_are_tv_iterates_of_the_current_model(ct):
    approx, accurate = _mismatched_pair(ct)
    model = LearnedOperator(approx, data_net=_small_net(), zero_init=True)
    objective = CorrectionObjective(
        accurate=accurate, recursive_iter=3, grow_every=1, lam=0.01, seed=0
    )
    x = torch.rand(2, 16, 16, dtype=torch.float64)
    y = accurate(x)
    step = next(s for s in range(3, 100) if objective.iterations_at(s) == 2)
    u = objective.inputs(model, x, y, step)
    expected = tv_descent(y, model, lam=0.01, n_iter=2, lipschitz=objective._lipschitz())
    assert torch.allclose(u, expected) and not u.requires_grad
    assert objective.inputs(model, x, y, 0) is x


def test_lam_max_draws_the_tv_weight_log_uniformly_per_step(ct):
    approx, accurate = _mismatched_pair(ct)
    objective = CorrectionObjective(
        accurate=accurate, recursive_iter=3, grow_every=1, lam=1e-3, lam_max=1e-1, seed=0
    )
    lams = [objective.lam_at(s) for s in range(400)]
    assert min(lams) >= 1e-3 and max(lams) <= 1e-1
    logs = torch.tensor(lams).log10()
    assert abs(float(logs.mean()) + 2) < 0.1  # log-uniform on [-3, -1]: mean -2
    assert abs(float((logs < -2.5).double().mean()) - 0.25) < 0.07
    assert lams == [objective.lam_at(s) for s in range(400)]  # a resumed run draws the same
    # the draw of λ does not change the draw of k
    plain = CorrectionObjective(accurate=accurate, recursive_iter=3, grow_every=1, lam=1e-3)
    assert [objective.iterations_at(s) for s in range(50)] == [
        plain.iterations_at(s) for s in range(50)
    ]
    assert all(plain.lam_at(s) == 1e-3 for s in range(5))
    # and the inputs are the TV iterates at the drawn λ, with its own step size
    model = LearnedOperator(approx, data_net=_small_net(), zero_init=True)
    x = torch.rand(2, 16, 16, dtype=torch.float64)
    y = accurate(x)
    step = next(s for s in range(3, 100) if objective.iterations_at(s) == 2)
    lam = objective.lam_at(step)
    lipschitz = float(accurate.norm()) ** 2 + 8 * lam / objective.eps
    expected = tv_descent(y, model, lam=lam, eps=objective.eps, n_iter=2, lipschitz=lipschitz)
    assert torch.allclose(objective.inputs(model, x, y, step), expected)
    for bad in [{"lam": 0.0, "lam_max": 1e-2}, {"lam": 1e-2, "lam_max": 1e-3},
                {"lam": 1e-3, "lam_max": -1.0}]:  # fmt: skip
        with pytest.raises(ValueError, match="lam"):
            CorrectionObjective(accurate=accurate, recursive_iter=3, **bad)


def test_recursive_inputs_build_no_graph_through_the_learned_adjoint(ct):
    # a graph through the trainable nets would keep every iterate's activations alive
    approx, accurate = _mismatched_pair(ct)
    model = LearnedOperator(approx, data_net=_small_net(), adjoint="learned",
                            adjoint_data_net=_small_net(), zero_init=False)  # fmt: skip
    assert all(p.requires_grad for p in model.parameters())
    in_graph = []
    for net in (model.data_net, model.adjoint_data_net):
        net.register_forward_hook(lambda m, i, out: in_graph.append(out.requires_grad))
    objective = CorrectionObjective(
        accurate=accurate, recursive_iter=3, grow_every=1, lam=0.01, seed=0
    )
    x = torch.rand(2, 16, 16, dtype=torch.float64)
    step = next(s for s in range(3, 100) if objective.iterations_at(s) == 3)
    u = objective.inputs(model, x, accurate(x), step)
    assert len(in_graph) == 6 and not any(in_graph) and not u.requires_grad


# --------------------------------------------------------------------------- configs end to end
SMALL_PAT = [
    "operator.grid.shape=[16,16]",
    "operator.time.n_t=32",
    "data.simulation.operator.grid.shape=[16,16]",
    "data.simulation.operator.time.n_t=32",
    "data.simulation.operator.pml_size=8",
    "data.splits.train.size=8",
    "data.splits.validation.size=2",
    "data.splits.test.size=3",
    "trainer.max_steps=3",
    "trainer.batch_size=2",
    "trainer.warmup_steps=0",
    "trainer.val_every=3",
    "trainer.ckpt_every=3",
    "trainer.progress=false",
]


def _train_run(cfg, run_dir):
    from omegaconf import OmegaConf

    from recon.train import train

    result = train(cfg, output_dir=run_dir)
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # as recon-train's hydra.main does
    return result


def test_pat_correction_run_the_benchmark_and_an_unrolled_net_using_it(
    compose_cfg, tmp_path, capsys
):
    """recon-train experiment=pat_model_correction (tiny), then bench_correction on its test
    split, then experiment=pat_unrolled_corrected with the frozen A_q as its operator."""
    from recon.bench_correction import main as bench
    from recon.correction import load_correction

    cfg = compose_cfg(
        "experiment=pat_model_correction", *SMALL_PAT,
        "objective.recursive_iter=2", "objective.grow_every=1",
    )  # fmt: skip
    _train_run(cfg, tmp_path / "correction")
    model = load_correction(tmp_path / "correction")
    assert isinstance(model, LearnedOperator) and model.adjoint_mode == "learned"
    assert not any(p.requires_grad for p in model.parameters())

    unrolled = compose_cfg(
        "experiment=pat_unrolled_corrected", f"correction_run={tmp_path / 'correction'}",
        *[o for o in SMALL_PAT if not o.startswith("operator.")], "model.n_iter=2",
        "model.channels=4",
    )  # fmt: skip
    _train_run(unrolled, tmp_path / "lg")

    out = tmp_path / "bench.json"
    results = bench([
        "--run", str(tmp_path / "correction"), "--tv-iter", "3", "--out", str(out),
        "--unrolled", f"corrected={tmp_path / 'lg'}",
        "--linear-bound", "4", "--image-kernel", "3", "--data-kernel", "3",
    ])  # fmt: skip
    assert out.is_file() and results["n_test"] == 3 and results["threads"] >= 1
    errors = results["errors"]
    assert 0 < errors["forward_approx"] < 2 and 0 < errors["forward_model"] < 2
    bound = results["linear_bound"]  # filters fitted on 4 training images, errors on the test 3
    assert bound["n_train"] == 4 and bound["image_kernel"] == bound["data_kernel"] == 3
    assert 0 < bound["forward"] < errors["forward_approx"]
    assert 0 < bound["adjoint"] < 2
    assert set(results["tv"]["methods"]) == {"accurate A", "approximate Ã", "learned A_q"}
    assert all(r["seconds_per_image"] > 0 for r in results["tv"]["methods"].values())
    assert results["unrolled"]["corrected"]["psnr"] > 0
    assert all(r["lam"] == results["tv"]["lam"] for r in results["tv"]["methods"].values())

    # λ tuned per operator on the validation split: each gets the argmax of its own scores
    tuned = bench(["--run", str(tmp_path / "correction"), "--tv-iter", "3",
                   "--tv-lams", "1e-4,0.5", "--n-test", "2"])  # fmt: skip
    scores = tuned["tv"]["tuning_validation_psnr"]
    assert set(scores) == set(tuned["tv"]["methods"]) and all(len(v) == 2 for v in scores.values())
    for name, row in tuned["tv"]["methods"].items():
        assert row["lam"] == float(max(scores[name], key=scores[name].get))
    assert "best validation PSNR" in capsys.readouterr().out

    # --linearised-adjoint: a fourth row, TV with the exact gradient of ½‖A_q x − y‖² (the same
    # networks; the loaded model keeps its learned adjoint)
    from recon.bench_correction import _linearised

    # --bf16: a fifth, A_q with its networks in bfloat16, with its errors (rounding away), and
    # with both flags a sixth, the linearised adjoint in bfloat16
    lin = bench(["--run", str(tmp_path / "correction"), "--tv-iter", "3", "--n-test", "2",
                 "--linearised-adjoint", "--bf16"])  # fmt: skip
    rows = ["learned A_q, linearised adjoint", "learned A_q, bfloat16",
            "learned A_q, linearised adjoint, bfloat16"]  # fmt: skip
    assert list(lin["tv"]["methods"]) == ["accurate A", "approximate Ã", "learned A_q", *rows]
    for name in rows:
        row = lin["tv"]["methods"][name]
        assert row["psnr"] > 0 and row["seconds_per_image"] > 0
    for key in ("forward_model", "adjoint_model"):
        assert lin["errors_bf16"][key] == pytest.approx(lin["errors"][key], rel=0.05, abs=2e-3)
    assert lin["errors_bf16"]["forward_approx"] == lin["errors"]["forward_approx"]
    assert model.data_net.compute_dtype is None  # the bench rounds a copy
    copy = _linearised(model)
    assert copy.adjoint_mode == "linearised" and model.adjoint_mode == "learned"
    assert copy.data_net is model.data_net
    x = torch.rand(2, *model.domain_shape, requires_grad=True)
    y = torch.randn(2, *model.range_shape)
    (expected,) = torch.autograd.grad(0.5 * ((model(x) - y) ** 2).sum(), x)
    torch.testing.assert_close(copy.gradient(x.detach(), y), expected)
    assert not torch.allclose(model.gradient(x.detach(), y), expected, rtol=1e-3, atol=0)
    with pytest.raises(ValueError, match="needs a LearnedOperator"):
        _linearised(torch.nn.Identity())
    # the same switch when loading: the run's networks, the exact gradient
    loaded = load_correction(tmp_path / "correction", adjoint="linearised")
    assert loaded.adjoint_mode == "linearised" and loaded.adjoint_image_net is not None
    torch.testing.assert_close(loaded.gradient(x.detach(), y), expected)
    assert load_correction(tmp_path / "correction", adjoint="learned").adjoint_mode == "learned"
    with pytest.raises(ValueError, match="adjoint must be one of"):
        load_correction(tmp_path / "correction", adjoint="exact")

    # --iterate-errors: the errors at the k-th TV iterates of A_q and of A, equal to the errors
    # computed directly at those iterates
    from hydra.utils import instantiate

    from recon.bench_correction import _run_config, _test_data
    from recon.correction import operator_errors, tv_descent

    its = bench(["--run", str(tmp_path / "correction"), "--no-tv", "--n-test", "2",
                 "--iterate-errors", "1,3", "--tv-lam", "1e-3"])  # fmt: skip
    table = its["iterate_errors"]
    assert table["lam"] == 1e-3
    assert (
        [row["k"] for row in table["learned A_q"]]
        == [1, 3]
        == [row["k"] for row in table["accurate A"]]
    )
    run_cfg = _run_config(tmp_path / "correction")
    accurate, approx = instantiate(run_cfg.objective.accurate), instantiate(run_cfg.operator)
    xs, ys = _test_data(run_cfg, 2)
    lipschitz = float(accurate.norm()) ** 2 + 8 * 1e-3 / 0.01
    for name, op in (("learned A_q", model), ("accurate A", accurate)):
        with torch.no_grad():
            u = tv_descent(ys, op, lam=1e-3, n_iter=3, lipschitz=lipschitz)
        direct = operator_errors(model, approx, accurate, u, ys)
        for key, value in direct.items():
            assert table[name][1][key] == pytest.approx(float(value.mean()), rel=1e-4), key
    assert table["learned A_q"][0]["forward_model"] != table["learned A_q"][1]["forward_model"]
    assert "Errors at the TV iterates" in capsys.readouterr().out

    # the speed benchmark: A, Ã and two runs' A_q in turns, same data and iterations
    import shutil

    from omegaconf import OmegaConf

    from recon.bench_correction_speed import main as speed

    shutil.copytree(tmp_path / "correction", tmp_path / "copy")
    out = tmp_path / "speed.json"
    timed = speed(["--run", str(tmp_path / "correction"), "--run", str(tmp_path / "copy"),
                   "--n-test", "2", "--iters", "3", "--out", str(out), "--bf16",
                   "--linearised-adjoint"])  # fmt: skip
    names = [
        f"A_q {run}{kind}"
        for run in ("correction", "copy")
        for kind in ("", ", linearised adjoint", ", bfloat16", ", linearised adjoint, bfloat16")
    ]
    assert list(timed) == ["accurate A", "approximate Ã", *names]
    assert all(len(r["repeats"]) == 2 and r["seconds_per_image"] > 0 for r in timed.values())
    assert timed["accurate A"]["speedup"] == 1.0
    for row in timed.values():
        assert row["speedup"] == pytest.approx(
            timed["accurate A"]["seconds_per_image"] / row["seconds_per_image"]
        )
    payload = json.loads(out.read_text())
    assert payload["methods"] == timed and isinstance(payload["keep_freed_memory"], bool)
    assert "× faster than A" in capsys.readouterr().out
    with pytest.raises(ValueError, match="two runs are named"):
        speed(["--run", str(tmp_path / "correction"), "--run", str(tmp_path / "correction")])
    other = OmegaConf.load(tmp_path / "copy" / ".hydra" / "config.yaml")
    other.data.splits.test.seed += 1
    OmegaConf.save(other, tmp_path / "copy" / ".hydra" / "config.yaml")
    with pytest.raises(ValueError, match="another data"):
        speed(["--run", str(tmp_path / "correction"), "--run", str(tmp_path / "copy")])
    with pytest.raises(SystemExit):
        speed(["--run", str(tmp_path / "correction"), "--repeats", "0"])
    assert "--repeats must be ≥ 1" in capsys.readouterr().err

    for bad, message in [(["--linear-bound", "-1"], "--linear-bound takes a number"),
                         (["--tv-lams", "0,1"], "expected positive numbers"),
                         (["--tv-lams", "a"], "expected numbers separated by commas"),
                         (["--iterate-errors", "0,5"], "expected iteration counts ≥ 1"),
                         (["--iterate-errors", "5.5"], "expected integers separated by commas"),
                         (["--tv-lams", "1", "--tv-lam", "1"], "exclude each other")]:  # fmt: skip
        with pytest.raises(SystemExit):
            bench(["--run", str(tmp_path / "correction"), *bad])
        assert message in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="not a recon-train run"):
        bench(["--run", str(tmp_path)])


@pytest.mark.parametrize(
    "name", ["pat_model_correction", "pat_model_correction128", "ct_parallel_model_correction"]
)
def test_late_iterate_stage_fine_tunes_the_first_stage_on_200_tv_iterations(compose_cfg, name):
    first = compose_cfg(f"experiment={name}")
    cfg = compose_cfg(f"experiment={name}_late")
    assert cfg.init_from.endswith("/checkpoints/best.pt")
    assert cfg.objective.recursive_iter == 200 and cfg.objective.grow_every == 1
    assert first.objective.recursive_iter == 20
    assert cfg.model == first.model and cfg.data == first.data and cfg.operator == first.operator
    assert cfg.objective.truth_fraction == first.objective.truth_fraction
    assert cfg.objective.lam == first.objective.lam


@pytest.mark.parametrize("name", ["pat_model_correction", "pat_model_correction128"])
def test_lams_stage_fine_tunes_the_late_stage_over_the_tuned_tv_weights(compose_cfg, name):
    from hydra.utils import instantiate

    late = compose_cfg(f"experiment={name}_late")
    cfg = compose_cfg(f"experiment={name}_lams")
    assert cfg.init_from.endswith("_late/checkpoints/best.pt")
    assert cfg.objective.lam == 5e-4 and cfg.objective.lam_max == 4e-3
    assert cfg.objective.recursive_iter == 200 and cfg.optim.lr < late.optim.lr
    assert cfg.model == late.model and cfg.data == late.data and cfg.operator == late.operator
    objective, _ = instantiate(cfg.objective, op=None)
    assert objective.lam_max == 4e-3 and len({objective.lam_at(s) for s in range(3)}) == 3


def test_adjoint_stage_trains_wider_periodic_adjoint_networks_alone(compose_cfg):
    late = compose_cfg("experiment=ct_parallel_model_correction_late")
    cfg = compose_cfg("experiment=ct_parallel_model_correction_adjoint")
    assert cfg.init_from == "outputs/ct_parallel_late/checkpoints/best.pt"
    assert list(cfg.init_skip) == ["adjoint_image_net", "adjoint_data_net"]
    assert cfg.objective.forward_weight == 0 and cfg.objective.truth_fraction == 1.0
    assert cfg.optim.weight_decay == 0  # with no gradient, the forward nets stay as loaded
    assert cfg.model.image_net == late.model.image_net
    assert cfg.model.data_net == late.model.data_net
    adjoint_data_net = cfg.model.adjoint_data_net
    assert adjoint_data_net.channels > late.model.adjoint_data_net.channels
    assert list(adjoint_data_net.periodic) == [True, False]  # (angle, detector)
    assert cfg.data == late.data and cfg.operator == late.operator


def test_ct_correction_experiment_composes_with_the_accurate_model_as_simulator(compose_cfg):
    from hydra.utils import instantiate

    cfg = compose_cfg("experiment=ct_model_correction")
    assert cfg.objective.accurate._target_ == "operators.SupersampledRayTransform"
    assert cfg.data.simulation.operator == cfg.objective.accurate
    assert cfg.operator._target_ == "operators.RayTransform"
    model = instantiate(cfg.model)
    assert model.domain_shape == (64, 64) and model.adjoint_mode == "learned"


def test_ct_parallel_correction_experiment_swaps_only_the_approximate_model(compose_cfg):
    from hydra.utils import instantiate

    fan = compose_cfg("experiment=ct_model_correction")
    cfg = compose_cfg("experiment=ct_parallel_model_correction")
    assert cfg.objective.accurate == fan.objective.accurate and cfg.data == fan.data
    assert cfg.objective == fan.objective and cfg.trainer == fan.trainer
    assert cfg.operator.geometry._target_ == "operators.Parallel2D"
    model = instantiate(cfg.model)
    assert model.range_shape == (60, 96) and model.adjoint_mode == "learned"
    assert model.data_net.coordinates and model.data_net.channels == 16
    assert model.image_net.coordinates and model.image_net.channels == 8
