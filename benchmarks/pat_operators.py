"""Photoacoustic operator benchmark: the time stepper, the exact line model and ``Ã`` in one run.

Run ``python -m benchmarks.pat_operators``. At 128² (0.1 mm, 1500 m/s) with the line sensor at
``x = 0`` and the line-sensor time grid (``dt = Δx/(2c)``, 256 samples) it measures, for
:class:`~operators.pat.KSpaceWave` (PML of 16 points outside the grid),
:class:`~operators.pat.LineSensor` and :class:`~operators.pat.LineSensorRegridding`:

- set-up time, and forward and adjoint milliseconds per image at batch 1 and 16 (float32);
- the relative error of each model's forward against the time stepper on four vessel phantoms
  (``data_tools.phantoms.vessels``), raw and smoothed (``KSpaceSmoothing``, as k-Wave smooths
  ``p0``), and of its adjoint applied to the stepper's data (float64);
- the speed-up of each model over the time stepper (forward + adjoint per image) in the same run.

With ``--jwave PYTHON`` it also runs j-Wave (JAX; k-Wave's scheme) with that interpreter, in its
own environment (j-Wave is not a dependency of this project), on the same problem: forward and
adjoint (``jax.vjp``) time at batch 1 and its error against our time stepper.

Example
-------
    python -m benchmarks.pat_operators --quick            # 32², seconds
    python -m benchmarks.pat_operators --out pat.json     # the full table
    python -m benchmarks.pat_operators --jwave /tmp/jwave-venv/bin/python
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import RESULTS, fmt, rel_error, time_per_image, write_json
from operators.pat import (
    KSpaceSmoothing,
    KSpaceWave,
    LineSensor,
    LineSensorRegridding,
    PATGrid,
    TimeGrid,
)

METHODS = ("kspace", "line", "regrid")
LABELS = {
    "kspace": "time stepper (KSpaceWave)",
    "line": "exact line model (LineSensor)",
    "regrid": "regridding Ã (LineSensorRegridding)",
    "jwave": "j-Wave time stepper (JAX)",
}
PML = 16


@dataclasses.dataclass
class Row:
    """One model at one batch size, with its errors against the time stepper."""

    method: str
    batch: int
    forward_ms: float
    adjoint_ms: float
    setup_s: float
    error_raw: float | None = None
    error_smooth: float | None = None
    error_adjoint: float | None = None

    @property
    def both_ms(self) -> float:
        """Forward + adjoint milliseconds per image."""
        return self.forward_ms + self.adjoint_ms


def problem(n: int) -> tuple[PATGrid, TimeGrid]:
    """The ``n²`` line-sensor problem: 0.1 mm, 1500 m/s, dt = Δx/(2c), 2n samples."""
    grid = PATGrid((n, n), spacing=0.1)
    return grid, TimeGrid.from_cfl(grid, cfl=0.5, n_t=2 * n)


def build(method: str, grid: PATGrid, time: TimeGrid):
    """The operator of ``method`` on the benchmark problem."""
    if method == "kspace":
        return KSpaceWave(grid, time=time, pml_size=PML)
    if method == "line":
        return LineSensor(grid, time=time)
    if method == "regrid":
        return LineSensorRegridding(grid, time=time)
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def phantoms(n: int, count: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Vessel phantoms (float64), raw and smoothed."""
    from data_tools.phantoms import vessels

    raw = vessels(n, n=count, seed=0, dtype=torch.float64)
    return raw, KSpaceSmoothing((n, n))(raw)


def run(
    n: int,
    batches: list[int],
    methods: list[str],
    *,
    min_seconds: float,
    max_reps: int,
    log: Callable[[str], None],
) -> tuple[list[Row], dict]:
    """Time and compare the models; returns the rows, and the smoothed phantoms with the time
    stepper's data for them."""
    grid, time_grid = problem(n)
    raw, smooth = phantoms(n)
    rows: list[Row] = []
    reference: dict = {}
    gen = torch.Generator().manual_seed(0)
    xs = {b: torch.rand(b, n, n, generator=gen) for b in batches}
    ys = {b: torch.rand(b, n, 2 * n, generator=gen) for b in batches}
    for method in ["kspace"] + [m for m in methods if m != "kspace"]:
        t0 = time.perf_counter()
        op = build(method, grid, time_grid)
        op(xs[batches[0]][:1])  # builds the cached kernels and tables
        setup = time.perf_counter() - t0
        with torch.no_grad():
            if method == "kspace":
                reference = {"raw": op(raw), "smooth": op(smooth)}
                reference["adjoint"] = op.T(reference["smooth"])
                errors = (0.0, 0.0, 0.0)
            else:
                errors = (
                    rel_error(op(raw), reference["raw"]),
                    rel_error(op(smooth), reference["smooth"]),
                    rel_error(op.T(reference["smooth"]), reference["adjoint"]),
                )
        if method not in methods:
            continue
        for b in batches:
            log(f"  {method:<7} batch {b:>2} ...")
            with torch.no_grad():
                f_ms = time_per_image(lambda b=b, op=op: op(xs[b]), b, min_seconds, max_reps)
                a_ms = time_per_image(lambda b=b, op=op: op.T(ys[b]), b, min_seconds, max_reps)
            rows.append(Row(method, b, f_ms, a_ms, setup, *errors))
    return rows, {"phantom": smooth, "data": reference["smooth"]}


