"""``make run`` against the clock: the quickstart end to end, per CPU capability, in one run.

``python -m benchmarks.quickstart_time`` runs ``recon-quickstart`` (train with its time budget,
then evaluate FBP, TV and the learned primal-dual on the 100 test images) once per setting, each
in a fresh process and folder, and records the wall time of the whole command, the steps the
training reached, what stopped it and the results table:

- ``native``: the machine as it is (bfloat16 convolutions where the CPU has AVX512-BF16/AMX);
- ``avx2``: an AVX2-only machine, emulated with ``ATEN_CPU_CAPABILITY=avx2`` and
  ``trainer.amp=false`` (float32).

Run it alone on the machine: it is a timing. JSON goes to ``bench_results/quickstart/``; the
target is at most 10 minutes wall and LPD at least TV + 1 dB for every setting.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS, write_json

#: Setting name -> (extra environment, extra quickstart overrides).
SETTINGS: dict[str, tuple[dict[str, str], list[str]]] = {
    "native": ({}, []),
    "avx2": ({"ATEN_CPU_CAPABILITY": "avx2"}, ["trainer.amp=false"]),
}


def run_quickstart(setting: str, out: Path, overrides: list[str]) -> dict:
    """Run the quickstart under ``setting`` into ``out``; its wall time, training outcome and
    results by method."""
    env_extra, setting_overrides = SETTINGS[setting]
    command = [sys.executable, "-m", "recon.cli.quickstart", "--out", str(out)]
    command += setting_overrides + overrides
    start = time.perf_counter()
    proc = subprocess.run(command, env={**os.environ, **env_extra}, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{setting}: the quickstart failed:\n{proc.stderr[-3000:]}")
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    provenance = json.loads((out / "train" / "provenance.json").read_text())
    return {
        "setting": setting,
        "environment": env_extra,
        "overrides": setting_overrides + overrides,
        "cpu_capability": provenance.get("cpu_capability"),
        "wall_minutes": round(wall / 60, 2),
        "training": provenance.get("outcome"),
        "methods": {
            name: {k: r[k] for k in ("psnr_mean", "psnr_std", "ssim_mean", "seconds_per_image")}
            for name, r in metrics.items()
        },
    }


def report(row: dict) -> str:
    """One line per setting: wall time, steps, and the PSNR of each method."""
    methods = ", ".join(f"{m} {r['psnr_mean']:.2f}" for m, r in row["methods"].items())
    training = row["training"] or {}
    return (
        f"{row['setting']:>7} ({row['cpu_capability']}): {row['wall_minutes']:.2f} min wall, "
        f"{training.get('steps')} steps (stopped by {training.get('stopped_by')}); {methods}"
    )


def main(argv: list[str] | None = None) -> None:
    """Run the chosen settings one after the other and write one JSON per setting."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("overrides", nargs="*", help="extra quickstart overrides")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        for setting in args.settings:
            row = run_quickstart(setting, Path(scratch) / setting, args.overrides)
            print(report(row), flush=True)
            write_json(row, RESULTS / "quickstart" / f"make_run_{setting}.json")


if __name__ == "__main__":
    main()
