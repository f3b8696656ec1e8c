"""``recon-collect``: one table and one plot of a Hydra multirun (``-m``) sweep directory.

Every job of a sweep has a folder (``<sweep dir>/<job number>/`` by default) holding Hydra's
``.hydra/overrides.yaml`` and the ``result.json`` that :func:`recon.runs.sweep.run_job` writes.
:func:`collect` reads them all, works out which parameters the sweep varied, and marks every job
as ``completed``, ``diverged``, ``failed``, ``incomplete`` (started but never finished: still
running, or killed), ``no result`` (a Hydra job without ``result.json``), ``unreadable`` (a job
whose files are not UTF-8, not valid JSON/YAML or hold fields of the wrong types: the warning
and the ``error`` column name the file) or ``missing`` (a job the sweep should have run, by its
``multirun.yaml``, that has no folder)::

    recon-collect multirun/2026-01-01/12-00-00
    recon-collect multirun/2026-01-01/12-00-00 --metric tv/ssim_mean --out reports/tv

writes ``sweep_results.md``, ``sweep_results.csv`` (overrides, status, objective, metrics, wall
time, attempts, error) and ``sweep_<metric>.png`` (the metric against each swept parameter,
failed points marked) into the sweep directory (or ``--out``), and prints the table.

Example
-------
>>> table = collect("multirun/2026-01-01/12-00-00")          # doctest: +SKIP
>>> [(row["status"], row["objective"]) for row in table.rows]  # doctest: +SKIP
[('completed', 24.1), ('completed', 26.9), ('failed', None)]
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from recon.runs.sweep import RESULT_FILE

__all__ = ["SweepTable", "UnreadableJobError", "collect", "plot_sweep", "to_markdown", "write_csv"]

log = logging.getLogger(__name__)

#: Order of the statuses in the summary line.
STATUSES = ("completed", "diverged", "failed", "incomplete", "no result", "unreadable", "missing")
_FIXED = ("job", "status", "objective", "wall_time_s", "attempts", "error")


@dataclass
class SweepTable:
    """What :func:`collect` found: one row per job, and the parameters the sweep varied.

    ``rows`` are dicts with ``job``, ``dir``, ``status``, ``objective``, ``wall_time_s``,
    ``attempts``, ``error``, the swept parameters (by override key) and the metrics (by name,
    e.g. ``tv/psnr_mean`` or ``best_psnr``).
    """

    sweep_dir: Path
    rows: list[dict[str, Any]]
    swept: list[str]
    metrics: list[str]
    expected: int | None = None
    best: dict[str, Any] | None = field(default=None)

    @property
    def columns(self) -> list[str]:
        """Column order of the CSV file: job, swept parameters, status, objective, metrics, …

        Example
        -------
        >>> SweepTable(Path("s"), [], ["lam"], ["tv/psnr_mean"]).columns[:5]
        ['job', 'lam', 'status', 'objective', 'tv/psnr_mean']
        """
        return ["job", *self.swept, "status", "objective", *self.metrics, *_FIXED[3:]]

    def counts(self) -> dict[str, int]:
        """Number of jobs per status, in :data:`STATUSES` order, zero counts left out.

        Example
        -------
        >>> rows = [{"status": "failed"}, {"status": "completed"}, {"status": "completed"}]
        >>> SweepTable(Path("s"), rows, [], []).counts()
        {'completed': 2, 'failed': 1}
        """
        counts = {s: sum(row["status"] == s for row in self.rows) for s in STATUSES}
        return {s: n for s, n in counts.items() if n}


def collect(sweep_dir: str | Path) -> SweepTable:
    """Read every job of the sweep in ``sweep_dir`` into a :class:`SweepTable`.

    Raises
    ------
    FileNotFoundError
        If ``sweep_dir`` does not exist.
    ValueError
        If it holds no Hydra job (no ``.hydra/overrides.yaml`` below it).

    Example
    -------
    >>> import tempfile
    >>> collect(tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    ValueError: no Hydra jobs in ...
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.exists():
        raise FileNotFoundError(f"sweep directory {sweep_dir} does not exist")
    if not sweep_dir.is_dir():
        raise NotADirectoryError(f"{sweep_dir} is not a directory")
    job_dirs = sorted(
        p.parent.parent
        for p in sweep_dir.rglob(".hydra/overrides.yaml")
        if ".submitit" not in p.parts and p.parent.parent != sweep_dir
    )
    if not job_dirs:
        raise ValueError(
            f"no Hydra jobs in {sweep_dir}: a sweep directory (from `recon-train -m` or "
            "`recon-eval -m`, e.g. multirun/<date>/<time>) holds one folder per job with "
            ".hydra/overrides.yaml"
        )
    multirun = _load_yaml(sweep_dir / "multirun.yaml")
    if not isinstance(multirun, dict):  # Optuna's sweeper writes none: take its settings from a job
        job_hydra = (_load_yaml(job_dirs[0] / ".hydra" / "hydra.yaml") or {}).get("hydra") or {}
        multirun = {"hydra": {"sweeper": job_hydra.get("sweeper") or {}}}
    rows = [_read_job(path, sweep_dir) for path in job_dirs]
    expected = _expected_jobs(multirun)
    numbers = {row["job"] for row in rows if isinstance(row["job"], int)}
    top = expected if expected is not None else (max(numbers) + 1 if numbers else 0)
    for missing in sorted(set(range(top)) - numbers):
        rows.append({"job": missing, "dir": None, "status": "missing", "overrides": {}})
    rows.sort(key=lambda row: (not isinstance(row["job"], int), row["job"]))

    declared = _declared_sweeps(multirun)
    keys = [k for row in rows for k in row["overrides"]]
    keys = list(dict.fromkeys(keys))
    swept = [
        k
        for k in keys
        if k in declared
        or len({repr(row["overrides"].get(k)) for row in rows if row["dir"] is not None}) > 1
    ]
    metrics = list(dict.fromkeys(k for row in rows for k in row.get("metrics", {})))
    for row in rows:
        for key in swept:
            row[key] = row["overrides"].get(key)
        for key in metrics:
            row[key] = row.get("metrics", {}).get(key)
    best = _load_yaml(sweep_dir / "optimization_results.yaml")
    return SweepTable(sweep_dir, rows, swept, metrics, expected, best or None)


class UnreadableJobError(ValueError):
    """A job file that is not UTF-8 text, not valid JSON/YAML, or holds fields of wrong types."""


def _read_job(path: Path, sweep_dir: Path) -> dict[str, Any]:
    """One job's row; a job whose files cannot be read is marked ``unreadable``, naming the
    file and what is wrong with it, and the table goes on."""
    try:
        return _parse_job(path, sweep_dir)
    except UnreadableJobError as error:
        log.warning("%s", error)
        name = str(path.relative_to(sweep_dir))
        number = int(path.name) if path.name.isdigit() else name
        return {"dir": name, "job": number, "status": "unreadable", "overrides": {},
                "error": str(error)}  # fmt: skip


def _parse_job(path: Path, sweep_dir: Path) -> dict[str, Any]:
    overrides_file = path / ".hydra" / "overrides.yaml"
    overrides = _checked_yaml(overrides_file)
    if overrides is None:
        overrides = []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise UnreadableJobError(f"{overrides_file}: expected a list of override strings")
    result = _checked_result(path / RESULT_FILE)
    row: dict[str, Any] = {
        "dir": str(path.relative_to(sweep_dir)),
        "overrides": _parse_overrides(overrides),
    }
    number = None
    if result is not None:
        number = result["job"].get("num")
    if number is None and path.name.isdigit():
        number = int(path.name)
    row["job"] = number if number is not None else row["dir"]
    if result is None:
        row["status"] = "no result"
        return row
    status = result["status"]
    row.update(
        status="incomplete" if status == "started" else status,
        objective=result.get("objective"),
        wall_time_s=result.get("wall_time_s"),
        attempts=result.get("attempt"),
        error=result.get("error"),
        metrics=result["metrics"],
    )
    return row


def _read_text(path: Path) -> str | None:
    """``path``'s text, ``None`` if it does not exist; :class:`UnreadableJobError` naming it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise UnreadableJobError(f"{path}: cannot be read ({error.strerror})") from error
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UnreadableJobError(
            f"{path}: not UTF-8 text (byte {error.start} is {data[error.start]:#04x})"
        ) from error


def _checked_yaml(path: Path) -> Any:
    text = _read_text(path)
    if text is None:
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UnreadableJobError(f"{path}: not valid YAML ({error})") from error


_NUMBER_FIELDS = ("objective", "wall_time_s")


def _checked_result(path: Path) -> dict[str, Any] | None:
    """The job's ``result.json`` with its fields' types checked, or ``None`` if absent."""
    text = _read_text(path)
    if text is None:
        return None
    try:
        record = json.loads(text)
    except ValueError as error:
        raise UnreadableJobError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(record, dict):
        raise UnreadableJobError(f"{path}: expected a JSON object, got {type(record).__name__}")

    def wrong(key: str, expected: str) -> UnreadableJobError:
        value = repr(record[key])
        return UnreadableJobError(f"{path}: field {key!r} should be {expected}, got {value:.60}")

    if not isinstance(record.get("status"), str):
        raise (
            wrong("status", "a string")
            if "status" in record
            else UnreadableJobError(f"{path}: no 'status' field")
        )
    for key in _NUMBER_FIELDS:
        value = record.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise wrong(key, "a number or null")
    attempt = record.get("attempt")
    if attempt is not None and (isinstance(attempt, bool) or not isinstance(attempt, int)):
        raise wrong("attempt", "an integer")
    if record.get("error") is not None and not isinstance(record["error"], str):
        raise wrong("error", "a string")
    metrics = record.setdefault("metrics", {}) or {}
    if not isinstance(metrics, dict) or not all(
        v is None or isinstance(v, (bool, int, float, str)) for v in metrics.values()
    ):
        raise wrong("metrics", "an object of numbers")
    record["metrics"] = metrics
    job = record.setdefault("job", {}) or {}
    num = job.get("num") if isinstance(job, dict) else None
    if not isinstance(job, dict) or (
        num is not None and (isinstance(num, bool) or not isinstance(num, int))
    ):
        raise wrong("job", 'an object like {"num": 0}')
    record["job"] = job
    return record


def _parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["a.b=1", "+c=x"]`` -> ``{"a.b": 1, "c": "x"}`` (values read as YAML scalars)."""
    parsed: dict[str, Any] = {}
    for override in overrides:
        if "=" not in override:
            continue
        key, value = override.split("=", 1)
        key = key.lstrip("+~")
        try:
            parsed[key] = yaml.safe_load(value) if value else value
        except yaml.YAMLError:
            parsed[key] = value
    return parsed


def _load_yaml(path: Path) -> Any:
    """A sweep-level YAML file (``multirun.yaml``, ...) as a mapping; ``None`` if it is absent,
    and ``None`` with a warning naming it if it cannot be read."""
    try:
        loaded = _checked_yaml(path)
    except UnreadableJobError as error:
        log.warning("%s; ignoring it", error)
        return None
    if loaded is not None and not isinstance(loaded, dict):
        log.warning("%s: expected a mapping, got %s; ignoring it", path, type(loaded).__name__)
        return None
    return loaded


def _declared_sweeps(multirun: Any) -> set[str]:
    """Keys swept by the command line (``a=1,2``, ``range``, …) or by ``hydra.sweeper.params``."""
    hydra = (multirun or {}).get("hydra") or {}
    keys = set(((hydra.get("sweeper") or {}).get("params") or {}).keys())
    sweep = re.compile(r"^[+~]*([^=]+)=(.*,.*|\s*(range|choice|interval|glob)\(.*)$")
    for override in (hydra.get("overrides") or {}).get("task") or []:
        match = sweep.match(override)
        if match and not match.group(2).startswith(("[", "{")):
            keys.add(match.group(1))
    return keys


def _expected_jobs(multirun: Any) -> int | None:
    """Number of jobs the sweep launches, from ``multirun.yaml``; ``None`` if unknown."""
    hydra = (multirun or {}).get("hydra") or {}
    sweeper = hydra.get("sweeper") or {}
    target = str(sweeper.get("_target_", ""))
    if "optuna" in target.lower():
        n = sweeper.get("n_trials")
        return int(n) if isinstance(n, int) else None
    if not target.endswith("BasicSweeper"):
        return None
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        params = sweeper.get("params") or {}
        overrides = [f"{k}={v}" for k, v in params.items()]
        overrides += list((hydra.get("overrides") or {}).get("task") or [])
        parsed = OverridesParser.create().parse_overrides(overrides)
        return sum(len(batch) for batch in BasicSweeper.split_arguments(parsed, None))
    except Exception:  # noqa: BLE001 - an unusual sweep: fall back to the job folders found
        return None


# --------------------------------------------------------------------------- output
def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 70 else text[:67] + "..."


def to_markdown(table: SweepTable) -> str:
    """The table as markdown: swept parameters, status, objective, PSNR/SSIM metrics, wall time.

    Standard deviations and other metrics are left to the CSV file (:func:`write_csv`).

    Example
    -------
    >>> table = SweepTable(Path("s"), [{"job": 0, "status": "completed", "objective": 27.123,
    ...     "wall_time_s": 3.0, "attempts": 1, "error": None, "lam": 0.5}], ["lam"], [])
    >>> print(to_markdown(table).splitlines()[2])
    | 0 | 0.5 | completed | 27.12 | 3 | 1 |  |
    """
    numeric = [
        k
        for k in table.metrics
        if "/params/" not in f"/{k}"
        and any(isinstance(row.get(k), (int, float)) for row in table.rows)
    ]
    quality = [k for k in numeric if re.search(r"psnr|ssim", k) and not k.endswith("_std")]
    numeric = quality or numeric  # the full set is in the CSV file
    columns = ["job", *table.swept, "status", "objective", *numeric, *_FIXED[3:]]
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---:" if c not in ("status", "error") else "---" for c in columns) + "|",
    ]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in table.rows]
    return "\n".join(lines)


