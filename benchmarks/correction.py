r"""Benchmark of a learned operator correction :math:`A_q = F_q \tilde A H_f` on held-out phantoms.

``python -m benchmarks.correction --run outputs/pat_correction`` reads a ``recon-train``
correction run (``experiment=correction_pat64/forward`` or ``correction_ct_fan/forward``): its
config names the approximate model :math:`\tilde A` (``operator``), the accurate model :math:`A`
(``objective.accurate``, which also simulated the data) and the data. On the run's *test*
split (never seen in training or validation) it reports

1. **model errors**, per image then averaged: :math:`\|A_q x - Ax\|/\|Ax\|` against
   :math:`\|\tilde A x - Ax\|/\|Ax\|`, and **adjoint errors**
   :math:`\|A_q^*(r) - A^T r\|/\|A^T r\|` against :math:`\|\tilde A^T r - A^T r\|/\|A^T r\|`
   with :math:`r = A_q x - y`, plus the ratios;
2. **TV reconstruction** (:func:`recon.correction.tv_descent`: the same iterations, start
   and step :math:`1/L`, :math:`L` from :math:`\|A\|` and λ) with :math:`A`, :math:`\tilde A`
   and :math:`A_q`, in the same run: PSNR/SSIM against the phantoms and seconds per image
   (with ``--linearised-adjoint``, also :math:`A_q` with its linearised adjoint, i.e. the exact
   gradient :math:`J(x)^T(A_q x - y)` of :math:`\tfrac12\|A_q x - y\|^2` instead of the learned
   adjoint networks; with ``--bf16`` too, both in bfloat16). One λ for all (``--tv-lam``,
   default the run's ``objective.lam``), or, with ``--tv-lams``, each operator's own λ from
   that list: the one with the best mean PSNR on the run's *validation* split, as
   ``recon-eval`` tunes its baselines;
3. optionally (``--linear-bound N``) the errors of the best *linear* correction, a
   convolution before and one after :math:`\tilde A` (and :math:`\tilde A^T`) fitted on ``N``
   training images (:func:`recon.correction.fit_linear_correction`): how much of the
   mismatch filtering alone removes;
4. optionally (``--iterate-errors K1,K2,…``) the same errors at the ``k``-th iterates of TV
   (the run's ``objective.lam``, or ``--tv-lam``) with :math:`A_q` and with :math:`A`: whether
   the model stays accurate where the reconstruction goes, beyond the iterates it was trained
   on (``objective.recursive_iter``);
5. optionally (``--unrolled NAME=RUN_DIR`` repeated) trained unrolled reconstructors evaluated on
   the same test data, each with the operator of its own run (e.g. the learned gradient scheme
   trained with :math:`\tilde A` and the same network trained with the frozen :math:`A_q`).

It prints markdown tables and writes JSON (``--out``; the study's folder is
``bench_results/correction/``).

Example
-------
::

    python -m benchmarks.correction --run outputs/pat_correction --tv-iter 200 \
        --out bench_results/correction/pat_correction.json
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from benchmarks.common import chunks, linearised, run_config, split_pairs, write_json
from data_tools.metrics import psnr, ssim
from operators.learned import relative_error
from recon.checkpoints import load_run
from recon.correction import fit_linear_correction, load_correction, operator_errors, tv_descent
from recon.cpu import keep_freed_memory
from recon.data import build_split
from recon.solvers import tv_lipschitz

__all__ = ["main"]


def _comma_list(text: str, convert, valid, what: str, requirement: str) -> list:
    try:
        values = [convert(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {what} separated by commas, got {text!r}"
        ) from None
    if not values or not all(valid(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected {requirement}, got {text!r}")
    return values


def float_list(text: str) -> list[float]:
    """``"1e-3,2e-3"`` -> ``[0.001, 0.002]``, all positive (an argparse type).

    Example
    -------
    >>> float_list("1e-3,2e-3")
    [0.001, 0.002]
    """
    return _comma_list(text, float, lambda v: v > 0, "numbers", "positive numbers")


def int_list(text: str) -> list[int]:
    """``"1,20,200"`` -> ``[1, 20, 200]``, all ≥ 1 (an argparse type).

    Example
    -------
    >>> int_list("1,20,200")
    [1, 20, 200]
    """
    return _comma_list(text, int, lambda v: v >= 1, "integers", "iteration counts ≥ 1")


def quality(estimate: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """Mean PSNR (and its spread) and SSIM of images ``(N, *image)`` against the truth."""
    e, t = estimate.unsqueeze(1).float(), truth.unsqueeze(1).float()
    p = psnr(e, t).flatten(1).mean(1)
    s = ssim(e, t).flatten(1).mean(1)
    return {"psnr": float(p.mean()), "psnr_std": float(p.std()), "ssim": float(s.mean())}


def _timed(fn, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    with torch.no_grad():
        out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


# --------------------------------------------------------------------------- errors
def mean_errors(model, approx, accurate, x, y, batch_size: int) -> dict[str, float]:
    """:func:`~recon.correction.operator_errors` averaged over the images, in batches."""
    errors: dict[str, list[torch.Tensor]] = {}
    for sl in chunks(len(x), batch_size):
        for key, value in operator_errors(model, approx, accurate, x[sl], y[sl]).items():
            errors.setdefault(key, []).append(value)
    return {key: float(torch.cat(value).mean()) for key, value in errors.items()}


def linear_bound(
    cfg, model, approx, accurate, x: torch.Tensor, y: torch.Tensor, args
) -> dict[str, Any]:
    """Best linear filters around Ã (fitted on training images) and their test errors."""
    data = build_split(cfg.data, "train")
    n = min(args.linear_bound, len(data))
    x_train, y_train = (
        torch.stack(v)[:, 0] for v in zip(*(data[i] for i in range(n)), strict=True)
    )
    both = set(approx.dtypes) & set(accurate.dtypes)
    dtype = torch.float64 if torch.float64 in both else torch.float32

    def pairs(images: torch.Tensor, measured: torch.Tensor):
        with torch.no_grad():
            r = (model(images) - measured).to(dtype)  # the residual the adjoint errors use
            images = images.to(dtype)
            return images, accurate(images), r, accurate.T(r)

    x_tr, ax_tr, r_tr, atr_tr = pairs(x_train, y_train)
    x_te, ax_te, r_te, atr_te = pairs(x, y)
    forward = fit_linear_correction(
        approx, x_tr, ax_tr, in_kernel=args.image_kernel, out_kernel=args.data_kernel
    )
    adjoint = fit_linear_correction(
        approx.T, r_tr, atr_tr, in_kernel=args.data_kernel, out_kernel=args.image_kernel
    )
    with torch.no_grad():
        return {
            "n_train": n,
            "image_kernel": args.image_kernel,
            "data_kernel": args.data_kernel,
            "forward": float(relative_error(forward.correction(x_te), ax_te).mean()),
            "adjoint": float(relative_error(adjoint.correction(r_te), atr_te).mean()),
        }


def measure_errors(ops: dict, x: torch.Tensor, y: torch.Tensor, cfg, args) -> dict[str, Any]:
    """Model and adjoint errors of ``A_q`` and ``Ã`` (and of ``A_q`` in bfloat16 with
    ``--bf16``, and of the best linear filters with ``--linear-bound``)."""
    model, approx, accurate = ops["learned A_q"], ops["approximate Ã"], ops["accurate A"]
    err = mean_errors(model, approx, accurate, x, y, args.batch_size)
    results: dict[str, Any] = {
        "errors": err,
        "forward_ratio": err["forward_approx"] / err["forward_model"],
        "adjoint_ratio": err["adjoint_approx"] / err["adjoint_model"],
    }
    if "learned A_q, bfloat16" in ops:
        results["errors_bf16"] = mean_errors(
            ops["learned A_q, bfloat16"], approx, accurate, x, y, args.batch_size
        )
    if args.linear_bound:
        results["linear_bound"] = linear_bound(cfg, model, approx, accurate, x, y, args)
    return results


def report_errors(results: dict[str, Any]) -> None:
    """Print the error table."""
    err = results["errors"]
    print("\n| model | forward error | adjoint error |\n|---|---:|---:|")
    print(f"| approximate Ã | {err['forward_approx']:.4f} | {err['adjoint_approx']:.4f} |")
    print(f"| learned A_q | {err['forward_model']:.4f} | {err['adjoint_model']:.4f} |")
    print(f"| ratio Ã / A_q | {results['forward_ratio']:.2f}× | {results['adjoint_ratio']:.2f}× |")
    if "errors_bf16" in results:
        row = results["errors_bf16"]
        print(f"| A_q, bfloat16 | {row['forward_model']:.4f} | {row['adjoint_model']:.4f} |")
    if "linear_bound" in results:
        bound = results["linear_bound"]
        print(
            f"| best linear filters around Ã ({bound['image_kernel']}² image, "
            f"{bound['data_kernel']}² data; fitted on {bound['n_train']} training images) | "
            f"{bound['forward']:.4f} ({err['forward_approx'] / bound['forward']:.2f}×) | "
            f"{bound['adjoint']:.4f} ({err['adjoint_approx'] / bound['adjoint']:.2f}×) |"
        )


# --------------------------------------------------------------------------- TV iterates
def iterate_errors(
    model: Any,
    approx: Any,
    accurate: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    args: Any,
    lam: float,
    norm_squared: float,
) -> dict[str, list[dict[str, float]]]:
    """Errors of ``A_q`` and ``Ã`` at the TV iterates (of ``A_q`` and of ``A``) in
    ``args.iterate_errors``; PSNR of each iterate."""
    keep = set(args.iterate_errors)
    lipschitz = tv_lipschitz(norm_squared, x.ndim - 1, lam, args.tv_eps)
    out: dict[str, list[dict[str, float]]] = {}
    for name, op in (("learned A_q", model), ("accurate A", accurate)):
        rows: dict[int, dict[str, list[torch.Tensor]]] = {k: {} for k in sorted(keep)}
        for sl in chunks(len(x), args.batch_size):
            iterates: dict[int, torch.Tensor] = {}

            def remember(k: int, u: torch.Tensor, into: dict = iterates) -> None:
                if k + 1 in keep:
                    into[k + 1] = u.clone()

            with torch.no_grad():
                tv_descent(
                    y[sl], op, lam=lam, eps=args.tv_eps, n_iter=max(keep),
                    lipschitz=lipschitz, callback=remember,
                )  # fmt: skip
            for k, u in iterates.items():
                for key, value in operator_errors(model, approx, accurate, u, y[sl]).items():
                    rows[k].setdefault(key, []).append(value)
                quality_k = psnr(u.unsqueeze(1), x[sl].unsqueeze(1)).flatten(1).mean(1)
                rows[k].setdefault("psnr", []).append(quality_k)
        out[name] = [
            {"k": k, **{key: float(torch.cat(v).mean()) for key, v in row.items()}}
            for k, row in rows.items()
        ]
    return out


def report_iterate_errors(table: dict[str, Any]) -> None:
    """Print the errors at the TV iterates."""
    print(f"\nErrors at the TV iterates (λ {table['lam']:g}) of each model")
    print(
        "| iterates of | k | PSNR | forward A_q | forward Ã | adjoint A_q | adjoint Ã |\n"
        "|---|---:|---:|---:|---:|---:|---:|"
    )
    for name in ("learned A_q", "accurate A"):
        for row in table[name]:
            print(
                f"| {name} | {row['k']} | {row['psnr']:.2f} | {row['forward_model']:.3f} | "
                f"{row['forward_approx']:.3f} | {row['adjoint_model']:.3f} | "
                f"{row['adjoint_approx']:.3f} |"
            )


# --------------------------------------------------------------------------- TV
def tv_operators(ops: dict, args) -> dict:
    """The operators TV runs with: ``A``, ``Ã``, ``A_q`` and the variants the flags ask for."""
    operators = {name: ops[name] for name in ("accurate A", "approximate Ã", "learned A_q")}
    if args.linearised_adjoint:
        operators["learned A_q, linearised adjoint"] = linearised(ops["learned A_q"])
    if "learned A_q, bfloat16" in ops:
        reduced = ops["learned A_q, bfloat16"]
        operators["learned A_q, bfloat16"] = reduced
        if args.linearised_adjoint:
            operators["learned A_q, linearised adjoint, bfloat16"] = linearised(reduced)
    return operators


def measure_tv(
    operators: dict, x: torch.Tensor, y: torch.Tensor, cfg, args, norm_squared: float
) -> tuple[dict[str, Any], str]:
    """TV with every operator (λ tuned per operator with ``--tv-lams``): the results and how λ
    was chosen."""

    def reconstruct(op, data: torch.Tensor, lam: float) -> tuple[torch.Tensor, float]:
        lipschitz = tv_lipschitz(norm_squared, x.ndim - 1, lam, args.tv_eps)
        parts, seconds = [], 0.0
        for sl in chunks(len(data), args.batch_size):
            # no graph through trainable nets across the iterations; a linearised adjoint
            # enables autograd where it needs it
            with torch.no_grad():
                start = time.perf_counter()
                parts.append(
                    tv_descent(
                        data[sl], op, lam=lam, eps=args.tv_eps, n_iter=args.tv_iter,
                        lipschitz=lipschitz,
                    )
                )  # fmt: skip
                seconds += time.perf_counter() - start
        return torch.cat(parts), seconds / len(data)

    tuning: dict[str, dict[str, float]] = {}
    if args.tv_lams is not None:
        x_val, y_val = split_pairs(cfg, None, split="validation")
        for name, op in operators.items():
            tuning[name] = {
                f"{lam:g}": quality(reconstruct(op, y_val, lam)[0], x_val)["psnr"]
                for lam in args.tv_lams
            }
        lams = {name: float(max(scores, key=scores.get)) for name, scores in tuning.items()}
        how = f"λ per operator: best validation PSNR ({len(x_val)} images) of {args.tv_lams}"
    else:
        lam = float(args.tv_lam if args.tv_lam is not None else cfg.objective.lam)
        lams = dict.fromkeys(operators, lam)
        how = f"λ {lam:g} for all"
    tv: dict[str, dict] = {}
    for name, op in operators.items():
        estimate, seconds = reconstruct(op, y, lams[name])
        tv[name] = {**quality(estimate, x), "lam": lams[name], "seconds_per_image": seconds}
    results = {
        "lam": lams["accurate A"] if len(set(lams.values())) == 1 else lams,
        "tuning_validation_psnr": tuning or None,
        "eps": args.tv_eps,
        "n_iter": args.tv_iter,
        "methods": tv,
    }
    return results, how


def report_tv(results: dict[str, Any], how: str) -> None:
    """Print the TV table, with the speed-up over ``A``."""
    tv = results["methods"]
    reference = tv["accurate A"]["seconds_per_image"]
    print(f"\nTV ({how}; ε {results['eps']:g}, {results['n_iter']} iterations, x ≥ 0, step 1/L_A)")
    print(
        "| operator | λ | PSNR | SSIM | s/image | × faster than A |\n|---|---:|---:|---:|---:|---:|"
    )
    for name, row in tv.items():
        print(
            f"| {name} | {row['lam']:g} | {row['psnr']:.2f} ± {row['psnr_std']:.2f} | "
            f"{row['ssim']:.3f} | {row['seconds_per_image']:.3f} | "
            f"{reference / row['seconds_per_image']:.1f} |"
        )


# --------------------------------------------------------------------------- unrolled
def measure_unrolled(items: list[str], x: torch.Tensor, y: torch.Tensor, batch_size: int) -> dict:
    """Each ``NAME=RUN_DIR`` trained reconstructor on the test data, with its run's operator."""
    unrolled = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"--unrolled takes NAME=RUN_DIR, got {item!r}")
        other = Path(path).expanduser()
        recon = load_run(other)
        op = instantiate(run_config(other).operator)
        parts, seconds = [], 0.0
        for sl in chunks(len(x), batch_size):
            out, dt = _timed(recon, y[sl].unsqueeze(1), op)
            parts.append(out[:, 0])
            seconds += dt
        unrolled[name] = {
            **quality(torch.cat(parts), x),
            "seconds_per_image": seconds / len(x),
            "run": str(other),
        }
    return unrolled


