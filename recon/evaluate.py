"""Evaluation: run reconstructors over a test split and write metrics, tables, a PNG grid and logs.

``evaluate(cfg)`` is a plain function (tested with a composed config); ``main`` is the thin
``hydra.main`` behind the ``recon-eval`` console script::

    recon-eval experiment=ellipses_classical
    recon-eval experiment=adler_classical data.splits.test.size=1
    recon-eval experiment=ellipses_classical search=true      # tune on the validation split
    recon-eval -m hparams_search=tv experiment=ellipses_classical   # Optuna search of TV λ

Under the run's output directory it writes ``metrics.json``, ``results.md``, ``results.csv``,
``grid.png`` (truth | each method | error maps, one fixed window) and TensorBoard logs
(``tb/``). With ``search=true`` it first tunes each method's ``search`` grid on the *validation*
split (never the test split), writes ``best_params.yaml`` and evaluates with the chosen values.
Every method reconstructs with ``operator`` unless ``method_operators`` names its own (for
instance ``conf/experiment/pat_vessels_classical.yaml`` back-projects through the accurate and the
fast photoacoustic models, and runs TV with the exact line model, on the same data).
``split=validation`` evaluates the validation split instead of the test split, and
``objective_method=NAME`` picks the method whose mean PSNR ``main`` returns to a sweeper (as
``conf/hparams_search/tv.yaml`` does).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from data_tools.metrics import psnr, ssim
from operators import CountingOperator
from recon.data import build_split
from recon.provenance import write_provenance
from recon.search import grid_edges, grid_search
from recon.sweep import run_job

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def _instantiate(node: DictConfig, **overrides):
    from hydra.utils import instantiate

    return instantiate(node, **overrides)


def _stack_split(dataset, batch_size: int):
    """All (x, y) of a dataset as two tensors (B, 1, H, W), (B, 1, A, D)."""
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
    """Markdown table and CSV rows of the evaluation results."""
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
    """uint8 grid: rows = images; columns = truth, each method, then each method's |error|.

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


def _load_split(cfg: DictConfig, split: str, op, batch_size: int):
    """The split's dataset and its (x, y) stacked, checked against ``op``'s shapes."""
    dataset = build_split(cfg.data, split, getattr(op, "geometry", None))
    x, y = _stack_split(dataset, batch_size)
    for name, t, shape in (("images", x, op.domain_shape), ("data", y, op.range_shape)):
        if tuple(t.shape[2:]) != tuple(shape):
            raise ValueError(
                f"the {split} split's {name} have shape {tuple(t.shape[2:])}, but the operator "
                f"expects {tuple(shape)}: the data config and the operator do not match"
            )
    return dataset, x, y


def _search_params(cfg: DictConfig, op, output_dir: Path, ops: dict | None = None) -> dict:
    """Tune each method that has a ``search`` grid on the validation split (with its operator
    from ``ops``, default ``op``)."""
    from tqdm import tqdm

    ops = ops or {}
    _, x_val, y_val = _load_split(cfg, "validation", op, cfg.batch_size)
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


def evaluate(cfg: DictConfig, output_dir: str | Path | None = None) -> dict:
    """Evaluate the configured methods on the test split; returns the results by method.

    ``output_dir`` defaults to Hydra's run directory (``cfg.paths.output_dir``).
    """
    from tqdm import tqdm

    torch.manual_seed(int(cfg.seed))
    torch.set_num_threads(int(cfg.threads)) if cfg.get("threads") else None
    output_dir = Path(output_dir if output_dir is not None else cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_provenance(cfg, output_dir)
    op = _instantiate(cfg.operator)
    ops = method_operators(cfg, op)
    chosen = _search_params(cfg, op, output_dir, ops) if cfg.get("search") else {}

    test, truth, ys = _load_split(cfg, cfg.get("split") or "test", op, cfg.batch_size)
    recons: dict[str, torch.Tensor] = {}
    results: dict[str, dict] = {}
    # Every method is built before any runs, so a missing checkpoint or a bad key fails at once,
    # not after the others have spent minutes on the test set.
    methods = {
        name: _instantiate(node, **chosen.get(name, {})) for name, node in cfg.methods.items()
    }
    with tqdm(total=len(cfg.methods) * len(test), desc="evaluate", unit="img") as bar:
        for name, node in cfg.methods.items():
            bar.set_postfix_str(name)
            method = methods[name]
            x, seconds, applications = run_method(
                method, ys, ops[name], batch_size=cfg.batch_size, progress=bar
            )
            recons[name] = x
            results[name] = summarize(x, truth) | {
                "seconds_per_image": seconds,
                "op_applications_per_image": applications,
                "operator": type(ops[name]).__name__,
                "params": chosen.get(name)
                or {k: v for k, v in OmegaConf.to_container(node).items() if k != "_target_"},
            }
            log.info("%s: PSNR %.2f dB", name, results[name]["psnr_mean"])

    md, rows = results_table(results)
    (output_dir / "metrics.json").write_text(json.dumps(results, indent=2))
    (output_dir / "results.md").write_text(md + "\n")
    with open(output_dir / "results.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    grid = image_grid(truth, recons)
    from skimage.io import imsave

    imsave(output_dir / "grid.png", grid, check_contrast=False)
    _log_tensorboard(output_dir / "tb", results, grid, md)
    print(md)
    print(f"\nwrote {output_dir}/metrics.json, results.md, results.csv, grid.png, tb/")
    return results


def _log_tensorboard(path: Path, results: dict, grid: np.ndarray, table: str) -> None:
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


def main() -> float:
    """Console entry point ``recon-eval``; returns the mean PSNR of ``objective_method``.

    ``objective_method`` defaults to the first method. A failed job of a multirun returns
    ``-inf`` (see :mod:`recon.sweep`).
    """
    import hydra

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
    def _main(cfg: DictConfig) -> float:
        method = cfg.get("objective_method")
        if method is not None and method not in cfg.methods:
            known = list(cfg.methods)
            raise ValueError(f"objective_method names unknown method {method!r}; methods: {known}")
        return run_job(cfg, evaluate, objective=lambda results: objective_psnr(results, method))

    return _main()


if __name__ == "__main__":
    main()
