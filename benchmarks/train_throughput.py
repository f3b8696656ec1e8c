"""Training-throughput benchmark: learned primal-dual steps per second with each operator backend.

``python -m benchmarks.train_throughput`` times full training steps (forward, loss, backward, AdamW
update) of a learned primal-dual at batch 8 (``--batch``) on the "ellipses" geometry (128², 30
angles), with the ``matrix``, ``astra`` and ``odl`` backends side by side in one run on the same
data, and prints a table with the ratios to the slowest. The network is the same for every
backend, so the differences are the operator's. ``--amp`` also times each backend with bfloat16
autocast and channels-last networks (the trainer's ``amp``), which shrinks the networks' share of
a step. A second table splits a step into the operator's part (the ``2 n_iter`` forward and
``2 n_iter`` adjoint applications of a forward and backward pass, timed alone) and the rest (the
networks and the optimiser): the rest bounds how far a faster operator can raise the step rate.
JSON goes to ``bench_results/train_throughput/``.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import RESULTS, write_json
from data_tools.noise import gaussian_noise
from data_tools.phantoms import random_ellipses
from operators import Parallel2D, RayTransform, available_backends
from recon.training.compilation import compile_networks
from recon.unrolled import LearnedPrimalDual

PRECISIONS = ("float32", "bfloat16")


def ellipses_operator(backend: str) -> RayTransform:
    """The "ellipses" protocol's ray transform (128², 30 angles, 183 detectors) with ``backend``."""
    return RayTransform(Parallel2D((128, 128), n_angles=30, n_detectors=183), backend=backend)


def steps_per_second(
    backend: str,
    x: torch.Tensor,
    *,
    n_iter: int,
    channels: int,
    steps: int,
    precision: str = "float32",
    channels_last: bool | None = None,
    compiled: bool = False,
) -> float:
    """Training steps per second of a fresh learned primal-dual with ``backend``.

    ``precision="bfloat16"`` runs the step under bfloat16 autocast (the trainer's ``amp=true``);
    the operator stays float32. ``channels_last`` (default: on for bfloat16 only, the faster
    layout of each precision on CPUs with AVX512-BF16) sets the networks' layout, and
    ``compiled`` compiles them with inductor (:func:`recon.training.compilation.compile_networks`,
    the trainer's ``compile=true``); the compilation happens in the untimed warm-up steps.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    op = ellipses_operator(backend)
    y = gaussian_noise(op(x), relative=0.025, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    low = precision == "bfloat16"
    layout = low if channels_last is None else channels_last
    model = LearnedPrimalDual(n_iter=n_iter, channels=channels, channels_last=layout)
    if compiled:
        compile_networks(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
            loss = torch.mean((model(y, op).float() - x) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up: builds the operator (matrix export or cache load), caches ‖A‖, compiles
    if compiled:
        step()  # the backward graph of a compiled network is compiled on its first backward
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def operator_ms_per_step(backend: str, x: torch.Tensor, *, n_iter: int, repeats: int = 10) -> float:
    """Milliseconds the operator takes in one learned primal-dual training step with ``backend``.

    A step applies ``A`` and ``Aᵀ`` once per iteration in the forward pass and, transposed, once
    more each in the backward pass: ``2 n_iter (t_A + t_Aᵀ)`` for the batch ``x``, with ``t_A``
    and ``t_Aᵀ`` the mean of ``repeats`` timed applications.
    """
    op = ellipses_operator(backend)
    y = op(x)  # warm-up, as in steps_per_second
    op.T(y)
    start = time.perf_counter()
    for _ in range(repeats):
        op(x)
    forward = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    for _ in range(repeats):
        op.T(y)
    adjoint = (time.perf_counter() - start) / repeats
    return 1000 * 2 * n_iter * (forward + adjoint)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m benchmarks.train_throughput``, checked."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_throughput")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--n-iter", type=int, default=10)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8, help="images per step")
    parser.add_argument(
        "--amp", action="store_true", help="also time bfloat16 autocast with channels-last nets"
    )
    parser.add_argument(
        "--backends", default="matrix,astra,odl", help="comma-separated backends to time"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also study compiled vs eager networks in both layouts (matrix backend)",
    )
    parser.add_argument(
        "--out", default=str(RESULTS / "train_throughput" / "train_throughput.json")
    )
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error(f"--batch must be at least 1, got {args.batch}")
    return args


def measure(
    args: argparse.Namespace,
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Steps per second by precision and backend, and the operator's milliseconds per step."""
    x = random_ellipses((128, 128), n=args.batch, generator=torch.Generator().manual_seed(0))
    x = x[:, None]
    precisions = PRECISIONS if args.amp else PRECISIONS[:1]
    rates: dict[str, dict[str, float]] = {p: {} for p in precisions}
    operator_ms: dict[str, float] = {}
    for backend in args.backends.split(","):
        if backend not in available_backends():
            continue
        operator_ms[backend] = operator_ms_per_step(backend, x, n_iter=args.n_iter)
        for precision in precisions:  # in turns: a change of machine load hits both alike
            rate = steps_per_second(
                backend,
                x,
                n_iter=args.n_iter,
                channels=args.channels,
                steps=args.steps,
                precision=precision,
            )
            rates[precision][backend] = rate
            print(f"{backend}, {precision}: {rate:.3f} steps/s", flush=True)
    return rates, operator_ms