# ----------------------------------------------------------------------------- j-Wave
_JWAVE_DRIVER = r"""
import json, sys, time
import numpy as np
import jax, jax.numpy as jnp
from jwave import FourierSeries
from jwave.geometry import Domain, Medium, TimeAxis
from jwave.acoustics.time_varying import simulate_wave_propagation, TimeWavePropagationSettings

cfg = json.load(open(sys.argv[1]))
n, m, dx, c, dt, n_t = cfg["n"], cfg["pml"], cfg["dx"], cfg["c"], cfg["dt"], cfg["n_t"]
size = n + 2 * m  # our PML lies outside the grid; j-Wave's lies inside its domain
domain = Domain((size, size), (dx, dx))
medium = Medium(domain=domain, sound_speed=c, density=1000.0, pml_size=m)
time_axis = TimeAxis(dt=dt, t_end=dt * (n_t - 1) * (1 - 1e-9))  # records p at steps 1 .. n_t-1
settings = TimeWavePropagationSettings(smooth_initial=False, checkpoint=False)

def sensors(p, u, rho):
    return p.on_grid[m, m : m + n, 0]

@jax.jit
def forward(p0):
    field = FourierSeries(jnp.pad(p0, ((m, m), (m, m)))[..., None], domain)
    return simulate_wave_propagation(medium, time_axis, p0=field, sensors=sensors,
                                     settings=settings)

@jax.jit
def adjoint(p0, ct):
    return jax.vjp(forward, p0)[1](ct)[0]

def best(fn, reps):
    out = fn()
    jax.block_until_ready(out)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return min(times) * 1e3, out

p0s = np.load(cfg["p0"]).astype(np.float32)
t = time.perf_counter()
jax.block_until_ready(forward(jnp.asarray(p0s[0])))
compile_s = time.perf_counter() - t
outs = np.stack([np.asarray(forward(jnp.asarray(p))) for p in p0s])
fwd_ms, _ = best(lambda: forward(jnp.asarray(p0s[0])), cfg["reps"])
ct = jnp.asarray(np.asarray(outs[0]))
adj_ms, _ = best(lambda: adjoint(jnp.asarray(p0s[0]), ct), cfg["reps"])
np.save(cfg["out"], outs)
json.dump({"compile_s": compile_s, "forward_ms": fwd_ms, "adjoint_ms": adj_ms,
           "jax": jax.__version__, "devices": [str(d) for d in jax.devices()]},
          open(cfg["result"], "w"))
"""


def run_jwave(python: str, n: int, reference: dict, reps: int, log) -> tuple[Row | None, dict]:
    """Run j-Wave with the interpreter ``python`` on ``reference["phantom"]`` and compare with
    ``reference["data"]``; the row is None if it fails."""
    grid, time_grid = problem(n)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.save(tmp / "p0.npy", reference["phantom"].numpy())
        cfg = {
            "n": n,
            "pml": PML,
            "dx": grid.spacing_m[0],
            "c": 1500.0,
            "dt": time_grid.dt,
            "n_t": time_grid.n_t,
            "reps": reps,
            "p0": str(tmp / "p0.npy"),
            "out": str(tmp / "out.npy"),
            "result": str(tmp / "result.json"),
        }
        (tmp / "cfg.json").write_text(json.dumps(cfg))
        (tmp / "driver.py").write_text(_JWAVE_DRIVER)
        log(f"  jwave   batch  1 ... ({python})")
        env = dict(os.environ)
        if torch.get_num_threads() == 1:  # compare like with like: XLA on one thread too
            env.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
        proc = subprocess.run(
            [python, str(tmp / "driver.py"), str(tmp / "cfg.json")],
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
            env=env,
        )
        if proc.returncode != 0:
            log(f"  jwave failed: {proc.stderr.strip().splitlines()[-1:]}")
            return None, {"error": proc.stderr[-2000:]}
        result = json.loads((tmp / "result.json").read_text())
        theirs = torch.from_numpy(np.load(tmp / "out.npy")).double().transpose(1, 2)
    # j-Wave records p from the first step on, not p0
    result["error_vs_kspace"] = rel_error(theirs, reference["data"][..., 1:])
    row = Row(
        "jwave",
        1,
        result["forward_ms"],
        result["adjoint_ms"],
        result["compile_s"],
        error_smooth=result["error_vs_kspace"],
    )
    return row, result


