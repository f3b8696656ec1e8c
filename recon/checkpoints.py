"""Checkpoints: atomic writes, RNG state, and safe loading of weights and runs.

A checkpoint is data, never code. Every load goes through :func:`load_weights_file`, which calls
``torch.load(..., weights_only=True)``: tensors, numbers, strings and containers come back, and a
file that would need full unpickling (an object with a ``__reduce__``, a pickled module) is
refused with an error that names the file and says how to convert it. :func:`load_run` rebuilds a
run's model from its ``.hydra/config.yaml`` and instantiates only ``_target_`` paths under the
project's packages (and ``torch.nn``), or ones the caller allows explicitly.

A trainer checkpoint may also carry its model's constructor record, ``model_config`` =
``{"_target_": "recon.unrolled.LearnedPrimalDual", **arguments}`` (JSON-like data, as Lightning's
``save_hyperparameters``), so a model trained from Python rebuilds without any ``.hydra/``. Models
get a record from :func:`build_model`, from the :func:`record_init_args` class decorator, or from
the caller (``Trainer(model_config=...)``); ``recon-train`` records its ``model`` config node.

- :func:`atomic_save`, :func:`atomic_write_text`, :func:`atomic_copy`: a temporary file in the
  same folder, ``fsync``, ``os.replace``: a run killed at any instant leaves complete files only.
- :func:`rng_state`, :func:`set_rng_state`: every RNG of the process, in types ``weights_only``
  loads.
- :func:`load_trained`: the weights of a trainer checkpoint into a model (or into the model its
  record rebuilds).
- :func:`load_run`: the model of a run folder (``recon-train``, or a trainer run from Python).
- :func:`build_model`, :func:`record_init_args`, :func:`init_config_of`,
  :func:`check_model_config`: the constructor record a checkpoint carries.

Example
-------
>>> import tempfile, torch
>>> from pathlib import Path
>>> path = Path(tempfile.mkdtemp()) / "w.pt"
>>> atomic_save({"model": torch.nn.Linear(2, 1).state_dict()}, path)
>>> sorted(load_weights_file(path)["model"])
['bias', 'weight']
"""

from __future__ import annotations

import functools
import inspect
import os
import pickle
import random
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "MODEL_CONFIG_KEY",
    "TRUSTED_TARGET_PREFIXES",
    "UnsafeCheckpointError",
    "atomic_copy",
    "atomic_save",
    "atomic_write_bytes",
    "atomic_write_text",
    "build_model",
    "check_model_config",
    "check_targets",
    "init_config_of",
    "load_run",
    "load_trained",
    "load_weights_file",
    "record_init_args",
    "training_operator",
    "rng_state",
    "set_rng_state",
]

#: ``_target_`` prefixes :func:`load_run` instantiates without being told: the project's packages
#: and torch's module and optimiser namespaces.
TRUSTED_TARGET_PREFIXES: tuple[str, ...] = (
    "recon.",
    "operators.",
    "models.",
    "data_tools.",
    "torch.nn.",
    "torch.optim.",
)


#: The key of a trainer checkpoint that holds its model's constructor record.
MODEL_CONFIG_KEY = "model_config"


class UnsafeCheckpointError(ValueError):
    """A checkpoint or config would run code when loaded; it is refused instead."""


# --------------------------------------------------------------------------- writing
def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, mode: str, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, mode) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj)`` to a temporary file beside ``path``, fsync, then ``os.replace``.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "x.pt"
    >>> atomic_save({"step": 3}, path)
    >>> load_weights_file(path)
    {'step': 3}
    """
    _atomic_write(Path(path), "wb", lambda file: torch.save(obj, file))


def atomic_write_text(text: str, path: str | os.PathLike[str]) -> None:
    """Write ``text`` to ``path`` atomically (temporary file, fsync, ``os.replace``).

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a" / "run.json"
    >>> atomic_write_text("{}", path)
    >>> path.read_text()
    '{}'
    """
    _atomic_write(Path(path), "w", lambda file: file.write(text))


def atomic_write_bytes(data: bytes, path: str | os.PathLike[str]) -> None:
    """Write ``data`` to ``path`` atomically (a PNG, an archive).

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "grid.png"
    >>> atomic_write_bytes(b"\\x89PNG", path)
    >>> path.read_bytes()
    b'\\x89PNG'
    """
    _atomic_write(Path(path), "wb", lambda file: file.write(data))


def atomic_copy(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Make ``path`` an independent copy of ``source``, atomically.

    Copies, never hard links: overwriting one checkpoint file (``best.pt``) must not change
    another (``last.pt``, ``step_N.pt``).

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / "a").write_text("1")
    1
    >>> atomic_copy(folder / "a", folder / "b")
    >>> (folder / "b").read_text(), os.path.samefile(folder / "a", folder / "b")
    ('1', False)
    """
    with open(source, "rb") as src:
        _atomic_write(Path(path), "wb", lambda file: shutil.copyfileobj(src, file))


