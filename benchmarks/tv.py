"""Benchmark: our batched ``tv_pdhg`` against ODL's ``odl.solvers.pdhg`` on the same TV problem.

``python -m benchmarks.tv`` solves ``min_x ½‖Ax − y‖² + λ TV(x) + ι_{x≥0}`` (isotropic TV,
forward differences with Neumann boundary) for the "ellipses" geometry (128², 30 angles,
183 detectors) with the same λ, iterations and step sizes ``τ = σ = 0.99 / √(‖A‖² + 8)``:

- ours: ``tv_pdhg`` on a batch of 32 measurements at once (``matrix`` backend);
- ODL: ``odl.solvers.pdhg`` with ODL's ``RayTransform`` (ASTRA CPU), ``Gradient(pad_mode='order0')``
  and ``GroupL1Norm``, one image at a time as ODL works.

It prints the time per image of each, the speed-up, and the relative difference of the objective
values reached (computed by one function for both), and writes JSON (``bench_results/tv/``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
import torch

from benchmarks.common import RESULTS, write_json
from data_tools.noise import gaussian_noise
from data_tools.phantoms import random_ellipses
from operators import Parallel2D, RayTransform
from operators.ct.odl_backend import odl_ray_transform
from recon.solvers import tv_objective, tv_pdhg


def odl_tv_pdhg(
    y: np.ndarray, geometry: Parallel2D, *, lam: float, n_iter: int, tau: float, sigma: float
) -> np.ndarray:
    """Solve the same TV problem for one sinogram with ODL's PDHG."""
    import odl

    A = odl_ray_transform(geometry)
    space = A.domain
    grad = odl.Gradient(space, pad_mode="order0")
    L = odl.BroadcastOperator(A, grad)
    data_fit = 0.5 * odl.functionals.L2NormSquared(A.range).translated(A.range.element(y))
    reg = lam * odl.functionals.GroupL1Norm(grad.range)
    g = odl.functionals.SeparableSum(data_fit, reg)
    f = odl.functionals.IndicatorNonnegativity(space)
    x = space.zero()
    odl.solvers.pdhg(x, f, g, L, n_iter, tau=tau, sigma=sigma)
    return np.asarray(x.data)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m benchmarks.tv``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tv")
    parser.add_argument("--batch", type=int, default=32, help="images solved by tv_pdhg at once")
    parser.add_argument("--odl-images", type=int, default=4, help="images solved with ODL")
    parser.add_argument("--n-iter", type=int, default=200)
    parser.add_argument("--lam", type=float, default=2.0)
    parser.add_argument("--out", default=str(RESULTS / "tv" / "tv_pdhg.json"))
    return parser.parse_args(argv)


def build(batch: int) -> tuple[Parallel2D, RayTransform, torch.Tensor, float]:
    """The "ellipses" geometry, its ``matrix`` operator, ``batch`` noisy sinograms and ‖A‖."""
    geometry = Parallel2D((128, 128), n_angles=30, n_detectors=183)
    A = RayTransform(geometry, backend="matrix")
    gen = torch.Generator().manual_seed(0)
    x_true = random_ellipses((128, 128), n=batch, generator=gen).double()
    y = gaussian_noise(A(x_true), relative=0.025, generator=gen)
    return geometry, A, y, A.norm()


def measure(args: argparse.Namespace) -> dict:
    """Solve with both solvers in one run; return the JSON-able results."""
    geometry, A, y, norm = build(args.batch)
    tau = sigma = 0.99 / math.sqrt(norm**2 + 8)
    print(
        f"‖A‖ = {norm:.4f}, τ = σ = {tau:.5f}, λ = {args.lam}, {args.n_iter} iterations",
        file=sys.stderr,
    )

    tv_pdhg(y[:2], A, lam=args.lam, n_iter=2, tau=tau, sigma=sigma)  # warm-up (matrix build)
    start = time.perf_counter()
    ours = tv_pdhg(y, A, lam=args.lam, n_iter=args.n_iter, tau=tau, sigma=sigma)
    ours_s = (time.perf_counter() - start) / args.batch

    k = min(args.odl_images, args.batch)
    odl_x = []
    start = time.perf_counter()
    for i in range(k):
        odl_x.append(
            odl_tv_pdhg(
                y[i].float().numpy(),
                geometry,
                lam=args.lam,
                n_iter=args.n_iter,
                tau=tau,
                sigma=sigma,
            )
        )
    odl_s = (time.perf_counter() - start) / k
    odl_x = torch.from_numpy(np.stack(odl_x)).double()

    obj_ours = tv_objective(ours[:k], y[:k], A, args.lam)
    obj_odl = tv_objective(odl_x, y[:k], A, args.lam)
    rel = ((obj_ours - obj_odl).abs() / obj_odl.abs()).max().item()
    return {
        "geometry": "parallel 128², 30 angles, 183 detectors",
        "lam": args.lam,
        "n_iter": args.n_iter,
        "tau": tau,
        "sigma": sigma,
        "ours_batch": args.batch,
        "ours_s_per_image": ours_s,
        "odl_images": k,
        "odl_s_per_image": odl_s,
        "speedup": odl_s / ours_s,
        "objective_ours": [float(v) for v in obj_ours],
        "objective_odl": [float(v) for v in obj_odl],
        "objective_max_rel_diff": rel,
        "threads": torch.get_num_threads(),
    }


def report(result: dict) -> None:
    """Print the table and the speed-up."""
    ours_s, odl_s = result["ours_s_per_image"], result["odl_s_per_image"]
    print("| solver | images | s/image |\n|---|---:|---:|")
    print(f"| tv_pdhg (batched, matrix) | {result['ours_batch']} | {ours_s:.4f} |")
    print(f"| odl.solvers.pdhg (ASTRA CPU) | {result['odl_images']} | {odl_s:.4f} |")
    print(
        f"\nspeed-up {odl_s / ours_s:.1f}×; objective max relative difference "
        f"{result['objective_max_rel_diff']:.2e}"
    )


def main(argv: list[str] | None = None) -> dict:
    """Run the comparison; returns the JSON-able results."""
    args = parse_args(argv)
    result = measure(args)
    report(result)
    write_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
