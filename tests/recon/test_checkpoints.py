"""recon.checkpoints: no load path runs code from a checkpoint or a run's config, a truncated
file is named, and best/last/step files are independent (issue [hardening] items 1, 4, 12)."""

from __future__ import annotations

import shutil

import pytest
import torch
from omegaconf import OmegaConf

from recon.checkpoints import (
    UnsafeCheckpointError,
    atomic_copy,
    build_model,
    check_model_config,
    init_config_of,
    load_run,
    load_trained,
    load_weights_file,
    public_path,
    record_init_args,
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


# --------------------------------------------------------------------------- model records
# (issue [own-data] item 11: checkpoints carry the model's constructor arguments)
@pytest.fixture(scope="module")
def python_run(tmp_path_factory):
    """A run trained from Python (no .hydra/): (run folder, operator, measurements, model)."""
    from data_tools.datasets import SyntheticDataset
    from operators import Parallel2D, RayTransform
    from recon.data import make_phantom
    from recon.training import Trainer

    op = RayTransform(Parallel2D((16, 16), n_angles=8), backend="matrix")
    pairs = SyntheticDataset(phantom=make_phantom("random_ellipses"), operator=op, size=4, seed=0)
    run = tmp_path_factory.mktemp("python") / "lpd"
    _, model = Trainer.supervised(TINY_MODEL | {"init": "fbp"}, op, pairs, pairs, run,
                                  max_steps=2, batch_size=2, progress=False)  # fmt: skip
    y = torch.stack([pairs[i][1] for i in range(len(pairs))])
    return run, op, y, model


def test_load_run_rebuilds_a_model_trained_from_python_without_hydra(python_run):
    run, op, y, trained = python_run
    assert not (run / ".hydra").exists()
    loaded = load_run(run)
    assert isinstance(loaded, LearnedPrimalDual) and loaded is not trained and not loaded.training
    assert loaded.n_iter == 2 and loaded.channels == 4 and loaded.init == "fbp"
    with torch.no_grad():
        torch.testing.assert_close(loaded(y, op), trained(y, op), rtol=0, atol=0)
        # load_trained without a model rebuilds it from the checkpoint alone
        alone = load_trained(run / "checkpoints" / "best.pt")
        torch.testing.assert_close(alone(y, op), trained(y, op), rtol=0, atol=0)
        last = load_run(run, "last.pt")
        assert last(y, op).shape == (4, 1, 16, 16)


@pytest.mark.parametrize(
    "target", ["os.system", "builtins.exec", "torch.load", "subprocess.run", "recon_evil.Net"]
)
def test_a_record_naming_a_foreign_target_is_refused(python_run, tmp_path, target):
    run, *_ = python_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    best = copy / "checkpoints" / "best.pt"
    state = torch.load(best, weights_only=True)
    state["model_config"] = {"_target_": target, "command": f"touch {tmp_path / 'ran'}"}
    torch.save(state, best)
    with pytest.raises(UnsafeCheckpointError, match=f"names _target_ '{target}'.*allow="):
        load_run(copy)
    with pytest.raises(UnsafeCheckpointError, match="outside the trusted packages"):
        load_trained(best)
    nested = TINY_MODEL | {"extra": {"_target_": target, "command": "true"}}
    torch.save(state | {"model_config": nested}, best)
    with pytest.raises(UnsafeCheckpointError, match=r"at extra"):
        load_run(copy)
    assert not (tmp_path / "ran").exists()


def test_a_checkpoint_without_a_record_loads_through_hydra_as_before(python_run, tmp_path):
    run, op, y, trained = python_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    best = copy / "checkpoints" / "best.pt"
    state = torch.load(best, weights_only=True)
    del state["model_config"]  # a checkpoint written before records existed
    torch.save(state, best)
    with pytest.raises(FileNotFoundError, match="records no model config.*no .hydra/config.yaml"):
        load_run(copy)
    with pytest.raises(ValueError, match="records no model config.*load_trained\\(model, path\\)"):
        load_trained(best)
    (copy / ".hydra").mkdir()
    OmegaConf.save({"model": TINY_MODEL | {"init": "fbp"}}, copy / ".hydra" / "config.yaml")
    with torch.no_grad():
        torch.testing.assert_close(load_run(copy)(y, op), trained(y, op), rtol=0, atol=0)


def test_build_model_and_record_init_args():
    lpd = build_model(LearnedPrimalDual, n_iter=2, channels=4)
    assert init_config_of(lpd) == TINY_MODEL
    assert init_config_of(build_model(TINY_MODEL, channels=3))["channels"] == 3
    assert init_config_of(LearnedPrimalDual(n_iter=2)) is None  # not decorated (yet)

    @record_init_args
    class Net(torch.nn.Module):
        def __init__(self, width: int = 4, *, inner: torch.nn.Module | None = None, scale=(1, 2)):
            super().__init__()
            self.linear = torch.nn.Linear(width, width)

    class Wider(Net):
        def __init__(self):
            super().__init__(width=8)

    class Same(Net):
        pass

    with pytest.raises(ValueError, match="cannot be imported by another program"):
        public_path(Net)  # defined in a function: no checkpoint can name it
    assert Net(3).init_config is None and Wider().init_config is None
    Net.__qualname__ = Same.__qualname__ = "Net"  # as if defined at module level
    record = Net(3, inner=lpd).init_config
    assert record["width"] == 3 and record["scale"] == [1, 2] and record["inner"] == TINY_MODEL
    assert Net(inner=torch.nn.Linear(1, 1)).init_config is None  # a module without a record
    assert Same().init_config["_target_"].endswith(".Net")  # inherits __init__: its own record
    assert Wider().init_config is None  # its own __init__, undecorated: no (wrong) record


def test_check_model_config_names_what_cannot_be_recorded():
    with pytest.raises(ValueError, match=r"model_config.weights is a Tensor"):
        check_model_config({"_target_": "models.unet.UNet", "weights": torch.zeros(1)})
    with pytest.raises(ValueError, match="needs a string _target_"):
        check_model_config({"n_iter": 2})
    with pytest.raises(ValueError, match="must be a dict"):
        check_model_config(["recon.unrolled.FBPUNet"])
    resolved = check_model_config(
        OmegaConf.create({"n": 3, "m": {"_target_": "a.B", "k": "${n}"}}).m
    )
    assert resolved == {"_target_": "a.B", "k": 3}
