"""recon.checkpoints: no load path runs code from a checkpoint or a run's config, a truncated
file is named, and best/last/step files are independent (issue [hardening] items 1, 4, 12)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from recon.checkpoints import (
    UnsafeCheckpointError,
    atomic_copy,
    load_run,
    load_trained,
    load_weights_file,
)
from recon.cli.config import compose_config
from recon.cli.train import train
from recon.correction import load_correction
from recon.training.checkpoint_folder import read_training_checkpoint
from recon.unrolled import LearnedPrimalDual

TINY_MODEL = {"_target_": "recon.unrolled.LearnedPrimalDual", "n_iter": 2, "channels": 4}


class Payload:
    """What full unpickling would run: it creates ``marker`` (so a test can see it ran)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def run_dir(tmp_path):
    """A run folder whose best.pt and last.pt carry a payload beside real weights."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    OmegaConf.save({"model": TINY_MODEL}, run / ".hydra" / "config.yaml")
    weights = LearnedPrimalDual(n_iter=2, channels=4).state_dict()
    for name in ("best.pt", "last.pt"):
        torch.save(
            {"model": weights, "extra": Payload(tmp_path / "ran")}, run / "checkpoints" / name
        )
    return run


def test_every_load_path_refuses_a_pickle_payload(run_dir, tmp_path):
    """(load_generator: tests/recon/generative/test_reconstructors.py.)"""
    marker = tmp_path / "ran"
    best = run_dir / "checkpoints" / "best.pt"
    loaders = {
        "load_weights_file": lambda: load_weights_file(best),
        "load_trained": lambda: load_trained(LearnedPrimalDual(n_iter=2, channels=4), best),
        "load_run best.pt": lambda: load_run(run_dir),
        "load_run last.pt": lambda: load_run(run_dir, "last.pt"),
        "load_correction": lambda: load_correction(run_dir),
    }
    for name, load in loaders.items():
        with pytest.raises(UnsafeCheckpointError, match="weights_only"):
            load()
        assert not marker.exists(), f"{name} ran the payload"
    # the trainer's resume treats it as unreadable and never runs it
    assert read_training_checkpoint(best) is None and not marker.exists()


def test_init_from_refuses_a_pickle_payload(run_dir, tmp_path):
    init_from = f"init_from={run_dir}/checkpoints/best.pt"
    cfg = compose_config(
        "config", ["experiment=quickstart/lpd", "model.n_iter=2", "model.channels=4", init_from]
    )
    with pytest.raises(UnsafeCheckpointError):
        train(cfg, output_dir=tmp_path / "fine-tune")
    assert not (tmp_path / "ran").exists()


def test_load_run_instantiates_only_trusted_targets(run_dir, tmp_path):
    evil = {"_target_": "torch.load", "f": str(run_dir / "checkpoints" / "best.pt"),
            "weights_only": False}  # fmt: skip
    OmegaConf.save({"model": evil}, run_dir / ".hydra" / "config.yaml")
    with pytest.raises(UnsafeCheckpointError, match="torch.load"):
        load_run(run_dir)
    assert not (tmp_path / "ran").exists()


def test_a_truncated_checkpoint_is_named(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    OmegaConf.save({"model": TINY_MODEL}, run / ".hydra" / "config.yaml")
    best = run / "checkpoints" / "best.pt"
    torch.save({"model": LearnedPrimalDual(n_iter=2, channels=4).state_dict()}, best)
    best.write_bytes(best.read_bytes()[:1000])
    with pytest.raises(ValueError, match=f"{best}.*not a readable checkpoint"):
        load_run(run)


def test_copies_are_independent_files(tmp_path):
    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    last.write_bytes(b"step 10")
    atomic_copy(last, best)
    best.write_bytes(b"a foreign checkpoint")
    assert last.read_bytes() == b"step 10" and last.stat().st_ino != best.stat().st_ino
