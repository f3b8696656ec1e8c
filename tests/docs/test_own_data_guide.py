"""The runnable examples of docs/guide/own-data.md: short, and they reach the PSNR they print."""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide" / "own-data.md"


def examples() -> dict[str, str]:
    """``name -> code`` of every ``<!-- example: name -->`` block."""
    text = GUIDE.read_text()
    return dict(re.findall(r"<!-- example: (\w+) -->\n```python\n(.*?)```", text, re.S))


def code_lines(code: str) -> int:
    return sum(1 for line in code.splitlines() if line.strip() and not line.strip().startswith("#"))


def test_the_guide_has_both_examples_of_at_most_15_lines():
    found = examples()
    assert set(found) == {"ct", "raw"}
    assert all(code_lines(code) <= 15 for code in found.values()), {
        name: code_lines(code) for name, code in found.items()
    }


def run(code: str, tmp_path, monkeypatch, quiet: bool = True) -> str:
    monkeypatch.setenv("TOMOLEARN_CACHE_DIR", str(tmp_path))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        exec(compile(code, str(GUIDE), "exec"), {})
    return out.getvalue()


def db(text: str, method: str) -> float:
    return float(re.search(rf"{method} ([\d.]+) dB", text).group(1))


@pytest.mark.slow
def test_ct_example_warns_and_iterative_methods_cope_with_the_gap(tmp_path, monkeypatch):
    from recon.classical import AngularCoverageWarning

    with pytest.warns(AngularCoverageWarning, match="gaps.*SIRT, CGLS or TV"):
        out = run(examples()["ct"], tmp_path, monkeypatch, quiet=False)
    assert db(out, "TV") > 30 and db(out, "SIRT") > db(out, "FBP") + 4


@pytest.mark.slow
def test_raw_example_finds_the_centre_and_reconstructs(tmp_path, monkeypatch):
    out = run(examples()["raw"], tmp_path, monkeypatch)
    centre = float(re.search(r"centre ([-\d.]+)", out).group(1))
    assert abs(centre - 3.5) <= 0.25
    assert db(out, "FBP") > 23 and db(out, "TV") > 32