# --------------------------------------------------------------------------- RNG
def rng_state() -> dict[str, Any]:
    """This process's torch, CUDA, numpy and python RNG states, in types ``weights_only`` loads.

    Example
    -------
    >>> state = rng_state()
    >>> a = torch.rand(1)
    >>> set_rng_state(state)
    >>> torch.equal(a, torch.rand(1))
    True
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the RNG states captured by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        else:
            import logging

            logging.getLogger(__name__).warning(
                "the checkpoint's CUDA RNG states are for another number of GPUs"
            )
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# --------------------------------------------------------------------------- loading
def load_weights_file(path: str | os.PathLike[str]) -> Any:
    """Load a checkpoint file as data only (``torch.load(..., weights_only=True)``), on the CPU.

    Raises
    ------
    FileNotFoundError
        Naming the path, if there is no such file.
    UnsafeCheckpointError
        If the file holds objects that only full unpickling could rebuild (which could run any
        code). The message names the file and how to convert a trusted one.
    ValueError
        If the file is truncated or not a torch file; the message names it.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights_only" in str(error) or "Unsupported global" in str(error):
            raise UnsafeCheckpointError(
                f"{path} holds Python objects that only full unpickling could load, which can run "
                "arbitrary code, so it is refused. If you made this file yourself and trust it, "
                "convert it once: state = torch.load(path, weights_only=False); "
                "torch.save({'model': model.state_dict()}, new_path) (tensors, numbers, strings "
                "and containers only)."
            ) from None
        raise ValueError(f"{path} is not a readable checkpoint: {error}") from None
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"{path} is not a readable checkpoint (truncated?): {error}") from None


def _few(keys: Sequence[str], most: int = 6) -> str:
    """``keys`` as a short list for an error message."""
    shown = ", ".join(repr(k) for k in keys[:most])
    return f"[{shown}{', …' if len(keys) > most else ''}] ({len(keys)})" if keys else "none"


# --------------------------------------------------------------------------- model records
def public_path(cls: type) -> str:
    """The shortest importable dotted path of ``cls`` (``recon.unrolled.LearnedPrimalDual``,
    not ``recon.unrolled.networks.LearnedPrimalDual``), as a ``_target_`` names it.

    Raises ``ValueError`` for a class defined inside a function (it has no such path).

    Example
    -------
    >>> public_path(torch.nn.Linear)
    'torch.nn.Linear'
    """
    name = cls.__qualname__
    if "<locals>" in name or cls.__module__ == "__main__":
        raise ValueError(
            f"{cls.__module__}.{name} cannot be imported by another program: define the class "
            "at the top level of an importable module so that a checkpoint can name it"
        )
    parts = cls.__module__.split(".")
    for end in range(1, len(parts) + 1):
        module = sys.modules.get(".".join(parts[:end]))
        if module is not None and getattr(module, name, None) is cls:
            return f"{module.__name__}.{name}"
    return f"{cls.__module__}.{name}"


