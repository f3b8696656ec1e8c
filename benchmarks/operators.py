"""Operator throughput benchmark: every backend and common peers side by side, in one run.

Run ``python -m benchmarks.operators`` (or ``make bench``). For each case (geometry × batch size) it
measures forward and adjoint milliseconds per image, setup time, the resident memory a backend
holds after setup and the peak while it runs, and the relative error against ASTRA. It also
measures the machine's memory bandwidth and dense float32 FLOP rate and prints, for the
``matrix`` backend, the floor ``max(bytes / bandwidth, flops / flop_rate)`` and the ratio to it.
The table goes to stdout and everything to a JSON file (``bench_results/operators/``).

Rows:

- ``astra``: our ASTRA CPU backend (threads over the batch, the default);
- ``astra-loop``: the same with one thread, i.e. ASTRA looping over the batch;
- ``matrix``: the cached system matrix as a batched torch sparse product;
- ``odl``: our ODL backend (ODL's own ``RayTransform`` applied image by image);
- ``skimage``: scikit-image's ``radon``/``iradon(filter_name=None)`` (parallel beam only; its
  own interpolation, so its error against ASTRA measures a different discretisation);
- ``deepinv``: deepinv's ``Tomography`` where installed.

Example
-------
    python -m benchmarks.operators --quick          # one case, seconds
    python -m benchmarks.operators --out bench.json # the full table
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import math
import platform
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from benchmarks.common import RESULTS, fmt, time_per_image, write_json
from operators.ct.geometry import FanBeam2D, Parallel2D
from operators.ct.ray_transform import RayTransform, available_backends


@dataclasses.dataclass
class Case:
    """A named geometry to time."""

    name: str
    geometry: Parallel2D | FanBeam2D


FULL_CASES = [
    Case("parallel 128² 60a", Parallel2D((128, 128), n_angles=60, n_detectors=183)),
    Case("parallel 128² 180a", Parallel2D((128, 128), n_angles=180, n_detectors=183)),
    Case("parallel 256² 180a", Parallel2D((256, 256), n_angles=180, n_detectors=363)),
    Case(
        "fan 256² 360a",
        FanBeam2D(
            (256, 256),
            n_angles=360,
            n_detectors=384,
            source_distance=500.0,
            detector_distance=500.0,
            pixel_size=0.5,
            detector_spacing=1.0,
        ),
    ),
]
QUICK_CASES = FULL_CASES[:1]
HEADLINE = ("parallel 128² 60a", 32)


# ----------------------------------------------------------------------------- memory
def _proc_status_mb(field: str) -> float | None:
    """A memory field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in MB; None off Linux."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _rss_mb() -> float | None:
    return _proc_status_mb("VmRSS")


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs``); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float | None:
    return _proc_status_mb("VmHWM")


