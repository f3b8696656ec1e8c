"""Sphinx configuration of the API reference: ``make docs`` (or ``sphinx-build -W docs/api``).

The pages document each package's public names (its ``__all__``) from their numpy-style
docstrings (``sphinx.ext.napoleon``). An object re-exported by several packages is documented once,
where it is defined: a package skips the names it imports from another documented package, and a
subpackage skips what its parent package already showed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

project = "tomolearn"
author = "the tomolearn authors"
copyright = "the tomolearn authors"  # noqa: A001 (Sphinx's name)

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
# "Attributes" sections as :ivar: fields: a dataclass's documented fields are not described twice.
napoleon_use_ivar = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"exclude-members": "extra_repr"}
# Keep the reference readable: signatures show the default values as written in the code.
autodoc_preserve_defaults = True
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = []

_shown: dict[int, str] = {}
_current: list[str] = []


def _remember_module(app, what, name, obj, options, lines) -> None:
    """Track which module's members autodoc is documenting (their docstrings come first)."""
    if what == "module":
        _current[:] = [name]


def _skip_reexports(app, what, name, obj, skip, options):
    """Document an object once: in the first package page that shows it, defined in that package."""
    if what != "module" or not _current or skip:
        return None
    module = getattr(obj, "__module__", None)
    package = _current[0]
    if isinstance(module, str) and not (module == package or module.startswith(package + ".")):
        return True  # imported from elsewhere: documented where it is defined
    shown = _shown.setdefault(id(obj), package)
    return True if shown != package else None


#: numpydoc sections whose body is a list of ``name`` / ``name : type`` entries.
_LIST_SECTIONS = {"Parameters", "Other Parameters", "Attributes", "Raises", "Warns", "Yields"}
_ENTRY = re.compile(r"^\*{0,2}[\w.]+(, \*{0,2}[\w.]+)*( ?: .*)?$")
_UNDERLINE = re.compile(r"^-{3,}$")


def _close_list_sections(app, what, name, obj, options, lines) -> None:
    """Start a ``Notes`` section at a prose paragraph that follows a parameter list.

    Our docstrings often end a ``Parameters`` section with an unindented paragraph ("Returns
    ``(x, y)`` ...", "Inputs are ..."). numpydoc ends a section only at the next header, so
    napoleon would read that paragraph as more parameters; this hook (run before napoleon) gives
    the paragraph the ``Notes`` header it means.
    """
    in_list = False
    out: list[str] = []
    for i, line in enumerate(lines):
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if _UNDERLINE.match(following.strip()) and line.strip():
            in_list = line.strip() in _LIST_SECTIONS
        elif (
            in_list
            and line
            and not line[0].isspace()
            and not _UNDERLINE.match(line.strip())
            and (i == 0 or not lines[i - 1].strip())
            and not _ENTRY.match(line)
        ):
            out += ["Notes", "-----"]
            in_list = False
        out.append(line)
    lines[:] = out


def setup(app) -> None:
    app.connect("autodoc-process-docstring", _close_list_sections, priority=400)
    app.connect("autodoc-process-docstring", _remember_module)
    app.connect("autodoc-skip-member", _skip_reexports)
