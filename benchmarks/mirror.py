r"""Benchmark: learned mirror descent against gradient descent, Nesterov and TV by PDHG.

``python -m benchmarks.mirror`` trains the model of ``experiment=ellipses/mirror`` (learned
mirror descent, 10 iterations, ICNN mirror maps, on
:math:`f(x) = \tfrac12\|Ax - y\|^2 + \lambda\,\mathrm{TV}_\varepsilon(x)` with the protocol's
λ = 2, from the Hann FBP) on the "ellipses" protocol (128², 30 angles, 183 detectors, 2.5 %
noise, measurements simulated on a finer grid) with the unsupervised
:class:`~recon.training.tasks.MirrorTask`, then, on held-out test images (the protocol's test
split), reports:

- the objective after the 10 learned iterations, and the iterations that gradient descent (the
  best fixed step of a small grid, in units of 1/L) and Nesterov's method (likewise) need from
  the same FBP start to reach it (targets: ≥ 5× and ≥ 2× the learned iterations);
- the PSNR after the 10 learned iterations against TV solved by PDHG to convergence (the
  protocol's 1000 iterations; target: within 0.5 dB), with the time per image of both: the
  protocol's TV (with :math:`x \ge 0`) and TV without the constraint, the problem :math:`f`
  smooths, and the PSNR of :math:`f`'s own minimiser (Nesterov run for ``--baseline-iter``
  iterations), the best any solver of :math:`f` can give. With the model's ``nonneg`` the
  problem is :math:`\min_{x \ge 0} f` and gradient descent and Nesterov are projected;
- the forward-backward consistency :math:`\|\nabla\varphi(\nabla\psi(x)) - x\| / \|x\|` at the
  learned reconstructions (target < 1e-2);
- the learned scheme continued past its 10 iterations with its last step.

It prints a markdown table, writes JSON (``--out``) and a PNG of the objective against the
iteration for the three methods (``--png``), both in ``bench_results/mirror/``. ``--quick``
shrinks everything (32², tiny networks, 4 training steps) to check the pipeline in seconds; its
numbers mean nothing. Any Hydra override
of the experiment can be passed with ``--override`` (repeatable), e.g.
``--override model.scheme=krichene``; ``--checkpoint`` evaluates a trained model without
training.

Example
-------
::

    python -m benchmarks.mirror --quick
    python -m benchmarks.mirror --steps 2000 --threads 2
    python -m benchmarks.mirror --checkpoint outputs/mirror/checkpoints/last.pt
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
from torch.utils.data import Subset

from benchmarks.common import RESULTS, write_json
from data_tools.metrics import psnr
from recon.checkpoints import load_trained
from recon.classical import fbp, tv_pdhg
from recon.cli.config import compose_config
from recon.data import build_split
from recon.mirror import LearnedMirrorDescent, gradient_descent, nesterov_gradient
from recon.runs.evaluation import stack_split
from recon.solvers import DivergenceError
from recon.training import Trainer
from recon.training.tasks import as_task

#: Overrides of ``--quick``: a 32² geometry, tiny networks, a few training steps.
QUICK_OVERRIDES = (
    "operator.geometry.image_shape=[32,32]",
    "operator.geometry.n_detectors=46",
    "model.mirror_map.channels=4",
    "model.inverse_map.channels=4",
    "data.splits.train.size=64",
    "trainer.max_steps=4",
    "trainer.batch_size=2",
    "trainer.warmup_steps=0",
)
#: Fixed steps tried for the baselines, in units of 1/L.
GD_STEPS = (0.5, 1.0, 2.0, 4.0, 8.0)
NESTEROV_STEPS = (0.5, 1.0, 2.0, 4.0)


def iterations_to_reach(curve: torch.Tensor, target: float) -> int | None:
    """The first iteration ``k ≥ 1`` with ``curve[k - 1] ≤ target`` (``None`` if never).

    ``curve[k - 1]`` is the objective after iteration ``k``, as the baselines return it.

    Example
    -------
    >>> iterations_to_reach(torch.tensor([5.0, 3.0, 1.0]), 3.0)
    2
    """
    hits = (curve <= target).nonzero()
    return int(hits[0]) + 1 if len(hits) else None


def best_baseline(run, factors, *, lipschitz: float, target: float):
    """Run a baseline for every step ``factor / L``; return the best as
    ``(factor, iterations, mean objective curve)``.

    The best step reaches ``target`` in the fewest iterations (else has the lowest final
    objective) among the *stable* ones: those whose objective is finite and still at or below
    ``target`` at the last iteration. A step that dips below the target and then diverges (as
    Nesterov's method does with a step past 1/L) is no fixed-step method one could run; it is
    chosen only if no step is stable.

    Example
    -------
    >>> curves = {1.0: torch.tensor([4.0, 3.0, 2.0]), 2.0: torch.tensor([2.0, 1.0, 9.0])}
    >>> best_baseline(curves.get, (1.0, 2.0), lipschitz=1.0, target=2.0)[:2]
    (1.0, 3)
    """
    best = None
    for factor in factors:
        curve = run(factor / lipschitz)
        curve = torch.where(torch.isfinite(curve), curve, torch.full_like(curve, math.inf))
        needed = iterations_to_reach(curve, target)
        unstable = not float(curve[-1]) <= target
        key = (unstable, needed if needed is not None else math.inf, float(curve[-1]))
        if best is None or key < best[0]:
            best = (key, factor, needed, curve)
    return best[1:]


def plot(png: Path, curves: dict[str, torch.Tensor], *, n_learned: int, target: float) -> bool:
    """Objective minus the lowest value seen against the iteration; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no PNG written", file=sys.stderr)
        return False
    floor = min(float(c[torch.isfinite(c)].min()) for c in curves.values())
    scale = max(abs(floor), 1.0) * 1e-7
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, curve in curves.items():
        ax.semilogy(range(len(curve)), (curve - floor + scale).numpy(), label=label)
    ax.axvline(n_learned, color="grey", lw=0.8, ls=":")
    ax.axhline(target - floor + scale, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("iteration")
    ax.set_ylabel("f(x_k) − min f seen (mean over test images)")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(left=0)
    ax.legend()
    ax.set_title("Learned mirror descent vs gradient methods (smoothed-TV objective)")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)
    print(f"wrote {png}")
    return True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked, with the defaults of ``--quick`` filled in."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mirror")
    parser.add_argument("--quick", action="store_true", help="a seconds-long check (32²)")
    parser.add_argument("--steps", type=int, help="training steps (default: the experiment's)")
    parser.add_argument("--checkpoint", help="evaluate this trained model instead of training")
    parser.add_argument("--test-images", type=int, help="held-out images (default 20; quick 4)")
    parser.add_argument("--baseline-iter", type=int, help="GD/Nesterov iterations (2000; 300)")
    parser.add_argument("--tv-iter", type=int, help="PDHG iterations for TV (1000; 300)")
    parser.add_argument("--extra-iter", type=int, default=20, help="learned iterations beyond")
    parser.add_argument(
        "--extra-step", type=float, help="their step in units of 1/L (default: the model's)"
    )
    parser.add_argument("--override", action="append", default=[], help="Hydra override")
    parser.add_argument("--threads", type=int, help="torch threads")
    parser.add_argument("--work-dir", help="training outputs (default: a temporary folder)")
    parser.add_argument("--out", default=str(RESULTS / "mirror" / "mirror.json"))
    parser.add_argument("--png", default=str(RESULTS / "mirror" / "mirror.png"))
    args = parser.parse_args(argv)
    if args.extra_step is not None and not args.extra_step > 0:
        parser.error(f"--extra-step must be positive, got {args.extra_step}")
    args.test_images = args.test_images or (4 if args.quick else 20)
    args.baseline_iter = args.baseline_iter or (300 if args.quick else 2000)
    args.tv_iter = args.tv_iter or (300 if args.quick else 1000)
    return args


