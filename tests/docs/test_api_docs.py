"""The API reference builds from the docstrings with warnings as errors, as `make docs` does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_api_reference_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx", reason="the docs extra is not installed: pip install -e .[docs]")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-E",  # read every source afresh: no cached environment hides a warning
            "-b",
            "html",
            "-W",
            "--keep-going",
            "-q",
            str(ROOT / "docs" / "api"),
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, f"sphinx-build failed:\n{result.stderr[-6000:]}"
    index = (tmp_path / "html" / "index.html").read_text(encoding="utf-8")
    assert "recon.solvers" in index
    # Every package page holds documented objects, not just a title.
    for page in ("operators", "solvers", "classical", "training"):
        assert 'class="sig-name descname"' in (tmp_path / "html" / f"{page}.html").read_text(
            encoding="utf-8"
        ), f"{page}.html documents nothing"
