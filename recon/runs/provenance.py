"""What a run needs to be reproduced: resolved config, git commit, package versions, seeds.

``recon-train`` and ``recon-eval`` call :func:`write_provenance` once per run; it writes
``provenance.json`` under the run's output directory (rank 0 only). The trainer's own
``run.json`` (trainer settings, dataset sizes, model class, checkpoint compatibility) is left as
it is; ``provenance.json`` adds what lies outside the trainer:

- ``config``: the whole resolved Hydra config (Hydra's ``.hydra/config.yaml`` keeps the
  interpolations unresolved), and ``overrides``, the command-line overrides of the job;
- ``git``: ``commit`` and ``dirty`` of the checkout the code runs from, or ``commit: null`` and a
  ``note`` such as ``"not a git checkout"`` (never an error);
- ``packages``: versions of the packages results depend on; ``python``, ``platform``, ``host``;
- ``seeds``: ``seed`` (trainer, evaluation), the data splits' seeds and torch's initial seed;
- ``command``, ``started``, ``cluster`` (SLURM/submitit job ids, torchrun rank and world size).

A requeued or resumed run keeps the earlier records under ``earlier_attempts``.

Example
-------
>>> from omegaconf import OmegaConf
>>> record = provenance(OmegaConf.create({"seed": 3}))
>>> record["seeds"]["seed"], sorted(record["git"]) in (["commit", "dirty"], ["commit", "note"])
(3, True)
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

__all__ = [
    "PACKAGES",
    "git_info",
    "package_versions",
    "provenance",
    "record_outcome",
    "write_provenance",
]

log = logging.getLogger(__name__)

#: Distributions whose versions are recorded.
PACKAGES = (
    "tomolearn",
    "torch",
    "numpy",
    "scipy",
    "astra-toolbox",
    "odl",
    "scikit-image",
    "hydra-core",
    "omegaconf",
    "hydra-submitit-launcher",
    "submitit",
    "hydra-optuna-sweeper",
    "optuna",
    "h5py",
    "matplotlib",
)
_REPO = Path(__file__).resolve().parents[2]
_CLUSTER_VARIABLES = (
    "SLURM_JOB_ID",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_RESTART_COUNT",
    "SLURM_JOB_NODELIST",
    "SUBMITIT_LOCAL_JOB_ID",
    "SUBMITIT_EXECUTOR",
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
)


def git_info(path: str | os.PathLike[str] = _REPO) -> dict[str, Any]:
    """``{"commit", "dirty"}`` of the checkout whose top level is ``path``, else
    ``{"commit": None, "note"}``.

    Never raises: without git, or outside a checkout, ``note`` says why. ``path`` must be the
    top of the repository: an installed wheel inside a user's own project (``project/.venv``)
    is not a tomolearn checkout, and that project's commit must not be recorded as ours.

    Example
    -------
    >>> import tempfile
    >>> git_info(tempfile.mkdtemp())["commit"] is None
    True
    """
    try:
        top = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != Path(path).resolve():
            return {"commit": None, "note": f"not a git checkout ({path})"}
        commit = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except FileNotFoundError:
        return {"commit": None, "note": "git is not installed"}
    except (OSError, subprocess.TimeoutExpired) as error:
        return {"commit": None, "note": f"git failed: {error}"}
    if commit.returncode != 0:
        return {"commit": None, "note": f"not a git checkout ({path})"}
    try:
        status = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        dirty: bool | None = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        dirty = None
    return {"commit": commit.stdout.strip(), "dirty": dirty}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution in ``names`` (``None`` if it is not installed).

    Example
    -------
    >>> package_versions(("torch", "no-such-package"))["no-such-package"] is None
    True
    """
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _resolved(cfg: DictConfig, output_dir: Path | None) -> tuple[Any, str | None]:
    """The config as a resolved container; outside Hydra, ``paths.output_dir`` = ``output_dir``."""
    try:
        return OmegaConf.to_container(cfg, resolve=True), None
    except Exception as first:  # noqa: BLE001 - e.g. ${hydra:...} outside a Hydra run
        cfg = copy.deepcopy(cfg)
        if output_dir is not None and "paths" in cfg:
            OmegaConf.update(cfg, "paths.output_dir", str(output_dir), force_add=True)
        try:
            return OmegaConf.to_container(cfg, resolve=True), None
        except Exception:  # noqa: BLE001 - keep the unresolved config, say why
            note = f"unresolved: {type(first).__name__}: {first}"
            return OmegaConf.to_container(cfg, resolve=False), note


