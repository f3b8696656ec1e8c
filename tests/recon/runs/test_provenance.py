"""provenance.json: resolved config, git commit (or why there is none), package versions and
seeds, written by recon-train and recon-eval runs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from recon.cli.config import CONF_DIR
from recon.cli.evaluate import evaluate
from recon.cli.train import train
from recon.runs.provenance import git_info, package_versions, provenance, write_provenance

REPO = Path(__file__).resolve().parents[3]
TINY = [
    "experiment=quickstart/lpd",
    "operator.geometry.image_shape=[32,32]",
    "operator.geometry.n_detectors=46",
    "data.splits.train.size=8",
    "data.splits.validation.size=2",
    "model.n_iter=2",
    "model.channels=4",
    "trainer.max_steps=2",
    "trainer.batch_size=2",
    "trainer.val_every=2",
    "trainer.ckpt_every=2",
    "trainer.warmup_steps=0",
    "trainer.progress=false",
    "seed=5",
]


@pytest.fixture
def compose_cfg():
    def _compose(name: str, *overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(name, overrides=list(overrides))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield _compose
    torch.set_num_threads(threads)
    GlobalHydra.instance().clear()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_commit_of_this_checkout_and_a_note_elsewhere(tmp_path):
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True)  # fmt: skip
    if head.returncode != 0:
        pytest.skip("this copy of the project is not a git checkout")
    info = git_info(REPO)
    assert info["commit"] == head.stdout.strip() and isinstance(info["dirty"], bool)
    assert git_info(tmp_path) == {"commit": None, "note": f"not a git checkout ({tmp_path})"}


def test_without_git_the_record_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on the PATH
    assert git_info(REPO) == {"commit": None, "note": "git is not installed"}


def test_package_versions():
    versions = package_versions()
    assert versions["torch"] == torch.__version__ and versions["tomolearn"]
    assert package_versions(("no-such-distribution",)) == {"no-such-distribution": None}


def test_train_writes_provenance_with_resolved_config_and_seeds(compose_cfg, tmp_path):
    cfg = compose_cfg("config", *TINY)
    train(cfg, output_dir=tmp_path)
    record = json.loads((tmp_path / "provenance.json").read_text())
    assert record["config"]["paths"]["output_dir"] == str(tmp_path)  # resolved outside Hydra
    assert record["config"]["trainer"]["max_steps"] == 2
    assert record["seeds"]["seed"] == 5
    assert record["seeds"]["data"] == {"train": 3003, "validation": 1001, "test": 2002}
    assert record["packages"]["torch"] == torch.__version__
    assert "commit" in record["git"] and record["python"]
    # the trainer's run.json is still its own file, with its own settings
    assert json.loads((tmp_path / "run.json").read_text())["seed"] == 5

    cfg.resume, cfg.trainer.max_steps = True, 3  # a resumed run keeps the earlier record
    train(cfg, output_dir=tmp_path)
    record = json.loads((tmp_path / "provenance.json").read_text())
    assert record["config"]["resume"] is True
    assert [r["config"]["resume"] for r in record["earlier_attempts"]] == [False]


def test_the_seed_fixes_the_initial_weights(compose_cfg, tmp_path):
    def weights(seed, folder):
        train(compose_cfg("config", *TINY, f"seed={seed}"), output_dir=tmp_path / folder)
        return torch.load(tmp_path / folder / "checkpoints/last.pt", weights_only=True)["model"]

    a, b, c = weights(5, "a"), weights(5, "b"), weights(6, "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_evaluate_writes_provenance(compose_cfg, tmp_path):
    cfg = compose_cfg("eval", "operator.geometry.image_shape=[32,32]",
                      "operator.geometry.n_detectors=46", "data.splits.test.size=1")  # fmt: skip
    evaluate(cfg, output_dir=tmp_path)
    record = json.loads((tmp_path / "provenance.json").read_text())
    assert record["config"]["split"] == "test" and record["seeds"]["seed"] == 0
    assert set(record["config"]["methods"]) == {"fbp"}


def test_an_unresolvable_config_is_kept_unresolved_with_a_note():
    record = provenance(OmegaConf.create({"a": "${missing}", "seed": 1}))
    assert record["config"] == {"a": "${missing}", "seed": 1}
    assert record["config_note"].startswith("unresolved: InterpolationKeyError")


def test_ranks_above_zero_write_no_provenance(monkeypatch, tmp_path):
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29500"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    assert write_provenance(OmegaConf.create({"seed": 0}), tmp_path) is None
    assert not list(tmp_path.iterdir())


def test_a_package_inside_another_git_project_records_no_commit(tmp_path):
    """An installed wheel in ``project/.venv``: the user's project commit is not tomolearn's."""
    import subprocess

    from recon.runs.provenance import git_info

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-q", "--allow-empty", "-m", "x"], check=True)  # fmt: skip
    site = tmp_path / ".venv" / "lib" / "site-packages"
    site.mkdir(parents=True)
    assert git_info(tmp_path)["commit"] is not None  # the project itself is a checkout
    info = git_info(site)
    assert info["commit"] is None and "not a git checkout" in info["note"]
