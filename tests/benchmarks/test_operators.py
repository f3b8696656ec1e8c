"""The operator benchmark: its floor model and a real (slow) run of the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks import operators as bench


def test_floor_is_bandwidth_or_flop_bound():
    # 1e6 non-zeros, batch 1: 8 MB of matrix at 8 GB/s = 1 ms; 2 MFLOP at 1 GFLOP/s = 2 ms
    assert bench.matrix_floor_ms(10**6, 0, 0, 1, gbs=8.0, gflops=1.0) == pytest.approx(2.0)
    assert bench.matrix_floor_ms(10**6, 0, 0, 1, gbs=1.0, gflops=1000.0) == pytest.approx(8.0)
    # the matrix read is shared by the batch
    per_image_32 = bench.matrix_floor_ms(10**6, 0, 0, 32, gbs=8.0, gflops=1e9)
    assert per_image_32 == pytest.approx(1.0 / 32)


def test_headline_ratio_and_table():
    rows = [
        bench.Row("parallel 128² 60a", "astra-loop", 32, forward_ms=8.0, adjoint_ms=8.0),
        bench.Row(
            "parallel 128² 60a", "matrix", 32, forward_ms=0.25, adjoint_ms=0.25, floor_ms=0.1
        ),
    ]
    head = bench.headline(rows)
    assert head["speedup_vs_astra_loop"] == pytest.approx(32.0)
    assert head["matrix_over_floor"] == pytest.approx(5.0)
    table = bench.format_table(rows)
    assert "| parallel 128² 60a | matrix | 32 | 0.250 | 0.250 | 0.500 |" in table


@pytest.mark.slow
def test_quick_benchmark_runs_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.operators",
        "--quick",
        "--out",
        str(out),
        "--methods",
        "astra-loop,matrix",
        "--batches",
        "1,32",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    methods = {(r["method"], r["batch"]) for r in result["rows"]}
    assert methods == {("astra-loop", 1), ("astra-loop", 32), ("matrix", 1), ("matrix", 32)}
    assert all(r["forward_ms"] > 0 and r["adjoint_ms"] > 0 for r in result["rows"])
    assert all(r["rel_error"] < 1e-5 for r in result["rows"])
    assert result["headline"]["speedup_vs_astra_loop"] > 0
    assert "headline" in proc.stdout
