"""One job of a sweep: run it, record how it ended in ``result.json``, give the sweeper a number.

``recon-train`` and ``recon-eval`` run their work through :func:`run_job`. It writes
``result.json`` in the job's output directory when the job starts (``status: started``) and
again when it ends, with the status, the objective, the metrics, the wall time and, for a failed
job, the error. ``recon-collect`` reads these files.

The statuses:

- ``completed``: the objective is a number;
- ``diverged``: training hit a NaN/inf (:class:`FloatingPointError`) or the objective is NaN;
  the sweeper gets ``-inf``, the worst value for a maximised PSNR;
- ``failed``: any other exception. In a multirun (``-m``) it is logged with its traceback,
  recorded, and the job returns ``-inf``, so that one failing point does not stop the sweep
  (Hydra's basic sweeper would otherwise stop after the batch, Optuna's after the trial). In a
  single run the exception propagates as usual;
- ``started`` (shown as ``incomplete`` by ``recon-collect``): still running, or killed before
  it could write its end (time limit without requeue, out of memory, SIGKILL).

A job that is requeued after a time limit (see ``conf/hydra/launcher/``) starts again in the
same directory; ``attempt`` counts its starts.

Example
-------
>>> import tempfile
>>> from omegaconf import OmegaConf
>>> out = tempfile.mkdtemp()
>>> cfg = OmegaConf.create({"paths": {"output_dir": out}})
>>> run_job(cfg, lambda cfg: {"psnr": 30.5}, objective=lambda result: result["psnr"])
30.5
>>> read_result(out)["status"]
'completed'
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import socket
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

__all__ = [
    "RESULT_FILE",
    "SweepOutcome",
    "flatten_metrics",
    "objective_value",
    "read_result",
    "run_job",
]

log = logging.getLogger(__name__)

#: The file every job writes in its output directory.
RESULT_FILE = "result.json"


def objective_value(value: Any) -> float:
    """The number a sweeper gets: ``float(value)``, or ``-inf`` for ``None`` and NaN.

    Example
    -------
    >>> objective_value(27.5), objective_value(None), objective_value(float("nan"))
    (27.5, -inf, -inf)
    """
    if value is None:
        return -math.inf
    value = float(value)
    return -math.inf if math.isnan(value) else value


def flatten_metrics(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Scalar leaves of nested dicts as ``{"a/b": value}``; lists and other objects are dropped.

    Example
    -------
    >>> flatten_metrics({"tv": {"psnr_mean": 28.1, "psnr_per_image": [28.0, 28.2]}, "step": 3})
    {'tv/psnr_mean': 28.1, 'step': 3}
    """
    flat: dict[str, Any] = {}
    if not isinstance(tree, dict):
        return flat
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_metrics(value, f"{name}/"))
        elif value is None or isinstance(value, (bool, int, float, str)):
            flat[name] = _json_number(value)
    return flat


