"""recon-train and recon-eval from the command line: a refused start leaves an existing run
byte for byte as it was, a diverged run and a sweep with no completed job exit non-zero, and a
mistyped trainer key is named before anything is written (issue [hardening] items 2, 3, 5, 12)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TRAIN = [sys.executable, "-m", "recon.cli.train"]
EVAL = [sys.executable, "-m", "recon.cli.evaluate"]
SMALL_GEOMETRY = [
    "operator.geometry.image_shape=[32,32]",
    "operator.geometry.n_detectors=46",
    "threads=1",
]
TINY_TRAIN = [
    "experiment=quickstart/lpd",
    *SMALL_GEOMETRY,
    "data.splits.train.size=4",
    "data.splits.validation.size=2",
    "data.splits.test.size=2",
    "model.n_iter=2",
    "model.channels=4",
    "trainer.max_steps=2",
    "trainer.batch_size=2",
    "trainer.val_every=2",
    "trainer.ckpt_every=2",
    "trainer.warmup_steps=0",
    "trainer.progress=false",
]
TINY_EVAL = [
    "protocol=ellipses/classical",
    *SMALL_GEOMETRY,
    "data.splits.test.size=2",
    "methods.tv.n_iter=5",
]


def cli(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished two-step recon-train run."""
    root = tmp_path_factory.mktemp("cli")
    proc = cli([*TRAIN, *TINY_TRAIN, f"hydra.run.dir={root / 'run'}"], cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "run"


def test_a_training_run_writes_its_own_hydra_record(trained):
    assert (trained / ".hydra" / "config.yaml").is_file()
    overrides = (trained / ".hydra" / "overrides.yaml").read_text()
    assert "experiment=quickstart/lpd" in overrides
    assert json.loads((trained / "result.json").read_text())["status"] == "completed"


def test_a_refused_training_start_leaves_every_byte_of_the_run(trained):
    before = snapshot(trained)
    proc = cli([*TRAIN, *TINY_TRAIN, "seed=5", f"hydra.run.dir={trained}"], cwd=trained.parent)
    assert proc.returncode != 0
    assert "already holds a run" in proc.stderr and "resume=true" in proc.stderr
    assert snapshot(trained) == before


def test_recon_eval_never_writes_into_a_training_run(trained):
    before = snapshot(trained)
    for flag in ([], ["overwrite=true"]):
        proc = cli([*EVAL, *TINY_EVAL, *flag, f"hydra.run.dir={trained}"], cwd=trained.parent)
        assert proc.returncode != 0 and "is a training run's folder" in proc.stderr
    assert snapshot(trained) == before


def test_recon_eval_refuses_an_evaluation_folder_unless_overwrite(tmp_path):
    out = tmp_path / "eval"
    assert cli([*EVAL, *TINY_EVAL, f"hydra.run.dir={out}"], cwd=tmp_path).returncode == 0
    before = snapshot(out)
    assert {"metrics.json", "grid.png", ".hydra/config.yaml", "result.json"} <= set(before)
    proc = cli([*EVAL, *TINY_EVAL, "seed=3", f"hydra.run.dir={out}"], cwd=tmp_path)
    assert proc.returncode != 0 and "overwrite=true" in proc.stderr
    assert snapshot(out) == before
    proc = cli([*EVAL, *TINY_EVAL, "seed=3", "overwrite=true", f"hydra.run.dir={out}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "seed=3" in (out / ".hydra" / "overrides.yaml").read_text()


def test_a_diverged_training_run_exits_non_zero(tmp_path):
    out = tmp_path / "run"
    proc = cli([*TRAIN, *TINY_TRAIN, "optim.lr=1e12", "trainer.grad_clip=null",
                "trainer.max_steps=6", f"hydra.run.dir={out}"], cwd=tmp_path)  # fmt: skip
    assert proc.returncode != 0
    assert "FloatingPointError" in proc.stderr
    assert json.loads((out / "result.json").read_text())["status"] == "diverged"


def test_a_sweep_in_which_every_job_fails_exits_non_zero(tmp_path):
    sweep = tmp_path / "sweep"
    proc = cli([*EVAL, "-m", *TINY_EVAL, "methods.tv.lam=-1,-2",
                f"hydra.sweep.dir={sweep}"], cwd=tmp_path)  # fmt: skip
    assert proc.returncode != 0
    assert "no job of the sweep" in proc.stderr and "2 failed" in proc.stderr
    statuses = [json.loads(p.read_text())["status"] for p in sweep.glob("*/result.json")]
    assert statuses == ["failed", "failed"]


def test_a_mistyped_trainer_key_is_named_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    proc = cli([*TRAIN, *TINY_TRAIN, "trainer.max_steps=ten", f"hydra.run.dir={out}"], tmp_path)
    assert proc.returncode != 0
    assert "trainer.max_steps='ten' is not an integer" in proc.stderr
    assert not out.exists() or snapshot(out) == {}
