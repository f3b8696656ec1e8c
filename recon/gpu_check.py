"""GPU validation of the classical reconstructors, as one script: ``python -m recon.gpu_check``.

Reports per-image times on the GPU and agreement with the CPU for

- ``fbp`` at 512² (parallel, 360 angles; fan, 720 angles),
- ``tv_pdhg`` at 512² (parallel, 360 angles, ASTRA CUDA operator, 200 iterations, batch 4),
- ``fdk`` at 256³ (cone beam, 360 angles, projections by ASTRA CUDA), against the phantom,

and writes JSON (``--out``). Exits with an error without CUDA and CUDA-enabled ASTRA.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from data_tools.metrics import psnr, relative_error
from data_tools.phantoms import shepp_logan
from operators import ConeBeam3D, FanBeam2D, Parallel2D, RayTransform
from operators.bench import write_json
from operators.ct.astra_backend import astra_cuda_available
from recon.classical import fbp, fdk, tv_pdhg


def _timed(fn, reps: int = 3):
    out = fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        out = fn()
    torch.cuda.synchronize()
    return out, (time.perf_counter() - start) / reps


def main(argv: list[str] | None = None) -> dict:
    """Run the GPU checks; returns the results."""
    parser = argparse.ArgumentParser(prog="python -m recon.gpu_check")
    parser.add_argument("--out", default="bench_results/recon_gpu_check.json")
    args = parser.parse_args(argv)
    if not astra_cuda_available():
        sys.exit("recon.gpu_check needs a CUDA device and ASTRA built with CUDA")
    results: dict = {"device": torch.cuda.get_device_name(0)}
    x = shepp_logan((512, 512))
    for name, g in {
        "fbp parallel 512²": Parallel2D((512, 512), n_angles=360),
        "fbp fan 512²": FanBeam2D(
            (512, 512), n_angles=720, source_distance=1000.0, detector_distance=500.0
        ),
    }.items():
        A = RayTransform(g, backend="astra")
        y = A(x.cuda())[None].repeat(4, 1, 1)
        rec_gpu, seconds = _timed(lambda A=A, y=y: fbp(y, A, filter="hann"))
        rec_cpu = fbp(y[:1].cpu(), A, filter="hann")
        results[name] = {
            "s_per_image": seconds / 4,
            "gpu_vs_cpu_rel": float(relative_error(rec_gpu[:1].cpu(), rec_cpu).max()),
            "psnr": float(psnr(rec_gpu[0].cpu(), x)),
        }
        print(name, results[name], flush=True)

    g = Parallel2D((512, 512), n_angles=360)
    A = RayTransform(g, backend="astra")
    y = A(x.cuda())[None].repeat(4, 1, 1)
    rec, seconds = _timed(lambda: tv_pdhg(y, A, lam=2.0, n_iter=200), reps=1)
    rec_cpu = tv_pdhg(y[:1].cpu(), A, lam=2.0, n_iter=200)
    results["tv_pdhg parallel 512²"] = {
        "s_per_image": seconds / 4,
        "gpu_vs_cpu_rel": float(relative_error(rec[:1].cpu(), rec_cpu).max()),
        "psnr": float(psnr(rec[0].cpu(), x)),
    }
    print("tv_pdhg", results["tv_pdhg parallel 512²"], flush=True)

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
    rec, seconds = _timed(lambda: fdk(proj, C, filter="hann"), reps=1)
    results["fdk cone 256³"] = {
        "s_per_volume": seconds,
        "central_slice_psnr": float(psnr(rec[128].cpu(), volume[128].cpu())),
        "rel_error": float(relative_error(rec.cpu(), volume.cpu())),
    }
    print("fdk", results["fdk cone 256³"], flush=True)
    write_json(results, args.out)
    return results


if __name__ == "__main__":
    main()