def build(args: argparse.Namespace) -> tuple[DictConfig, Any, LearnedMirrorDescent]:
    """The composed ``experiment=ellipses/mirror`` config (with ``--quick``, ``--override`` and
    ``--steps``), its operator (norm cached) and its untrained model."""
    overrides = [*(QUICK_OVERRIDES if args.quick else ()), *args.override]
    if args.steps is not None:
        overrides.append(f"trainer.max_steps={args.steps}")
    cfg = compose_config("config", ["experiment=ellipses/mirror", *overrides])
    op = instantiate(cfg.operator)
    torch.manual_seed(int(cfg.seed))
    model = instantiate(cfg.model)
    if not isinstance(model, LearnedMirrorDescent):
        raise ValueError(f"the model must be a LearnedMirrorDescent, got {type(model).__name__}")
    op.norm()
    return cfg, op, model


def train(args: argparse.Namespace, cfg: DictConfig, op: Any, model: LearnedMirrorDescent) -> dict:
    """Train ``model`` with the experiment's task (or load ``--checkpoint``); a summary."""
    if args.checkpoint:
        load_trained(model, args.checkpoint)
        return {"steps": 0, "cpu_s": 0.0, "wall_s": 0.0}
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="mirror-"))
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg["progress"] = bool(trainer_cfg.get("progress", True)) and not args.quick
    trainer = Trainer(
        model,
        train_data=build_split(cfg.data, "train", op.geometry),
        val_data=None,
        task=as_task(instantiate(cfg.objective, op=op)),  # recon.training.tasks.MirrorTask
        out_dir=work,
        optimizer=instantiate(cfg.optim),
        seed=int(cfg.seed),
        overwrite=True,
        **trainer_cfg,
    )
    cpu, wall = time.process_time(), time.perf_counter()
    fitted = trainer.fit()
    summary = {
        "steps": int(fitted["step"]),
        "batch_size": int(cfg.trainer.batch_size),
        "cpu_s": time.process_time() - cpu,
        "wall_s": time.perf_counter() - wall,
        "last_loss": fitted["last_loss"],
        "work_dir": str(work),
    }
    print(
        f"trained {summary['steps']} steps in {summary['wall_s']:.1f} s "
        f"({summary['cpu_s']:.1f} s CPU)",
        file=sys.stderr,
    )
    return summary


