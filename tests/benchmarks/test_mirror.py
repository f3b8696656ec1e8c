"""The mirror-descent benchmark: its quick mode end to end, its arguments and its choice of the
baselines' steps."""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks import mirror
from benchmarks.mirror import best_baseline


def test_benchmark_quick_mode(tmp_path):
    result = mirror.main(["--quick", "--out", str(tmp_path / "mirror.json"),
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
    with pytest.raises(SystemExit):
        mirror.main(["--quick", "--extra-step", "0"])
    assert "--extra-step must be positive" in capsys.readouterr().err


def test_best_baseline_prefers_a_step_that_stays_converged():
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