# ----------------------------------------------------------------------------- machine floor
def measure_bandwidth_gbs(n_bytes: int = 256 * 1024**2, repeats: int = 5) -> float:
    """Memory bandwidth (GB/s) of a large torch copy: read + write bytes over the best time."""
    src = torch.ones(n_bytes // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t)
    return 2 * n_bytes / best / 1e9


def measure_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Dense float32 matmul rate (GFLOP/s): an upper bound for any sparse product's FLOP rate."""
    a = torch.rand(n, n)
    b = torch.rand(n, n)
    a @ b
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def matrix_floor_ms(
    nnz: int, n_in: int, n_out: int, batch: int, gbs: float, gflops: float
) -> float:
    """Lower bound (ms per image) for one sparse product ``W X`` over a batch.

    Bytes: the matrix once per product (4 B value + 4 B index per non-zero, plus row pointers)
    and the dense input and output per image; FLOPs: 2 per non-zero per image.
    """
    bytes_ = nnz * 8 + 4 * n_out + batch * 4 * (n_in + n_out)
    flops = 2 * nnz * batch
    return max(bytes_ / (gbs * 1e9), flops / (gflops * 1e9)) / batch * 1e3


# ----------------------------------------------------------------------------- rows
@dataclasses.dataclass
class Row:
    """One method on one case at one batch size; ``None`` where not measured."""

    case: str
    method: str
    batch: int
    forward_ms: float | None = None
    adjoint_ms: float | None = None
    setup_s: float | None = None
    held_mb: float | None = None
    peak_mb: float | None = None
    rel_error: float | None = None
    floor_ms: float | None = None
    note: str = ""

    @property
    def both_ms(self) -> float | None:
        """Forward + adjoint milliseconds per image."""
        if self.forward_ms is None or self.adjoint_ms is None:
            return None
        return self.forward_ms + self.adjoint_ms


def _ours(geometry, name: str):
    if name == "astra-loop":
        return RayTransform(geometry, backend="astra", threads=1)
    return RayTransform(geometry, backend=name)


def _skimage_pair(geometry: Parallel2D):
    """radon / unfiltered iradon on our array convention (detector axis centred and padded)."""
    from skimage.transform import iradon, radon

    theta = np.degrees(np.asarray(geometry.angles))
    n_det = geometry.n_detectors

    def fwd(x: torch.Tensor) -> torch.Tensor:
        out = np.zeros((x.shape[0], geometry.n_angles, n_det))
        for i, img in enumerate(x.numpy()):
            s = radon(img, theta=theta, circle=False).T
            off = (n_det - s.shape[1]) // 2
            if off < 0:
                s = s[:, -off : -off + n_det]
                off = 0
            out[i, :, off : off + s.shape[1]] = s
        return torch.from_numpy(out).to(x.dtype)

    def adj(y: torch.Tensor) -> torch.Tensor:
        H = geometry.image_shape[0]
        out = np.empty((y.shape[0], *geometry.image_shape))
        for i, s in enumerate(y.numpy()):
            out[i] = iradon(s.T, theta=theta, filter_name=None, output_size=H, circle=False)
        return torch.from_numpy(out).to(y.dtype)

    return fwd, adj


def _deepinv_pair(geometry):
    import deepinv  # noqa: F401 - only to detect it
    from deepinv.physics import Tomography

    physics = Tomography(
        angles=geometry.n_angles, img_width=geometry.image_shape[0], circle=False, device="cpu"
    )

    def fwd(x):
        return physics.A(x[:, None])[:, 0]

    def adj(y):
        return physics.A_adjoint(y[:, None])[:, 0]

    return fwd, adj


def bench_case(
    case: Case,
    batches: list[int],
    methods: list[str],
    *,
    min_seconds: float,
    max_reps: int,
    gbs: float,
    gflops: float,
    log: Callable[[str], None],
) -> list[Row]:
    """Measure every method on one geometry at each batch size."""
    g = case.geometry
    gen = torch.Generator().manual_seed(0)
    xs = {b: torch.rand(b, *g.domain_shape, generator=gen) for b in batches}
    ys = {b: torch.rand(b, *g.range_shape, generator=gen) for b in batches}
    reference = RayTransform(g, backend="astra")
    ref_fwd = reference(xs[batches[0]])
    del reference
    rows: list[Row] = []
    for method in methods:
        gc.collect()
        rss0 = _rss_mb()
        t0 = time.perf_counter()
        note = ""
        try:
            if method in ("skimage", "deepinv"):
                if not isinstance(g, Parallel2D):
                    continue
                fwd, adj = _skimage_pair(g) if method == "skimage" else _deepinv_pair(g)
            else:
                op = _ours(g, method)
                op.implementation("cpu")  # build now so setup is timed apart from the products
                fwd, adj = op, op.T
        except ImportError:
            log(f"  {method}: not installed, skipped")
            continue
        setup = time.perf_counter() - t0
        rss1 = _rss_mb()
        err = float(
            torch.linalg.vector_norm(fwd(xs[batches[0]]) - ref_fwd)
            / torch.linalg.vector_norm(ref_fwd)
        )
        if method == "skimage":
            note = "own interpolation"
        for b in batches:
            log(f"  {case.name:<20} {method:<10} batch {b:>2} ...")
            supported = _reset_peak()
            base = _peak_mb() if supported else None
            with torch.no_grad():
                f_ms = time_per_image(lambda b=b, f=fwd: f(xs[b]), b, min_seconds, max_reps)
                a_ms = time_per_image(lambda b=b, f=adj: f(ys[b]), b, min_seconds, max_reps)
            peak = _peak_mb()
            floor = None
            if method == "matrix":
                impl = op.implementation("cpu")
                n_in, n_out = math.prod(g.domain_shape), math.prod(g.range_shape)
                floor = matrix_floor_ms(impl.nnz, n_in, n_out, b, gbs, gflops) + matrix_floor_ms(
                    impl.nnz, n_out, n_in, b, gbs, gflops
                )
            rows.append(
                Row(
                    case=case.name,
                    method=method,
                    batch=b,
                    forward_ms=f_ms,
                    adjoint_ms=a_ms,
                    setup_s=setup,
                    held_mb=None if rss0 is None or rss1 is None else max(rss1 - rss0, 0.0),
                    peak_mb=None
                    if base is None or peak is None
                    else max(peak - (rss0 or 0.0), 0.0),
                    rel_error=err,
                    floor_ms=floor,
                    note=note,
                )
            )
        fwd = adj = op = None
    return rows


def format_table(rows: list[Row]) -> str:
    """A markdown table of the rows."""
    head = (
        "| case | method | batch | fwd ms/img | adj ms/img | fwd+adj | setup s | held MB | peak MB "
        "| rel. err vs astra | floor ms | × floor |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        ratio = None if r.floor_ms is None or r.both_ms is None else r.both_ms / r.floor_ms
        lines.append(
            f"| {r.case} | {r.method}{' (' + r.note + ')' if r.note else ''} | {r.batch} "
            f"| {fmt(r.forward_ms, '.3f')} | {fmt(r.adjoint_ms, '.3f')} "
            f"| {fmt(r.both_ms, '.3f')} "
            f"| {fmt(r.setup_s, '.2f')} | {fmt(r.held_mb, '.0f')} | {fmt(r.peak_mb, '.0f')} "
            f"| {fmt(r.rel_error, '.1e')} | {fmt(r.floor_ms, '.3f')} | {fmt(ratio, '.1f')} |"
        )
    return "\n".join(lines)


def headline(rows: list[Row]) -> dict | None:
    """Matrix vs ASTRA-looping speed-up (forward + adjoint per image) at the headline case."""
    case, batch = HEADLINE
    pick = {r.method: r for r in rows if r.case == case and r.batch == batch}
    if "matrix" not in pick or "astra-loop" not in pick:
        return None
    m, a = pick["matrix"], pick["astra-loop"]
    out = {
        "case": case,
        "batch": batch,
        "matrix_ms": m.both_ms,
        "astra_loop_ms": a.both_ms,
        "speedup_vs_astra_loop": a.both_ms / m.both_ms,
        "matrix_over_floor": m.both_ms / m.floor_ms if m.floor_ms else None,
    }
    if "astra" in pick:
        out["astra_threads_ms"] = pick["astra"].both_ms
        out["speedup_vs_astra_threads"] = pick["astra"].both_ms / m.both_ms
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m benchmarks.operators``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.operators", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="one case (128², 60 angles), short timings"
    )
    parser.add_argument(
        "--out", default=str(RESULTS / "operators" / "operators.json"), help="JSON output path"
    )
    parser.add_argument("--batches", default="1,32", help="comma-separated batch sizes")
    parser.add_argument(
        "--methods",
        default="astra,astra-loop,matrix,odl,skimage,deepinv",
        help="comma-separated methods",
    )
    return parser.parse_args(argv)


def log(msg: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(msg, file=sys.stderr, flush=True)


def measure(args: argparse.Namespace) -> tuple[float, float, list[Row]]:
    """The machine's floor (bandwidth GB/s, GFLOP/s) and the rows of every case."""
    batches = [int(b) for b in args.batches.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    ours = set(available_backends()) | {"astra-loop"}
    methods = [m for m in methods if m in ours or m in ("skimage", "deepinv")]
    cases = QUICK_CASES if args.quick else FULL_CASES
    log(f"measuring machine floor ({torch.get_num_threads()} torch threads) ...")
    gbs, gflops = measure_bandwidth_gbs(), measure_gflops()
    rows: list[Row] = []
    for case in cases:
        rows += bench_case(
            case,
            batches,
            methods,
            min_seconds=0.3 if args.quick else 1.0,
            max_reps=3 if args.quick else 20,
            gbs=gbs,
            gflops=gflops,
            log=log,
        )
    return gbs, gflops, rows


def report(rows: list[Row], *, gbs: float, gflops: float) -> dict:
    """Print the machine, the table and the headline; return the JSON-able results."""
    head = headline(rows)
    print(
        f"\nmachine: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, "
        f"memory bandwidth {gbs:.1f} GB/s, dense float32 matmul {gflops:.1f} GFLOP/s\n"
    )
    print(format_table(rows))
    if head:
        print(
            f"\nheadline ({head['case']}, batch {head['batch']}): matrix fwd+adj "
            f"{head['matrix_ms']:.3f} ms/img vs ASTRA CPU looping "
            f"{head['astra_loop_ms']:.3f} ms/img "
            f"→ {head['speedup_vs_astra_loop']:.1f}× faster"
            + (
                f" (vs ASTRA with threads: {head['speedup_vs_astra_threads']:.1f}×)"
                if "speedup_vs_astra_threads" in head
                else ""
            )
            + (f"; {head['matrix_over_floor']:.1f}× the floor" if head["matrix_over_floor"] else "")
        )
    print()
    return {
        "machine": {
            "threads": torch.get_num_threads(),
            "bandwidth_gbs": gbs,
            "gflops": gflops,
            "torch": torch.__version__,
        },
        "rows": [dataclasses.asdict(r) | {"both_ms": r.both_ms} for r in rows],
        "headline": head,
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the JSON-able results."""
    args = parse_args(argv)
    gbs, gflops, rows = measure(args)
    result = report(rows, gbs=gbs, gflops=gflops)
    write_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
