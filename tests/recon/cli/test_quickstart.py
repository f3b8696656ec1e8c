"""The training quickstart (make run), shrunk to seconds."""

from __future__ import annotations

import json

import pytest

from recon.cli import quickstart

TINY = [
    "operator.geometry.image_shape=[32,32]", "operator.geometry.n_detectors=46",
    "model.n_iter=2", "model.channels=4", "data.splits.validation.size=2",
    "trainer.max_steps=2", "trainer.val_every=2", "trainer.ckpt_every=2",
    "trainer.warmup_steps=0", "trainer.progress=false",
]  # fmt: skip


def test_quickstart_trains_and_evaluates(tmp_path, capsys):
    results = quickstart.run(["--out", str(tmp_path), "--test-size", "2", *TINY])
    assert set(results) == {"fbp", "tv", "lpd"}
    assert (tmp_path / "train" / "checkpoints" / "best.pt").is_file()
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["lpd"]["params"]["checkpoint"].endswith("best.pt")
    out = capsys.readouterr().out
    assert "| lpd |" in out and f"{tmp_path}/eval/grid.png" in out and "tensorboard --logdir" in out
    # the evaluation rebuilt the model from the run's own record (load_run)
    assert metrics["lpd"]["params"]["run_dir"] == str(tmp_path / "train")
    assert (tmp_path / "train" / ".hydra" / "config.yaml").is_file()

    # a second quickstart into the same folder is refused before it writes anything
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit) as info:
        quickstart.run(["--out", str(tmp_path), "--test-size", "2", *TINY])
    assert info.value.code != 0 and "already holds a run" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
