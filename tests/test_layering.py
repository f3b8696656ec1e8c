"""The import arrows of docs/DESIGN (../shared/DESIGN.md), checked on the source with ``ast``.

- ``operators`` ← ``data_tools`` ← ``recon``, and ``models`` ← ``recon``: ``operators`` imports
  none of the others, ``data_tools`` only ``operators``, ``models`` none of them;
- ``benchmarks`` may import anything; nothing in the packages imports ``benchmarks``;
- inside ``recon`` imports run downward only: base modules → ``solvers`` → ``classical`` → the
  other families (which do not import each other) → ``training`` → ``runs`` → ``cli``;
- no module imports an underscore name from another module;
- no module of the four packages exceeds 800 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("operators", "data_tools", "models", "recon", "benchmarks", "hydra_plugins")
#: The top-level packages each package may import (besides itself).
ALLOWED = {
    "operators": set(),
    "data_tools": {"operators"},
    "models": set(),
    "recon": {"operators", "data_tools", "models"},
    "benchmarks": {"operators", "data_tools", "models", "recon"},
    "hydra_plugins": set(),
}
#: Rooms of recon, lowest first; a module imports only from its own room or lower ones.
RECON_ROOMS = {
    **dict.fromkeys(("base", "checks", "checkpoints", "cpu", "data"), 0),
    "solvers": 1,
    "classical": 2,
    **dict.fromkeys(("unrolled", "pnp", "mirror", "generative", "correction", "dip"), 3),
    "training": 4,
    "runs": 5,
    "cli": 6,
}
FAMILIES = 3  # rooms at this level do not import each other
MAX_LINES = 800


def modules() -> list[tuple[str, Path]]:
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            found.append((name.removesuffix(".__init__"), path))
    return found


def imports(path: Path) -> list[tuple[str, str | None, int]]:
    """``(module, imported name or None, line)`` for every absolute import in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.module, alias.name, node.lineno) for alias in node.names]
    return found


def recon_room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "recon" and len(parts) > 1 else None


MODULES = modules()


def test_every_recon_room_is_known():
    rooms = {recon_room(name) for name, _ in MODULES} - {None}
    assert rooms <= RECON_ROOMS.keys(), f"add {rooms - RECON_ROOMS.keys()} to RECON_ROOMS"


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_downward(package):
    wrong = [
        f"{path.relative_to(REPO)}:{line} imports {target}"
        for name, path in MODULES
        if name.split(".")[0] == package
        for target, _, line in imports(path)
        if (top := target.split(".")[0]) in PACKAGES
        and top != package
        and top not in ALLOWED[package]
    ]
    assert not wrong, "\n".join(wrong)


def test_recon_rooms_import_only_downward():
    wrong = []
    for name, path in MODULES:
        room = recon_room(name)
        if room is None:
            continue
        for target, imported, line in imports(path):
            if target == "recon" and imported is not None:
                target = f"recon.{imported}"
            other = recon_room(target)
            if other is None or other == room or other not in RECON_ROOMS:
                continue
            level, other_level = RECON_ROOMS[room], RECON_ROOMS[other]
            if other_level > level or (level == other_level == FAMILIES):
                wrong.append(f"{path.relative_to(REPO)}:{line}: recon.{room} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_another_modules_underscore_names():
    wrong = [
        f"{path.relative_to(REPO)}:{line} imports {target}{f'.{imported}' if imported else ''}"
        for _, path in MODULES
        for target, imported, line in imports(path)
        if target.split(".")[0] in PACKAGES
        and any(
            part.startswith("_") and not part.startswith("__")
            for part in [*target.split("."), imported or ""]
        )
    ]
    assert not wrong, "\n".join(wrong)


def test_no_module_exceeds_the_size_limit():
    sizes = {
        str(path.relative_to(REPO)): len(path.read_text().splitlines())
        for name, path in MODULES
        if name.split(".")[0] in ("recon", "operators", "models", "data_tools")
    }
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:10]
    print("largest modules:", ", ".join(f"{path} {lines}" for path, lines in largest))
    too_large = {path: lines for path, lines in sizes.items() if lines > MAX_LINES}
    assert not too_large, f"split these modules (over {MAX_LINES} lines): {too_large}"