def read_result(output_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``result.json`` of a job directory, or ``None`` if it is missing or unreadable.

    Example
    -------
    >>> import tempfile
    >>> read_result(tempfile.mkdtemp()) is None
    True
    """
    try:
        record = json.loads((Path(output_dir) / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def run_job(
    cfg: DictConfig,
    task: Callable[[DictConfig], Any],
    *,
    objective: Callable[[Any], Any],
    output_dir: str | os.PathLike[str] | None = None,
    prepare: Callable[[Path], None] | None = None,
    raise_on_divergence: bool = False,
) -> float:
    """Run ``task(cfg)``, record the outcome in ``result.json``, return the sweeper's number.

    Parameters
    ----------
    cfg : DictConfig
        The job's config; ``cfg.paths.output_dir`` is where ``result.json`` goes unless
        ``output_dir`` is given.
    task : callable
        ``task(cfg) -> result`` (``train`` or ``evaluate``).
    objective : callable
        ``objective(result) -> number``: the value a sweeper optimises (maximises).
    prepare : callable, optional
        ``prepare(output_dir)``, called before anything is written: it checks and claims the
        folder (:func:`recon.runs.folders.claim_output_dir`). Its exception propagates and
        nothing is recorded, so a refused start leaves an existing run as it was.
    raise_on_divergence : bool
        In a single run (not a multirun), re-raise a divergence as :class:`FloatingPointError`
        after recording it, so the command exits non-zero (``recon-train`` sets it).

    Returns
    -------
    float
        ``objective(result)``, or ``-inf`` when the job diverged, the objective is ``None``/NaN,
        or (in a multirun) the job failed. Never NaN or ``None``.

    Example
    -------
    >>> import tempfile
    >>> from omegaconf import OmegaConf
    >>> cfg = OmegaConf.create({"paths": {"output_dir": tempfile.mkdtemp()}})
    >>> def diverges(cfg):
    ...     raise FloatingPointError("loss is nan at step 7")
    >>> run_job(cfg, diverges, objective=float)
    -inf
    """
    from recon.training.distributed import is_main_process

    output_dir = Path(output_dir if output_dir is not None else cfg.paths.output_dir)
    writes = is_main_process()
    if prepare is not None:
        prepare(output_dir)
    previous = read_result(output_dir) if writes else None
    record: dict[str, Any] = {
        "status": "started",
        "attempt": int(previous.get("attempt", 1)) + 1 if previous else 1,
        "started": _now(),
        "host": socket.gethostname(),
        **_hydra_job(),
    }
    if writes:
        _write(output_dir, record)
    start = time.perf_counter()
    try:
        result = task(cfg)
        raw = objective(result)
    except FloatingPointError as error:
        log.error("the job diverged: %s", error)
        record.update(status="diverged", error=f"{type(error).__name__}: {error}")
        if raise_on_divergence and not _multirun():
            _finish(output_dir, record, start, writes)
            raise
        value = -math.inf
    except Exception as error:
        record.update(status="failed", **_describe(error))
        if not _multirun():
            _finish(output_dir, record, start, writes)
            raise
        log.exception("the job failed; the sweep goes on (recorded in %s)", RESULT_FILE)
        value = -math.inf
    else:
        value = objective_value(raw)
        diverged = raw is not None and math.isnan(float(raw))
        record.update(
            status="diverged" if diverged else "completed", metrics=flatten_metrics(result)
        )
        if diverged and raise_on_divergence and not _multirun():
            record["error"] = "the objective is NaN"
            _finish(output_dir, record, start, writes)
            raise FloatingPointError(f"the job diverged: its objective is NaN ({output_dir})")
    record["objective"] = _json_number(value)
    _finish(output_dir, record, start, writes)
    log.info("job %s: objective %s", record["status"], value)
    return value


class SweepOutcome(Callback):
    """Hydra callback: a multirun in which no job completed ends with an error (exit status 1).

    A sweep with some failed jobs records them and goes on (see :func:`run_job`); one in which
    every job failed or diverged must not look like a success to a script or a scheduler.
    Registered in ``conf/config.yaml`` and ``conf/eval.yaml`` under ``hydra.callbacks``.

    Example
    -------
    >>> import tempfile
    >>> from omegaconf import OmegaConf
    >>> sweep = Path(tempfile.mkdtemp())
    >>> for num, status in enumerate(["failed", "diverged"]):
    ...     (sweep / str(num)).mkdir()
    ...     _ = (sweep / str(num) / RESULT_FILE).write_text(json.dumps({"status": status}))
    >>> SweepOutcome().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    Traceback (most recent call last):
    ...
    SystemExit: no job of the sweep in ... completed (1 diverged, 1 failed); ...
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Exit with status 1 if the sweep's jobs left results and none of them completed.

        ``SystemExit``, not an exception: Hydra turns a callback's exception into a warning.
        """
        sweep_dir = Path(str(config.hydra.sweep.dir))
        statuses = [
            str(record.get("status"))
            for path in sorted(sweep_dir.glob(f"**/{RESULT_FILE}"))
            if (record := read_result(path.parent)) is not None
        ]
        if statuses and "completed" not in statuses:
            counts = ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses)))
            raise SystemExit(
                f"no job of the sweep in {sweep_dir} completed ({counts}); "
                f"their errors are in each job's {RESULT_FILE} (recon-collect {sweep_dir})"
            )


def _describe(error: BaseException) -> dict[str, str]:
    """``error``: the root cause (e.g. the ValueError inside Hydra's InstantiationException),
    ``context``: the exception raised, when it differs, and the ``traceback``."""
    cause = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    described = {"error": f"{type(cause).__name__}: {cause}"}
    if cause is not error:
        described["context"] = f"{type(error).__name__}: {error}"
    described["traceback"] = traceback.format_exc(limit=-20)
    return described


def _finish(output_dir: Path, record: dict[str, Any], start: float, writes: bool) -> None:
    record.update(finished=_now(), wall_time_s=round(time.perf_counter() - start, 3))
    if writes:
        _write(output_dir, record)


def _write(output_dir: Path, record: dict[str, Any]) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / RESULT_FILE
    tmp = path.with_name(f".{RESULT_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str, allow_nan=False))
    os.replace(tmp, path)


def _json_number(value: Any) -> Any:
    """Non-finite floats as ``None`` (strict JSON has no NaN or infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _hydra_job() -> dict[str, Any]:
    """Number, id and overrides of the Hydra job, when inside one."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hydra = HydraConfig.get()
    except Exception:  # noqa: BLE001 - a direct call, outside Hydra
        return {}
    return {
        "job": {"num": hydra.job.get("num"), "id": hydra.job.get("id")},
        "overrides": list(hydra.overrides.task),
    }


def _multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:  # noqa: BLE001 - a direct call, outside Hydra
        return False
