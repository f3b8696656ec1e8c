"""Trainer.supervised: the short supervised path from Python, with recon-train's defaults
(issue [own-data] item 10)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from omegaconf import OmegaConf

from data_tools.datasets import SyntheticDataset
from operators import Parallel2D, RayTransform
from recon.checkpoints import build_model
from recon.data import make_phantom
from recon.training import Trainer
from recon.training import defaults as defaults_module
from recon.training.defaults import config_dir, trainer_defaults
from recon.unrolled import LearnedPrimalDual

TINY_LPD = {"_target_": "recon.unrolled.LearnedPrimalDual", "n_iter": 2, "channels": 4}
FAST = {"max_steps": 4, "batch_size": 2, "val_every": 2, "ckpt_every": 2, "progress": False}


@pytest.fixture(scope="module")
def problem():
    """16² random ellipses, parallel beam with 8 angles: (op, train, val)."""
    op = RayTransform(Parallel2D((16, 16), n_angles=8), backend="matrix")
    ellipses = make_phantom("random_ellipses")
    train = SyntheticDataset(phantom=ellipses, operator=op, size=8, seed=0)
    val = SyntheticDataset(phantom=ellipses, operator=op, size=2, seed=1)
    return op, train, val


def test_supervised_trains_and_returns_the_best_model(problem, tmp_path):
    op, train, val = problem
    out = tmp_path / "lpd"
    result, model = Trainer.supervised(TINY_LPD, op, train, val, out, **FAST)
    assert result["step"] == 4 and result["stopped_by"] == "max_steps"
    assert result["checkpoint"] == str(out / "checkpoints" / "best.pt")
    assert isinstance(model, LearnedPrimalDual) and not model.training
    # the returned model holds best.pt's weights (the best validation PSNR)
    best = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, best["model"][name])
    assert best["model_config"] == TINY_LPD
    assert best["best_psnr"] == pytest.approx(result["best_psnr"])
    # training did something: the loss of the trained model is below the untrained one's
    x, y = (torch.stack(t) for t in zip(*[val[i] for i in range(len(val))], strict=True))
    torch.manual_seed(0)
    untrained = build_model(TINY_LPD)
    with torch.no_grad():
        assert (model(y, op) - x).square().mean() < (untrained(y, op) - x).square().mean()


def test_supervised_uses_the_shipped_defaults(problem, tmp_path):
    op, train, val = problem
    Trainer.supervised(TINY_LPD, op, train, val, tmp_path / "run", **FAST)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    shipped = trainer_defaults()
    for key in ("scheduler", "grad_clip", "keep_last", "amp"):
        assert run[key] == shipped[key], key
    adamw = OmegaConf.load(config_dir() / "optim" / "adamw.yaml")
    assert "AdamW" in run["optimizer"] and f"lr={adamw.lr}" in run["optimizer"]
    assert run["warmup_steps"] == min(shipped["warmup_steps"], FAST["max_steps"] // 10) == 0
    assert run["seed"] == OmegaConf.load(config_dir() / "config.yaml").seed


def test_supervised_reads_the_defaults_from_the_config_files(problem, tmp_path, monkeypatch):
    """Another config folder gives other defaults: the numbers are read, not copied."""
    conf = tmp_path / "conf"
    shutil.copytree(config_dir(), conf)
    trainer = OmegaConf.load(conf / "trainer" / "default.yaml")
    trainer.keep_last, trainer.batch_size = 5, 4
    OmegaConf.save(trainer, conf / "trainer" / "default.yaml")
    optim = OmegaConf.load(conf / "optim" / "adamw.yaml")
    optim.lr = 0.0123
    OmegaConf.save(optim, conf / "optim" / "adamw.yaml")
    monkeypatch.setattr(defaults_module, "config_dir", lambda: conf)
    op, train, val = problem
    fast = {k: v for k, v in FAST.items() if k != "batch_size"}
    Trainer.supervised(TINY_LPD, op, train, val, tmp_path / "run", **fast)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["keep_last"] == 5 and run["batch_size"] == 4 and "lr=0.0123" in run["optimizer"]


def test_a_second_call_into_the_same_folder_is_refused(problem, tmp_path):
    op, train, val = problem
    out = tmp_path / "lpd"
    Trainer.supervised(TINY_LPD, op, train, val, out, **FAST)
    before = {p: p.read_bytes() for p in (out / "checkpoints").iterdir()}
    with pytest.raises(FileExistsError, match="already holds a run.*resume=True"):
        Trainer.supervised(TINY_LPD, op, train, val, out, **FAST)
    assert {p: p.read_bytes() for p in (out / "checkpoints").iterdir()} == before
    # resume=True continues the run
    more = FAST | {"max_steps": 6}
    result, _ = Trainer.supervised(TINY_LPD, op, train, val, out, resume=True, **more)
    assert result["step"] == 6


def test_a_built_model_and_no_validation(problem, tmp_path, caplog):
    op, train, _ = problem
    result, model = Trainer.supervised(
        LearnedPrimalDual(n_iter=1, channels=2), op, train, None, tmp_path / "run", **FAST
    )
    assert result["best_psnr"] is None and result["checkpoint"].endswith("last.pt")
    assert "carries no constructor record" in caplog.text  # load_run could not rebuild it
    _, model = Trainer.supervised(
        LearnedPrimalDual(n_iter=1, channels=2), op, train, None, tmp_path / "recorded",
        model_config={"_target_": "recon.unrolled.LearnedPrimalDual", "n_iter": 1, "channels": 2},
        **FAST,
    )  # fmt: skip
    last = torch.load(tmp_path / "recorded" / "checkpoints" / "last.pt", weights_only=True)
    assert last["model_config"]["n_iter"] == 1


def test_bad_input_is_named(problem, tmp_path):
    op, train, val = problem
    swapped = [(y, x) for x, y in (train[i] for i in range(2))]
    with pytest.raises(ValueError, match=r"train_data\[0\] looks like \(y, x\).*swap them"):
        Trainer.supervised(TINY_LPD, op, swapped, val, tmp_path / "a", **FAST)
    flat = [(x[0], y[0]) for x, y in (val[i] for i in range(2))]
    with pytest.raises(ValueError, match=r"val_data\[0\].*without a channel dimension"):
        Trainer.supervised(TINY_LPD, op, train, flat, tmp_path / "b", **FAST)
    with pytest.raises(TypeError, match="'max_step' \\(did you mean 'max_steps'\\?\\)"):
        Trainer.supervised(TINY_LPD, op, train, val, tmp_path / "c", max_step=3)
    with pytest.raises(ValueError, match="lr .* or optimizer, not both"):
        Trainer.supervised(TINY_LPD, op, train, val, tmp_path / "d", lr=1e-3,
                           optimizer=torch.optim.SGD, **FAST)  # fmt: skip
    assert not any((tmp_path / name).exists() for name in "abcd")
