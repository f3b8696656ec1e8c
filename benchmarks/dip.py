r"""Benchmark: the deep image prior, cold and warm started, against FBP and TV (issue 32, part 1).

``python -m benchmarks.dip`` runs the "ellipses" protocol (``recon-eval protocol=ellipses/dip``:
128², 30 angles, 183 detectors, Gaussian noise 2.5 % of the mean ``|y|``, measurements simulated
on a finer grid) on the first ``--test-images`` (20) images of its fixed-seed test split, and
reports

- the PSNR/SSIM of FBP and TV with the protocol's tuned settings, and of DIP + TV
  (``conf/recon/dip.yaml``) with its lowest-loss iterate; the DIP's margin over TV (target:
  ≥ 0.5 dB);
- the warm start (``conf/recon/dip_warm.yaml``): the network of a pretraining run
  (``--checkpoint``, from ``recon-train experiment=dip/pretrain``; or ``--pretrain-steps``
  trains one here with the same experiment) fine-tuned per image, and the iterations it needs
  until its mean PSNR reaches the cold start's final one (target: ≤ 1/5 of the cold start's
  iterations), per image as well;
- seconds per image and per iteration of each, the network's parameter count.

The PSNR of every iterate is recorded (``DeepImagePrior.solve``'s callback), so the curves are
in the JSON. Sizes, iterations and the networks' hyper-parameters have command-line arguments;
``--quick`` shrinks everything (32², 2 images, tiny networks, a few steps) to check the
pipeline in seconds: its numbers mean nothing. Writes ``bench_results/dip/dip.json`` (``--out``).

Example
-------
::

    python -m benchmarks.dip --quick
    recon-train experiment=dip/pretrain hydra.run.dir=outputs/dip_pretrain
    python -m benchmarks.dip --checkpoint outputs/dip_pretrain/checkpoints/best.pt --threads 2
    python -m benchmarks.dip --size 64 --test-images 4 --iterations 1000 --pretrain-steps 2000
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from benchmarks.common import RESULTS, write_json
from data_tools.metrics import psnr
from recon.cli.config import compose_config
from recon.cli.train import train
from recon.dip import DeepImagePrior
from recon.runs.evaluation import load_split, summarize

#: ``--quick``: sizes that check the pipeline in seconds.
QUICK = {
    "size": 32,
    "test_images": 2,
    "iterations": 20,
    "warm_iterations": 20,
    "pretrain_steps": 4,
    "channels": 4,
    "scales": 3,
    "tv_iter": 20,
    "batch_size": 2,
}
#: The warm start's target: the cold start's PSNR in at most this fraction of its iterations.
WARM_FRACTION = 0.2
#: The DIP's target margin over TV, in dB.
TV_MARGIN_DB = 0.5


def first_reaching(curve: torch.Tensor, target: float) -> int | None:
    """The first iterate ``k`` with ``curve[k] >= target`` (``None`` if none does).

    Example
    -------
    >>> first_reaching(torch.tensor([10.0, 20.0, 30.0]), 20.0)
    1
    >>> first_reaching(torch.tensor([10.0, 20.0]), 25.0) is None
    True
    """
    hits = (curve >= target).nonzero()
    return int(hits[0]) if len(hits) else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m benchmarks.dip``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dip")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the pipeline")
    parser.add_argument("--size", type=int, help="image side (default 128, the protocol's)")
    parser.add_argument("--n-angles", type=int, default=30)
    parser.add_argument("--n-detectors", type=int, help="default: 183 · size / 128")
    parser.add_argument("--test-images", type=int, help="first images of the test split (20)")
    parser.add_argument("--iterations", type=int, help="cold start's Adam steps (dip.yaml's)")
    parser.add_argument("--warm-iterations", type=int, help="warm start's (half the cold's)")
    parser.add_argument("--lr", type=float, help="cold start's learning rate (dip.yaml's)")
    parser.add_argument("--warm-lr", type=float, help="warm start's (dip_warm.yaml's)")
    parser.add_argument("--gamma", type=float, help="TV weight of both (the configs')")
    parser.add_argument("--channels", type=int, help="U-Net channels (the configs')")
    parser.add_argument("--scales", type=int, help="U-Net scales (the configs')")
    parser.add_argument("--checkpoint", help="pretrained run's checkpoint for the warm start")
    parser.add_argument("--pretrain-steps", type=int, help="pretrain here (no --checkpoint)")
    parser.add_argument("--no-warm", action="store_true", help="cold start, FBP and TV only")
    parser.add_argument("--tv-iter", type=int, help="TV iterations (the protocol's 1000)")
    parser.add_argument("--batch-size", type=int, help="images per DIP call (4)")
    parser.add_argument("--threads", type=int, help="torch threads")
    parser.add_argument("--override", action="append", default=[], help="Hydra override")
    parser.add_argument("--work-dir", help="pretraining run folder (default: temporary)")
    parser.add_argument("--out", default=str(RESULTS / "dip" / "dip.json"))
    args = parser.parse_args(argv)
    defaults = {"size": 128, "test_images": 20, "tv_iter": 1000, "batch_size": 4}
    for key, value in {**defaults, **(QUICK if args.quick else {})}.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    for key in ("size", "test_images", "iterations", "warm_iterations", "batch_size", "tv_iter"):
        value = getattr(args, key)
        if value is not None and value < 1:
            parser.error(f"--{key.replace('_', '-')} must be positive, got {value}")
    if not args.no_warm and args.checkpoint is None and args.pretrain_steps is None:
        parser.error("the warm start needs --checkpoint or --pretrain-steps (or pass --no-warm)")
    if args.n_detectors is None:
        args.n_detectors = 183 if args.size == 128 else math.ceil(183 * args.size / 128)
    return args


def geometry_overrides(args: argparse.Namespace, prefix: str = "operator") -> list[str]:
    """Hydra overrides that set the image size, angles and detectors."""
    return [
        f"{prefix}.geometry.image_shape=[{args.size},{args.size}]",
        f"{prefix}.geometry.n_angles={args.n_angles}",
        f"{prefix}.geometry.n_detectors={args.n_detectors}",
    ]


def network_overrides(args: argparse.Namespace, node: str) -> list[str]:
    """Hydra overrides of the U-Net sizes at ``node``."""
    out = []
    if args.channels is not None:
        out.append(f"{node}.channels={args.channels}")
    if args.scales is not None:
        out.append(f"{node}.scales={args.scales}")
    return out


def build(args: argparse.Namespace) -> DictConfig:
    """The composed ``protocol=ellipses/dip`` config with the command line's settings."""
    overrides = [
        "protocol=ellipses/dip",
        *geometry_overrides(args),
        f"data.splits.test.size={args.test_images}",
        f"methods.tv.n_iter={args.tv_iter}",
        *network_overrides(args, "methods.dip.network"),
        *network_overrides(args, "methods.dip_warm.network.network"),
    ]
    for name, key, value in (
        ("dip", "n_iter", args.iterations),
        ("dip", "lr", args.lr),
        ("dip", "gamma", args.gamma),
        ("dip_warm", "n_iter", args.warm_iterations),
        ("dip_warm", "lr", args.warm_lr),
        ("dip_warm", "gamma", args.gamma),
    ):
        if value is not None:
            overrides.append(f"methods.{name}.{key}={value}")
    if args.quick:
        overrides += ["methods.dip.progress=false", "methods.dip_warm.progress=false"]
    if args.no_warm:
        overrides = [o for o in overrides if not o.startswith("methods.dip_warm.")]
        overrides.append("~methods.dip_warm")
    cfg = compose_config("eval", [*overrides, *args.override])
    if not args.no_warm and args.warm_iterations is None:  # half the cold start's: room
        cfg.methods.dip_warm.n_iter = max(1, int(cfg.methods.dip.n_iter) // 2)
    return cfg


def pretrain(args: argparse.Namespace) -> tuple[str, dict]:
    """``--checkpoint``, or a pretraining run of ``experiment=dip/pretrain`` for
    ``--pretrain-steps`` (same sizes); the checkpoint and a summary."""
    if args.checkpoint:
        return args.checkpoint, {"checkpoint": args.checkpoint, "steps": None}
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="dip-"))
    overrides = [
        "experiment=dip/pretrain",
        *geometry_overrides(args),
        *network_overrides(args, "model.unet"),
        f"trainer.max_steps={args.pretrain_steps}",
        f"trainer.val_every={args.pretrain_steps}",
        f"trainer.ckpt_every={args.pretrain_steps}",
    ]
    if args.quick:
        overrides += [
            "data.splits.train.size=8",
            "data.splits.validation.size=2",
            "trainer.batch_size=2",
            "trainer.warmup_steps=0",
            "trainer.progress=false",
        ]
    cfg = compose_config("config", overrides)
    cpu, wall = time.process_time(), time.perf_counter()
    fitted = train(cfg, output_dir=work)
    summary = {
        "checkpoint": fitted["checkpoint"],
        "steps": int(fitted["step"]),
        "batch_size": int(cfg.trainer.batch_size),
        "cpu_s": time.process_time() - cpu,
        "wall_s": time.perf_counter() - wall,
        "work_dir": str(work),
    }
    print(f"pretrained {summary['steps']} steps in {summary['wall_s']:.1f} s", file=sys.stderr)
    return str(fitted["checkpoint"]), summary


