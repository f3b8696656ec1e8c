"""recon.runs.evaluation: a trained run evaluated on another operator than its training one is
refused (or, when allowed, warned about), naming the differing keys (issue [hardening] item 10)."""

from __future__ import annotations

import logging

import pytest
from omegaconf import OmegaConf

from recon.cli.config import compose_config
from recon.runs.evaluation import check_training_operators


@pytest.fixture
def run_dir(tmp_path):
    """A run folder recording the 30-angle training operator of conf/config.yaml."""
    train_cfg = compose_config("config", ["experiment=quickstart/lpd"])
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(train_cfg, tmp_path / ".hydra" / "config.yaml")
    return tmp_path


def eval_cfg(run_dir, *overrides):
    node = f"+methods.lpd={{_target_: recon.checkpoints.load_run, run_dir: '{run_dir}'}}"
    return compose_config("eval", [node, *overrides])


def test_the_training_operator_passes(run_dir):
    train_op = compose_config("config", ["experiment=quickstart/lpd"]).operator
    overrides = [f"operator.geometry.n_angles={train_op.geometry.n_angles}",
                 f"operator.geometry.image_shape={list(train_op.geometry.image_shape)}",
                 f"operator.geometry.n_detectors={train_op.geometry.n_detectors}",
                 "operator.backend=matrix"]  # fmt: skip
    check_training_operators(eval_cfg(run_dir, *overrides))  # the backend is not compared


def test_another_geometry_is_refused_naming_the_keys(run_dir):
    cfg = eval_cfg(run_dir, "operator=parallel128_60")
    with pytest.raises(ValueError, match=r"method lpd was trained on another operator") as info:
        check_training_operators(cfg)
    assert "geometry.n_angles" in str(info.value) and "allow_operator_mismatch=true" in str(
        info.value
    )


def test_a_mismatch_can_be_allowed_with_a_warning(run_dir, caplog):
    cfg = eval_cfg(run_dir, "operator=parallel128_60", "allow_operator_mismatch=true")
    with caplog.at_level(logging.WARNING):
        check_training_operators(cfg)
    assert "geometry.n_angles" in caplog.text


def test_a_method_operator_is_compared_instead(run_dir):
    cfg = eval_cfg(run_dir, "+method_operators.lpd=${operator}", "operator=parallel128_60")
    with pytest.raises(ValueError, match="n_angles"):
        check_training_operators(cfg)