def report_unrolled(unrolled: dict) -> None:
    """Print the unrolled reconstructors' table."""
    print("\n| unrolled | PSNR | SSIM | s/image |\n|---|---:|---:|---:|")
    for name, row in unrolled.items():
        print(
            f"| {name} | {row['psnr']:.2f} ± {row['psnr_std']:.2f} | {row['ssim']:.3f} | "
            f"{row['seconds_per_image']:.3f} |"
        )


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m benchmarks.correction``, checked."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.correction")
    parser.add_argument("--run", required=True, help="the recon-train correction run directory")
    parser.add_argument("--checkpoint", default="best.pt")
    parser.add_argument("--n-test", type=int, default=None, help="first N test images (all)")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--tv-lam", type=float, default=None, help="default: objective.lam")
    parser.add_argument(
        "--tv-lams", type=float_list, default=None, metavar="L1,L2,...",
        help="tune λ per operator on the validation split among these (instead of --tv-lam)",
    )  # fmt: skip
    parser.add_argument("--tv-eps", type=float, default=0.01)
    parser.add_argument("--tv-iter", type=int, default=200)
    parser.add_argument("--no-tv", action="store_true", help="errors only")
    parser.add_argument(
        "--bf16", action="store_true",
        help="also A_q with its networks' convolutions in bfloat16 (LearnedOperator.compute_in)",
    )  # fmt: skip
    parser.add_argument(
        "--linearised-adjoint", action="store_true",
        help="also run TV with A_q's linearised adjoint (the exact gradient of ½‖A_q x − y‖²)",
    )  # fmt: skip
    parser.add_argument(
        "--linear-bound", type=int, default=0, metavar="N",
        help="also fit the best linear filters around Ã on N training images (0: skip)",
    )  # fmt: skip
    parser.add_argument("--image-kernel", type=int, default=7, help="linear bound's image kernel")
    parser.add_argument("--data-kernel", type=int, default=9, help="linear bound's data kernel")
    parser.add_argument(
        "--iterate-errors", type=int_list, default=None, metavar="K1,K2,...",
        help="also the errors at these TV iterates of A_q and of A (λ: --tv-lam or the run's)",
    )  # fmt: skip
    parser.add_argument("--unrolled", action="append", default=[], metavar="NAME=RUN_DIR")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--keep-freed-memory", action=argparse.BooleanOptionalAction, default=True,
        help="raise glibc's malloc thresholds (recon.cpu.keep_freed_memory): the nets of A_q "
        "stop page-faulting on fresh buffers",
    )  # fmt: skip
    parser.add_argument("--out", default=None, help="JSON results")
    args = parser.parse_args(argv)
    if args.linear_bound < 0:
        parser.error(
            f"--linear-bound takes a number of training images ≥ 0, got {args.linear_bound}"
        )
    if args.tv_lams is not None and args.tv_lam is not None:
        parser.error("--tv-lam and --tv-lams exclude each other")
    return args


