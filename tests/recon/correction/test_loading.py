"""Tests of recon.correction.loading: the frozen operator of a correction run (the correction
benchmark on such a run: tests/benchmarks/test_correction.py)."""

from __future__ import annotations

import pytest
import torch

from operators.learned import LearnedOperator

# --------------------------------------------------------------------------- configs end to end
SMALL_PAT = [
    "operator.grid.shape=[16,16]",
    "operator.time.n_t=32",
    "data.simulation.operator.grid.shape=[16,16]",
    "data.simulation.operator.time.n_t=32",
    "data.simulation.operator.pml_size=8",
    "data.splits.train.size=8",
    "data.splits.validation.size=2",
    "data.splits.test.size=3",
    "trainer.max_steps=3",
    "trainer.batch_size=2",
    "trainer.warmup_steps=0",
    "trainer.val_every=3",
    "trainer.ckpt_every=3",
    "trainer.progress=false",
]


def _train_run(cfg, run_dir):
    from omegaconf import OmegaConf

    from recon.cli.train import train

    result = train(cfg, output_dir=run_dir)
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # as recon-train's hydra.main does
    return result


def test_load_correction_freezes_the_trained_operator_and_switches_its_adjoint(
    compose_cfg, tmp_path
):
    from recon.correction import load_correction

    cfg = compose_cfg("experiment=correction_pat64/forward", *SMALL_PAT)
    _train_run(cfg, tmp_path / "correction")
    model = load_correction(tmp_path / "correction")
    assert isinstance(model, LearnedOperator) and model.adjoint_mode == "learned"
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    loaded = load_correction(tmp_path / "correction", adjoint="linearised")
    assert loaded.adjoint_mode == "linearised" and loaded.adjoint_image_net is not None
    x = torch.rand(2, *model.domain_shape, requires_grad=True)
    y = torch.randn(2, *model.range_shape)
    (expected,) = torch.autograd.grad(0.5 * ((model(x) - y) ** 2).sum(), x)
    torch.testing.assert_close(loaded.gradient(x.detach(), y), expected)
    assert load_correction(tmp_path / "correction", adjoint="learned").adjoint_mode == "learned"
    with pytest.raises(ValueError, match="adjoint must be one of"):
        load_correction(tmp_path / "correction", adjoint="exact")
    with pytest.raises(FileNotFoundError, match="not a recon-train run"):
        load_correction(tmp_path)
