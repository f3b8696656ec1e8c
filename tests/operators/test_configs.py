"""Every config in conf/operator/ instantiates to a working operator.

CT configs give a RayTransform or a SupersampledRayTransform (the accurate model of a pair).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from operators import RayTransform
from operators.resample import SupersampledRayTransform

CONF = Path(__file__).resolve().parents[2] / "conf" / "operator"
CONFIGS = sorted(p for p in CONF.glob("*.yaml") if not p.stem.startswith("pat_"))


def test_there_are_operator_configs():
    names = {p.stem for p in CONFIGS}
    assert {"parallel128_30", "parallel128_60", "fan256", "cone128"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_operator_config_instantiates(path):
    cfg = OmegaConf.load(path)
    op = instantiate(cfg)
    assert isinstance(op, (RayTransform, SupersampledRayTransform))
    assert op.domain_shape == op.geometry.domain_shape
    if op.geometry.ndim == 2:
        # apply through ASTRA: building the large matrices is the benchmark's job, not this test's
        cfg.backend = "astra"
        A = instantiate(cfg)
        y = A(torch.ones(op.domain_shape))
        assert y.shape == op.range_shape and y.max() > 0


def test_unknown_config_key_raises():
    cfg = OmegaConf.load(CONF / "parallel128_30.yaml")
    cfg.geometry.n_angels = 30  # typo
    with pytest.raises(Exception, match="n_angels"):
        instantiate(cfg)


# The photoacoustic models (pat_*.yaml) are tested here; the CT tests above skip them.
PAT_CONFIGS = sorted(CONF.glob("pat_*.yaml"))


def test_there_are_pat_configs():
    names = {p.stem for p in PAT_CONFIGS}
    models = ("kspace", "line", "regrid")
    assert {f"pat_{m}{n}" for m in models for n in (64, 128)} <= names


@pytest.mark.parametrize("path", PAT_CONFIGS, ids=lambda p: p.stem)
def test_pat_config_instantiates(path):
    from operators import KSpaceWave, LineSensor, LineSensorRegridding

    op = instantiate(OmegaConf.load(path))
    assert isinstance(op, (KSpaceWave, LineSensor, LineSensorRegridding))
    n = op.grid.shape[0]
    # the three models of one size are interchangeable: the line sensor's data, dt = Δx/(2c)
    assert op.domain_shape == (n, n) and op.range_shape == (n, 2 * n)
    assert op.time.dt == pytest.approx(1e-4 / 3000.0)
    x = torch.zeros(2, n, n)
    x[:, n // 2, n // 2] = 1.0
    y = op(x)
    assert y.shape == (2, n, 2 * n) and y.abs().max() > 0
    assert op.T(y).shape == x.shape


def test_unknown_pat_config_key_raises():
    cfg = OmegaConf.load(CONF / "pat_regrid64.yaml")
    cfg.angel_limit = 60.0  # typo
    with pytest.raises(Exception, match="angel_limit"):
        instantiate(cfg)
