"""The generative benchmark: its quick mode end to end, its out-of-distribution twins, its work
directory and its feature metrics (the library's tests live in tests/recon/generative/ and
tests/recon/training/tasks/)."""

from __future__ import annotations

import doctest
import json

import pytest
import torch

import benchmarks.generative as bench
from benchmarks.generative import DATA_CONFIGS, QUICK, data_config, main, ood_test_pairs


def test_benchmark_quick_mode_runs_and_reports(tmp_path):
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
    from recon.data import build_split

    geometry = Parallel2D((QUICK.image_size,) * 2, n_angles=QUICK.n_angles)
    assert set(DATA_CONFIGS) == {"few_ellipses_5pct", "smooth_ellipses_5pct", "ellipses_5pct"}
    for name in DATA_CONFIGS:  # every data config of the benchmark
        cfg = data_config(QUICK, name)
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
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "data.txt").write_text("ellipses_5pct\n")
    with pytest.raises(SystemExit, match="trained on --data ellipses_5pct"):
        main(["--quick", "--models", "ae", "--work-dir", str(tmp_path / "runs")])
    (tmp_path / "old" / "ae").mkdir(parents=True)  # an unmarked earlier run
    with pytest.raises(SystemExit, match="unknown data"):
        main(["--quick", "--models", "ae", "--work-dir", str(tmp_path / "old")])


def test_benchmark_feature_metrics():
    truth = torch.zeros(1, 1, 8, 8)
    disc = torch.zeros(1, 1, 8, 8)
    disc[..., 3:5, 3:5] = 0.5
    lost = bench.feature_metrics(truth, truth + disc, truth, disc, 0.5)
    found = bench.feature_metrics(truth + disc, truth + disc, truth, disc, 0.5)
    assert lost["contrast"] == 0.0 and found["contrast"] == 1.0
    assert found["feature_psnr"] > 100 > lost["feature_psnr"]
    result = doctest.testmod(bench)
    assert result.attempted > 0 and result.failed == 0
