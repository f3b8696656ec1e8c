"""A one-minute CT demo: simulate a Shepp–Logan sinogram, reconstruct it, time the operator.

Run ``recon-demo`` (or ``python -m recon.cli.demo``, or ``make demo``). It

1. builds a 2D parallel-beam ray transform (128×128 image, 60 angles, 183 detectors),
2. simulates ``y = A x + noise`` for the modified Shepp–Logan phantom, with Gaussian noise of
   standard deviation 1 % of the mean ``|y|`` (seeded),
3. reconstructs with 20 CGLS iterations and prints the PSNR against the truth,
4. writes ``[truth | reconstruction | error]`` as a PNG under ``--out``,
5. times the operator's forward and adjoint on a batch (skip with ``--no-bench``); the full
   operator benchmark is ``python -m benchmarks.operators --quick`` in a checkout.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from skimage.io import imsave

import operators
from data_tools.metrics import psnr
from data_tools.phantoms import shepp_logan
from recon.classical import cgls

__all__ = ["main", "comparison_image"]

IMAGE_SHAPE = (128, 128)
N_ANGLES = 60
N_DETECTORS = 183
NOISE_LEVEL = 0.01  # standard deviation relative to the mean |y|
N_ITER = 20
SEED = 0
TIMING_BATCH = 8  # images per timed operator call


def comparison_image(truth: torch.Tensor, x: torch.Tensor, *, gap: int = 2) -> np.ndarray:
    """``[truth | reconstruction | error]`` side by side as an 8-bit grey image.

    All three panels share one fixed window, the truth's ``[min, max]`` (the error ``|x - truth|``
    is shown on ``[0, max - min]``); values outside are clipped. Panels are separated by ``gap``
    white columns.

    Parameters
    ----------
    truth : torch.Tensor
        Ground-truth image of shape ``(H, W)``.
    x : torch.Tensor
        Reconstruction of shape ``(H, W)``.
    gap : int, optional
        Width in pixels of the white separators (default 2).

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(H, 3 W + 2 gap)``.

    Examples
    --------
    >>> comparison_image(torch.eye(4), torch.zeros(4, 4)).shape
    (4, 16)
    """
    if truth.ndim != 2 or x.shape != truth.shape:
        raise ValueError(
            f"truth and x must be images of one shape (H, W), got {tuple(truth.shape)} "
            f"and {tuple(x.shape)}"
        )
    t = truth.detach().double().cpu()
    r = x.detach().double().cpu()
    low, high = t.min().item(), t.max().item()
    scale = high - low if high > low else 1.0
    panels = [(t - low) / scale, (r - low) / scale, (r - t).abs() / scale]
    white = torch.ones(t.shape[0], gap, dtype=torch.float64)
    row = torch.cat([panels[0], white, panels[1], white, panels[2]], dim=1).clamp(0.0, 1.0)
    return (row * 255.0).round().to(torch.uint8).numpy()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="recon-demo",
        description="Simulate, reconstruct and benchmark a small CT problem in under a minute.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("outputs/demo"),
        help="output directory for the PNG (created if missing; default: outputs/demo)",
    )
    parser.add_argument(
        "--no-bench", action="store_true", help="skip the quick operator timing at the end"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the demo: simulate, reconstruct with CGLS, save a PNG, time the operator.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default ``sys.argv[1:]``): ``--out DIR`` and ``--no-bench``.

    Examples
    --------
    >>> main(["--out", "/tmp/demo", "--no-bench"])  # doctest: +SKIP
    """
    args = _parse_args(argv)

    geometry = operators.Parallel2D(
        image_shape=IMAGE_SHAPE, n_angles=N_ANGLES, n_detectors=N_DETECTORS
    )
    op = operators.RayTransform(geometry, backend="auto")
    print(
        f"[1/5] operator: {type(op).__name__}, parallel beam, image {IMAGE_SHAPE}, "
        f"{N_ANGLES} angles, {N_DETECTORS} detectors, backend='auto'"
    )

    truth = shepp_logan(IMAGE_SHAPE)
    clean = op(truth)
    generator = torch.Generator().manual_seed(SEED)
    sigma = NOISE_LEVEL * clean.abs().mean()
    noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype) * sigma
    y = clean + noise.to(clean.device)
    print(
        f"[2/5] simulated sinogram {tuple(y.shape)} of the modified Shepp-Logan phantom "
        f"{tuple(truth.shape)}, Gaussian noise {NOISE_LEVEL:.0%} of mean |y| (seed {SEED})"
    )

    start = time.perf_counter()
    x = cgls(y, op, n_iter=N_ITER)
    elapsed = time.perf_counter() - start
    print(
        f"[3/5] CGLS, {N_ITER} iterations: {elapsed:.2f} s, "
        f"PSNR {float(psnr(x, truth)):.2f} dB (data range = truth max - min)"
    )

    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "demo.png"
    imsave(png, comparison_image(truth, x), check_contrast=False)
    print(f"[4/5] wrote {png} [truth | reconstruction | error]")

    if args.no_bench:
        print("[5/5] operator benchmark skipped (--no-bench)")
        return
    forward_ms, adjoint_ms = _time_operator(op)
    print(
        f"[5/5] operator timing, batch of {TIMING_BATCH}: forward {forward_ms:.2f} ms/image, "
        f"adjoint {adjoint_ms:.2f} ms/image (every backend side by side, in a checkout: "
        "python -m benchmarks.operators --quick)"
    )


def _time_operator(op, *, repeats: int = 3) -> tuple[float, float]:
    """Forward and adjoint milliseconds per image of ``op`` on a random batch (best of
    ``repeats``, after a warm-up)."""
    gen = torch.Generator().manual_seed(SEED)
    x = torch.rand(TIMING_BATCH, *op.domain_shape, generator=gen)
    y = torch.rand(TIMING_BATCH, *op.range_shape, generator=gen)
    best = []
    with torch.no_grad():
        for apply, data in ((op, x), (op.T, y)):
            apply(data)  # warm-up
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                apply(data)
                times.append(time.perf_counter() - start)
            best.append(min(times) / TIMING_BATCH * 1e3)
    return best[0], best[1]


if __name__ == "__main__":
    main()
