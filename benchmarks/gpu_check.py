"""GPU validation of the CT operators and the classical reconstructors, as one script.

Run ``python -m benchmarks.gpu_check`` (``--only operators`` or ``--only reconstructors`` for one
part). It prints what it measures and writes JSON to ``bench_results/gpu/``.

Operators (``operators.json``):

1. ASTRA CUDA dot tests (2D parallel/fan, 3D parallel/cone) and the autograd check;
2. GPU vs CPU agreement for 2D (ASTRA CUDA vs ASTRA CPU, matrix on CUDA vs CPU);
3. the no-host-copy check: ASTRA CUDA on a GPU tensor vs the same with an explicit
   device → host → device round trip added, and the pointer ASTRA receives vs the tensor's;
4. GPU throughput (ms per image, batch 1 and 32) of ``astra`` vs ``matrix`` at 256² (180 angles)
   and of ``astra`` for a 128³ cone beam.

Reconstructors (``reconstructors.json``): per-image times on the GPU and agreement with the CPU
for

- ``fbp`` at 512² (parallel, 360 angles; fan, 720 angles),
- ``tv_pdhg`` at 512² (parallel, 360 angles, ASTRA CUDA operator, 200 iterations, batch 4),
- ``fdk`` at 256³ (cone beam, 360 angles, projections by ASTRA CUDA), against the phantom.

Exits with an error where no CUDA device or no CUDA-enabled ASTRA is present.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.common import RESULTS, rel_error, write_json
from data_tools.metrics import psnr, relative_error
from data_tools.phantoms import shepp_logan
from operators import ConeBeam3D, FanBeam2D, Parallel2D, Parallel3D, RayTransform
from operators.ct import astra_backend
from operators.testing import check_adjoint, check_autograd
from recon.classical import fbp, fdk, tv_pdhg

PARTS = ("operators", "reconstructors")


# ----------------------------------------------------------------------------- timing
def cuda_ms(fn: Callable[[], object], batch: int, reps: int = 10) -> float:
    """Milliseconds per image of ``fn`` (``batch`` images) on the GPU, after one warm-up call."""
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / reps / batch * 1e3


def cuda_timed(fn: Callable[[], Any], reps: int = 3) -> tuple[Any, float]:
    """``fn()``'s output and its mean seconds per call on the GPU, after one warm-up call."""
    out = fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        out = fn()
    torch.cuda.synchronize()
    return out, (time.perf_counter() - start) / reps


# ----------------------------------------------------------------------------- operators
def operator_geometries() -> dict:
    """The operator checks' geometries, by name."""
    return {
        "parallel2d 256²": Parallel2D((256, 256), n_angles=180, n_detectors=363),
        "fan2d 256²": FanBeam2D(
            (256, 256),
            n_angles=360,
            n_detectors=384,
            source_distance=500.0,
            detector_distance=500.0,
            pixel_size=0.5,
        ),
        "parallel3d 128³": Parallel3D(128, n_angles=180),
        "cone3d 128³": ConeBeam3D(
            128,
            n_angles=180,
            detector_shape=(320, 384),
            source_distance=500.0,
            detector_distance=500.0,
        ),
    }


def dot_tests(geometries: dict) -> dict:
    """ASTRA CUDA dot test and autograd check of every geometry."""
    results = {}
    for name, g in geometries.items():
        A = RayTransform(g, backend="astra")
        results[name] = {
            "dot_test": check_adjoint(A, dtype=torch.float32, device="cuda"),
            "autograd": check_autograd(A, dtype=torch.float32, device="cuda"),
        }
        print(f"dot test {name}: {results[name]}", flush=True)
    return results


def agreement(geometries: dict) -> dict:
    """GPU vs CPU relative differences of ASTRA and of the matrix backend (2D geometries)."""
    results = {}
    for name in ("parallel2d 256²", "fan2d 256²"):
        g = geometries[name]
        x = torch.rand(4, *g.domain_shape)
        y = torch.rand(4, *g.range_shape)
        cpu = RayTransform(g, backend="astra")
        gpu = RayTransform(g, backend="astra")
        mat = RayTransform(g, backend="matrix")
        results[name] = {
            "astra_cuda_vs_cpu_fwd": rel_error(gpu(x.cuda()).cpu(), cpu(x)),
            "astra_cuda_vs_cpu_adj": rel_error(gpu.T(y.cuda()).cpu(), cpu.T(y)),
            "matrix_cuda_vs_cpu_fwd": rel_error(mat(x.cuda()).cpu(), mat(x)),
        }
        print(f"agreement {name}: {results[name]}", flush=True)
    return results


def no_host_copy(geometry: Parallel2D) -> dict:
    """Whether ASTRA gets the GPU tensor's own pointer, and the time against an explicit
    device → host → device round trip."""
    A = RayTransform(geometry, backend="astra")
    impl = A.implementation("cuda")
    x = torch.rand(32, *geometry.domain_shape, device="cuda")
    seen = []
    real_fp = astra_backend.import_astra().experimental.direct_FP3D

    def spy(pid, vol, proj):
        seen.append(vol.data_ptr())
        return real_fp(pid, vol, proj)

    astra_backend.import_astra().experimental.direct_FP3D = spy
    try:
        impl.forward(x[:1])
    finally:
        astra_backend.import_astra().experimental.direct_FP3D = real_fp
    result = {
        "pointer_is_input": seen == [x.data_ptr()],
        "ms_per_image_direct": cuda_ms(lambda: A(x), 32),
        "ms_per_image_with_round_trip": cuda_ms(lambda: A(x.cpu().cuda()), 32),
        "ms_per_image_round_trip_alone": cuda_ms(lambda: x.cpu().cuda(), 32),
    }
    print(f"no host copy: {result}", flush=True)
    return result


