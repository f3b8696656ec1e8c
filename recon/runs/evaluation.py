"""Evaluation machinery: run reconstructors over a split, score them, tabulate, draw the grid.

:func:`recon.cli.evaluate.evaluate` (``recon-eval``) composes these; benchmarks reuse them.
Under the run's output directory an evaluation writes ``metrics.json``, ``results.md``,
``results.csv``, ``grid.png`` (:mod:`recon.runs.figures`: truth | each method | error maps,
labelled with PSNR/SSIM) and TensorBoard logs (``tb/``). With ``search=true`` it first tunes
each method's ``search`` grid on the *validation* split (never the test split), writes
``best_params.yaml`` and evaluates with the chosen values.
Every method reconstructs with ``operator`` unless ``method_operators`` names its own (for
instance ``conf/protocol/pat/vessels.yaml`` back-projects through the accurate and the
fast photoacoustic models, and runs TV with the exact line model, on the same data).
``split=validation`` evaluates the validation split instead of the test split, and
``objective_method=NAME`` picks the method whose mean PSNR ``main`` returns to a sweeper (as
``conf/hparams_search/tv.yaml`` does).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from data_tools.metrics import psnr, ssim
from operators import CountingOperator
from recon.checkpoints import training_operator
from recon.data import build_split
from recon.runs.search import grid_edges, grid_search

log = logging.getLogger(__name__)


def _instantiate(node: DictConfig, **overrides):
    from hydra.utils import instantiate

    return instantiate(node, **overrides)


def stack_split(dataset):
    """All (x, y) of a dataset as two tensors (B, 1, H, W), (B, 1, A, D).

    Example
    -------
    >>> x, y = stack_split([(torch.zeros(1, 2, 2), torch.ones(1, 3))] * 4)
    >>> tuple(x.shape), tuple(y.shape)
    ((4, 1, 2, 2), (4, 1, 3))
    """
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))), strict=True)
    return torch.stack(xs), torch.stack(ys)


def run_method(
    reconstructor: torch.nn.Module,
    ys: torch.Tensor,
    op,
    *,
    batch_size: int,
    progress=None,
) -> tuple[torch.Tensor, float, float]:
    """Reconstruct all measurements: (reconstructions, s/image, operator applications/image).

    ``op.norm()`` is computed once up front, outside the timing (it is cached on the operator),
    unless the reconstructor says it never uses it (``uses_operator_norm = False``, as the
    photoacoustic back-projection and Fourier inversion do: a time stepper's norm costs hundreds
    of solves).
    """
    counting = CountingOperator(op)
    if getattr(reconstructor, "uses_operator_norm", True):
        counting.norm()
    outs = []
    start = time.perf_counter()
    with torch.no_grad():
        for s in range(0, ys.shape[0], batch_size):
            outs.append(reconstructor(ys[s : s + batch_size], counting))
            if progress is not None:
                progress.update(min(batch_size, ys.shape[0] - s))
    seconds = (time.perf_counter() - start) / ys.shape[0]
    return torch.cat(outs), seconds, counting.total / ys.shape[0]


def summarize(x: torch.Tensor, truth: torch.Tensor) -> dict:
    """PSNR and SSIM (data range: each truth's max − min) as mean ± std over images."""
    p = psnr(x, truth, ndim=2).flatten().double()
    s = ssim(x, truth, ndim=2).flatten().double()
    return {
        "psnr_mean": float(p.mean()),
        "psnr_std": float(p.std(unbiased=False)),
        "ssim_mean": float(s.mean()),
        "ssim_std": float(s.std(unbiased=False)),
        "psnr_per_image": [float(v) for v in p],
    }


def results_table(results: dict) -> tuple[str, list[list[str]]]:
    """Markdown table and CSV rows of the evaluation results.

    Example
    -------
    >>> r = {"psnr_mean": 25.0, "psnr_std": 1.0, "ssim_mean": 0.7, "ssim_std": 0.1,
    ...      "seconds_per_image": 0.01, "op_applications_per_image": 1.0}
    >>> print(results_table({"fbp": r})[0].splitlines()[2])
    | fbp | 25.00 | 1.00 | 0.7000 | 0.1000 | 0.0100 | 1.0 |
    """
    header = ["method", "PSNR", "PSNR std", "SSIM", "SSIM std", "s/image", "op applications/image"]
    rows = [
        [
            name,
            f"{r['psnr_mean']:.2f}",
            f"{r['psnr_std']:.2f}",
            f"{r['ssim_mean']:.4f}",
            f"{r['ssim_std']:.4f}",
            f"{r['seconds_per_image']:.4f}",
            f"{r['op_applications_per_image']:.1f}",
        ]
        for name, r in results.items()
    ]
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(md), [header, *rows]


def image_grid(truth: torch.Tensor, recons: dict[str, torch.Tensor], n: int = 4) -> np.ndarray:
    """uint8 grid: rows = images; columns = truth, each method, then each method's ``|error|``.

    All panels use the truth's window (its min and max over the shown images); errors are shown
    on ``[0, (max − min) / 2]`` so that small errors stay visible.
    """
    t = truth[:n, 0].double()
    low, high = float(t.min()), float(t.max())
    scale = high - low if high > low else 1.0
    cols = [(t - low) / scale]
    cols += [(r[:n, 0].double() - low) / scale for r in recons.values()]
    cols += [(r[:n, 0].double() - t).abs() / (scale / 2) for r in recons.values()]
    H, W = t.shape[-2:]
    gap = 2
    grid = torch.ones(len(t) * (H + gap) - gap, len(cols) * (W + gap) - gap, dtype=torch.float64)
    for j, col in enumerate(cols):
        for i, img in enumerate(col):
            grid[i * (H + gap) : i * (H + gap) + H, j * (W + gap) : j * (W + gap) + W] = img
    return (grid.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def method_operators(cfg: DictConfig, op) -> dict:
    """The operator each method reconstructs with: ``cfg.method_operators[name]`` or ``op``.

    ``method_operators`` (optional) maps method names to operator configs, e.g. back-projection
    through an approximate model while the data come from an accurate one. Every such operator
    must have ``op``'s domain and range shapes (the data and the ground truth are shared).

    Example
    -------
    >>> from omegaconf import OmegaConf
    >>> from operators import IdentityOperator
    >>> cfg = OmegaConf.create({"methods": {"a": {}, "b": {}}, "method_operators": {"b": {
    ...     "_target_": "operators.IdentityOperator", "shape": [3]}}})
    >>> ops = method_operators(cfg, IdentityOperator((3,)))
    >>> ops["a"] is ops["b"], ops["b"].domain_shape
    (False, (3,))
    """
    nodes = cfg.get("method_operators") or {}
    unknown = set(nodes) - set(cfg.methods)
    if unknown:
        raise ValueError(
            f"method_operators names unknown methods {sorted(unknown)}; "
            f"methods: {list(cfg.methods)}"
        )
    ops = {}
    for name in cfg.methods:
        if name not in nodes:
            ops[name] = op
            continue
        own = _instantiate(nodes[name])
        for attr in ("domain_shape", "range_shape"):
            if tuple(getattr(own, attr)) != tuple(getattr(op, attr)):
                raise ValueError(
                    f"method_operators.{name} has {attr} {tuple(getattr(own, attr))}, but the "
                    f"operator has {tuple(getattr(op, attr))}: they must match"
                )
        ops[name] = own
    return ops


def check_training_operators(cfg: DictConfig) -> None:
    """Compare each trained method's training operator with the operator it is evaluated on.

    A method built by :func:`recon.checkpoints.load_run` learned its weights for the operator
    recorded in its run (``.hydra/config.yaml``); evaluated on another geometry it silently
    gives a poor result (11 dB instead of 33). A mismatch raises ``ValueError`` naming the
    differing keys, or, with ``allow_operator_mismatch=true``, logs a warning.

    Example
    -------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from omegaconf import OmegaConf
    >>> run = Path(tempfile.mkdtemp())
    >>> (run / ".hydra").mkdir()
    >>> OmegaConf.save({"operator": {"n_angles": 30}}, run / ".hydra" / "config.yaml")
    >>> cfg = OmegaConf.create({"operator": {"n_angles": 60}, "methods": {"lpd": {
    ...     "_target_": "recon.checkpoints.load_run", "run_dir": str(run)}}})
    >>> check_training_operators(cfg)
    Traceback (most recent call last):
    ...
    ValueError: method lpd was trained on another operator ... (n_angles: 30 -> 60); ...
    """
    for name, node in cfg.methods.items():
        if not isinstance(node, DictConfig) or node.get("_target_") != _LOAD_RUN:
            continue
        trained = training_operator(node.run_dir)
        if trained is None:
            continue
        own = (cfg.get("method_operators") or {}).get(name)
        used = OmegaConf.to_container(own if own is not None else cfg.operator, resolve=True)
        changes = _differences(trained, used)
        if not changes:
            continue
        shown = ", ".join(f"{key}: {a!r} -> {b!r}" for key, a, b in changes[:6])
        message = (
            f"method {name} was trained on another operator than it is evaluated on ({shown}); "
            f"its run: {node.run_dir}"
        )
        if cfg.get("allow_operator_mismatch"):
            log.warning("%s (allowed by allow_operator_mismatch=true)", message)
        else:
            raise ValueError(f"{message}. Pass allow_operator_mismatch=true to evaluate anyway")


_LOAD_RUN = "recon.checkpoints.load_run"
#: Operator keys that choose how, not what, is computed: not compared.
_HOW_KEYS = frozenset({"backend", "device", "cache_dir", "threads"})


def _differences(a: object, b: object, prefix: str = "") -> list[tuple[str, object, object]]:
    """``(dotted key, a's value, b's value)`` for every leaf where two configs differ
    (keys of :data:`_HOW_KEYS` left out)."""
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in sorted((a.keys() | b.keys()) - _HOW_KEYS, key=str):
            found += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return found
    return [] if a == b else [(prefix.rstrip("."), a, b)]


def load_split(cfg: DictConfig, split: str, op):
    """The split's dataset and its (x, y) stacked, checked against ``op``'s shapes
    (``split`` of ``cfg.data``, simulated for ``op.geometry`` where the data config needs it)."""
    dataset = build_split(cfg.data, split, getattr(op, "geometry", None))
    x, y = stack_split(dataset)
    for name, t, shape in (("images", x, op.domain_shape), ("data", y, op.range_shape)):
        if tuple(t.shape[2:]) != tuple(shape):
            raise ValueError(
                f"the {split} split's {name} have shape {tuple(t.shape[2:])}, but the operator "
                f"expects {tuple(shape)}: the data config and the operator do not match"
            )
    return dataset, x, y


def search_params(cfg: DictConfig, op, output_dir: Path, ops: dict | None = None) -> dict:
    """Tune each method that has a ``search_grid`` entry on the validation split (with its
    operator from ``ops``, default ``op``); writes ``search_<method>.json`` and
    ``best_params.yaml`` into ``output_dir`` and returns the chosen parameters by method."""
    from tqdm import tqdm

    ops = ops or {}
    _, x_val, y_val = load_split(cfg, "validation", op)
    chosen: dict[str, dict] = {}
    for name, grid in (cfg.get("search_grid") or {}).items():
        if name not in cfg.methods:
            raise ValueError(
                f"search_grid names unknown method {name!r}; methods: {list(cfg.methods)}"
            )
        grid = OmegaConf.to_container(grid, resolve=True)
        base = cfg.methods[name]

        def make(params, base=base):
            return _instantiate(base, **params)

        with tqdm(desc=f"search {name}", unit="cfg", leave=False) as bar:
            best, table = grid_search(
                make,
                grid,
                y_val,
                x_val,
                ops.get(name, op),
                batch_size=cfg.batch_size,
                progress=bar,
            )
        chosen[name] = best
        log.info("search %s: best %s (validation PSNR %.2f)", name, best, table[0]["psnr"])
        for param in grid_edges(best, grid):
            log.warning(
                "search %s: best %s = %s is at the edge of its grid", name, param, best[param]
            )
        (output_dir / f"search_{name}.json").write_text(json.dumps(table, indent=2))
    (output_dir / "best_params.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(chosen)))
    return chosen


def log_tensorboard(path: Path, results: dict, grid: np.ndarray, table: str) -> None:
    """The evaluation's scalars, grid and table as TensorBoard events under ``path``."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(path)) as writer:
        for name, r in results.items():
            writer.add_scalar(f"test/psnr/{name}", r["psnr_mean"], 0)
            writer.add_scalar(f"test/ssim/{name}", r["ssim_mean"], 0)
            writer.add_scalar(f"test/seconds_per_image/{name}", r["seconds_per_image"], 0)
        writer.add_image("test/grid", grid, 0, dataformats="HW")
        writer.add_text("test/results", table, 0)


def objective_psnr(results: dict, method: str | None = None) -> float:
    """Mean PSNR of ``method`` (the first method when ``None``): what ``recon-eval`` returns.

    Example
    -------
    >>> objective_psnr({"fbp": {"psnr_mean": 25.4}, "tv": {"psnr_mean": 30.3}}, "tv")
    30.3
    """
    if method is None:
        return next(iter(results.values()))["psnr_mean"]
    if method not in results:
        raise ValueError(f"unknown method {method!r}; methods: {list(results)}")
    return results[method]["psnr_mean"]