def run_dip(
    dip: DeepImagePrior, y: torch.Tensor, truth: torch.Tensor, op: Any, batch_size: int
) -> dict:
    """Fit ``dip`` to every measurement in batches; its reconstructions, PSNR curves and time."""
    xs, curves, iterations = [], [], []
    start = time.perf_counter()
    for s in range(0, len(y), batch_size):
        chunk = truth[s : s + batch_size, 0]
        curve: list[torch.Tensor] = []

        def record(k: int, x: torch.Tensor, t=chunk, out=curve) -> None:
            out.append(psnr(x, t))

        result = dip.solve(y[s : s + batch_size], op, callback=record)
        xs.append(result.x)
        curves.append(torch.stack(curve, dim=1))
        iterations.append(result.iteration)
    seconds = time.perf_counter() - start
    return {
        "x": torch.cat(xs),
        "curves": torch.cat(curves),
        "iteration": torch.cat(iterations),
        "seconds": seconds,
    }


def measure(args: argparse.Namespace, cfg: DictConfig) -> dict:
    """Run every method on the test images; the JSON-able results."""
    op = instantiate(cfg.operator)
    _, truth, y = load_split(cfg, "test", op)
    n = len(y)
    results: dict[str, dict] = {}
    for name in ("fbp", "tv"):
        method = instantiate(cfg.methods[name])
        start = time.perf_counter()
        x = method(y, op)
        results[name] = summarize(x, truth) | {
            "seconds_per_image": (time.perf_counter() - start) / n,
            "params": OmegaConf.to_container(cfg.methods[name]),
        }
    runs = {}
    names = ["dip"] if args.no_warm else ["dip", "dip_warm"]
    for name in names:
        dip = instantiate(cfg.methods[name])
        run = runs[name] = run_dip(dip, y, truth, op, args.batch_size)
        n_iter = int(cfg.methods[name].n_iter)
        results[name] = summarize(run["x"], truth) | {
            "seconds_per_image": run["seconds"] / n,
            "seconds_per_iteration_per_image": run["seconds"] / n / (n_iter + 1),
            "iterations": n_iter,
            "kept_iteration_per_image": run["iteration"].tolist(),
            "psnr_curve_mean": [round(float(v), 4) for v in run["curves"].mean(0)],
            "parameters": sum(p.numel() for p in dip.network.parameters()),
            "params": OmegaConf.to_container(cfg.methods[name], resolve=True),
        }
    cold = results["dip"]
    out = {
        "quick": args.quick,
        "geometry": OmegaConf.to_container(cfg.operator.geometry, resolve=True),
        "noise": OmegaConf.to_container(cfg.data.noise, resolve=True),
        "test_images": n,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "results": results,
        "dip_minus_tv_db": cold["psnr_mean"] - results["tv"]["psnr_mean"],
        "dip_minus_fbp_db": cold["psnr_mean"] - results["fbp"]["psnr_mean"],
    }
    out["dip_beats_tv_by_target"] = out["dip_minus_tv_db"] >= TV_MARGIN_DB
    if "dip_warm" in runs:
        target = cold["psnr_mean"]
        reach = first_reaching(runs["dip_warm"]["curves"].mean(0), target)
        per_image = [
            first_reaching(curve, float(goal))
            for curve, goal in zip(runs["dip_warm"]["curves"], cold["psnr_per_image"], strict=True)
        ]
        out["warm"] = {
            "target_psnr": target,
            "iterations_to_reach_cold_psnr": reach,
            "fraction_of_cold_iterations": None if reach is None else reach / cold["iterations"],
            "iterations_to_reach_per_image": per_image,
            "psnr_at_iteration_0": float(runs["dip_warm"]["curves"][:, 0].mean()),
            "cold_psnr_at_same_iterations": None
            if reach is None
            else float(runs["dip"]["curves"][:, min(reach, cold["iterations"])].mean()),
        }
        fraction = out["warm"]["fraction_of_cold_iterations"]
        out["warm"]["meets_target"] = fraction is not None and fraction <= WARM_FRACTION
    return out


