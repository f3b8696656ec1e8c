"""The photoacoustic benchmark: its table, its speed-ups and a real quick run."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from benchmarks import pat_operators as bench_pat


def test_speedups_and_table():
    rows = [
        bench_pat.Row("kspace", 1, forward_ms=200.0, adjoint_ms=200.0, setup_s=0.3),
        bench_pat.Row("regrid", 1, 1.0, 3.0, 0.01, error_raw=0.4, error_smooth=0.45),
        bench_pat.Row("kspace", 16, 150.0, 150.0, 0.3),
        bench_pat.Row("regrid", 16, 2.0, 1.0, 0.01, error_raw=0.4, error_smooth=0.45),
        bench_pat.Row("line", 16, 1.5, 1.5, 0.1, error_raw=0.03, error_smooth=3e-3),
    ]
    gains = bench_pat.speedups(rows)
    assert gains == {"regrid": {1: 100.0, 16: 100.0}, "line": {16: 100.0}}
    table = bench_pat.format_table(rows)
    assert "| regridding Ã (LineSensorRegridding) | 1 | 1.00 | 3.00 | 4.00 | 100.0 |" in table
    assert "| time stepper (KSpaceWave) | 16 | 150.00 | 150.00 | 300.00 | 1.0 |" in table
    assert "| 3.0e-02 | 3.0e-03 | — |" in table


def test_quick_run_prints_the_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "pat.json"
    result = bench_pat.main(["--quick", "--batches", "1,2", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "headline: the regridding model Ã is" in printed
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    rows = {(r["method"], r["batch"]): r for r in result["rows"]}
    assert set(rows) == {(m, b) for m in bench_pat.METHODS for b in (1, 2)}
    assert all(r["forward_ms"] > 0 and r["adjoint_ms"] > 0 for r in rows.values())
    # errors against the time stepper (32², four vessel phantoms)
    assert rows[("line", 1)]["error_smooth"] < 0.05
    assert 0.2 < rows[("regrid", 1)]["error_smooth"] < 1.0
    # the Fourier models beat the time stepper by a wide margin even at 32²
    assert result["speedup_vs_kspace"]["regrid"]["1"] > 10
    assert result["speedup_vs_kspace"]["line"]["2"] > 10


@pytest.mark.skipif(
    importlib.util.find_spec("jwave") is not None, reason="j-Wave is installed here"
)
def test_jwave_failure_is_reported_not_raised():
    """With an interpreter lacking j-Wave the row is skipped and the error kept."""
    grid, time = bench_pat.problem(16)
    raw, smooth = bench_pat.phantoms(16, count=1)
    reference = {"phantom": smooth, "data": bench_pat.build("kspace", grid, time)(smooth)}
    logs = []
    row, info = bench_pat.run_jwave(sys.executable, 16, reference, reps=1, log=logs.append)
    assert row is None and "ModuleNotFoundError" in info["error"]
    assert any("jwave failed" in line for line in logs)


def test_unknown_method_is_an_error():
    with pytest.raises(SystemExit):
        bench_pat.main(["--quick", "--methods", "kspace,fdtd"])
