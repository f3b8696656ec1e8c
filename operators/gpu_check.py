"""GPU validation of the CT operators, as one script: ``python -m operators.gpu_check``.

Prints a table and writes JSON (``--out``) with:

1. ASTRA CUDA dot tests (2D parallel/fan, 3D parallel/cone) and the autograd check;
2. GPU vs CPU agreement for 2D (ASTRA CUDA vs ASTRA CPU, matrix on CUDA vs CPU);
3. the no-host-copy check: ASTRA CUDA on a GPU tensor vs the same with an explicit
   device → host → device round trip added, and the pointer ASTRA receives vs the tensor's;
4. GPU throughput (ms per image, batch 1 and 32) of ``astra`` vs ``matrix`` at 256² (180 angles)
   and of ``astra`` for a 128³ cone beam.

Exits with an error where no CUDA device or no CUDA-enabled ASTRA is present.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from operators import ConeBeam3D, FanBeam2D, Parallel2D, Parallel3D, RayTransform
from operators.bench import write_json
from operators.ct import astra_backend
from operators.testing import check_adjoint, check_autograd


def _cuda_ms(fn, batch: int, reps: int = 10) -> float:
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / reps / batch * 1e3


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(
        torch.linalg.vector_norm(a.double() - b.double()) / torch.linalg.vector_norm(b.double())
    )


def main(argv: list[str] | None = None) -> dict:
    """Run every GPU check; returns the results."""
    parser = argparse.ArgumentParser(prog="python -m operators.gpu_check")
    parser.add_argument("--out", default="bench_results/gpu_check.json")
    args = parser.parse_args(argv)
    if not astra_backend.astra_cuda_available():
        sys.exit("gpu_check needs a CUDA device and ASTRA built with CUDA")
    results: dict = {"device": torch.cuda.get_device_name(0), "dot": {}, "agreement": {}}

    geometries = {
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
    for name, g in geometries.items():
        A = RayTransform(g, backend="astra")
        results["dot"][name] = {
            "dot_test": check_adjoint(A, dtype=torch.float32, device="cuda"),
            "autograd": check_autograd(A, dtype=torch.float32, device="cuda"),
        }
        print(f"dot test {name}: {results['dot'][name]}", flush=True)

    for name in ("parallel2d 256²", "fan2d 256²"):
        g = geometries[name]
        x = torch.rand(4, *g.domain_shape)
        y = torch.rand(4, *g.range_shape)
        cpu = RayTransform(g, backend="astra")
        gpu = RayTransform(g, backend="astra")
        mat = RayTransform(g, backend="matrix")
        results["agreement"][name] = {
            "astra_cuda_vs_cpu_fwd": _rel(gpu(x.cuda()).cpu(), cpu(x)),
            "astra_cuda_vs_cpu_adj": _rel(gpu.T(y.cuda()).cpu(), cpu.T(y)),
            "matrix_cuda_vs_cpu_fwd": _rel(mat(x.cuda()).cpu(), mat(x)),
        }
        print(f"agreement {name}: {results['agreement'][name]}", flush=True)

    # 3. no host copy: pointer identity and time against an explicit round trip
    g = geometries["parallel2d 256²"]
    A = RayTransform(g, backend="astra")
    impl = A.implementation("cuda")
    x = torch.rand(32, *g.domain_shape, device="cuda")
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
    direct = _cuda_ms(lambda: A(x), 32)
    round_trip = _cuda_ms(lambda: A(x.cpu().cuda()), 32)
    copy_only = _cuda_ms(lambda: x.cpu().cuda(), 32)
    results["no_host_copy"] = {
        "pointer_is_input": seen == [x.data_ptr()],
        "ms_per_image_direct": direct,
        "ms_per_image_with_round_trip": round_trip,
        "ms_per_image_round_trip_alone": copy_only,
    }
    print(f"no host copy: {results['no_host_copy']}", flush=True)

    # 4. throughput
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
                        "forward_ms": _cuda_ms(lambda A=A, xb=xb: A(xb), batch),
                        "adjoint_ms": _cuda_ms(lambda A=A, yb=yb: A.T(yb), batch),
                    }
                )
                print(rows[-1], flush=True)
    results["throughput"] = rows
    write_json(results, args.out)
    return results


if __name__ == "__main__":
    main()
