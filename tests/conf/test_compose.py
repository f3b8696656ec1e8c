"""Every config composes: training experiments with ``config.yaml``, evaluation protocols with
``eval.yaml``, and every option of every other group, each instantiated at shrunk sizes.

``conf/experiment/<study>/<stage>.yaml`` holds training experiments (``recon-train
experiment=<study>/<stage>``), ``conf/protocol/<study>/<name>.yaml`` evaluation protocols
(``recon-eval protocol=<study>/<name>``); each group lists only its kind.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf

from recon.base import Reconstructor
from recon.cli.config import compose_config, config_dir
from recon.data import build_split

CONF = config_dir()
LOAD_RUN = "recon.checkpoints.load_run"


def _names(group: str) -> list[str]:
    """``<study>/<name>`` of every config file under ``conf/<group>/``."""
    root = CONF / group
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


TRAIN_EXPERIMENTS = _names("experiment")
PROTOCOLS = _names("protocol")

# Shrunk sizes: CT geometries at 32² (or 16² for the 64² correction pairs), PAT grids at 16².
SMALL_CT = ["operator.geometry.image_shape=[32,32]", "operator.geometry.n_detectors=46"]
SMALL_CT_PAIR = ["operator.geometry.image_shape=[16,16]"]  # keeps the pair's detector row
SMALL_PAT = ["operator.grid.shape=[16,16]", "operator.time.n_t=16"]
SMALL_SIMULATION = {
    "ct": ["data.simulation.operator.geometry.image_shape=[16,16]"],
    "pat": [
        "data.simulation.operator.grid.shape=[16,16]",
        "data.simulation.operator.time.n_t=16",
        "data.simulation.operator.pml_size=8",
    ],
}
SMALL_SPLITS = ["data.splits.validation.size=2", "data.splits.test.size=2"]
# the PAT protocol's four operators, all on one 32² grid (as tests/recon/classical/test_pat.py)
SMALL_PAT_PROTOCOL = [
    f"{node}.{key}={value}"
    for node in (
        "operator",
        "method_operators.bp_accurate",
        "method_operators.bp_regrid",
        "data.simulation.operator",
    )
    for key, value in (("grid.shape", "[32,32]"), ("time.n_t", "64"))
]


def _shrink(cfg: DictConfig) -> list[str]:
    """Overrides that shrink a composed config's operators (and its data simulator)."""
    overrides = []
    operator = cfg.get("operator")
    if operator is not None and "geometry" in operator:
        fine_pair = operator.geometry.get("pixel_size", 1.0) != 1.0  # the 2 mm correction pairs
        overrides += SMALL_CT_PAIR if fine_pair else SMALL_CT
    elif operator is not None and "grid" in operator:
        overrides += SMALL_PAT
    simulator = cfg.data.get("simulation", {}).get("operator")
    if simulator is not None:
        overrides += SMALL_SIMULATION["ct" if "geometry" in simulator else "pat"]
    return overrides + SMALL_SPLITS


def _shrunk(root: str, override: str, *extra: str) -> DictConfig:
    """``root`` composed with ``override``, then again at shrunk sizes."""
    cfg = compose_config(root, [override, *extra])
    return compose_config(root, [override, *_shrink(cfg), *extra])


def _untrained_denoiser() -> DictConfig:
    """The small DRUNet of model/drunet_small: stands in for a trained denoiser run."""
    return compose_config("config", ["model=drunet_small"]).model


def _run_dirs_of_training_experiments() -> set[str]:
    """The ``hydra.run.dir`` of every ``run:`` line in conf/experiment/ (where runs go)."""
    dirs = set()
    for path in (CONF / "experiment").rglob("*.yaml"):
        dirs |= set(re.findall(r"hydra\.run\.dir=(\S+)", path.read_text()))
    return dirs


# --------------------------------------------------------------------------- training experiments
def test_there_are_experiments_and_protocols():
    assert {"quickstart/lpd", "ellipses/lpd", "correction_pat64/lams", "generative/gan"} <= set(
        TRAIN_EXPERIMENTS
    )
    assert {"ellipses/classical", "adler/classical", "pat/vessels"} <= set(PROTOCOLS)


