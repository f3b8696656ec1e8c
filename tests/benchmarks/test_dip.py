"""The deep-image-prior benchmark: its quick mode end to end (pretraining, cold and warm start,
the JSON), loading a checkpoint instead, and its argument checks."""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks import dip


@pytest.fixture(autouse=True)
def _one_thread():
    """Small convolutions run fastest on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_benchmark_quick_mode(tmp_path):
    out = tmp_path / "dip.json"
    result = dip.main(["--quick", "--out", str(out), "--work-dir", str(tmp_path / "pretrain")])
    saved = json.loads(out.read_text())
    assert saved["quick"] is True and saved == json.loads(json.dumps(result))
    assert set(saved["results"]) == {"fbp", "tv", "dip", "dip_warm"}
    assert saved["geometry"]["image_shape"] == [32, 32] and saved["test_images"] == 2
    for name in ("dip", "dip_warm"):
        row = saved["results"][name]
        assert len(row["psnr_curve_mean"]) == row["iterations"] + 1 == 21
        assert row["seconds_per_iteration_per_image"] > 0 and row["parameters"] > 0
        assert all(0 <= k <= 20 for k in row["kept_iteration_per_image"])
    assert math.isclose(
        saved["dip_minus_tv_db"],
        saved["results"]["dip"]["psnr_mean"] - saved["results"]["tv"]["psnr_mean"],
    )
    warm = saved["warm"]
    assert warm["target_psnr"] == saved["results"]["dip"]["psnr_mean"]
    assert len(warm["iterations_to_reach_per_image"]) == 2
    assert saved["pretraining"]["steps"] == 4

    # the same pretrained network from its checkpoint, without pretraining again
    again = dip.main(["--quick", "--out", str(tmp_path / "again.json"),
                      "--checkpoint", saved["pretraining"]["checkpoint"]])  # fmt: skip
    assert again["pretraining"]["steps"] is None
    for name in ("dip", "dip_warm"):  # seeded and deterministic
        assert again["results"][name]["psnr_per_image"] == result["results"][name]["psnr_per_image"]


def test_cold_only_and_argument_checks(tmp_path, capsys):
    result = dip.main(["--quick", "--no-warm", "--out", str(tmp_path / "cold.json")])
    assert set(result["results"]) == {"fbp", "tv", "dip"} and "warm" not in result
    with pytest.raises(SystemExit):
        dip.main(["--size", "32"])  # not quick: no pretraining steps by default
    assert "needs --checkpoint or --pretrain-steps" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        dip.main(["--quick", "--no-warm", "--iterations", "0"])
    assert "--iterations must be positive" in capsys.readouterr().err


def test_first_reaching():
    assert dip.first_reaching(torch.tensor([1.0, 3.0, 2.0, 4.0]), 2.5) == 1
    assert dip.first_reaching(torch.tensor([1.0]), 2.0) is None