def _plain(value: Any, at: str) -> Any:
    """``value`` as JSON-like data (tuples as lists, recorded modules as their records)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{at}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise ValueError(f"{at} has keys that are not strings: {list(value)!r}")
        return {key: _plain(item, f"{at}.{key}") for key, item in value.items()}
    record = getattr(value, "init_config", None)
    if isinstance(value, torch.nn.Module) and record is not None:
        return _plain(record, at)
    raise ValueError(
        f"{at} is a {type(value).__name__}, which a model record cannot hold (numbers, strings, "
        "lists, dicts, None, or modules built with build_model/record_init_args)"
    )


def check_model_config(config: Any, *, where: str = "model_config") -> dict[str, Any]:
    """``config`` as a plain model record: a dict with a string ``_target_`` and JSON-like
    values (OmegaConf nodes are resolved; tuples become lists).

    Raises ``ValueError`` naming the first entry that is not JSON-like, or a missing
    ``_target_``.

    Example
    -------
    >>> check_model_config({"_target_": "recon.unrolled.FBPUNet", "channels": 8, "pad": (1, 2)})
    {'_target_': 'recon.unrolled.FBPUNet', 'channels': 8, 'pad': [1, 2]}
    >>> check_model_config({"channels": 8})
    Traceback (most recent call last):
    ...
    ValueError: model_config needs a string _target_ (the model's class), got keys ['channels']
    """
    from omegaconf import DictConfig, OmegaConf

    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=True)
    if not isinstance(config, Mapping):
        raise ValueError(f"{where} must be a dict, got {type(config).__name__}")
    if not isinstance(config.get("_target_"), str):
        raise ValueError(
            f"{where} needs a string _target_ (the model's class), got keys {sorted(config)}"
        )
    return _plain(config, where)


def init_config_of(model: Any) -> dict[str, Any] | None:
    """The constructor record ``model`` carries (from :func:`build_model` or
    :func:`record_init_args`), or ``None``.

    Example
    -------
    >>> init_config_of(build_model("torch.nn.Linear", in_features=2, out_features=1))
    {'_target_': 'torch.nn.Linear', 'in_features': 2, 'out_features': 1}
    >>> init_config_of(torch.nn.Linear(2, 1)) is None
    True
    """
    record = getattr(model, "init_config", None)
    return None if record is None else check_model_config(record)


def build_model(target: Any, /, **arguments: Any) -> Any:
    """Build a model and record how: ``target(**arguments)`` carrying ``init_config``.

    ``target`` is a class, a dotted path or a config dict with ``_target_`` (``arguments``
    then update it); it is built with Hydra's ``instantiate``, as ``recon-train`` builds the
    ``model`` node. A trainer checkpoint of the model carries the record, from which
    :func:`load_run` and :func:`load_trained` rebuild it.

    Raises ``ValueError`` when the arguments are not JSON-like (see :func:`check_model_config`).

    Example
    -------
    >>> from recon.unrolled import LearnedPrimalDual
    >>> lpd = build_model(LearnedPrimalDual, n_iter=2, channels=4)
    >>> init_config_of(lpd)
    {'_target_': 'recon.unrolled.LearnedPrimalDual', 'n_iter': 2, 'channels': 4}
    """
    from hydra.utils import instantiate

    if isinstance(target, type):
        config = {"_target_": public_path(target), **arguments}
    elif isinstance(target, str):
        config = {"_target_": target, **arguments}
    elif isinstance(target, Mapping):
        config = {**target, **arguments}
    else:
        kind = type(target).__name__
        raise TypeError(f"build_model takes a class, a dotted path or a config dict, got {kind}")
    config = check_model_config(config)
    model = instantiate(config)
    model.init_config = config
    return model


def record_init_args(cls: type) -> type:
    """Class decorator: each instance records the arguments it was built with (defaults
    included) as ``init_config`` = ``{"_target_": <its class>, **arguments}``, the record a
    trainer checkpoint carries (Lightning's ``save_hyperparameters``).

    A subclass that defines its own ``__init__`` records nothing unless decorated too.
    Arguments that are not JSON-like (a tensor, an operator) leave the record ``None``; modules
    that carry a record are recorded as their own record.

    Example
    -------
    >>> @record_init_args
    ... class Net(torch.nn.Module):
    ...     def __init__(self, *, width: int = 4, depth: int = 2):
    ...         super().__init__()
    ...         self.layers = torch.nn.Sequential(*[torch.nn.Linear(width, width)] * depth)
    >>> Net(width=3).init_config
    {'_target_': 'recon.checkpoints.Net', 'width': 3, 'depth': 2}
    """
    init = cls.__init__
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if type(self).__init__ is not __init__:  # a subclass with its own __init__
            object.__setattr__(self, "init_config", None)  # records itself if decorated
            return
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments: dict[str, Any] = {}
        for name, value in list(bound.arguments.items())[1:]:
            kind = signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                if value:
                    arguments["_args_"] = list(value)
            elif kind is inspect.Parameter.VAR_KEYWORD:
                arguments.update(value)
            else:
                arguments[name] = value
        try:
            record = check_model_config({"_target_": public_path(type(self)), **arguments})
        except ValueError:
            record = None
        object.__setattr__(self, "init_config", record)

    cls.__init__ = __init__
    return cls


def _rebuild(record: Any, where: str, allow: Sequence[str]) -> torch.nn.Module:
    """The model a checkpoint's record names, after checking its targets."""
    from hydra.utils import instantiate

    record = check_model_config(record, where=where)
    check_targets(record, allow=allow, where=where)
    model = instantiate(record)
    model.init_config = record
    return model


def load_trained(
    model: torch.nn.Module | str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    skip: Sequence[str] = (),
    allow: Sequence[str] = (),
) -> torch.nn.Module:
    """Load the weights of a trainer checkpoint (``best.pt``, ``last.pt``, ``step_*.pt``) into
    ``model`` and return it in eval mode.

    Without a model (``load_trained(checkpoint)`` or ``model=None``) the model is rebuilt from
    the constructor record the checkpoint carries (see :func:`build_model`); only ``_target_``
    paths under the project's packages, or in ``allow``, are instantiated (:func:`check_targets`).

    ``skip`` names submodules of the checkpoint's model not to load. A model without them goes
    without (the adjoint networks of a learned operator fine-tuned with its linearised
    adjoint); a model that has them keeps its own, freshly initialised ones (say, wider adjoint
    networks to train anew)::

        load_trained(A_q, "outputs/pat_correction/checkpoints/best.pt",
                     skip=["adjoint_image_net", "adjoint_data_net"])

    Every other weight must match (names and shapes). The file is loaded as data only
    (:func:`load_weights_file`).

    Raises ``FileNotFoundError`` naming the path when the checkpoint is missing,
    :class:`UnsafeCheckpointError` for a file that would run code or a record naming an
    untrusted target, ``ValueError`` naming a ``skip`` entry that is not a submodule of the
    checkpoint's model (or, without a model, a checkpoint without a record), and
    ``RuntimeError`` listing the weights that are missing from the checkpoint or that the model
    does not have.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "best.pt"
    >>> atomic_save({"model": torch.nn.Linear(2, 1).state_dict()}, path)
    >>> load_trained(torch.nn.Linear(2, 1), path).training
    False
    >>> net = build_model("torch.nn.Linear", in_features=2, out_features=1)
    >>> atomic_save({"model": net.state_dict(), "model_config": init_config_of(net)}, path)
    >>> torch.equal(load_trained(path).weight, net.weight)
    True
    """
    if checkpoint is None and isinstance(model, (str, os.PathLike)):
        model, checkpoint = None, model
    if checkpoint is None:
        raise TypeError("load_trained needs a checkpoint: load_trained([model,] checkpoint)")
    path = Path(checkpoint).expanduser()
    state = load_weights_file(path)
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path} is not a tomolearn trainer checkpoint (no 'model' entry)")
    if model is None:
        if state.get(MODEL_CONFIG_KEY) is None:
            raise ValueError(
                f"{path} records no model config (a checkpoint of an older run, or of a model "
                "built without build_model/record_init_args): pass the model, "
                "load_trained(model, path), or load_run(<its run folder>) for a recon-train run"
            )
        model = _rebuild(state[MODEL_CONFIG_KEY], f"{path} ({MODEL_CONFIG_KEY})", allow)
    return _load_state(model, state["model"], path, skip)


def _load_state(
    model: torch.nn.Module, weights: dict[str, Any], path: Path, skip: Sequence[str]
) -> torch.nn.Module:
    """Load ``weights`` (of ``path``) into ``model`` but ``skip``; eval mode."""
    for name in skip:
        if not any(key.startswith(f"{name}.") for key in weights):
            modules = sorted({key.split(".")[0] for key in weights})
            raise ValueError(f"skip: {path} has no submodule {name!r} (it has {modules})")
        weights = {key: value for key, value in weights.items() if not key.startswith(f"{name}.")}
    # check the names before loading anything, so a mismatch leaves the model as it was
    fresh = tuple(f"{name}." for name in skip)
    own = model.state_dict().keys()
    missing = [key for key in own if key not in weights and not key.startswith(fresh)]
    unexpected = [key for key in weights if key not in own]
    if missing or unexpected:
        raise RuntimeError(
            f"{path} does not fit {type(model).__name__}: missing from the checkpoint "
            f"{_few(missing)}; not in the model {_few(unexpected)} "
            "(init_skip / skip= names submodules not to load)"
        )
    model.load_state_dict(weights, strict=False)
    return model.eval()


def check_targets(node: Any, *, allow: Iterable[str] = (), where: str = "config") -> None:
    """Refuse a config whose ``_target_`` paths lie outside the trusted packages.

    Trusted: :data:`TRUSTED_TARGET_PREFIXES` plus the prefixes (or exact paths) in ``allow``.
    Walks nested dicts and lists (OmegaConf containers too).

    Raises
    ------
    UnsafeCheckpointError
        Naming the first untrusted target, where it is, and how to allow it.

    Example
    -------
    >>> check_targets({"model": {"_target_": "recon.unrolled.LearnedPrimalDual"}})
    >>> check_targets({"model": {"_target_": "os.system", "command": "true"}})
    Traceback (most recent call last):
    ...
    recon.checkpoints.UnsafeCheckpointError: config names _target_ 'os.system' at model, ...
    """
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=False)
    trusted = (*TRUSTED_TARGET_PREFIXES, *allow)

    def walk(value: Any, at: str) -> None:
        if isinstance(value, dict):
            target = value.get("_target_")
            if target is not None:
                name = str(target)
                if not any(name == t or (t.endswith(".") and name.startswith(t)) for t in trusted):
                    raise UnsafeCheckpointError(
                        f"{where} names _target_ {name!r} at {at or 'the top'}, outside the "
                        f"trusted packages ({', '.join(TRUSTED_TARGET_PREFIXES)}); if you "
                        f"trust it, pass allow=[{name!r}]"
                    )
            for key, item in value.items():
                walk(item, f"{at}.{key}" if at else str(key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{at}[{i}]")

    walk(node, "")


def training_operator(run_dir: str | Path) -> dict[str, Any] | None:
    """The operator config a ``recon-train`` run was trained with (its ``.hydra/config.yaml``),
    resolved to plain containers; ``None`` if the run records none.

    Example
    -------
    >>> import tempfile
    >>> from omegaconf import OmegaConf
    >>> run = Path(tempfile.mkdtemp())
    >>> (run / ".hydra").mkdir()
    >>> OmegaConf.save({"operator": {"n_angles": 30}}, run / ".hydra" / "config.yaml")
    >>> training_operator(run)
    {'n_angles': 30}
    """
    from omegaconf import OmegaConf

    config = Path(run_dir).expanduser() / ".hydra" / "config.yaml"
    if not config.is_file():
        return None
    node = OmegaConf.load(config).get("operator")
    if node is None:
        return None
    try:
        return OmegaConf.to_container(node, resolve=True)
    except Exception:  # noqa: BLE001 - interpolations into the rest of the config: compare as is
        return OmegaConf.to_container(node, resolve=False)


def load_run(
    run_dir: str | Path, checkpoint: str = "best.pt", *, allow: Sequence[str] = ()
) -> torch.nn.Module:
    """The trained model of a run folder: ``recon-train``'s, a quickstart's ``train/``, or a
    :class:`~recon.training.Trainer` run from Python.

    Rebuilds the model from the constructor record in ``checkpoints/<checkpoint>``
    (``model_config``), or, for a checkpoint without one (older runs), from the run's own config
    (``.hydra/config.yaml``), and loads the checkpoint's weights, so an evaluation cannot pair
    weights with the wrong architecture::

        methods:
          lpd: {_target_: recon.checkpoints.load_run, run_dir: outputs/ellipses_lpd}

    Only ``_target_`` paths under the project's packages (and ``torch.nn``/``torch.optim``) are
    instantiated; ``allow`` adds prefixes (ending in ``.``) or exact paths the caller trusts.

    Raises ``FileNotFoundError`` naming what is missing (the folder, the checkpoint, or a
    config to rebuild the model from) and :class:`UnsafeCheckpointError` for a record or config
    naming an untrusted target.
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    run_dir = Path(run_dir).expanduser()
    config = run_dir / ".hydra" / "config.yaml"
    path = run_dir / "checkpoints" / checkpoint
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    if not path.is_file() and not config.is_file():
        raise FileNotFoundError(
            f"{run_dir} has no checkpoints/{checkpoint} and no .hydra/config.yaml: not a "
            "recon-train run directory"
        )
    state = load_weights_file(path)
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path} is not a tomolearn trainer checkpoint (no 'model' entry)")
    if state.get(MODEL_CONFIG_KEY) is not None:
        model = _rebuild(state[MODEL_CONFIG_KEY], f"{path} ({MODEL_CONFIG_KEY})", allow)
    elif config.is_file():
        model_cfg = OmegaConf.load(config).get("model")
        if model_cfg is None:
            raise ValueError(f"{config} has no model node; it is not a training run's config")
        check_targets(model_cfg, allow=allow, where=str(config))
        model = instantiate(model_cfg)
    else:
        raise FileNotFoundError(
            f"{path} records no model config and {run_dir} has no .hydra/config.yaml: not a "
            "recon-train run directory (use recon.checkpoints.load_trained(model, path) with "
            "the model you built)"
        )
    return _load_state(model, state["model"], path, ())