@pytest.mark.parametrize("name", TRAIN_EXPERIMENTS)
def test_every_training_experiment_composes_and_instantiates(name):
    cfg = _shrunk("config", f"experiment={name}")
    assert cfg.model is not None and cfg.trainer.max_steps > 0
    if cfg.operator._target_ == "recon.correction.load_correction":
        # pat/unrolled_corrected reconstructs with a correction run's frozen A_q: here the
        # untrained A_q of that run's experiment (tests/recon/training/tasks/test_correction.py
        # trains one)
        first = _shrunk("config", "experiment=correction_pat64/forward")
        assert cfg.correction_run in _run_dirs_of_training_experiments()
        op = instantiate(first.model)
    else:
        op = instantiate(cfg.operator)
    if cfg.get("denoiser", {}).get("_target_") == LOAD_RUN:  # needs a trained denoiser run
        assert cfg.runs.denoiser in _run_dirs_of_training_experiments()
        cfg.model.denoiser = _untrained_denoiser()
    model = instantiate(cfg.model)
    assert isinstance(model, torch.nn.Module)
    if cfg.get("objective") is not None:
        task = instantiate(cfg.objective, op=op)
        assert task is not None
    if cfg.get("init_from"):  # a later stage starts from an earlier stage's run
        run_dir = cfg.init_from.split("/checkpoints/")[0]
        assert run_dir in _run_dirs_of_training_experiments()


# --------------------------------------------------------------------------- evaluation protocols
@pytest.mark.parametrize("name", PROTOCOLS)
def test_every_protocol_composes_and_instantiates(name):
    extra = ["generator_checkpoint=null"] if name.startswith("generative/") else []
    if name.startswith("pat/"):
        cfg = compose_config("eval", [f"protocol={name}", *SMALL_PAT_PROTOCOL, *SMALL_SPLITS])
    else:
        cfg = _shrunk("eval", f"protocol={name}", *extra)
    op = instantiate(cfg.operator)
    for method, node in cfg.method_operators.items():
        assert method in cfg.methods
        instantiate(node)
    if cfg.get("denoiser", {}).get("_target_") == LOAD_RUN:  # PnP: a trained denoiser run
        cfg.denoiser = _untrained_denoiser()
    loaded = []
    for method, node in cfg.methods.items():
        if node.get("_target_") == LOAD_RUN:  # a trained run: tested with tiny runs elsewhere
            get_method(LOAD_RUN)
            loaded.append(node.run_dir)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # untrained generators say so
            assert isinstance(instantiate(node), Reconstructor), method
    for run_dir in [*loaded, *cfg.get("runs", {}).values()]:
        assert run_dir in _run_dirs_of_training_experiments(), run_dir
    x, y = build_split(cfg.data, "validation", getattr(op, "geometry", None))[0]
    assert x.shape == (1, *op.domain_shape) and y.shape == (1, *op.range_shape)
    for method in cfg.search_grid:
        assert method in cfg.methods


# --------------------------------------------------------------------------- each group its kind
# ellipses/pnp_unfolded names both the training of the learned schedule and its evaluation
SHARED_NAMES = {"ellipses/pnp_unfolded"}


def test_only_a_training_and_its_evaluation_share_a_name():
    assert set(TRAIN_EXPERIMENTS) & set(PROTOCOLS) == SHARED_NAMES


@pytest.mark.parametrize("name", sorted(set(TRAIN_EXPERIMENTS) - SHARED_NAMES))
def test_no_experiment_composes_as_a_protocol(name):
    with pytest.raises(MissingConfigException):
        compose_config("eval", [f"protocol={name}"])


@pytest.mark.parametrize("name", sorted(set(PROTOCOLS) - SHARED_NAMES))
def test_no_protocol_composes_as_an_experiment(name):
    with pytest.raises(MissingConfigException):
        compose_config("config", [f"experiment={name}"])


def test_each_root_offers_only_its_group():
    with pytest.raises(ConfigCompositionException, match="protocol"):
        compose_config("config", ["protocol=ellipses/classical"])
    with pytest.raises(ConfigCompositionException, match="experiment"):
        compose_config("eval", ["experiment=quickstart/lpd"])


@pytest.mark.parametrize(
    ("group", "name"),
    [("experiment", n) for n in TRAIN_EXPERIMENTS] + [("protocol", n) for n in PROTOCOLS],
)
def test_each_group_holds_only_its_kind_and_says_how_to_run_it(group, name):
    text = (CONF / group / f"{name}.yaml").read_text()
    body = OmegaConf.create(text)
    lines = text.splitlines()
    assert lines[0] == "# @package _global_"
    assert lines[1].startswith("# ") and not lines[1].startswith("# run:"), "a one-line what"
    command = "recon-train experiment" if group == "experiment" else "recon-eval protocol"
    assert lines[2].startswith(f"# run: {command}={name}"), lines[2]
    defaults = [str(d) for d in body.get("defaults", [])]
    if group == "experiment":  # training: no methods to evaluate
        assert not {"methods", "search_grid", "method_operators"} & set(body)
        assert not any("@methods." in d for d in defaults)
    else:  # evaluation: no training
        assert not {"model", "trainer", "optim", "objective", "init_from"} & set(body)
        assert any("@methods." in d for d in defaults) or "methods" in body


# a PSNR, a timing or a "measured" aside in a comment: results belong in docs/results/
RESULT = (
    r"\d\s*dB\b|\d\s*(CPU )?s per (step|image)\b|\d\s*min\b|\(measured\)|\bmeasured:|\bMeasured\b"
)


