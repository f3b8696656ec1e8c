"""``recon-collect``: aggregate a Hydra multirun folder into a table (markdown, CSV) and a plot.

Example
-------
>>> main(["--help"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from recon.runs.collect import collect, plot_sweep, to_markdown, write_csv

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``recon-collect SWEEP_DIR [--metric NAME] [--out DIR] [--no-plot]``.

    Example
    -------
    >>> main(["multirun/2026-01-01/12-00-00"])       # doctest: +SKIP
    0
    """
    parser = argparse.ArgumentParser(
        prog="recon-collect",
        description="Aggregate a Hydra multirun directory into a table (markdown, CSV) and a plot.",
    )
    parser.add_argument("sweep_dir", type=Path, help="the sweep directory (multirun/<date>/<time>)")
    parser.add_argument("--metric", default="objective", help="column to plot (default: objective)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: sweep_dir)")
    parser.add_argument("--no-plot", action="store_true", help="write the tables only")
    args = parser.parse_args(argv)
    try:
        table = collect(args.sweep_dir)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    if args.metric not in table.columns:
        parser.error(f"unknown --metric {args.metric!r}; columns: {', '.join(table.columns)}")
    out = args.out or args.sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(table)
    (out / "sweep_results.md").write_text(markdown + "\n")
    written = [out / "sweep_results.md", write_csv(table, out / "sweep_results.csv")]
    if not args.no_plot:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.metric)
        written.append(plot_sweep(table, out / f"sweep_{name}.png", metric=args.metric))
    print(markdown)
    counts = ", ".join(f"{n} {status}" for status, n in table.counts().items())
    expected = f" of {table.expected} expected" if table.expected is not None else ""
    print(f"\n{len(table.rows)} jobs{expected}: {counts}")
    if table.best:
        print(f"optuna best: {table.best.get('best_params')} -> {table.best.get('best_value')}")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
