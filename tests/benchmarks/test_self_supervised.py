"""The self-supervised benchmark at a tiny size: every mode trains, table and JSON."""

from __future__ import annotations

import json

import pytest

from benchmarks.self_supervised import main


def test_every_mode_trains_and_is_scored(tmp_path, capsys):
    out = tmp_path / "ss.json"
    argv = ["--size", "16", "--angles", "8", "--steps", "2", "--batch", "2", "--channels", "4"]
    result = main([*argv, "--depth", "1", "--test", "3", "--out", str(out)])
    assert list(result["results"]) == ["fbp", "supervised", "mc", "ei", "rei"]
    for row in result["results"].values():
        mean, se = row["psnr"]
        assert 0 < mean < 100 and se >= 0
    assert json.loads(out.read_text())["results"]["ei"]["psnr"] == list(
        result["results"]["ei"]["psnr"]
    )
    assert "| ei |" in capsys.readouterr().out


def test_unknown_modes_are_refused():
    with pytest.raises(SystemExit):
        main(["--modes", "supervised,magic"])
