"""Training-throughput benchmark: learned primal-dual steps per second with each operator backend.

``python -m recon.bench_train`` times full training steps (forward, loss, backward, AdamW
update) of a learned primal-dual at batch 8 on the "ellipses" geometry (128², 30 angles), with
the ``matrix``, ``astra`` and ``odl`` backends side by side in one run on the same data, and
prints a table with the ratios to the fastest. The network is the same for every backend, so
the differences are the operator's.
"""

from __future__ import annotations

import argparse
import time

import torch

from data_tools.noise import gaussian_noise
from data_tools.phantoms import random_ellipses
from operators import Parallel2D, RayTransform, available_backends
from operators.bench import write_json
from recon.unrolled import LearnedPrimalDual


def steps_per_second(
    backend: str, x: torch.Tensor, *, n_iter: int, channels: int, steps: int
) -> float:
    """Training steps per second of a fresh learned primal-dual with ``backend``."""
    geometry = Parallel2D((128, 128), n_angles=30, n_detectors=183)
    op = RayTransform(geometry, backend=backend)
    y = gaussian_noise(op(x), relative=0.025, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    model = LearnedPrimalDual(n_iter=n_iter, channels=channels)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        loss = torch.mean((model(y, op) - x) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up: builds the operator (matrix export or cache load), caches ‖A‖
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the JSON-able results."""
    parser = argparse.ArgumentParser(prog="python -m recon.bench_train")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--n-iter", type=int, default=10)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--out", default="bench_results/train_throughput.json")
    args = parser.parse_args(argv)
    x = random_ellipses((128, 128), n=8, generator=torch.Generator().manual_seed(0))[:, None]
    rates = {}
    for backend in ("matrix", "astra", "odl"):
        if backend not in available_backends():
            continue
        rates[backend] = steps_per_second(
            backend, x, n_iter=args.n_iter, channels=args.channels, steps=args.steps
        )
        print(f"{backend}: {rates[backend]:.3f} steps/s", flush=True)
    best = max(rates.values())
    print(
        f"\nlearned primal-dual ({args.n_iter} iterations, {args.channels} channels), batch 8, "
        f"{torch.get_num_threads()} threads"
    )
    print("| backend | steps/s | images/s | × slowest |\n|---|---:|---:|---:|")
    slowest = min(rates.values())
    for name, rate in rates.items():
        print(f"| {name} | {rate:.3f} | {8 * rate:.2f} | {rate / slowest:.2f} |")
    result = {
        "batch": 8,
        "n_iter": args.n_iter,
        "channels": args.channels,
        "steps_per_second": rates,
        "fastest": best,
    }
    write_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
