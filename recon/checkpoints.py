"""Checkpoints: atomic writes, RNG state, and safe loading of weights and runs.

A checkpoint is data, never code. Every load goes through :func:`load_weights_file`, which calls
``torch.load(..., weights_only=True)``: tensors, numbers, strings and containers come back, and a
file that would need full unpickling (an object with a ``__reduce__``, a pickled module) is
refused with an error that names the file and says how to convert it. :func:`load_run` rebuilds a
run's model from its ``.hydra/config.yaml`` and instantiates only ``_target_`` paths under the
project's packages (and ``torch.nn``), or ones the caller allows explicitly.

- :func:`atomic_save`, :func:`atomic_write_text`, :func:`atomic_copy`: a temporary file in the
  same folder, ``fsync``, ``os.replace``: a run killed at any instant leaves complete files only.
- :func:`rng_state`, :func:`set_rng_state`: every RNG of the process, in types ``weights_only``
  loads.
- :func:`load_trained`: the weights of a trainer checkpoint into a model.
- :func:`load_run`: the model of a ``recon-train`` run folder.

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

import os
import pickle
import random
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "TRUSTED_TARGET_PREFIXES",
    "UnsafeCheckpointError",
    "atomic_copy",
    "atomic_save",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_targets",
    "load_run",
    "load_trained",
    "load_weights_file",
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


def load_trained(
    model: torch.nn.Module, checkpoint: str | Path, *, skip: Sequence[str] = ()
) -> torch.nn.Module:
    """Load the weights of a trainer checkpoint (``best.pt``, ``last.pt``, ``step_*.pt``) into
    ``model`` and return it in eval mode.

    ``skip`` names submodules of the checkpoint's model not to load. A model without them goes
    without (the adjoint networks of a learned operator fine-tuned with its linearised
    adjoint); a model that has them keeps its own, freshly initialised ones (say, wider adjoint
    networks to train anew)::

        load_trained(A_q, "outputs/pat_correction/checkpoints/best.pt",
                     skip=["adjoint_image_net", "adjoint_data_net"])

    Every other weight must match (names and shapes). The file is loaded as data only
    (:func:`load_weights_file`).

    Raises ``FileNotFoundError`` naming the path when the checkpoint is missing,
    :class:`UnsafeCheckpointError` for a file that would run code, ``ValueError`` naming a
    ``skip`` entry that is not a submodule of the checkpoint's model, and ``RuntimeError``
    listing the weights that are missing from the checkpoint or that the model does not have.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "best.pt"
    >>> atomic_save({"model": torch.nn.Linear(2, 1).state_dict()}, path)
    >>> load_trained(torch.nn.Linear(2, 1), path).training
    False
    """
    path = Path(checkpoint).expanduser()
    state = load_weights_file(path)
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path} is not a tomolearn trainer checkpoint (no 'model' entry)")
    weights = state["model"]
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
    """The trained model of a ``recon-train`` run folder (or a quickstart's ``train/``).

    Rebuilds the model from the run's own config (``.hydra/config.yaml``) and loads
    ``checkpoints/<checkpoint>``, so an evaluation cannot pair weights with the wrong
    architecture::

        methods:
          lpd: {_target_: recon.checkpoints.load_run, run_dir: outputs/ellipses_lpd}

    Only ``_target_`` paths under the project's packages (and ``torch.nn``/``torch.optim``) are
    instantiated; ``allow`` adds prefixes (ending in ``.``) or exact paths the caller trusts.

    Raises ``FileNotFoundError`` naming what is missing (the folder, its config or the
    checkpoint) and :class:`UnsafeCheckpointError` for a config naming an untrusted target.
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    run_dir = Path(run_dir).expanduser()
    config = run_dir / ".hydra" / "config.yaml"
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    if not config.is_file():
        raise FileNotFoundError(
            f"{run_dir} has no .hydra/config.yaml: not a recon-train run directory "
            "(use recon.checkpoints.load_trained with an explicit model config instead)"
        )
    model_cfg = OmegaConf.load(config).get("model")
    if model_cfg is None:
        raise ValueError(f"{config} has no model node; it is not a training run's config")
    check_targets(model_cfg, allow=allow, where=str(config))
    model = instantiate(model_cfg)
    return load_trained(model, run_dir / "checkpoints" / checkpoint)
