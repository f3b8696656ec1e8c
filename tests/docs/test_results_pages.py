"""The results pages match their JSON, and every relative link of the docs points to a file."""

from __future__ import annotations

import doctest
import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "generate_results", ROOT / "docs" / "generate_results.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load_generator()
PAGES = gen.pages(ROOT)
MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_there_are_results_pages_with_generated_tables():
    assert PAGES, "docs/results/*.md is empty"
    assert sum(len(gen.tables(page.read_text(encoding="utf-8"))) for page in PAGES) >= 20


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_generated_tables_match_their_json(page):
    text = page.read_text(encoding="utf-8")
    regenerated = gen.generate(text, root=ROOT, page=page)
    assert regenerated == text, (
        f"{page.relative_to(ROOT)} is stale against bench_results/: "
        "run python docs/generate_results.py"
    )


def test_every_bench_json_is_shown_on_a_results_page():
    shown = {
        source
        for page in PAGES
        for marker in gen.tables(page.read_text(encoding="utf-8"))
        for source in marker.split(",")
    }
    results = sorted(
        path.relative_to(ROOT).as_posix() for path in (ROOT / "bench_results").rglob("*.json")
    )
    missing = [path for path in results if path not in shown]
    assert not missing, f"bench_results files no results page shows: {missing}"


# ------------------------------------------------------------------------------ links
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def relative_links(text: str) -> list[str]:
    """Targets of the markdown links of ``text`` that point into the repository.

    >>> relative_links("[a](x.md) [b](https://e.org) `[c](y.md)` [d](#top) [e](z.md#s)")
    ['x.md', 'z.md']
    """
    text = INLINE_CODE.sub("", FENCE.sub("", text))
    targets = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def test_relative_links_helper():
    assert relative_links("[a](x.md) [b](https://e.org) `[c](y.md)` [d](#top) [e](z.md#s)") == [
        "x.md",
        "z.md",
    ]
    assert relative_links("```\n[a](inside.md)\n```\n![img](p.png)") == ["p.png"]


@pytest.mark.parametrize("doc", MARKDOWN, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_to_files_that_exist(doc):
    broken = [
        target
        for target in relative_links(doc.read_text(encoding="utf-8"))
        if not (doc.parent / target).exists()
    ]
    assert not broken, f"{doc.relative_to(ROOT)} links to missing files: {broken}"


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 250, f"README.md has {lines} lines; move detail into docs/"


# ------------------------------------------------------------------------------ the generator
def _tree(tmp_path: Path, data: object, page_text: str) -> Path:
    (tmp_path / "bench_results" / "study").mkdir(parents=True)
    (tmp_path / "bench_results" / "study" / "r.json").write_text(json.dumps(data))
    (tmp_path / "docs" / "results").mkdir(parents=True)
    page = tmp_path / "docs" / "results" / "study.md"
    page.write_text(page_text)
    return page


def test_generator_fills_detects_and_fixes_a_stale_table(tmp_path):
    marker = "<!-- table: bench_results/study/r.json view=scalars -->\nold\n<!-- end table -->\n"
    page = _tree(tmp_path, {"psnr": 30.123456, "steps": 10}, f"# Study\n\n{marker}\nprose\n")
    assert gen.stale(tmp_path) == ["docs/results/study.md"]
    new = gen.generate(page.read_text(), root=tmp_path, page=page)
    assert "| `psnr` | 30.12 |" in new and "| `steps` | 10 |" in new
    assert "[`bench_results/study/r.json`](../../bench_results/study/r.json)" in new
    assert new.startswith("# Study\n\n") and new.endswith("<!-- end table -->\n\nprose\n")
    page.write_text(new)
    assert gen.stale(tmp_path) == []
    (tmp_path / "bench_results" / "study" / "r.json").write_text(json.dumps({"psnr": 31.0}))
    assert gen.stale(tmp_path) == ["docs/results/study.md"]


@pytest.mark.parametrize(
    ("marker", "error", "message"),
    [
        pytest.param("bench_results/study/none.json", FileNotFoundError, "none.json", id="missing"),
        pytest.param("bench_results/study/r.json view=nope", ValueError, "unknown view", id="view"),
        pytest.param("bench_results/study/r.json colour=red", ValueError, "colour", id="option"),
        pytest.param(
            "bench_results/study/r.json view=errors_runs", ValueError, "several", id="multi"
        ),
    ],
)
def test_generator_refuses_bad_markers(tmp_path, marker, error, message):
    page = _tree(tmp_path, {"a": 1}, f"<!-- table: {marker} -->\n<!-- end table -->\n")
    with pytest.raises(error, match=message):
        gen.generate(page.read_text(), root=tmp_path, page=page)


def test_generator_docstring_examples():
    failures, tried = doctest.testmod(gen)[:2]
    assert tried and not failures


# ------------------------------------------------------------------------------ names in the docs
def _named(pattern: str) -> set[str]:
    return {
        name
        for doc in MARKDOWN
        for name in re.findall(pattern, doc.read_text(encoding="utf-8"))
        if "<" not in name and "{" not in name
    }


@pytest.mark.parametrize(
    ("group", "pattern"),
    [
        pytest.param("experiment", r"experiment=([\w/]+)(?=[\s`\')]|$)", id="experiment"),
        pytest.param("protocol", r"protocol=([\w/]+)(?=[\s`\')]|$)", id="protocol"),
        pytest.param("operator", r"\boperator=(\w+)(?=[\s`\')]|$)", id="operator"),
        pytest.param("model", r"\bmodel=([a-z]\w*)(?=[\s`\')]|$)", id="model"),
        pytest.param("hparams_search", r"hparams_search=(\w+)(?=[\s`\')]|$)", id="hparams_search"),
    ],
)
def test_configs_named_in_the_docs_exist(group, pattern):
    missing = sorted(
        name
        for name in _named(pattern)
        # names starting with "my" are a user's own configs in the examples
        if not (ROOT / "conf" / group / f"{name}.yaml").is_file() and not name.startswith("my")
    )
    assert not missing, f"the docs name {group} configs that do not exist: {missing}"


def test_conf_files_named_in_the_docs_exist():
    missing = sorted(
        path for path in _named(r"`(conf/[\w/.]+\.yaml)`") if not (ROOT / path).is_file()
    )
    assert not missing, f"the docs name config files that do not exist: {missing}"


def test_benchmarks_named_in_the_docs_exist():
    missing = sorted(
        name
        for name in _named(r"python -m benchmarks\.(\w+)")
        if not (ROOT / "benchmarks" / f"{name}.py").is_file()
    )
    assert not missing, f"the docs name benchmarks that do not exist: {missing}"


PACKAGES = r"(?:recon|operators|models|data_tools)"


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            if not hasattr(obj, part):
                return False
            obj = getattr(obj, part)
        return True
    return False


def test_python_names_in_the_docs_exist():
    """Every backticked ``recon.…``/``operators.…`` name and every ``from … import …`` of a
    code example in README.md and docs/ names something importable: docs follow the code."""
    names = _named(rf"`({PACKAGES}(?:\.\w+)+)")
    for doc in MARKDOWN:
        text = doc.read_text(encoding="utf-8")
        for module, imported in re.findall(
            rf"^from ({PACKAGES}[\w.]*) import (\([^)]*\)|[^\n]+)$", text, re.M
        ):
            names |= {f"{module}.{name}" for name in re.findall(r"\w+", imported.split("#")[0])}
    assert len(names) > 30
    missing = sorted(name for name in names if not _resolves(name))
    assert not missing, f"the docs name things that do not exist: {missing}"