def _hydra_overrides() -> list[str] | None:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except Exception:  # noqa: BLE001 - not inside a Hydra job
        return None


def provenance(cfg: DictConfig, output_dir: str | os.PathLike[str] | None = None) -> dict:
    """The provenance record of a run with config ``cfg`` (see the module docstring).

    Example
    -------
    >>> from omegaconf import OmegaConf
    >>> cfg = OmegaConf.create({"seed": 1, "data": {"splits": {"test": {"seed": 7}}}})
    >>> provenance(cfg)["seeds"]["data"]
    {'test': 7}
    """
    config, note = _resolved(cfg, None if output_dir is None else Path(output_dir))
    splits = OmegaConf.select(cfg, "data.splits")
    record: dict[str, Any] = {
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": list(sys.argv),
        "cwd": os.getcwd(),
        "host": socket.gethostname(),
        "git": git_info(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        # what the CPU kernels use (ATEN_CPU_CAPABILITY=avx2 emulates an AVX2-only machine)
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "packages": package_versions(),
        "seeds": {
            "seed": cfg.get("seed"),
            "data": {name: spec.get("seed") for name, spec in splits.items()} if splits else {},
            "torch_initial_seed": torch.initial_seed(),
        },
        "cluster": {k: os.environ[k] for k in _CLUSTER_VARIABLES if k in os.environ},
        "overrides": _hydra_overrides(),
        "config": config,
    }
    if note:
        record["config_note"] = note
    return record


def record_outcome(output_dir: str | os.PathLike[str], **outcome: Any) -> Path | None:
    """Add ``outcome`` (e.g. the steps a time-limited run reached) to the run's
    ``provenance.json`` under ``"outcome"``; rank 0 only, atomically. Returns the path, or
    ``None`` when there is no record to add to (ranks > 0, or no provenance written).

    Example
    -------
    >>> import tempfile
    >>> from omegaconf import OmegaConf
    >>> out = tempfile.mkdtemp()
    >>> _ = write_provenance(OmegaConf.create({"seed": 0}), out)
    >>> path = record_outcome(out, steps=1200, stopped_by="max_time")
    >>> json.loads(path.read_text())["outcome"]
    {'steps': 1200, 'stopped_by': 'max_time'}
    """
    from recon.training.distributed import is_main_process

    path = Path(output_dir) / "provenance.json"
    if not is_main_process() or not path.is_file():
        return None
    record = json.loads(path.read_text())
    record["outcome"] = outcome
    tmp = path.with_name(f".provenance.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    os.replace(tmp, path)
    return path


def write_provenance(
    cfg: DictConfig, output_dir: str | os.PathLike[str], *, filename: str = "provenance.json"
) -> Path | None:
    """Write :func:`provenance` to ``output_dir/filename`` on rank 0; return the path.

    Ranks > 0 of a distributed job write nothing and get ``None``. An existing file (a resumed
    or requeued run) is kept inside the new one, under ``earlier_attempts``.

    Example
    -------
    >>> import tempfile
    >>> from omegaconf import OmegaConf
    >>> path = write_provenance(OmegaConf.create({"seed": 0}), tempfile.mkdtemp())
    >>> path.name
    'provenance.json'
    """
    from recon.training.distributed import is_main_process

    if not is_main_process():
        return None
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / filename
    record = provenance(cfg, output_dir)
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
            earlier = previous.pop("earlier_attempts", [])
            record["earlier_attempts"] = [*earlier, previous]
        except (OSError, ValueError):
            log.warning("%s is unreadable; replacing it", path)
    tmp = path.with_name(f".{filename}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    os.replace(tmp, path)
    return path
