"""The training-throughput benchmark: every backend timed in both precisions, table and JSON."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import train_throughput as bench_train
from benchmarks.train_throughput import main, operator_ms_per_step, steps_per_second
from operators import available_backends


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
        op_ms = result["operator_ms_per_step"][backend]
        assert 0 < op_ms < 1000 / fp32  # the operator's part is part of the step
        assert f"| {backend} | float32 | {1000 / fp32:.0f} | {op_ms:.0f} |" in table


def test_operator_time_is_two_applications_of_each_per_iteration(monkeypatch):
    """On a fake clock where A takes 2 ms and Aᵀ 3 ms, a 4-iteration step costs 2·4·(2+3) ms."""
    clock = [0.0]

    class FakeOperator:
        def __init__(self, geometry, *, backend):
            self.T = self.adjoint

        def __call__(self, x):
            clock[0] += 0.002
            return x

        def adjoint(self, y):
            clock[0] += 0.003
            return y

    monkeypatch.setattr(bench_train, "RayTransform", FakeOperator)
    monkeypatch.setattr(bench_train.time, "perf_counter", lambda: clock[0])
    ms = operator_ms_per_step("matrix", torch.zeros(1, 1, 128, 128), n_iter=4, repeats=3)
    assert ms == pytest.approx(40.0)


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        steps_per_second("matrix", torch.zeros(1, 1, 128, 128), n_iter=1, channels=2, steps=1,
                         precision="float16")  # fmt: skip


def test_compile_study_times_every_layout_and_compile_setting(tmp_path, capsys, monkeypatch):
    from recon.training.compilation import compile_networks

    # the eager compiler backend checks the wiring without minutes of code generation
    monkeypatch.setattr(
        bench_train, "compile_networks", lambda model: compile_networks(model, backend="eager")
    )
    out = tmp_path / "throughput.json"
    argv = ["--steps", "1", "--n-iter", "1", "--channels", "4", "--batch", "1"]
    result = main([*argv, "--backends", "matrix", "--compile", "--out", str(out)])
    records = result["compile_study"]
    assert [(r["channels_last"], r["compiled"]) for r in records] == [
        (False, False),
        (False, True),
        (True, False),
        (True, True),
    ]
    assert all(r["precision"] == "float32" and r["steps_per_second"] > 0 for r in records)
    assert result["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert json.loads(out.read_text())["compile_study"] == records
    table = capsys.readouterr().out
    base = records[0]["steps_per_second"]
    for r in records[1:]:
        assert f"| {r['steps_per_second']:.3f} |" in table
        assert f"| {r['steps_per_second'] / base:.2f} |" in table