def build(args: argparse.Namespace) -> tuple[DictConfig, dict, torch.Tensor, torch.Tensor]:
    """The run's config, its operators by name (``accurate A``, ``approximate Ã``, ``learned
    A_q`` and, with ``--bf16``, ``learned A_q, bfloat16``) and its test pairs."""
    run_dir = Path(args.run).expanduser()
    cfg = run_config(run_dir)
    if cfg.get("objective") is None or cfg.objective.get("accurate") is None:
        raise ValueError(f"{run_dir} is not a correction run (no objective.accurate in its config)")
    approx = instantiate(cfg.operator)
    accurate = instantiate(cfg.objective.accurate)
    model = load_correction(run_dir, args.checkpoint)
    ops = {"accurate A": accurate, "approximate Ã": approx, "learned A_q": model}
    if args.bf16:
        ops["learned A_q, bfloat16"] = copy.deepcopy(model).compute_in(torch.bfloat16)
    x, y = split_pairs(cfg, args.n_test)
    print(f"{run_dir}: {len(x)} test images {tuple(x.shape[1:])}, data {tuple(y.shape[1:])}")
    return cfg, ops, x, y


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the results dict (also printed and written with ``--out``)."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    malloc_tuned = keep_freed_memory() if args.keep_freed_memory else False
    cfg, ops, x, y = build(args)
    results: dict[str, Any] = {
        "run": str(Path(args.run).expanduser()),
        "threads": torch.get_num_threads(),
        "keep_freed_memory": malloc_tuned,
        "n_test": len(x),
        **measure_errors(ops, x, y, cfg, args),
    }
    report_errors(results)
    accurate = ops["accurate A"]
    norm_squared = float(accurate.norm()) ** 2 if args.iterate_errors or not args.no_tv else 0.0
    if args.iterate_errors:
        lam = float(args.tv_lam if args.tv_lam is not None else cfg.objective.lam)
        results["iterate_errors"] = {"lam": lam, **iterate_errors(
            ops["learned A_q"], ops["approximate Ã"], accurate, x, y, args, lam, norm_squared
        )}  # fmt: skip
        report_iterate_errors(results["iterate_errors"])
    if not args.no_tv:
        results["tv"], how = measure_tv(tv_operators(ops, args), x, y, cfg, args, norm_squared)
        report_tv(results["tv"], how)
    if args.unrolled:
        results["unrolled"] = measure_unrolled(args.unrolled, x, y, args.batch_size)
        report_unrolled(results["unrolled"])
    if args.out:
        print()
        write_json(results, args.out)
    return results


if __name__ == "__main__":
    main()
