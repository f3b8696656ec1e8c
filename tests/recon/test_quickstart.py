"""The training quickstart (make run), shrunk to seconds."""

from __future__ import annotations

import json

from recon import quickstart


def test_quickstart_trains_and_evaluates(tmp_path, capsys):
    results = quickstart.run([
        "--out", str(tmp_path), "--test-size", "2",
        "operator.geometry.image_shape=[32,32]", "operator.geometry.n_detectors=46",
        "model.n_iter=2", "model.channels=4", "data.splits.validation.size=2",
        "trainer.max_steps=2", "trainer.val_every=2", "trainer.ckpt_every=2",
        "trainer.warmup_steps=0", "trainer.progress=false",
    ])  # fmt: skip
    assert set(results) == {"fbp", "tv", "lpd"}
    assert (tmp_path / "train" / "checkpoints" / "best.pt").is_file()
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["lpd"]["params"]["checkpoint"].endswith("best.pt")
    out = capsys.readouterr().out
    assert "| lpd |" in out and f"{tmp_path}/eval/grid.png" in out and "tensorboard --logdir" in out
