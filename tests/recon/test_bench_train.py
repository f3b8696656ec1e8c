"""The training-throughput benchmark: every backend timed in both precisions, table and JSON."""

from __future__ import annotations

import json

import pytest
import torch

from operators import available_backends
from recon.bench_train import main, steps_per_second


def test_benchmark_times_every_backend_in_float32_and_bfloat16(tmp_path, capsys):
    out = tmp_path / "throughput.json"
    result = main(["--steps", "1", "--n-iter", "1", "--channels", "4", "--amp", "--out", str(out)])
    backends = [b for b in ("matrix", "astra", "odl") if b in available_backends()]
    assert list(result["steps_per_second"]) == backends
    assert list(result["steps_per_second_bfloat16"]) == backends
    rates = [*result["steps_per_second"].values(), *result["steps_per_second_bfloat16"].values()]
    assert all(rate > 0 for rate in rates)
    assert result["fastest"] == max(result["steps_per_second"].values())
    assert json.loads(out.read_text())["steps_per_second"] == result["steps_per_second"]
    table = capsys.readouterr().out
    for backend in backends:
        fp32 = result["steps_per_second"][backend]
        bf16 = result["steps_per_second_bfloat16"][backend]
        assert f"| {backend} | float32 | {fp32:.3f} | {8 * fp32:.2f} |" in table
        assert f"| {backend} | bfloat16 | {bf16:.3f} |" in table
        assert f"| {bf16 / fp32:.2f} |" in table  # the bfloat16 speed-up over float32


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        steps_per_second("matrix", torch.zeros(1, 1, 128, 128), n_iter=1, channels=2, steps=1,
                         precision="float16")  # fmt: skip