# ----------------------------------------------------------------------------- report
def speedups(rows: list[Row]) -> dict:
    """Forward + adjoint speed-up of each model over the time stepper, per batch size."""
    stepper = {r.batch: r.both_ms for r in rows if r.method == "kspace"}
    out: dict = {}
    for r in rows:
        if r.method != "kspace" and r.batch in stepper:
            out.setdefault(r.method, {})[r.batch] = stepper[r.batch] / r.both_ms
    return out


def format_table(rows: list[Row]) -> str:
    """A markdown table of the rows, with the speed-up over the time stepper."""
    gains = speedups(rows)
    lines = [
        "| model | batch | fwd ms/img | adj ms/img | fwd+adj | × faster than stepper "
        "| setup s | err raw | err smooth | adj err |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        gain = 1.0 if r.method == "kspace" else gains.get(r.method, {}).get(r.batch)
        ref = r.method == "kspace"
        lines.append(
            f"| {LABELS.get(r.method, r.method)} | {r.batch} | {r.forward_ms:.2f} "
            f"| {r.adjoint_ms:.2f} | {r.both_ms:.2f} | {fmt(gain, '.1f')} | {r.setup_s:.2f} "
            f"| {'ref.' if ref else fmt(r.error_raw, '.1e')} "
            f"| {'ref.' if ref else fmt(r.error_smooth, '.1e')} "
            f"| {'ref.' if ref else fmt(r.error_adjoint, '.1e')} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m benchmarks.pat_operators``, checked."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pat_operators", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="32² grid, batches 1 and 4, seconds")
    parser.add_argument("--size", type=int, default=None, help="grid size n (default 128)")
    parser.add_argument("--batches", default=None, help="comma-separated (default 1,16)")
    parser.add_argument("--methods", default=",".join(METHODS), help="kspace,line,regrid")
    parser.add_argument("--jwave", default=None, metavar="PYTHON", help="j-Wave's interpreter")
    parser.add_argument("--out", default=str(RESULTS / "pat" / "pat.json"), help="JSON output path")
    args = parser.parse_args(argv)
    args.size = args.size or (32 if args.quick else 128)
    args.batches = [int(b) for b in (args.batches or ("1,4" if args.quick else "1,16")).split(",")]
    args.methods = [m for m in args.methods.split(",") if m]
    for m in args.methods:
        if m not in METHODS:
            parser.error(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    return args


def log(msg: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(msg, file=sys.stderr, flush=True)


def measure(args: argparse.Namespace) -> tuple[list[Row], dict | None]:
    """The rows of every model (and of j-Wave with ``--jwave``), and j-Wave's own results."""
    n = args.size
    log(f"PAT benchmark at {n}² ({torch.get_num_threads()} torch threads) ...")
    rows, reference = run(
        n,
        args.batches,
        args.methods,
        min_seconds=0.1 if args.quick else 1.0,
        max_reps=3 if args.quick else 10,
        log=log,
    )
    jwave = None
    if args.jwave:
        row, jwave = run_jwave(args.jwave, n, reference, reps=2 if args.quick else 3, log=log)
        if row is not None:
            rows.append(row)
    return rows, jwave


def report(rows: list[Row], jwave: dict | None, *, n: int) -> dict:
    """Print the table and the headline; return the JSON-able results."""
    gains = speedups(rows)
    grid, time_grid = problem(n)
    print(
        f"\nPAT models at {n}², line sensor, {time_grid.n_t} samples of {time_grid.dt * 1e9:.1f} ns"
        f"; {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, float32 timings, float64 errors (4 vessel phantoms)\n"
    )
    print(format_table(rows))
    if "regrid" in gains:
        parts = ", ".join(f"{g:.0f}× at batch {b}" for b, g in sorted(gains["regrid"].items()))
        print(f"\nheadline: the regridding model Ã is {parts} faster than the time stepper")
    if jwave and "error_vs_kspace" in jwave:
        print(
            f"j-Wave {jwave.get('jax', '')} vs our time stepper: relative error "
            f"{jwave['error_vs_kspace']:.1e} (float32); its JIT compilation took "
            f"{jwave['compile_s']:.1f} s"
        )
    print()
    return {
        "problem": {"n": n, "n_t": time_grid.n_t, "dt": time_grid.dt, "pml": PML},
        "machine": {"threads": torch.get_num_threads(), "torch": torch.__version__},
        "rows": [dataclasses.asdict(r) | {"both_ms": r.both_ms} for r in rows],
        "speedup_vs_kspace": {m: {str(b): g for b, g in v.items()} for m, v in gains.items()},
        "jwave": jwave,
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the JSON-able results."""
    args = parse_args(argv)
    rows, jwave = measure(args)
    result = report(rows, jwave, n=args.size)
    write_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
