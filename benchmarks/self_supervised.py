"""Self-supervised CT at a reduced size: supervised, MC, EI and REI with one network and budget.

``python -m benchmarks.self_supervised`` trains the same FBP + U-Net on sparse-view CT of random
ellipses (default 64², 25 angles, 1 % Gaussian noise, simulated on a 2× finer grid) four ways,
for the same number of steps from the same initialisation: on pairs (supervised), by measurement
consistency alone (MC), by equivariant imaging (EI, rotations) and by robust EI (Gaussian SURE +
EI). The self-supervised runs see the measurements only
(:class:`~data_tools.datasets.MeasurementsOnly`) and keep their last checkpoint. It prints the
mean PSNR (± standard error) of each on the test images next to FBP's and writes
``bench_results/self_supervised/self_supervised.json``.

This is the issue's protocol 1 shrunk to fit minutes on 2 cores (the full one is
``conf/experiment/selfsup/*.yaml``: 128², 50 angles).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from benchmarks.common import RESULTS, write_json
from data_tools.datasets import MeasurementsOnly, SyntheticDataset
from data_tools.metrics import psnr
from data_tools.noise import GaussianNoise
from operators import Parallel2D, RayTransform
from recon.classical.analytic import fbp
from recon.data import make_simulator
from recon.training import Trainer
from recon.training.tasks import EquivariantTask, MeasurementConsistencyTask, SupervisedTask
from recon.training.tasks.self_supervised_losses import GaussianSURE
from recon.unrolled import FBPUNet

MODES = ("supervised", "mc", "ei", "rei")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.self_supervised")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--angles", type=int, default=25)
    parser.add_argument("--noise", type=float, default=0.01, help="relative Gaussian noise")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--alpha", type=float, default=1.0, help="EI weight")
    parser.add_argument("--test", type=int, default=20, help="test images")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--out", default=str(RESULTS / "self_supervised" / "self_supervised.json"))
    args = parser.parse_args(argv)
    unknown = set(args.modes.split(",")) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {MODES}")
    return args


def task_for(mode: str, op: RayTransform, noise: float):
    """The training task of ``mode``."""
    if mode == "supervised":
        return SupervisedTask(op=op)
    if mode == "mc":
        return MeasurementConsistencyTask(op=op)
    if mode == "ei":
        return EquivariantTask(op=op, group="rotations")
    return EquivariantTask(
        op=op,
        group="rotations",
        sure=GaussianSURE(relative=noise, normalize_operator=True),
        noise=GaussianNoise(relative=noise),
    )


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error."""
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std() / math.sqrt(len(values)))


def main(argv: list[str] | None = None) -> dict:
    """Train every mode, evaluate, print the table; returns the JSON-able results."""
    args = parse_args(argv)
    shape = (args.size, args.size)
    op = RayTransform(Parallel2D(shape, n_angles=args.angles), backend="matrix")
    noise = GaussianNoise(relative=args.noise)
    simulator = make_simulator("random_ellipses", op.geometry, factor=2, noise=noise)
    train = SyntheticDataset(simulator=simulator, size=10**6, seed=3003)
    test = SyntheticDataset(simulator=simulator, size=args.test, seed=2002)
    x_test = torch.stack([test[i][0] for i in range(len(test))])
    y_test = torch.stack([test[i][1] for i in range(len(test))])
    fbp_psnr = psnr(fbp(y_test, op, filter="hann"), x_test).tolist()
    rows = {"fbp": {"psnr": mean_se(fbp_psnr), "seconds": 0.0}}
    print(f"{args.size}², {args.angles} angles, {args.noise:.0%} noise, {args.steps} steps")
    print(f"FBP: {rows['fbp']['psnr'][0]:.2f} dB", flush=True)
    for mode in args.modes.split(","):
        torch.manual_seed(0)  # the same initialisation for every mode
        model = FBPUNet(channels=args.channels, depth=args.depth, norm="none", zero_init=True)
        data = train if mode == "supervised" else MeasurementsOnly(train)
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            Trainer(
                model,
                train_data=data,
                val_data=None,
                task=task_for(mode, op, args.noise),
                out_dir=Path(folder) / mode,
                optimizer=partial(torch.optim.AdamW, lr=args.lr),
                max_steps=args.steps,
                batch_size=args.batch,
                ckpt_every=args.steps,
                progress=False,
                seed=0,
            ).fit()
            seconds = time.perf_counter() - start
        model.eval()
        with torch.no_grad():
            values = psnr(model(y_test, op), x_test).tolist()
        rows[mode] = {"psnr": mean_se(values), "seconds": seconds}
        print(f"{mode}: {rows[mode]['psnr'][0]:.2f} ± {rows[mode]['psnr'][1]:.2f} dB "
              f"({seconds:.0f} s)", flush=True)  # fmt: skip
    print("\n| method | PSNR (dB, ± s.e.) | training s |\n|---|---:|---:|")
    for name, row in rows.items():
        mean, se = row["psnr"]
        print(f"| {name} | {mean:.2f} ± {se:.2f} | {row['seconds']:.0f} |")
    result = {"settings": vars(args), "results": rows}
    write_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
