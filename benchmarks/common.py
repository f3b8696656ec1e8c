"""What several benchmarks share: JSON output, timing, errors, and reading a training run.

Example
-------
>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> path = write_json({"ms": 1.5}, folder / "study" / "result.json")  # doctest: +ELLIPSIS
wrote ...result.json
>>> json.loads(path.read_text())
{'ms': 1.5}
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from recon.data import build_split

__all__ = [
    "RESULTS",
    "chunks",
    "fmt",
    "linearised",
    "rel_error",
    "run_config",
    "split_pairs",
    "time_per_image",
    "write_json",
]

#: Where benchmarks write their JSON: ``bench_results/<study>/`` (relative to the working
#: directory, normally the checkout).
RESULTS = Path("bench_results")


def write_json(result: dict, path: str | Path) -> Path:
    """Write a benchmark's results as indented JSON (creating folders) and say where."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return out


def time_per_image(
    fn: Callable[[], object], batch: int, min_seconds: float, max_reps: int
) -> float:
    """Milliseconds per image of ``fn`` (which handles ``batch`` images), after one warm-up call:
    repeated until ``min_seconds`` have passed or ``max_reps`` calls were made.

    Example
    -------
    >>> time_per_image(lambda: None, batch=4, min_seconds=0.0, max_reps=2) >= 0
    True
    """
    fn()  # warm-up
    reps, start = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds or reps >= max_reps:
            return elapsed / reps / batch * 1e3


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """``‖a − b‖ / ‖b‖`` over all entries, computed in float64.

    Example
    -------
    >>> rel_error(torch.tensor([3.0, 4.0]), torch.tensor([3.0, 0.0]))
    1.3333333333333333
    """
    return float(
        torch.linalg.vector_norm(a.double() - b.double()) / torch.linalg.vector_norm(b.double())
    )


def fmt(value: float | None, spec: str) -> str:
    """``value`` formatted with ``spec``, or a dash for a value not measured.

    Example
    -------
    >>> fmt(1.2345, ".2f"), fmt(None, ".2f")
    ('1.23', '—')
    """
    return "—" if value is None else format(value, spec)


def chunks(n: int, size: int) -> Iterator[slice]:
    """Slices of ``range(n)`` of at most ``size`` items.

    Example
    -------
    >>> list(chunks(5, 2))
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


# --------------------------------------------------------------------------- training runs
def run_config(run_dir: Path) -> DictConfig:
    """The config ``recon-train`` saved for the run in ``run_dir`` (``.hydra/config.yaml``)."""
    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no .hydra/config.yaml: not a recon-train run")
    return OmegaConf.load(path)


def split_pairs(
    cfg: DictConfig, n: int | None, split: str = "test"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` pairs (all with ``None``) of the ``split`` of a run's config ``cfg`` as
    stacked ``(x, y)``, each without the channel axis."""
    data = build_split(cfg.data, split)
    n = len(data) if n is None else min(n, len(data))
    xs, ys = zip(*(data[i] for i in range(n)), strict=True)
    return torch.stack(xs)[:, 0], torch.stack(ys)[:, 0]


def linearised(model: Any) -> Any:
    """The same learned operator (shared networks) with ``adjoint="linearised"``: the exact
    gradient of ``½‖A_q x − y‖²`` instead of the learned adjoint networks."""
    if getattr(model, "adjoint_mode", None) is None:
        raise ValueError(
            f"--linearised-adjoint needs a LearnedOperator, got {type(model).__name__}"
        )
    out = copy.copy(model)
    out.adjoint_mode = "linearised"
    return out