def measure(
    args: argparse.Namespace,
    cfg: DictConfig,
    op: Any,
    model: LearnedMirrorDescent,
    *,
    trained: dict,
) -> tuple[dict, dict[str, torch.Tensor]]:
    """Evaluate the trained model against the baselines on the test split: the JSON-able
    results (``trained``: the training summary they record) and the objective curves to plot."""
    model.eval()
    test = build_split(cfg.data, "test", op.geometry)
    truth, y = stack_split(Subset(test, range(min(args.test_images, len(test)))))
    f = model.objective
    lipschitz = f.lipschitz(op)
    n_learned = model.n_iter
    nonneg = model.nonneg  # the baselines solve the same problem: projected when x ≥ 0
    baseline_iter, tv_iter = args.baseline_iter, args.tv_iter

    def mean_objective(x: torch.Tensor) -> float:
        return float(f(x, y, op).mean())

    x0 = fbp(y, op, filter="hann")
    with torch.no_grad():
        start = time.perf_counter()
        x_learned = model(y, op, n_iter=n_learned)
        learned_s = (time.perf_counter() - start) / len(y)
        if args.extra_step is not None:
            model.extra_step = args.extra_step
        extra_step = model.extra_step or float(model.steps()[-1])  # the model's rule
        trace = model(y, op, n_iter=n_learned + args.extra_iter, trace=True)
    learned_curve = trace.objective.mean(1)
    target = mean_objective(x_learned)

    same_problem = {"objective": f, "x0": x0, "nonneg": nonneg}

    def run_gd(step: float) -> torch.Tensor:
        return objective_curve(gradient_descent, step)

    def run_nesterov(step: float) -> torch.Tensor:
        return objective_curve(nesterov_gradient, step)

    def objective_curve(solver, step: float) -> torch.Tensor:
        """Mean objective per iteration; a step that diverges gives an all-inf curve, so the
        step search passes over it instead of stopping the benchmark."""
        try:
            _, values = solver(
                y, op, n_iter=baseline_iter, step=step, return_objective=True, **same_problem
            )
        except DivergenceError:
            return torch.full((baseline_iter,), math.inf, dtype=y.dtype)
        return values.flatten(1).mean(1)

    gd_factor, gd_iter, gd_curve = best_baseline(
        run_gd, GD_STEPS, lipschitz=lipschitz, target=target
    )
    nag_factor, nag_iter, nag_curve = best_baseline(
        run_nesterov, NESTEROV_STEPS, lipschitz=lipschitz, target=target
    )
    x_gd10 = gradient_descent(y, op, n_iter=n_learned, step=gd_factor / lipschitz, **same_problem)

    start = time.perf_counter()
    x_tv = tv_pdhg(y, op, lam=f.lam, n_iter=tv_iter)  # the protocol's TV: also x ≥ 0
    tv_s = (time.perf_counter() - start) / len(y)
    # TV without the constraint, and the minimiser of the learned scheme's problem (f, with
    # x ≥ 0 when the model has it; Nesterov run long): the best any solver of it can give
    x_tv_free = tv_pdhg(y, op, lam=f.lam, n_iter=tv_iter, nonneg=False)
    x_f_min = nesterov_gradient(
        y, op, n_iter=baseline_iter, step=nag_factor / lipschitz, **same_problem
    )

    def mean_psnr(x: torch.Tensor) -> float:
        return float(psnr(x, truth, ndim=2).mean())

    consistency = model.consistency_error(x_learned.reshape(-1, 1, *op.domain_shape))
    f0 = mean_objective(x0.clamp_min(0) if nonneg else x0)  # where every method starts
    result = {
        "quick": args.quick,
        "geometry": OmegaConf.to_container(cfg.operator.geometry, resolve=True),
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "lam": f.lam,
        "eps": f.eps,
        "lipschitz": lipschitz,
        "nonneg": nonneg,
        "train": trained,
        "test_images": len(y),
        "learned_iterations": n_learned,
        "scheme": model.scheme,
        "learned_steps": [float(s) for s in model.steps().detach()],
        "learned_momenta": None if model.momenta() is None else model.momenta().tolist(),
        "learned_gammas": None if model.gammas() is None else model.gammas().tolist(),
        "objective_fbp": f0,
        "objective_learned": target,
        "objective_learned_curve": [float(v) for v in learned_curve],
        "extra_step": extra_step,
        "gd_step": gd_factor,
        "gd_iterations": gd_iter,
        "gd_speedup": None if gd_iter is None else gd_iter / n_learned,
        "gd_objective_at_learned_iterations": float(gd_curve[n_learned - 1]),
        "nesterov_step": nag_factor,
        "nesterov_iterations": nag_iter,
        "nesterov_speedup": None if nag_iter is None else nag_iter / n_learned,
        "nesterov_objective_at_learned_iterations": float(nag_curve[n_learned - 1]),
        "baseline_iterations_run": baseline_iter,
        "objective_lowest_seen": float(min(gd_curve.min(), nag_curve.min(), learned_curve.min())),
        "psnr_fbp": mean_psnr(x0),
        "psnr_gd_same_iterations": mean_psnr(x_gd10),
        "psnr_learned": mean_psnr(x_learned),
        "psnr_tv": mean_psnr(x_tv),
        "psnr_gap_to_tv": mean_psnr(x_tv) - mean_psnr(x_learned),
        "psnr_tv_unconstrained": mean_psnr(x_tv_free),
        "psnr_gap_to_tv_unconstrained": mean_psnr(x_tv_free) - mean_psnr(x_learned),
        "psnr_f_minimiser": mean_psnr(x_f_min),
        "objective_f_minimiser": mean_objective(x_f_min),
        "tv_iterations": tv_iter,
        "learned_s_per_image": learned_s,
        "tv_s_per_image": tv_s,
        "consistency_error": float(consistency.mean()),
        "consistency_error_max": float(consistency.max()),
        "threads": torch.get_num_threads(),
    }
    curves = {
        f"learned MD ({n_learned} learned + {args.extra_iter} at step {extra_step:.2g}/L)": (
            learned_curve
        ),
        f"gradient descent, step {gd_factor}/L": torch.cat([torch.tensor([f0]), gd_curve]),
        f"Nesterov, step {nag_factor}/L": torch.cat([torch.tensor([f0]), nag_curve]),
    }
    return result, curves


