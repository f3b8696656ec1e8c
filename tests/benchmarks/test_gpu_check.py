"""The GPU check: it refuses to run without CUDA and ASTRA with CUDA, and on a GPU it writes both
parts' JSON (skipped visibly elsewhere)."""

from __future__ import annotations

import json

import pytest

from benchmarks import gpu_check
from operators.ct.astra_backend import astra_cuda_available


@pytest.mark.skipif(astra_cuda_available(), reason="CUDA and ASTRA with CUDA are present")
def test_refuses_without_cuda(tmp_path):
    with pytest.raises(SystemExit, match="needs a CUDA device and ASTRA built with CUDA"):
        gpu_check.main(["--out-dir", str(tmp_path)])
    assert not any(tmp_path.iterdir())


def test_unknown_part_is_an_error():
    with pytest.raises(SystemExit):
        gpu_check.main(["--only", "everything"])


@pytest.mark.gpu
@pytest.mark.skipif(not astra_cuda_available(), reason="needs a CUDA GPU and ASTRA with CUDA")
def test_operator_checks_on_the_gpu(tmp_path):
    results = gpu_check.main(["--only", "operators", "--out-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "operators.json").read_text())
    assert saved == json.loads(json.dumps(results["operators"]))
    assert all(row["dot_test"] < 1e-2 for row in saved["dot"].values())
    assert all(v < 1e-3 for row in saved["agreement"].values() for v in row.values())
    assert saved["no_host_copy"]["pointer_is_input"]
    assert all(r["forward_ms"] > 0 and r["adjoint_ms"] > 0 for r in saved["throughput"])