def write_csv(table: SweepTable, path: str | Path) -> Path:
    """Every column of the table (all metrics, full precision) as CSV; returns the path.

    Example
    -------
    >>> import tempfile
    >>> table = SweepTable(Path("s"), [{"job": 0, "status": "failed"}], [], [])
    >>> write_csv(table, Path(tempfile.mkdtemp()) / "t.csv").read_text().splitlines()[1]
    '0,failed,,,,'
    """
    path = Path(path)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(table.columns)
        for row in table.rows:
            writer.writerow(["" if row.get(c) is None else row.get(c) for c in table.columns])
    return path


def _numbers(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def plot_sweep(table: SweepTable, path: str | Path, *, metric: str = "objective") -> Path:
    """Draw ``metric`` against each swept parameter (one panel each) into a PNG; returns the path.

    Completed jobs are dots (the best one a star); diverged, failed, incomplete and missing jobs
    are red crosses on the lower edge, at their parameter value. Numeric parameters spanning
    more than a decade get a log axis; others are shown as categories.

    Example
    -------
    >>> plot_sweep(collect("multirun/2026-01-01/12-00-00"), "lam.png")   # doctest: +SKIP
    PosixPath('lam.png')
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if metric not in table.columns:
        raise ValueError(f"unknown metric {metric!r}; columns: {', '.join(table.columns)}")
    swept = table.swept or ["job"]
    fig, axes = plt.subplots(1, len(swept), figsize=(4.8 * len(swept), 3.6), squeeze=False)
    good = [
        r
        for r in table.rows
        if isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])
    ]
    bad = [r for r in table.rows if r not in good]
    values = [r[metric] for r in good]
    low = min(values) if values else 0.0
    high = max(values) if values else 1.0
    margin = 0.08 * (high - low) if high > low else 1.0
    floor = low - margin
    best = max(good, key=lambda r: r[metric]) if good else None
    for ax, key in zip(axes[0], swept, strict=True):
        xs_all = [r.get(key) for r in table.rows if r.get(key) is not None]
        numeric = _numbers(xs_all) and xs_all
        categories = [] if numeric else list(dict.fromkeys(repr(x) for x in xs_all))

        def position(x: Any, numeric: Any = numeric, categories: list = categories) -> float:
            return float(x) if numeric else float(categories.index(repr(x)))

        points = sorted((position(r[key]), r[metric]) for r in good if r.get(key) is not None)
        if points:
            ax.plot(*zip(*points, strict=True), "o-" if len(swept) == 1 else "o", label="completed")
        if best is not None and best.get(key) is not None:
            ax.plot(position(best[key]), best[metric], "*", ms=14, color="gold", mec="k",
                    label=f"best ({_cell(best[metric])})")  # fmt: skip
        crosses = [position(r[key]) for r in bad if r.get(key) is not None]
        if crosses:
            ax.plot(crosses, [floor] * len(crosses), "x", color="red", ms=10, mew=2,
                    label="failed / diverged / missing")  # fmt: skip
        if numeric and min(xs_all) > 0 and max(xs_all) / min(xs_all) > 10:
            ax.set_xscale("log")
        if categories:
            ax.set_xticks(range(len(categories)), categories)
        ax.set_ylim(floor - margin, high + margin)
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{table.sweep_dir.name}: {metric}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
