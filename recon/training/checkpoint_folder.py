"""The ``checkpoints/`` folder of a training run: what a checkpoint holds and how files rotate.

A training checkpoint is a dict of tensors, numbers, strings and containers (loaded with
``weights_only=True``) with the keys of :data:`REQUIRED_KEYS`. The folder holds ``step_N.pt``
every ``ckpt_every`` steps (the newest ``keep_last`` are kept), ``last.pt`` (a copy of the
newest step) and ``best.pt`` (the best validation PSNR). The three are independent files, never
hard links, so replacing one cannot change another. Every write is atomic; a run killed while
writing leaves a ``.*.tmp`` file, removed at the next start.

Example
-------
>>> import tempfile
>>> folder = CheckpointFolder(Path(tempfile.mkdtemp()) / "checkpoints", keep_last=2)
>>> state = {key: 0 for key in REQUIRED_KEYS} | {"format_version": CHECKPOINT_FORMAT_VERSION}
>>> for step in (10, 20, 30):
...     _ = folder.write(state | {"step": step}, step=step, periodic=True, new_best=step == 20)
>>> sorted(p.name for p in folder.path.iterdir())
['best.pt', 'last.pt', 'step_00000020.pt', 'step_00000030.pt']
>>> path, newest = folder.newest()
>>> path.name, newest["step"], read_training_checkpoint(folder.path / "best.pt")["step"]
('last.pt', 30, 20)
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from recon.checkpoints import atomic_copy, atomic_save, atomic_write_text, load_weights_file

__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "REQUIRED_KEYS",
    "RESUME_INVARIANTS",
    "CheckpointFolder",
    "describe_differences",
    "prepare_run_folder",
    "read_json",
    "read_training_checkpoint",
]

logger = logging.getLogger(__name__)

#: Version of the checkpoint layout; a resume refuses other versions.
CHECKPOINT_FORMAT_VERSION = 1
#: The keys every training checkpoint holds.
REQUIRED_KEYS = frozenset(
    {
        "format_version",
        "step",
        "epoch",
        "position",
        "model",
        "optimizer",
        "scheduler",
        "scaler",
        "sampler_generator",
        "rng",
        "best_psnr",
        "last_val",
        "config",
    }
)
_STEP_FILE = re.compile(r"^step_(\d{8})\.pt$")


def read_training_checkpoint(path: Path) -> dict[str, Any] | None:
    """The trainer checkpoint at ``path`` (loaded as data only), or ``None`` if it is missing,
    truncated, unsafe or not a tomolearn training checkpoint of this format (a warning says
    which)."""
    try:
        state = load_weights_file(path)
    except (OSError, ValueError) as error:  # unreadable, truncated or unsafe: not resumable
        logger.warning("checkpoint %s is unreadable: %s", path, error)
        return None
    if not isinstance(state, dict) or not REQUIRED_KEYS <= state.keys():
        logger.warning("%s is not a tomolearn training checkpoint", path)
        return None
    if state["format_version"] != CHECKPOINT_FORMAT_VERSION:
        logger.warning("%s has checkpoint format %s", path, state["format_version"])
        return None
    return state


class CheckpointFolder:
    """The ``checkpoints/`` folder of one run (see the module docstring)."""

    def __init__(self, path: Path, *, keep_last: int) -> None:
        self.path = Path(path)
        self.keep_last = keep_last

    def step_path(self, step: int) -> Path:
        """``step_N.pt`` of ``step``."""
        return self.path / f"step_{step:08d}.pt"

    def has_checkpoints(self) -> bool:
        """Whether the folder holds any ``*.pt`` file."""
        return self.path.is_dir() and any(self.path.glob("*.pt"))

    def prepare(self) -> None:
        """Create the folder and remove temporary files left by a run killed while writing."""
        self.path.mkdir(parents=True, exist_ok=True)
        for stale in self.path.glob(".*.tmp"):
            stale.unlink(missing_ok=True)

    def write(
        self, state: dict[str, Any], *, step: int, periodic: bool, new_best: bool
    ) -> Path | None:
        """Write ``step_N.pt`` and ``last.pt`` (``periodic``) and/or ``best.pt`` (``new_best``);
        rotate old steps. Returns the new ``step_N.pt``, or ``None`` if none was written."""
        if periodic:
            step_path = self.step_path(step)
            atomic_save(state, step_path)
            atomic_copy(step_path, self.path / "last.pt")
            if new_best:
                atomic_copy(step_path, self.path / "best.pt")
            self._rotate()
            return step_path
        if new_best:
            atomic_save(state, self.path / "best.pt")
        return None

    def newest(self) -> tuple[Path, dict[str, Any]] | None:
        """``last.pt``, else the newest readable ``step_*.pt``, with its state; ``None`` if the
        folder holds none. Raises ``RuntimeError`` if there are checkpoints but none is readable.
        """
        steps = sorted(self._steps(), reverse=True)
        tried = []
        for path in [self.path / "last.pt", *steps]:
            if not path.is_file():
                continue
            state = read_training_checkpoint(path)
            if state is not None:
                if tried:
                    logger.warning("unreadable checkpoints %s; resuming from %s", tried, path.name)
                return path, state
            tried.append(path.name)
        if not tried:
            return None
        raise RuntimeError(f"no readable checkpoint in {self.path} (tried {', '.join(tried)})")

    def _steps(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        return [p for p in self.path.iterdir() if _STEP_FILE.match(p.name)]

    def _rotate(self) -> None:
        for old in sorted(self._steps())[: -self.keep_last]:
            old.unlink(missing_ok=True)


#: Settings that fix the data order; a resumed run must keep them.
RESUME_INVARIANTS = ("seed", "batch_size", "world_size", "train_size")


def prepare_run_folder(
    out_dir: Path,
    checkpoints: CheckpointFolder,
    config: dict[str, Any],
    *,
    resume: bool,
    overwrite: bool,
) -> Path | None:
    """Refuse, clear or continue the run in ``out_dir``, then write its ``run.json``.

    Returns the checkpoint to resume from (``None`` for a fresh start). A fresh start into a
    folder holding a run raises ``FileExistsError`` unless ``overwrite`` (which deletes its
    checkpoints and logs); a resume whose checkpoint fixes another data order
    (:data:`RESUME_INVARIANTS`) raises ``RuntimeError``; other changes are logged.
    """
    previous = read_json(out_dir / "run.json")
    has_checkpoints = checkpoints.has_checkpoints()
    found: tuple[Path, dict[str, Any]] | None = None
    if resume:
        found = checkpoints.newest() if has_checkpoints else None
        if found is None:
            logger.warning(
                "resume=True, but %s holds no checkpoint: starting afresh", checkpoints.path
            )
    elif previous is not None or has_checkpoints:
        if not overwrite:
            what = describe_differences(previous, config) if previous else ""
            raise FileExistsError(
                f"{out_dir} already holds a run{what}; pass resume=True to continue it, "
                "overwrite=True to replace it, or choose another out_dir"
            )
        logger.warning("overwrite=True: deleting the previous run in %s", out_dir)
        shutil.rmtree(checkpoints.path, ignore_errors=True)
        shutil.rmtree(out_dir / "tb", ignore_errors=True)
    if found is not None:
        path, state = found
        old = state["config"]
        changed = [k for k in RESUME_INVARIANTS if old.get(k) != config.get(k)]
        if changed:
            detail = ", ".join(f"{k}: {old.get(k)!r} -> {config.get(k)!r}" for k in changed)
            raise RuntimeError(
                f"cannot resume from {path}: it fixes the data order with other settings ({detail})"
            )
        if any(old.get(k) != config.get(k) for k in old.keys() | config.keys()):
            # e.g. " with a different configuration (max_steps: 100 -> 200)"
            logger.warning("resuming %s%s", path, describe_differences(old, config))
    checkpoints.prepare()
    atomic_write_text(json.dumps(config, indent=2), out_dir / "run.json")
    return None if found is None else found[0]


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or ``None`` if it is missing or unreadable."""
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def describe_differences(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """How two run configurations differ, as a phrase for a message.

    Example
    -------
    >>> describe_differences({"lr": 0.1, "seed": 0}, {"lr": 0.2, "seed": 0})
    ' with a different configuration (lr: 0.1 -> 0.2)'
    """
    if not old:
        return ""
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if not keys:
        return " with the same configuration"
    shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys)
    return f" with a different configuration ({shown})"