def report(result: dict) -> None:
    """Print the PSNR table and the warm start's iterations."""
    rows = result["results"]
    print(f"\n{result['test_images']} test images, {result['geometry']['image_shape']}, "
          f"{result['geometry']['n_angles']} angles")  # fmt: skip
    print("| method | PSNR (dB) | SSIM | iterations | s/image | s/iteration/image |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        per_it = row.get("seconds_per_iteration_per_image")
        print(f"| {name} | {row['psnr_mean']:.2f} | {row['ssim_mean']:.4f} | "
              f"{row.get('iterations', '—')} | {row['seconds_per_image']:.3f} | "
              f"{'—' if per_it is None else format(per_it, '.4f')} |")  # fmt: skip
    print(f"\nDIP + TV − TV: {result['dip_minus_tv_db']:+.2f} dB (target ≥ {TV_MARGIN_DB})")
    warm = result.get("warm")
    if warm is not None:
        reach = warm["iterations_to_reach_cold_psnr"]
        told = "not within the run" if reach is None else f"{reach} iterations"
        print(f"warm start reaches the cold start's {warm['target_psnr']:.2f} dB: {told} "
              f"(target ≤ {WARM_FRACTION:g} of {rows['dip']['iterations']})")  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    """Pretrain (or load), run every method, report; returns the JSON-able results."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = build(args)
    if not args.no_warm:
        checkpoint, pretraining = pretrain(args)
        cfg.methods.dip_warm.network.checkpoint = checkpoint
    else:
        pretraining = None
    result = measure(args, cfg)
    result["pretraining"] = pretraining
    report(result)
    write_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
