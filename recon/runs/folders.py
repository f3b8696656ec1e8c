"""Claim a run or evaluation folder before the first byte is written into it.

``recon-train`` and ``recon-eval`` call :func:`claim_output_dir` before anything else writes
(``result.json``, ``provenance.json``, ``.hydra/``, logs). A folder that already holds a run
is refused unless the user asked to continue it (``resume=true``) or to replace its outputs
(``overwrite=true``), and the refusal leaves every byte of it as it was. A fresh folder is
claimed by creating its ``.hydra/`` directory, which only one process can do, so two jobs
started in the same folder at the same moment cannot both write there.

Hydra's own ``.hydra/`` writing is switched off (``hydra.output_subdir: null`` in
``conf/config.yaml`` and ``conf/eval.yaml``); :func:`claim_output_dir` writes the same
``config.yaml`` and ``overrides.yaml`` once the folder is claimed, and
:func:`recon.checkpoints.load_run` reads them.

Example
-------
>>> import tempfile
>>> from omegaconf import OmegaConf
>>> out = Path(tempfile.mkdtemp())
>>> cfg = OmegaConf.create({"seed": 0})
>>> claim_output_dir(out, cfg)
>>> sorted(p.name for p in (out / ".hydra").iterdir())
['config.yaml', 'overrides.yaml']
>>> claim_output_dir(out, cfg)
Traceback (most recent call last):
...
FileExistsError: ... already holds a run (.hydra/); ...
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from recon.checkpoints import atomic_write_text

__all__ = ["RUN_MARKERS", "claim_output_dir", "run_markers"]

#: Entries whose presence means a folder holds (part of) a run or an evaluation.
RUN_MARKERS = (
    ".hydra",
    "result.json",
    "provenance.json",
    "run.json",
    "checkpoints",
    "metrics.json",
    "results.md",
    "grid.png",
    "tb",
)


def run_markers(output_dir: str | os.PathLike[str]) -> list[str]:
    """The entries of :data:`RUN_MARKERS` present in ``output_dir`` (empty: a fresh folder).

    Example
    -------
    >>> import tempfile
    >>> run_markers(tempfile.mkdtemp())
    []
    """
    output_dir = Path(output_dir)
    return [name for name in RUN_MARKERS if (output_dir / name).exists()]


def claim_output_dir(
    output_dir: str | os.PathLike[str],
    cfg: DictConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    continue_flag: str = "resume=true",
) -> None:
    """Refuse a folder holding another run, else claim it and write ``.hydra/``.

    Parameters
    ----------
    output_dir
        The job's output folder (it may exist, empty, as Hydra creates it).
    cfg
        The job's config, written unresolved to ``.hydra/config.yaml``.
    resume, overwrite
        The user asked to continue the run in the folder, or to replace its outputs: the
        folder is used even if it holds a run, and ``.hydra/`` is rewritten.
    continue_flag
        The override named in the refusal that lets the user continue or replace the run
        (``resume=true`` for training, ``overwrite=true`` for evaluation).

    Raises
    ------
    FileExistsError
        ``output_dir`` holds a run (or another job claimed it first), and neither ``resume``
        nor ``overwrite`` is set. Nothing has been written.
    """
    from recon.training.distributed import is_main_process

    if not is_main_process():  # rank 0 claims the folder for the whole job
        return
    output_dir = Path(output_dir)
    markers = run_markers(output_dir)
    allowed = resume or overwrite
    if markers and not allowed:
        raise _refusal(output_dir, markers, continue_flag)
    output_dir.mkdir(parents=True, exist_ok=True)
    hydra_dir = output_dir / ".hydra"
    try:
        hydra_dir.mkdir()
    except FileExistsError:
        if not allowed:  # another job claimed the folder between the check and here
            raise _refusal(output_dir, [".hydra"], continue_flag) from None
    atomic_write_text(OmegaConf.to_yaml(cfg), hydra_dir / "config.yaml")
    atomic_write_text(OmegaConf.to_yaml(_overrides()), hydra_dir / "overrides.yaml")


def _refusal(output_dir: Path, markers: list[str], continue_flag: str) -> FileExistsError:
    shown = ", ".join(f"{name}/" if (output_dir / name).is_dir() else name for name in markers)
    return FileExistsError(
        f"{output_dir} already holds a run ({shown}); nothing was written. Pass "
        f"{continue_flag} to use it anyway, or choose another folder (hydra.run.dir=...)"
    )


def _overrides() -> list[str]:
    """The command-line overrides of the Hydra job, or ``[]`` outside one."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except Exception:  # noqa: BLE001 - a direct call, outside Hydra
        return []
