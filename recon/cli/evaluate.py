"""``recon-eval``: ``evaluate(cfg)`` runs reconstructors over a test split and writes the results.

``evaluate(cfg)`` is a plain function (tested with a composed config); ``main`` is the thin
``hydra.main`` behind the ``recon-eval`` console script::

    recon-eval protocol=ellipses/classical
    recon-eval protocol=adler/classical data.splits.test.size=1
    recon-eval protocol=ellipses/classical search=true      # tune on the validation split
    recon-eval -m hparams_search=tv protocol=ellipses/classical   # Optuna search of TV λ
    recon-eval --list protocols            # what exists (reconstructors, operators, all, ...)

Under the run's output directory it writes ``metrics.json``, ``results.md``, ``results.csv``,
``grid.png`` (truth | each method | each method's error, labelled with PSNR/SSIM) and TensorBoard
logs (``tb/``); see :mod:`recon.runs.evaluation`.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from recon.cli.config import config_dir
from recon.cli.listing import intercept
from recon.runs.evaluation import (
    check_training_operators,
    image_grid,
    load_split,
    log_tensorboard,
    method_operators,
    objective_psnr,
    results_table,
    run_method,
    search_params,
    summarize,
)
from recon.runs.figures import save_comparison
from recon.runs.folders import claim_output_dir
from recon.runs.provenance import write_provenance
from recon.runs.sweep import run_job

__all__ = ["claim_evaluation_dir", "evaluate", "main"]

log = logging.getLogger(__name__)


def _instantiate(node, **overrides):
    from hydra.utils import instantiate

    return instantiate(node, **overrides)


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
    check_training_operators(cfg)  # before any work: a trained method on a foreign geometry
    op = _instantiate(cfg.operator)
    ops = method_operators(cfg, op)
    chosen = search_params(cfg, op, output_dir, ops) if cfg.get("search") else {}

    test, truth, ys = load_split(cfg, cfg.get("split") or "test", op)
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
    save_comparison(truth, recons, output_dir / "grid.png")
    log_tensorboard(output_dir / "tb", results, grid, md)
    print(md)
    print(f"\nwrote {output_dir}/metrics.json, results.md, results.csv, grid.png, tb/")
    return results


def claim_evaluation_dir(output_dir: str | Path, cfg: DictConfig) -> None:
    """Claim ``output_dir`` for an evaluation (see :func:`recon.runs.folders.claim_output_dir`).

    A folder holding an evaluation is refused unless ``cfg.overwrite``; a training run's folder
    (``checkpoints/``, ``run.json``) is refused even then, as writing there would replace the
    config that :func:`recon.checkpoints.load_run` rebuilds its model from.
    """
    output_dir = Path(output_dir)
    training = [name for name in ("checkpoints", "run.json") if (output_dir / name).exists()]
    if training:
        raise FileExistsError(
            f"{output_dir} is a training run's folder ({', '.join(training)}); recon-eval "
            "never writes there. Evaluate into another folder (hydra.run.dir=...)"
        )
    claim_output_dir(
        output_dir, cfg, overwrite=bool(cfg.get("overwrite")), continue_flag="overwrite=true"
    )


def main() -> float:
    """Console entry point ``recon-eval``; returns the mean PSNR of ``objective_method``.

    ``objective_method`` defaults to the first method. The output folder is checked before the
    first byte is written: one holding an evaluation is refused unless ``overwrite=true``, and
    a training run's folder always. A failed job of a multirun returns ``-inf`` (see
    :mod:`recon.runs.sweep`).
    """
    import hydra

    # --list KIND and --help are answered before Hydra parses the arguments
    status = intercept(sys.argv[1:], command="recon-eval", config_name="eval")
    if status is not None:
        sys.exit(status)

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="eval")
    def _main(cfg: DictConfig) -> float:
        method = cfg.get("objective_method")
        if method is not None and method not in cfg.methods:
            known = list(cfg.methods)
            raise ValueError(f"objective_method names unknown method {method!r}; methods: {known}")
        return run_job(
            cfg,
            evaluate,
            objective=lambda results: objective_psnr(results, method),
            prepare=lambda out: claim_evaluation_dir(out, cfg),
        )

    return _main()


if __name__ == "__main__":
    main()
