r"""Side-by-side speed of TV reconstruction with :math:`A`, :math:`\tilde A` and learned models.

``python -m benchmarks.correction_speed --run RUN [--run RUN2 ...]`` times
:func:`recon.correction.tv_descent` (the same λ, smoothing, iterations and step for every
operator) on the first test images of the first run's data, with the accurate model :math:`A`
and the approximate :math:`\tilde A` of that run's config and the frozen :math:`A_q` of each
run (all runs must share the operators and data); with ``--bf16`` each :math:`A_q` with its
networks in bfloat16 too, and with ``--linearised-adjoint`` each with its linearised adjoint
(the exact gradient of :math:`\tfrac12\|A_q x - y\|^2`; in bfloat16 too with both flags).
The operators take turns within each repeat, so a change in machine load hits them alike;
each one's time is its fastest repeat. It prints seconds per image and the speed-up over
:math:`A`, and writes JSON (``--out``).

``benchmarks.correction`` reports quality and time for one run; this one compares the cost
of several runs' networks in one process, which a single machine's noise otherwise blurs.

Example
-------
::

    python -m benchmarks.correction_speed --run outputs/pat_correction --run outputs/pat_late \
        --threads 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from benchmarks.common import linearised, run_config, split_pairs, write_json
from recon.correction import load_correction, tv_descent
from recon.cpu import keep_freed_memory
from recon.solvers import tv_lipschitz


def _same(cfg, other, key: str) -> bool:
    return OmegaConf.to_container(cfg[key]) == OmegaConf.to_container(other[key])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m benchmarks.correction_speed``, checked."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.correction_speed")
    parser.add_argument("--run", action="append", required=True, help="a correction run (repeat)")
    parser.add_argument("--n-test", type=int, default=10, help="first N test images, one batch")
    parser.add_argument("--lam", type=float, default=2e-3, help="TV weight λ")
    parser.add_argument("--eps", type=float, default=0.01, help="TV smoothing ε")
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--bf16", action="store_true",
        help="also each A_q with its networks in bfloat16 (LearnedOperator.compute_in)",
    )  # fmt: skip
    parser.add_argument(
        "--linearised-adjoint", action="store_true",
        help="also each A_q with its linearised adjoint instead of the learned adjoint networks",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--keep-freed-memory", action=argparse.BooleanOptionalAction, default=True,
        help="raise glibc's malloc thresholds (recon.cpu.keep_freed_memory): the nets of A_q "
        "stop page-faulting on fresh buffers",
    )  # fmt: skip
    parser.add_argument("--out", default=None, help="JSON results")
    args = parser.parse_args(argv)
    for name in ("n_test", "iters", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(args, name)}")
    if not args.lam >= 0 or not args.eps > 0:
        parser.error(f"need --lam ≥ 0 and --eps > 0, got {args.lam} and {args.eps}")
    return args


def build(args: argparse.Namespace, runs: list[Path]) -> tuple[dict, torch.Tensor]:
    """The operators by name (``A``, ``Ã`` and each run's ``A_q`` with the variants the flags ask
    for) and the first test measurements of the first run's data."""
    cfg = run_config(runs[0])
    for run in runs[1:]:
        other = run_config(run)
        for key in ("operator", "data"):
            if not _same(cfg, other, key):
                raise ValueError(f"{run} has another {key} than {runs[0]}: not comparable")
    operators = {
        "accurate A": instantiate(cfg.objective.accurate),
        "approximate Ã": instantiate(cfg.operator),
    }
    for run in runs:
        name = f"A_q {run.name}"
        if name in operators:
            raise ValueError(f"two runs are named {run.name}; give directories distinct names")
        operators[name] = load_correction(run)
        if args.linearised_adjoint:
            operators[f"{name}, linearised adjoint"] = linearised(operators[name])
        if args.bf16:
            reduced = load_correction(run).compute_in(torch.bfloat16)
            operators[f"{name}, bfloat16"] = reduced
            if args.linearised_adjoint:
                operators[f"{name}, linearised adjoint, bfloat16"] = linearised(reduced)
    _, y = split_pairs(cfg, args.n_test)
    return operators, y


def measure(args: argparse.Namespace, operators: dict, y: torch.Tensor) -> dict:
    """Time TV with every operator, in turns within each repeat; ``{name: {"seconds_per_image",
    "repeats", "speedup"}}`` (the fastest repeat; speed-up over ``A``)."""
    accurate = operators["accurate A"]
    # the same step for every operator: L from the accurate model's norm
    image_dims = len(tuple(accurate.domain_shape))
    lipschitz = tv_lipschitz(float(accurate.norm()) ** 2, image_dims, args.lam, args.eps)

    def solve(op, data: torch.Tensor, iters: int) -> None:
        tv_descent(data, op, lam=args.lam, eps=args.eps, n_iter=iters, lipschitz=lipschitz)

    seconds: dict[str, list[float]] = {name: [] for name in operators}
    with torch.no_grad():
        for op in operators.values():  # warm-up: allocations, oneDNN kernels, FFT plans
            solve(op, y, 2)
        for _ in range(args.repeats):
            for name, op in operators.items():
                start = time.perf_counter()
                solve(op, y, args.iters)
                seconds[name].append((time.perf_counter() - start) / len(y))
    reference = min(seconds["accurate A"])
    return {
        name: {
            "seconds_per_image": min(t),
            "repeats": t,
            "speedup": reference / min(t),
        }
        for name, t in seconds.items()
    }


def report(args: argparse.Namespace, results: dict, *, n_images: int, malloc_tuned: bool) -> None:
    """Print the table of seconds per image and speed-ups."""
    print(
        f"TV ({args.iters} iterations, λ {args.lam:g}) on {n_images} test images in one batch, "
        f"{torch.get_num_threads()} threads; fastest of {args.repeats} repeats; glibc malloc "
        f"thresholds {'raised' if malloc_tuned else 'default'}"
    )
    print("| operator | s/image | × faster than A |\n|---|---:|---:|")
    for name, row in results.items():
        print(f"| {name} | {row['seconds_per_image']:.3f} | {row['speedup']:.1f} |")


def main(argv: list[str] | None = None) -> dict:
    """Run the timing; returns ``{name: {"seconds_per_image", "repeats", "speedup"}}``."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    malloc_tuned = keep_freed_memory() if args.keep_freed_memory else False
    runs = [Path(r).expanduser() for r in args.run]
    operators, y = build(args, runs)
    results = measure(args, operators, y)
    report(args, results, n_images=len(y), malloc_tuned=malloc_tuned)
    if args.out:
        payload = {
            "runs": [str(r) for r in runs],
            "threads": torch.get_num_threads(),
            "keep_freed_memory": malloc_tuned,
            "n_images": len(y),
            "iters": args.iters,
            "lam": args.lam,
            "methods": results,
        }
        write_json(payload, args.out)
    return results


if __name__ == "__main__":
    main()
