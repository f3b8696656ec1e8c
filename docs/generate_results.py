"""Regenerate the tables of ``docs/results/*.md`` from the JSON in ``bench_results/``.

A results page marks each generated table with an opening and a closing comment::

    <!-- table: bench_results/<study>/<file>.json view=<view> -->
    ... generated: the table and a link to its source ...
    <!-- end table -->

The path is relative to the repository root; ``view`` names a function of :data:`VIEWS` that
turns the JSON into a markdown table (a ``.md`` source is copied as it is, view ``markdown``).
Everything outside the markers is prose and is never touched.

Usage (from the repository root; not part of the installed packages)::

    python docs/generate_results.py           # rewrite the tables of every page
    python docs/generate_results.py --check   # exit 1 and name the stale tables

Example
-------
>>> print(render_table(["a", "b"], [[1, "x"]]))
| a | b |
|---|---|
| 1 | x |
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "docs" / "results"
DASH = "–"

MARKER = re.compile(
    r"(?P<open><!-- table: (?P<source>\S+)(?P<options>(?: +\w+=\S+)*) -->\n)"
    r"(?P<body>.*?)"
    r"(?P<close><!-- end table -->)",
    re.S,
)


# --------------------------------------------------------------------------------- formatting
def fmt(value: Any, digits: int = 2) -> str:
    """A number with ``digits`` decimals (``–`` for a missing one); other values as text.

    >>> fmt(3.14159), fmt(None), fmt(12, 1), fmt("x")
    ('3.14', '–', '12', 'x')
    """
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}f}"
    return str(value)


def sig(value: Any, digits: int = 3) -> str:
    """A number to ``digits`` significant digits (``–`` for a missing one).

    >>> sig(0.000440337), sig(6.6495), sig(1234.5), sig(None)
    ('0.000440', '6.65', '1234', '–')
    """
    if value is None:
        return DASH
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return fmt(value)
    if value == 0 or not math.isfinite(value):
        return fmt(value)
    decimals = max(digits - 1 - math.floor(math.log10(abs(value))), 0)
    return f"{value:.{decimals}f}"


def short(value: Any) -> str:
    """A parameter as Python's ``g`` format writes it, 3 significant digits (``–`` if missing).

    >>> short(0.00035), short(2.0), short(4.337e-05), short(None)
    ('0.00035', '2', '4.34e-05', '–')
    """
    if value is None:
        return DASH
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.3g}"
    return fmt(value)


def pm(mean: Any, std: Any, digits: int = 2) -> str:
    """``mean ± std`` (just ``mean`` without a spread).

    >>> pm(19.2134, 4.0908), pm(19.2, None)
    ('19.21 ± 4.09', '19.20')
    """
    if std is None:
        return fmt(mean, digits)
    return f"{fmt(mean, digits)} ± {fmt(std, digits)}"


def ratio(numerator: Any, denominator: Any) -> str:
    """``numerator / denominator`` as ``1.23×`` (``–`` when either is missing or zero)."""
    if not numerator or not denominator:
        return DASH
    return f"{numerator / denominator:.2f}×"


def render_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table; cells are written with :func:`fmt` unless they are strings."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"row {list(row)} has {len(row)} cells for {len(header)} columns")
        cells = [cell if isinstance(cell, str) else fmt(cell) for cell in row]
        lines.append("| " + " | ".join(cells).replace("\n", " ") + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------- the views
def view_errors(data: dict) -> str:
    """Model and adjoint errors of ``Ã`` and ``A_q`` (``benchmarks.correction``)."""
    errors = data["errors"]
    forward_approx, adjoint_approx = errors["forward_approx"], errors["adjoint_approx"]
    rows = [
        ["`Ã` (approximate model)", sig(forward_approx), sig(adjoint_approx)],
        [
            "`A_q` (learned correction)",
            f"{sig(errors['forward_model'])} ({ratio(forward_approx, errors['forward_model'])})",
            f"{sig(errors['adjoint_model'])} ({ratio(adjoint_approx, errors['adjoint_model'])})",
        ],
    ]
    if "errors_bf16" in data:
        bf16 = data["errors_bf16"]
        rows.append(
            [
                "`A_q`, convolutions in bfloat16",
                f"{sig(bf16['forward_model'])} ({ratio(forward_approx, bf16['forward_model'])})",
                f"{sig(bf16['adjoint_model'])} ({ratio(adjoint_approx, bf16['adjoint_model'])})",
            ]
        )
    if "linear_bound" in data:
        bound = data["linear_bound"]
        rows.append(
            [
                f"best linear filters around `Ã` ({bound['image_kernel']}×{bound['image_kernel']} "
                f"image, {bound['data_kernel']}×{bound['data_kernel']} data, "
                f"{bound['n_train']} training images)",
                f"{sig(bound['forward'])} ({ratio(forward_approx, bound['forward'])})",
                f"{sig(bound['adjoint'])} ({ratio(adjoint_approx, bound['adjoint'])})",
            ]
        )
    header = [
        f"operator ({data.get('n_test', '?')} test images)",
        "model error ‖·x − Ax‖/‖Ax‖ (× smaller)",
        "adjoint error ‖·ᵀr − Aᵀr‖/‖Aᵀr‖ (× smaller)",
    ]
    return render_table(header, rows)


def view_tv(data: dict) -> str:
    """TV reconstructions with each operator (``benchmarks.correction``)."""
    tv = data["tv"]
    methods = tv["methods"]
    reference = next(iter(methods.values())).get("seconds_per_image")
    rows = []
    for name, method in methods.items():
        lam = method.get("lam", tv["lam"] if not isinstance(tv["lam"], dict) else None)
        seconds = method.get("seconds_per_image")
        rows.append(
            [
                name,
                short(lam),
                pm(method["psnr"], method.get("psnr_std")),
                fmt(method.get("ssim"), 3),
                sig(seconds),
                ratio(reference, seconds),
            ]
        )
    header = [
        f"operator in TV ({tv['n_iter']} iterations, ε {tv['eps']})",
        "λ",
        "PSNR",
        "SSIM",
        "s/image",
        "× faster than the first row",
    ]
    return render_table(header, rows)


def view_tuning(data: dict) -> str:
    """Validation PSNR of TV over the λ grid, one column per operator."""
    grids = data["tv"]["tuning_validation_psnr"]
    names = list(grids)
    lams = sorted({float(lam) for grid in grids.values() for lam in grid})
    rows = []
    for lam in lams:
        row = [short(lam)]
        for name in names:
            value = next((v for k, v in grids[name].items() if float(k) == lam), None)
            row.append(fmt(value))
        rows.append(row)
    return render_table(["λ", *names], rows)


def view_speed(data: dict) -> str:
    """TV timed with each operator in turns (``benchmarks.correction_speed``)."""
    header = [
        f"operator in TV ({data['iters']} iterations, {data['n_images']} images, "
        f"{data['threads']} thread{'s' if data['threads'] != 1 else ''})",
        "s/image (fastest repeat)",
        "× faster than the first row",
    ]
    rows = [
        [name, sig(method["seconds_per_image"]), f"{method['speedup']:.1f}×"]
        for name, method in data["methods"].items()
    ]
    return render_table(header, rows)


def view_iterates(data: dict) -> str:
    """Model errors and PSNR along the TV iterates (``--iterate-errors``)."""
    iterates = data["iterate_errors"]
    series = {name: rows for name, rows in iterates.items() if isinstance(rows, list)}
    ks = [row["k"] for row in next(iter(series.values()))]
    header = [f"TV iterate k (λ {short(iterates['lam'])})", *(str(k) for k in ks)]
    rows = []
    for name, points in series.items():
        by_k = {point["k"]: point for point in points}
        for key, label in (
            ("psnr", "PSNR"),
            ("forward_model", "model error of `A_q`"),
            ("forward_approx", "model error of `Ã`"),
            ("adjoint_model", "adjoint error of `A_q`"),
            ("adjoint_approx", "adjoint error of `Ã`"),
        ):
            cells = [by_k.get(k, {}).get(key) for k in ks]
            if all(cell is None for cell in cells):
                continue
            values = [fmt(cell) if key == "psnr" else sig(cell) for cell in cells]
            rows.append([f"{label}, at the iterates of TV with {name}", *values])
    return render_table(header, rows)


def view_generative(data: dict) -> str:
    """The generative-regulariser benchmark (``benchmarks.generative``)."""
    header = [
        "method",
        "params",
        "restarts",
        "ID PSNR",
        "ID SSIM",
        "OOD PSNR",
        "disc PSNR",
        "disc contrast",
        "s/image",
    ]
    rows = []
    for name, result in data["results"].items():
        params = ", ".join(f"{k} {short(v)}" for k, v in result.get("params", {}).items())
        rows.append(
            [
                name,
                params or DASH,
                str(result.get("restarts", DASH)),
                fmt(result["id_psnr"]),
                fmt(result["id_ssim"], 3),
                fmt(result["ood_psnr"]),
                fmt(result["feature_psnr"]),
                fmt(result["contrast"]),
                sig(result["seconds_per_image"], 2),
            ]
        )
    return render_table(header, rows)


def view_mirror(data: dict) -> str:
    """Learned mirror descent against gradient descent, Nesterov and TV (``benchmarks.mirror``)."""
    n = data["learned_iterations"]

    def speedup(key: str) -> str:
        iterations, factor = data.get(f"{key}_iterations"), data.get(f"{key}_speedup")
        if iterations is None:
            return DASH
        return f"{iterations} ({factor}×)"

    rows = [
        ["FBP, the start of all", fmt(data["objective_fbp"], 1), DASH, fmt(data["psnr_fbp"]), DASH],
        [
            f"learned mirror descent, {n} iterations ({data.get('scheme', 'krichene')} scheme)",
            fmt(data["objective_learned"], 1),
            str(n),
            fmt(data["psnr_learned"]),
            sig(data.get("learned_s_per_image"), 2),
        ],
        [
            f"gradient descent (best fixed step, {short(data['gd_step'])}/L)",
            fmt(data["gd_objective_at_learned_iterations"], 1),
            speedup("gd"),
            fmt(data.get("psnr_gd_same_iterations")),
            DASH,
        ],
        [
            f"Nesterov (best step, {short(data['nesterov_step'])}/L)",
            fmt(data["nesterov_objective_at_learned_iterations"], 1),
            speedup("nesterov"),
            DASH,
            DASH,
        ],
        [
            f"minimiser of the model's objective ({data['baseline_iterations_run']} iterations)",
            fmt(data.get("objective_f_minimiser", data.get("objective_lowest_seen")), 1),
            DASH,
            fmt(data.get("psnr_f_minimiser")),
            DASH,
        ],
        [
            f"TV by PDHG ({data.get('tv_iterations', DASH)} iterations)",
            DASH,
            DASH,
            fmt(data["psnr_tv"]),
            sig(data.get("tv_s_per_image"), 2),
        ],
    ]
    if "psnr_tv_unconstrained" in data:
        rows.append(
            ["TV by PDHG, unconstrained", DASH, DASH, fmt(data["psnr_tv_unconstrained"]), DASH]
        )
    header = [
        f"{data['test_images']} test images",
        f"objective after {n} iterations",
        "iterations to reach the learned objective",
        "PSNR",
        "s/image",
    ]
    table = render_table(header, rows)
    consistency = data.get("consistency_error")
    if consistency is not None:
        table += f"\n\nConsistency ‖∇φ(∇ψ(x)) − x‖/‖x‖: {short(consistency)} on average."
    return table


def view_throughput(data: dict) -> str:
    """Training throughput per backend and precision (``benchmarks.train_throughput``)."""
    batch = data["batch"]
    slowest32 = min(data["steps_per_second"].values())
    slowest16 = min(data.get("steps_per_second_bfloat16", {}).values(), default=None)
    rows = []
    for precision, key, slowest in (
        ("float32", "steps_per_second", slowest32),
        ("bfloat16", "steps_per_second_bfloat16", slowest16),
    ):
        for backend, rate in data.get(key, {}).items():
            rows.append(
                [
                    backend,
                    precision,
                    sig(rate),
                    sig(rate * batch),
                    ratio(rate, slowest),
                    ratio(rate, data["steps_per_second"][backend]),
                ]
            )
    header = ["backend", "precision", "steps/s", "images/s", "× slowest backend", "× float32"]
    table = render_table(header, rows)
    if "operator_ms_per_step" in data:
        parts = ", ".join(f"{k} {sig(v)}" for k, v in data["operator_ms_per_step"].items())
        table += f"\n\nOperator time per step (ms, forward + adjoint applications alone): {parts}."
    return table


def view_records(data: list) -> str:
    """A list of flat records, one row each (e.g. a search's trials)."""
    header = list(dict.fromkeys(key for record in data for key in record))
    rows = [[short(record.get(key)) for key in header] for record in data]
    return render_table(header, rows)


def view_scalars(data: dict) -> str:
    """Every top-level number, string and flag of the JSON, one row each."""
    rows = [
        [f"`{key}`", sig(value, 4) if isinstance(value, float) else fmt(value)]
        for key, value in data.items()
        if value is None or isinstance(value, (int, float, str, bool))
    ]
    return render_table(["key", "value"], rows)


def view_markdown(text: str) -> str:
    """The table lines of a markdown result file, as written by ``recon-eval``."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    if not lines:
        raise ValueError("no markdown table in this file")
    return "\n".join(lines)


VIEWS: dict[str, Callable[[Any], str]] = {
    "errors": view_errors,
    "tv": view_tv,
    "tuning": view_tuning,
    "speed": view_speed,
    "iterates": view_iterates,
    "generative": view_generative,
    "mirror": view_mirror,
    "throughput": view_throughput,
    "records": view_records,
    "scalars": view_scalars,
    "markdown": view_markdown,
}


def view_errors_runs(runs: list[tuple[str, dict]]) -> str:
    """Model and adjoint errors of several correction runs, one row per file."""
    rows = []
    for name, data in runs:
        errors = data["errors"]
        rows.append(
            [
                f"`{name}`",
                f"`{data.get('run', DASH)}`",
                str(data.get("n_test", DASH)),
                sig(errors["forward_approx"]),
                f"{sig(errors['forward_model'])} "
                f"({ratio(errors['forward_approx'], errors['forward_model'])})",
                sig(errors["adjoint_approx"]),
                f"{sig(errors['adjoint_model'])} "
                f"({ratio(errors['adjoint_approx'], errors['adjoint_model'])})",
            ]
        )
    header = [
        "file",
        "run",
        "test images",
        "`Ã` model error",
        "`A_q` model error (× smaller)",
        "`Ã` adjoint error",
        "`A_q` adjoint error (× smaller)",
    ]
    return render_table(header, rows)


def view_tv_runs(runs: list[tuple[str, dict]]) -> str:
    """TV with ``A``, ``Ã`` and the learned ``A_q`` of several runs, one row per file."""
    rows = []
    for name, data in runs:
        tv = data["tv"]
        methods = list(tv["methods"].values())
        accurate, approx, learned = methods[:3]
        lams = [
            m.get("lam", tv["lam"] if not isinstance(tv["lam"], dict) else None)
            for m in methods[:3]
        ]
        rows.append(
            [
                f"`{name}`",
                " / ".join(short(lam) for lam in lams),
                pm(accurate["psnr"], accurate.get("psnr_std")),
                pm(approx["psnr"], approx.get("psnr_std")),
                pm(learned["psnr"], learned.get("psnr_std")),
                sig(learned.get("seconds_per_image")),
                ratio(accurate.get("seconds_per_image"), learned.get("seconds_per_image")),
            ]
        )
    header = [
        "file",
        "λ (`A` / `Ã` / `A_q`)",
        "TV with `A`",
        "TV with `Ã`",
        "TV with `A_q`",
        "`A_q` s/image",
        "× faster than `A` (same run)",
    ]
    return render_table(header, rows)


#: Views of several files at once (comma-separated sources), one row per file.
MULTI_VIEWS: dict[str, Callable[[list[tuple[str, Any]]], str]] = {
    "errors_runs": view_errors_runs,
    "tv_runs": view_tv_runs,
}


# --------------------------------------------------------------------------------- pages
def parse_options(options: str) -> dict[str, str]:
    """``" view=tv"`` → ``{"view": "tv"}``."""
    return dict(item.split("=", 1) for item in options.split())


def render(source: str, options: dict[str, str], *, root: Path = ROOT, page: Path) -> str:
    """The generated body for one marker: the table and links to its source files.

    ``source`` is one path, or several joined by commas for a view of :data:`MULTI_VIEWS`
    (one row per file).
    """
    sources = source.split(",")
    for name in sources:
        if not (root / name).is_file():
            raise FileNotFoundError(f"{page}: table source {name} does not exist")
    unknown = set(options) - {"view"}
    if unknown:
        raise ValueError(f"{page}: unknown marker options {sorted(unknown)} for {source}")
    default = "markdown" if sources[0].endswith(".md") else "scalars"
    view = options.get("view", default)
    if view not in VIEWS and view not in MULTI_VIEWS:
        known = sorted([*VIEWS, *MULTI_VIEWS])
        raise ValueError(f"{page}: unknown view {view!r} for {source}; known: {known}")
    if (len(sources) > 1) != (view in MULTI_VIEWS):
        raise ValueError(
            f"{page}: view {view!r} takes {'several sources' if view in MULTI_VIEWS else 'one'}"
            f" source, got {len(sources)}"
        )
    texts = [(root / name).read_text(encoding="utf-8") for name in sources]
    if view in MULTI_VIEWS:
        loaded = [(Path(n).stem, json.loads(t)) for n, t in zip(sources, texts, strict=True)]
        table = MULTI_VIEWS[view](loaded)
    else:
        table = VIEWS[view](texts[0] if view == "markdown" else json.loads(texts[0]))
    up = [".."] * len(page.parent.relative_to(root).parts)
    links = ", ".join(f"[`{name}`]({Path(*up, name).as_posix()})" for name in sources)
    return f"{table}\n\n{'Sources' if len(sources) > 1 else 'Source'}: {links}\n"


def generate(text: str, *, root: Path = ROOT, page: Path) -> str:
    """``text`` with every marked table regenerated."""

    def replace(match: re.Match[str]) -> str:
        body = render(match["source"], parse_options(match["options"]), root=root, page=page)
        return f"{match['open']}{body}{match['close']}"

    return MARKER.sub(replace, text)


def tables(text: str) -> list[str]:
    """The sources of the marked tables of a page, in order."""
    return [match["source"] for match in MARKER.finditer(text)]


def pages(root: Path = ROOT) -> list[Path]:
    """The results pages: ``docs/results/*.md``."""
    return sorted((root / "docs" / "results").glob("*.md"))


def stale(root: Path = ROOT) -> list[str]:
    """The pages whose tables differ from what their JSON gives, relative to ``root``."""
    return [
        page.relative_to(root).as_posix()
        for page in pages(root)
        if generate(text := page.read_text(encoding="utf-8"), root=root, page=page) != text
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite the results pages, or with ``--check`` report the stale ones."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale()
        for page in out_of_date:
            print(f"stale: {page} (run python docs/generate_results.py)")
        return 1 if out_of_date else 0
    for page in pages():
        text = page.read_text(encoding="utf-8")
        new = generate(text, page=page)
        if new != text:
            page.write_text(new, encoding="utf-8")
            print(f"updated {page.relative_to(ROOT)} ({len(tables(new))} tables)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
