"""The correction benchmarks on a tiny trained run: model errors, TV with each operator, λ tuned
per operator, linearised adjoint and bfloat16, errors at the TV iterates, an unrolled network using
the frozen A_q, and the side-by-side speed of several runs."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from benchmarks.common import linearised, run_config, split_pairs
from benchmarks.correction import main as bench
from benchmarks.correction_speed import main as speed
from operators.learned import LearnedOperator
from recon.correction import load_correction, operator_errors, tv_descent

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
    from recon.cli.train import train

    result = train(cfg, output_dir=run_dir)
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # as recon-train's hydra.main does
    return result


def test_pat_correction_run_the_benchmark_and_an_unrolled_net_using_it(
    compose_cfg, tmp_path, capsys
):
    """recon-train experiment=correction_pat64/forward (tiny), then benchmarks.correction on its
    test split, then experiment=pat/unrolled_corrected with the frozen A_q as its operator."""
    cfg = compose_cfg(
        "experiment=correction_pat64/forward", *SMALL_PAT,
        "objective.recursive_iter=2", "objective.grow_every=1",
    )  # fmt: skip
    _train_run(cfg, tmp_path / "correction")
    model = load_correction(tmp_path / "correction")
    assert isinstance(model, LearnedOperator) and model.adjoint_mode == "learned"
    assert not any(p.requires_grad for p in model.parameters())

    unrolled = compose_cfg(
        "experiment=pat/unrolled_corrected", f"correction_run={tmp_path / 'correction'}",
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
    copy = linearised(model)
    assert copy.adjoint_mode == "linearised" and model.adjoint_mode == "learned"
    assert copy.data_net is model.data_net
    x = torch.rand(2, *model.domain_shape, requires_grad=True)
    y = torch.randn(2, *model.range_shape)
    (expected,) = torch.autograd.grad(0.5 * ((model(x) - y) ** 2).sum(), x)
    torch.testing.assert_close(copy.gradient(x.detach(), y), expected)
    assert not torch.allclose(model.gradient(x.detach(), y), expected, rtol=1e-3, atol=0)
    with pytest.raises(ValueError, match="needs a LearnedOperator"):
        linearised(torch.nn.Identity())
    # the same switch when loading: the run's networks, the exact gradient
    loaded = load_correction(tmp_path / "correction", adjoint="linearised")
    assert loaded.adjoint_mode == "linearised" and loaded.adjoint_image_net is not None
    torch.testing.assert_close(loaded.gradient(x.detach(), y), expected)
    assert load_correction(tmp_path / "correction", adjoint="learned").adjoint_mode == "learned"
    with pytest.raises(ValueError, match="adjoint must be one of"):
        load_correction(tmp_path / "correction", adjoint="exact")

    # --iterate-errors: the errors at the k-th TV iterates of A_q and of A, equal to the errors
    # computed directly at those iterates
    its = bench(["--run", str(tmp_path / "correction"), "--no-tv", "--n-test", "2",
                 "--iterate-errors", "1,3", "--tv-lam", "1e-3"])  # fmt: skip
    table = its["iterate_errors"]
    assert table["lam"] == 1e-3
    assert (
        [row["k"] for row in table["learned A_q"]]
        == [1, 3]
        == [row["k"] for row in table["accurate A"]]
    )
    run_cfg = run_config(tmp_path / "correction")
    accurate, approx = instantiate(run_cfg.objective.accurate), instantiate(run_cfg.operator)
    xs, ys = split_pairs(run_cfg, 2)
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