def report(result: dict) -> None:
    """Print the iteration and the PSNR tables and the consistency."""
    n_learned, baseline_iter = result["learned_iterations"], result["baseline_iterations_run"]
    gd_iter, nag_iter = result["gd_iterations"], result["nesterov_iterations"]
    gd_factor, nag_factor = result["gd_step"], result["nesterov_step"]
    tv_iter, nonneg = result["tv_iterations"], result["nonneg"]

    def fmt_iter(n: int | None) -> str:
        return f"> {baseline_iter}" if n is None else str(n)

    speed_gd = "—" if gd_iter is None else f"{gd_iter / n_learned:.1f}×"
    speed_nag = "—" if nag_iter is None else f"{nag_iter / n_learned:.1f}×"
    constraint = ", x ≥ 0 (GD and Nesterov projected)" if nonneg else ""
    print(f"\n{result['test_images']} test images; f = ½‖Ax − y‖² + {result['lam']} "
          f"TV_{result['eps']}{constraint}; L = {result['lipschitz']:.4g}")  # fmt: skip
    print("| method | iterations to reach f(learned, 10 it.) | speed-up | objective at 10 it. |")
    print("|---|---:|---:|---:|")
    print(f"| learned mirror descent | {n_learned} | 1× | {result['objective_learned']:.6g} |")
    print(f"| gradient descent (step {gd_factor}/L) | {fmt_iter(gd_iter)} | {speed_gd} | "
          f"{result['gd_objective_at_learned_iterations']:.6g} |")  # fmt: skip
    print(f"| Nesterov (step {nag_factor}/L) | {fmt_iter(nag_iter)} | {speed_nag} | "
          f"{result['nesterov_objective_at_learned_iterations']:.6g} |")  # fmt: skip
    print("\n| reconstruction | PSNR (dB) | s/image |\n|---|---:|---:|")
    print(f"| FBP (Hann) | {result['psnr_fbp']:.2f} | — |")
    print(f"| gradient descent, {n_learned} it. | {result['psnr_gd_same_iterations']:.2f} | — |")
    print(f"| learned mirror descent, {n_learned} it. | {result['psnr_learned']:.2f} | "
          f"{result['learned_s_per_image']:.3f} |")  # fmt: skip
    print(f"| TV (PDHG, {tv_iter} it., x ≥ 0: the protocol's) | {result['psnr_tv']:.2f} | "
          f"{result['tv_s_per_image']:.3f} |")  # fmt: skip
    print(f"| TV (PDHG, {tv_iter} it., unconstrained) | "
          f"{result['psnr_tv_unconstrained']:.2f} | — |")  # fmt: skip
    problem = "f on x ≥ 0" if nonneg else "f"
    print(f"| minimiser of {problem} (Nesterov, {baseline_iter} it.) | "
          f"{result['psnr_f_minimiser']:.2f} | — |")  # fmt: skip
    print(f"\nconsistency ‖∇φ(∇ψ(x)) − x‖/‖x‖: mean {result['consistency_error']:.2e}, "
          f"max {result['consistency_error_max']:.2e}")  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    """Train (or load), evaluate and compare; returns the JSON-able results."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, op, model = build(args)
    trained = train(args, cfg, op, model)
    result, curves = measure(args, cfg, op, model, trained=trained)
    report(result)
    write_json(result, args.out)
    plot(Path(args.png), curves, n_learned=model.n_iter, target=result["objective_learned"])
    return result


if __name__ == "__main__":
    main()