def compile_study(
    args: argparse.Namespace, x: torch.Tensor, precisions: tuple[str, ...]
) -> list[dict]:
    """Steps per second of eager and compiled networks, contiguous and channels-last, with the
    matrix backend, in each precision: one record per variant, timed in turns."""
    records = []
    for precision in precisions:
        for channels_last in (False, True):
            for compiled in (False, True):
                rate = steps_per_second(
                    "matrix",
                    x,
                    n_iter=args.n_iter,
                    channels=args.channels,
                    steps=args.steps,
                    precision=precision,
                    channels_last=channels_last,
                    compiled=compiled,
                )
                records.append(
                    {
                        "precision": precision,
                        "channels_last": channels_last,
                        "compiled": compiled,
                        "steps_per_second": rate,
                    }
                )
                print(f"matrix, {precision}, channels_last={channels_last}, "
                      f"compiled={compiled}: {rate:.3f} steps/s", flush=True)  # fmt: skip
    return records


def report_compile_study(records: list[dict]) -> None:
    """Print the compile study with each variant's speed-up over eager contiguous float32."""
    base = next(
        r["steps_per_second"]
        for r in records
        if r["precision"] == "float32" and not r["channels_last"] and not r["compiled"]
    )
    print(
        "\ncompiled vs eager networks (matrix backend)\n"
        "| precision | layout | networks | steps/s | × eager same layout | × eager float32 |\n"
        "|---|---|---|---:|---:|---:|"
    )
    for r in records:
        eager = next(
            e["steps_per_second"]
            for e in records
            if e["precision"] == r["precision"]
            and e["channels_last"] == r["channels_last"]
            and not e["compiled"]
        )
        layout = "channels-last" if r["channels_last"] else "contiguous"
        networks = "compiled" if r["compiled"] else "eager"
        rate = r["steps_per_second"]
        print(
            f"| {r['precision']} | {layout} | {networks} | {rate:.3f} | {rate / eager:.2f} "
            f"| {rate / base:.2f} |"
        )


def report(
    args: argparse.Namespace, rates: dict[str, dict[str, float]], operator_ms: dict[str, float]
) -> dict:
    """Print both tables; return the JSON-able results."""
    print(
        f"\nlearned primal-dual ({args.n_iter} iterations, {args.channels} channels), "
        f"batch {args.batch}, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        "| backend | precision | steps/s | images/s | × slowest backend | × float32 |\n"
        "|---|---|---:|---:|---:|---:|"
    )
    for precision, by_backend in rates.items():
        slowest = min(by_backend.values())
        for name, rate in by_backend.items():
            speedup = rate / rates["float32"][name]
            print(
                f"| {name} | {precision} | {rate:.3f} | {args.batch * rate:.2f} "
                f"| {rate / slowest:.2f} "
                f"| {speedup:.2f} |"
            )
    print(
        "\nwhere a step's time goes: the operator's applications timed alone, and the rest\n"
        "| backend | precision | step ms | operator ms | rest ms | operator share |\n"
        "|---|---|---:|---:|---:|---:|"
    )
    for precision, by_backend in rates.items():
        for name, rate in by_backend.items():
            step_ms = 1000 / rate
            op_ms = operator_ms[name]
            print(
                f"| {name} | {precision} | {step_ms:.0f} | {op_ms:.0f} | {step_ms - op_ms:.0f} "
                f"| {op_ms / step_ms:.0%} |"
            )
    result = {
        "batch": args.batch,
        "n_iter": args.n_iter,
        "channels": args.channels,
        "threads": torch.get_num_threads(),
        "steps_per_second": rates["float32"],
        "fastest": max(rates["float32"].values()),
        "operator_ms_per_step": operator_ms,
    }
    if args.amp:
        result["steps_per_second_bfloat16"] = rates["bfloat16"]
    return result


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the JSON-able results."""
    args = parse_args(argv)
    print(f"CPU capability: {torch.backends.cpu.get_cpu_capability()}", flush=True)
    rates, operator_ms = measure(args)
    result = report(args, rates, operator_ms)
    result["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    if args.compile:
        x = random_ellipses((128, 128), n=args.batch, generator=torch.Generator().manual_seed(0))
        records = compile_study(args, x[:, None], tuple(rates))
        report_compile_study(records)
        result["compile_study"] = records
    write_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
