"""The evaluation CLI: composed configs, outputs, the validation search, every config file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf

from operators import Parallel2D
from recon.base import Reconstructor
from recon.cli.config import CONF_DIR
from recon.cli.evaluate import evaluate
from recon.data import build_split

SMALL = [
    "operator.geometry.image_shape=[32,32]",
    "operator.geometry.n_detectors=46",
    "data.splits.test.size=3",
    "data.splits.validation.size=2",
    "batch_size=2",
]


@pytest.fixture
def compose_eval():
    def _compose(*overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("eval", overrides=list(overrides))

    yield _compose
    GlobalHydra.instance().clear()


def test_evaluate_writes_every_output(compose_eval, tmp_path):
    cfg = compose_eval("protocol=ellipses/classical", *SMALL, "methods.tv.n_iter=7")
    results = evaluate(cfg, output_dir=tmp_path)
    assert set(results) == {"fbp", "tv"}
    for name in ("metrics.json", "results.md", "results.csv", "grid.png"):
        assert (tmp_path / name).is_file(), name
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["tv"]["psnr_per_image"]) == 3
    # TV applies A and Aᵀ once per iteration and image; FBP uses its own backprojection
    assert metrics["tv"]["op_applications_per_image"] == 2 * 7
    assert metrics["fbp"]["op_applications_per_image"] == 0
    assert all(10 < r["psnr_mean"] < 60 and 0 < r["ssim_mean"] <= 1 for r in metrics.values())
    assert metrics["tv"]["params"]["lam"] == cfg.methods.tv.lam
    md = (tmp_path / "results.md").read_text()
    assert md.startswith("| method | PSNR") and "| tv |" in md
    from skimage.io import imread

    grid = imread(tmp_path / "grid.png")
    # matplotlib at 100 dpi: 1.9 in per column (truth, 2 methods, 2 error maps), 2 in per row
    assert grid.shape[:2] == (round(100 * (2 * 3 + 0.3)), round(100 * 1.9 * 5))


def test_search_tunes_on_validation_and_uses_the_choice(compose_eval, tmp_path, caplog):
    cfg = compose_eval(
        "protocol=ellipses/classical", *SMALL, "search=true",
        "search_grid.fbp.filter=[hann]", "search_grid.fbp.frequency_scaling=[0.05,0.6]",
        "search_grid.tv.lam=[1.0]", "search_grid.tv.n_iter=[3]",
    )  # fmt: skip
    results = evaluate(cfg, output_dir=tmp_path)
    best = OmegaConf.load(tmp_path / "best_params.yaml")
    # cutting the filter at 5 % of Nyquist blurs everything: 0.6 must win on validation
    assert best.fbp.frequency_scaling == 0.6
    assert results["fbp"]["params"] == {"filter": "hann", "frequency_scaling": 0.6}
    table = json.loads((tmp_path / "search_fbp.json").read_text())
    assert table[0]["psnr"] > table[1]["psnr"]
    # 0.6 is the largest value tried: the log says the optimum may lie beyond the grid
    assert "best frequency_scaling = 0.6 is at the edge of its grid" in caplog.text


def test_splits_are_seeded_and_disjoint():
    cfg = OmegaConf.load(CONF_DIR / "data" / "ellipses.yaml")
    g = Parallel2D((32, 32), n_angles=8)
    val, test = build_split(cfg, "validation", g), build_split(cfg, "test", g)
    assert torch.equal(test[1][0], build_split(cfg, "test", g)[1][0])
    assert not torch.equal(val[0][0], test[0][0])
    with pytest.raises(ValueError, match="no split 'training'"):
        build_split(cfg, "training", g)
    cfg.splits.test.phantom = "cats"
    with pytest.raises(ValueError, match="unknown phantom 'cats'"):
        build_split(cfg, "test", g)


@pytest.mark.parametrize("path", sorted((CONF_DIR / "recon").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_recon_config_instantiates(path):
    method = instantiate(OmegaConf.load(path))
    assert isinstance(method, Reconstructor)


def test_unknown_keys_fail_clearly(compose_eval):
    cfg = compose_eval("protocol=ellipses/classical", *SMALL, "+methods.tv.lamda=3")
    with pytest.raises(Exception, match="lamda"):
        instantiate(cfg.methods.tv)
    cfg = compose_eval(*SMALL, "+data.splits.test.sise=3")
    with pytest.raises(ValueError, match="sise"):
        build_split(cfg.data, "test", Parallel2D((32, 32), n_angles=8))


@pytest.mark.slow
def test_recon_eval_console_script_from_another_directory(tmp_path):
    exe = Path(sys.executable).with_name("recon-eval")
    out = tmp_path / "run"
    cmd = [str(exe), "protocol=ellipses/classical", *SMALL, "methods.tv.n_iter=5",
           f"hydra.run.dir={out}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "metrics.json").is_file() and "| tv |" in proc.stdout