def test_config_comments_quote_no_results():
    """Results live in docs/results/; comments say what a config is and how to run it."""
    for path in CONF.rglob("*.yaml"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            comment = line.partition("#")[2]
            assert not re.search(RESULT, comment), (
                f"{path.relative_to(CONF)}:{number}: {line.strip()}"
            )


# --------------------------------------------------------------------------- the other groups
# Each option of each group is composed here; where noted it is instantiated by another test.
OTHER_GROUPS = [
    "operator",  # instantiated by tests/operators/test_configs.py
    "data",  # instantiated below
    "recon",  # instantiated by tests/recon/cli/test_evaluate.py
    "model",  # reconstructors run in tests/recon/cli/test_train.py, networks built below
    "optim",  # instantiated by tests/recon/cli/test_train.py
    "trainer",  # keyword arguments of the Trainer: composed below
    "objective",  # instantiated by the experiments above that use them
    "hparams_search",  # tests/recon/runs/test_sweep.py
    "paths",
    "hydra/launcher",  # instantiated by tests/recon/runs/test_sweep.py
]
OPTIONS = [(group, name) for group in OTHER_GROUPS for name in _names(group)]


def _compose_option(group: str, name: str) -> DictConfig:
    if group == "recon":
        return compose_config("eval", [f"recon@methods.fbp={name}"])
    if group == "hparams_search":
        root = "eval" if name == "tv" else "config"
        return compose_config(root, [f"hparams_search={name}"])
    if group == "objective":
        return compose_config("config", [f"+objective={name}", "data=ct_ellipses64_fine"])
    if group.startswith("hydra/"):
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
                return compose("config", [f"{group}={name}"], return_hydra_config=True)
        finally:
            GlobalHydra.instance().clear()
    return compose_config("config", [f"{group}={name}"])


def test_every_group_has_options():
    groups = {group for group, _ in OPTIONS}
    assert groups == set(OTHER_GROUPS)
    on_disk = {p.name for p in CONF.iterdir() if p.is_dir()} - {"hydra"}
    assert on_disk == {g for g in OTHER_GROUPS if "/" not in g} | {"experiment", "protocol"}


@pytest.mark.parametrize(("group", "name"), OPTIONS, ids=[f"{g}={n}" for g, n in OPTIONS])
def test_every_option_of_every_group_composes(group, name):
    cfg = _compose_option(group, name)
    node = OmegaConf.select(cfg, group.replace("/", "."))
    if group == "recon":
        node = cfg.methods.fbp
    elif group in ("hparams_search", "paths"):
        node = cfg
    assert node is not None


@pytest.mark.parametrize("name", _names("data"))
def test_every_data_config_builds_its_splits(name):
    cfg = compose_config("config", [f"data={name}"])
    cfg = compose_config("config", [f"data={name}", *_shrink(cfg)])
    op = instantiate(cfg.operator)  # the default parallel beam, shrunk, for the CT data
    assert {"train", "validation", "test"} <= set(cfg.data.splits)
    x, y = build_split(cfg.data, "validation", op.geometry)[0]  # the splits differ in size only
    assert x.ndim == 3 and y.ndim == 3


NETWORKS = [
    n
    for n in _names("model")
    if OmegaConf.load(CONF / "model" / f"{n}.yaml")._target_.startswith(("models.", "operators."))
]


@pytest.mark.parametrize("name", NETWORKS)
def test_every_network_config_builds(name):
    cfg = compose_config("config", [f"model={name}", *SMALL_CT])
    model = instantiate(cfg.model)
    assert isinstance(model, torch.nn.Module) and sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("name", _names("trainer"))
def test_every_trainer_config_names_trainer_arguments(name):
    import inspect

    from recon.training import Trainer

    cfg = compose_config("config", [f"trainer={name}"])
    accepted = set(inspect.signature(Trainer).parameters)
    accepted.add("distributed")  # taken by recon.training.distributed.setup_training
    assert set(cfg.trainer) <= accepted, set(cfg.trainer) - accepted


def test_a_user_config_directory_may_add_an_experiment(tmp_path: Path):
    """--config-dir / hydra.searchpath: a user's experiment beside the shipped ones."""
    user = tmp_path / "experiment" / "mine"
    user.mkdir(parents=True)
    (user / "short.yaml").write_text(
        "# @package _global_\n# A shorter quickstart.\n# run: recon-train experiment=mine/short\n"
        "defaults:\n  - /experiment/quickstart/lpd\n\ntrainer:\n  max_steps: 10\n"
    )
    cfg = compose_config(
        "config", ["experiment=mine/short", f"hydra.searchpath=[file://{tmp_path}]"]
    )
    assert cfg.trainer.max_steps == 10 and cfg.model.n_iter == 10
    with pytest.raises(HydraException):
        compose_config("config", ["experiment=mine/short"])