def throughput(geometries: dict) -> list[dict]:
    """GPU milliseconds per image of ``astra`` and ``matrix`` (2D) and ``astra`` (cone beam)."""
    rows = []
    for name, backends in (("parallel2d 256²", ("astra", "matrix")), ("cone3d 128³", ("astra",))):
        g = geometries[name]
        for backend in backends:
            A = RayTransform(g, backend=backend)
            for batch in (1, 32) if g.ndim == 2 else (1, 4):
                xb = torch.rand(batch, *g.domain_shape, device="cuda")
                yb = torch.rand(batch, *g.range_shape, device="cuda")
                rows.append(
                    {
                        "case": name,
                        "backend": backend,
                        "batch": batch,
                        "forward_ms": cuda_ms(lambda A=A, xb=xb: A(xb), batch),
                        "adjoint_ms": cuda_ms(lambda A=A, yb=yb: A.T(yb), batch),
                    }
                )
                print(rows[-1], flush=True)
    return rows


def check_operators() -> dict:
    """Every operator check (module docstring, items 1–4)."""
    geometries = operator_geometries()
    return {
        "device": torch.cuda.get_device_name(0),
        "dot": dot_tests(geometries),
        "agreement": agreement(geometries),
        "no_host_copy": no_host_copy(geometries["parallel2d 256²"]),
        "throughput": throughput(geometries),
    }


# ----------------------------------------------------------------------------- reconstructors
def fbp_checks(x: torch.Tensor) -> dict:
    """FBP of ``x`` (512²) on the GPU, parallel and fan beam: time, agreement, PSNR."""
    results = {}
    for name, g in {
        "fbp parallel 512²": Parallel2D((512, 512), n_angles=360),
        "fbp fan 512²": FanBeam2D(
            (512, 512), n_angles=720, source_distance=1000.0, detector_distance=500.0
        ),
    }.items():
        A = RayTransform(g, backend="astra")
        y = A(x.cuda())[None].repeat(4, 1, 1)
        rec_gpu, seconds = cuda_timed(lambda A=A, y=y: fbp(y, A, filter="hann"))
        rec_cpu = fbp(y[:1].cpu(), A, filter="hann")
        results[name] = {
            "s_per_image": seconds / 4,
            "gpu_vs_cpu_rel": float(relative_error(rec_gpu[:1].cpu(), rec_cpu).max()),
            "psnr": float(psnr(rec_gpu[0].cpu(), x)),
        }
        print(name, results[name], flush=True)
    return results


def tv_check(x: torch.Tensor) -> dict:
    """``tv_pdhg`` of ``x`` (512², 200 iterations, batch 4) on the GPU against the CPU."""
    A = RayTransform(Parallel2D((512, 512), n_angles=360), backend="astra")
    y = A(x.cuda())[None].repeat(4, 1, 1)
    rec, seconds = cuda_timed(lambda: tv_pdhg(y, A, lam=2.0, n_iter=200), reps=1)
    rec_cpu = tv_pdhg(y[:1].cpu(), A, lam=2.0, n_iter=200)
    result = {
        "s_per_image": seconds / 4,
        "gpu_vs_cpu_rel": float(relative_error(rec[:1].cpu(), rec_cpu).max()),
        "psnr": float(psnr(rec[0].cpu(), x)),
    }
    print("tv_pdhg", result, flush=True)
    return result


def fdk_check() -> dict:
    """FDK of a 256³ Shepp–Logan stack from ASTRA CUDA cone-beam projections."""
    cone = ConeBeam3D(
        256,
        n_angles=360,
        detector_shape=(512, 640),
        source_distance=1000.0,
        detector_distance=500.0,
    )
    z = torch.linspace(-1, 1, 256).abs()[:, None, None]
    volume = (shepp_logan((256, 256))[None] * (z < 0.8)).cuda()
    C = RayTransform(cone, backend="astra")
    proj = C(volume)
    rec, seconds = cuda_timed(lambda: fdk(proj, C, filter="hann"), reps=1)
    result = {
        "s_per_volume": seconds,
        "central_slice_psnr": float(psnr(rec[128].cpu(), volume[128].cpu())),
        "rel_error": float(relative_error(rec.cpu(), volume.cpu())),
    }
    print("fdk", result, flush=True)
    return result


def check_reconstructors() -> dict:
    """Every reconstructor check (FBP, TV by PDHG, FDK)."""
    x = shepp_logan((512, 512))
    return {
        "device": torch.cuda.get_device_name(0),
        **fbp_checks(x),
        "tv_pdhg parallel 512²": tv_check(x),
        "fdk cone 256³": fdk_check(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m benchmarks.gpu_check``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--only", choices=PARTS, default=None, help="one part (default both)")
    parser.add_argument(
        "--out-dir", default=str(RESULTS / "gpu"), help="folder of <part>.json (bench_results/gpu)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the GPU checks; returns ``{part: results}``."""
    args = parse_args(argv)
    if not astra_backend.astra_cuda_available():
        sys.exit("benchmarks.gpu_check needs a CUDA device and ASTRA built with CUDA")
    checks = {"operators": check_operators, "reconstructors": check_reconstructors}
    results = {}
    for part in [args.only] if args.only else PARTS:
        results[part] = checks[part]()
        write_json(results[part], f"{args.out_dir}/{part}.json")
    return results


if __name__ == "__main__":
    main()
