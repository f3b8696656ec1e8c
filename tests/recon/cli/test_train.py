"""recon-train: composed training configs, a tiny end-to-end run, loading for recon-eval."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from recon.checkpoints import load_run, load_trained
from recon.cli.config import CONF_DIR
from recon.cli.evaluate import evaluate
from recon.cli.train import model_record, train

TINY = [
    "operator.geometry.image_shape=[32,32]",
    "operator.geometry.n_detectors=46",
    "data.splits.train.size=16",
    "data.splits.validation.size=2",
    "data.splits.test.size=2",
    "model.n_iter=2",
    "model.channels=4",
    "trainer.max_steps=3",
    "trainer.batch_size=2",
    "trainer.val_every=3",
    "trainer.ckpt_every=3",
    "trainer.warmup_steps=0",
    "trainer.progress=false",
]
# Plain networks of models/ (denoisers, ...) and learned operators are not reconstructors;
# tests/models and tests/operators/test_learned.py cover them.
RECONSTRUCTOR_MODELS = sorted(
    p.stem
    for p in (CONF_DIR / "model").glob("*.yaml")
    if not OmegaConf.load(p)._target_.startswith(("models.", "operators."))
)


@pytest.fixture
def compose_cfg():
    def _compose(name: str, *overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(name, overrides=list(overrides))

    yield _compose
    GlobalHydra.instance().clear()


def test_train_then_evaluate_the_checkpoint(compose_cfg, tmp_path):
    cfg = compose_cfg("config", "experiment=quickstart/lpd", *TINY)
    result = train(cfg, output_dir=tmp_path / "train")
    assert result["step"] == 3
    ckpt = tmp_path / "train" / "checkpoints" / "best.pt"
    assert ckpt.is_file() and result["checkpoint"] == str(ckpt)
    assert list((tmp_path / "train" / "tb").glob("events.out.tfevents.*"))

    model = load_trained(instantiate(cfg.model), ckpt)
    assert not model.training
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["model"]
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, state[name])

    ev = compose_cfg("eval", "protocol=ellipses/classical", *TINY[:2], "data.splits.test.size=2",
                     "methods.tv.n_iter=3")  # fmt: skip
    with open_dict(ev):
        ev.methods.lpd = {
            "_target_": "recon.checkpoints.load_trained",
            "model": OmegaConf.to_container(cfg.model),
            "checkpoint": str(ckpt),
        }
    results = evaluate(ev, output_dir=tmp_path / "eval")
    assert set(results) == {"fbp", "tv", "lpd"}
    # LPD with 2 iterations applies A and Aᵀ twice per image (plus nothing else)
    assert results["lpd"]["op_applications_per_image"] == 4


def test_resume_continues_the_same_run(compose_cfg, tmp_path):
    cfg = compose_cfg("config", "experiment=quickstart/lpd", *TINY)
    train(cfg, output_dir=tmp_path)
    cfg.trainer.max_steps = 5
    cfg.resume = True
    assert train(cfg, output_dir=tmp_path)["step"] == 5


def test_init_from_starts_a_fresh_run_from_another_runs_weights(compose_cfg, tmp_path):
    cfg = compose_cfg("config", "experiment=quickstart/lpd", *TINY)
    train(cfg, output_dir=tmp_path / "first")
    first = torch.load(tmp_path / "first" / "checkpoints" / "last.pt", weights_only=False)["model"]

    cfg.init_from = str(tmp_path / "first" / "checkpoints" / "last.pt")
    cfg.trainer.max_steps = 1
    cfg.optim.lr = 0.0  # no update: the fine-tuned run's weights are the first run's
    result = train(cfg, output_dir=tmp_path / "second")
    assert result["step"] == 1  # its own step count, not the first run's
    second = torch.load(tmp_path / "second" / "checkpoints" / "last.pt", weights_only=False)
    for name, value in first.items():
        assert torch.equal(second["model"][name], value), name
    # and the weights differ from a fresh initialisation (the last block starts at zero)
    fresh = instantiate(cfg.model).state_dict()
    assert any(not torch.equal(fresh[name], value) for name, value in first.items())

    cfg.init_skip = ["decoder"]  # init_skip reaches load_trained: a name not in the checkpoint
    with pytest.raises(ValueError, match="no submodule 'decoder'"):
        train(cfg, output_dir=tmp_path / "skipping")

    cfg.init_skip = "decoder"  # one name, as `init_skip=decoder` on the command line
    with pytest.raises(ValueError, match="no submodule 'decoder'"):
        train(cfg, output_dir=tmp_path / "skipping")
    cfg.init_from = None
    with pytest.raises(ValueError, match="init_skip=.*needs init_from"):
        train(cfg, output_dir=tmp_path / "skipping")

    cfg.init_skip = []
    cfg.init_from = str(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        train(cfg, output_dir=tmp_path / "third")


def test_load_run_rebuilds_the_model_from_the_runs_own_config(compose_cfg, tmp_path):
    cfg = compose_cfg("config", "experiment=quickstart/lpd", *TINY, "model.n_primal=3")
    train(cfg, output_dir=tmp_path)
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")  # as recon-train's hydra.main does
    model = load_run(tmp_path)
    assert model.n_primal == 3 and not model.training  # the run's architecture, not the default
    expected = load_trained(instantiate(cfg.model), tmp_path / "checkpoints" / "best.pt")
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected.state_dict()[name])
    assert torch.equal(
        load_run(tmp_path, "last.pt").primal_blocks[0].last.weight,
        model.primal_blocks[0].last.weight,  # a 3-step run: best is last
    )


def test_a_cli_runs_checkpoints_rebuild_the_model_without_hydra(compose_cfg, tmp_path):
    """The checkpoints carry cfg.model (issue [own-data] item 11): no .hydra/ needed."""
    cfg = compose_cfg("config", "experiment=quickstart/lpd", *TINY, "model.n_dual=2")
    train(cfg, output_dir=tmp_path)
    assert not (tmp_path / ".hydra").exists()  # train(cfg) alone: main() writes .hydra/
    best = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    assert best["model_config"] == OmegaConf.to_container(cfg.model, resolve=True)
    model = load_run(tmp_path)
    assert model.n_dual == 2 and not model.training
    expected = load_trained(instantiate(cfg.model), tmp_path / "checkpoints" / "best.pt")
    op = instantiate(cfg.operator)
    y = torch.rand(2, 1, *op.range_shape)
    with torch.no_grad():
        torch.testing.assert_close(model(y, op), expected(y, op), rtol=0, atol=0)
    # a node that does not resolve to plain data (e.g. a hydra: interpolation) records nothing
    with open_dict(cfg):
        cfg.model.note = "${hydra:runtime.cwd}"
    assert model_record(cfg) is None


def test_learned_eval_experiment_evaluates_a_run_directory(compose_cfg, tmp_path):
    cfg = compose_cfg("config", "experiment=quickstart/lpd", *TINY)
    train(cfg, output_dir=tmp_path / "lpd")
    (tmp_path / "lpd" / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / "lpd" / ".hydra" / "config.yaml")
    ev = compose_cfg(
        "eval", "protocol=ellipses/learned", *TINY[:2], "data.splits.test.size=2",
        "methods.tv.n_iter=3", f"runs.lpd={tmp_path / 'lpd'}", "~methods.lgs", "~methods.fbpunet",
    )  # fmt: skip
    results = evaluate(ev, output_dir=tmp_path / "eval")
    assert set(results) == {"fbp", "tv", "lpd"}
    assert results["lpd"]["op_applications_per_image"] == 4  # the run's 2 iterations
    missing = compose_cfg("eval", "protocol=ellipses/learned", *TINY[:2])
    with pytest.raises(InstantiationException, match="not found: outputs/ellipses_lpd"):
        evaluate(missing, output_dir=tmp_path / "eval2")


def test_load_run_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="run directory not found"):
        load_run(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no .hydra/config.yaml"):
        load_run(tmp_path)


def test_load_trained_errors(tmp_path):
    model = torch.nn.Linear(2, 2)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_trained(model, tmp_path / "missing.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no 'model' entry"):
        load_trained(model, tmp_path / "other.pt")


def test_load_trained_skips_named_submodules_and_loads_the_rest(tmp_path):
    full = torch.nn.ModuleDict({"kept": torch.nn.Linear(2, 2), "extra": torch.nn.Linear(2, 3)})
    torch.save({"model": full.state_dict()}, tmp_path / "full.pt")
    part = torch.nn.ModuleDict({"kept": torch.nn.Linear(2, 2)})
    with pytest.raises(RuntimeError, match=r"not in the model \['extra.weight', 'extra.bias'\]"):
        load_trained(part, tmp_path / "full.pt")  # strict by default
    assert load_trained(part, tmp_path / "full.pt", skip=["extra"]) is part
    assert torch.equal(part["kept"].weight, full["kept"].weight) and not part.training
    with pytest.raises(ValueError, match=r"no submodule 'extr'.*\['extra', 'kept'\]"):
        load_trained(part, tmp_path / "full.pt", skip=["extr"])
    # a skipped module the model has keeps its fresh weights, even of another shape
    wider = torch.nn.ModuleDict({"kept": torch.nn.Linear(2, 2), "extra": torch.nn.Linear(2, 5)})
    init = wider["extra"].weight.clone()
    load_trained(wider, tmp_path / "full.pt", skip=["extra"])
    assert torch.equal(wider["extra"].weight, init)
    assert torch.equal(wider["kept"].weight, full["kept"].weight)
    with pytest.raises(RuntimeError, match=r"missing from the checkpoint \['other.weight'"):
        load_trained(torch.nn.ModuleDict({**wider, "other": torch.nn.Linear(1, 1)}),
                     tmp_path / "full.pt", skip=["extra"])  # fmt: skip


@pytest.mark.parametrize("name", RECONSTRUCTOR_MODELS)
def test_every_model_config_instantiates_and_runs(compose_cfg, name):
    cfg = compose_cfg("config", f"model={name}", *TINY[:2])
    op = instantiate(cfg.operator)
    model = instantiate(cfg.model)
    y = torch.rand(1, 1, *op.range_shape)
    assert model(y, op).shape == (1, 1, *op.domain_shape)


def test_optimizer_config_is_partial(compose_cfg):
    cfg = compose_cfg("config")
    make = instantiate(cfg.optim)
    opt = make([torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["lr"] == cfg.optim.lr


def test_typo_in_trainer_config_fails_clearly(compose_cfg, tmp_path):
    cfg = compose_cfg("config", "experiment=quickstart/lpd", *TINY, "+trainer.max_step=3")
    with pytest.raises(TypeError, match="max_step"):
        train(cfg, output_dir=tmp_path)
