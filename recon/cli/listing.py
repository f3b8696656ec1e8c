"""What exists, from the command line: ``--list <kind>`` and ``--help`` of ``recon-train`` and
``recon-eval``.

Both are Hydra apps, so :func:`intercept` looks at the arguments before Hydra parses them::

    recon-train --list phantoms        # the phantom families data configs name
    recon-train --list experiments     # each with the first line of its comment
    recon-eval --list all
    recon-train --help                 # the command, its config groups and their options

A config's description is the first line of its leading comment (after ``# @package``), else its
``_target_``. ``--help`` shows the groups the command's root config (``config.yaml`` or
``eval.yaml``) and the configs of its groups choose from, not every folder of ``conf/``; Hydra's
own help stays at ``--hydra-help``.

Example
-------
>>> print(format_listing(["phantoms"]))  # doctest: +ELLIPSIS
phantoms (a data split's phantom: data.splits.train.phantom=NAME):
  random_ellipses
  ...
>>> "quickstart/lpd" in dict(entries("experiments"))
True
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf

from recon.cli.config import config_dir

__all__ = [
    "KINDS",
    "command_groups",
    "command_help",
    "describe",
    "entries",
    "format_listing",
    "intercept",
]

#: What ``--list`` names: kind → (config group, or ``""`` for the phantom registry; how to use).
KINDS: dict[str, tuple[str, str]] = {
    "experiments": ("experiment", "recon-train experiment=NAME"),
    "protocols": ("protocol", "recon-eval protocol=NAME"),
    "operators": ("operator", "operator=NAME"),
    "data": ("data", "data=NAME"),
    "models": ("model", "recon-train model=NAME"),
    "reconstructors": ("recon", "recon-eval +recon@methods.LABEL=NAME"),
    "objectives": ("objective", "recon-train +objective=NAME"),
    "phantoms": ("", "a data split's phantom: data.splits.train.phantom=NAME"),
}


#: Longest description shown; longer ones end in "…".
WIDTH = 110
#: The end of a sentence: a full stop and a space, not after "et al", "e.g" or "i.e".
_SENTENCE_END = re.compile(r"(?<!\bal)(?<!\be\.g)(?<!\bi\.e)\.(\s|$)")


def describe(path: Path) -> str:
    """A one-line description of a config file: the first sentence of its leading comment
    (``# @package`` lines skipped; at most :data:`WIDTH` characters), else its top-level
    ``_target_``, else ``""``.

    Example
    -------
    >>> describe(config_dir() / "operator" / "parallel128_30.yaml")
    '"ellipses" protocol geometry (as dival): 128² image, 30 angles over [0, π), 183 detectors.'
    >>> describe(config_dir() / "recon" / "fbp.yaml")
    'recon.classical.FBP'
    """
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    words: list[str] = []
    for line in lines:
        text = line.strip()
        if not text.startswith("#"):
            if words or text:
                break
            continue
        text = text.lstrip("#").strip()
        if text.startswith("@package"):
            continue
        if not text:
            if words:
                break
            continue
        words.append(text)
        if _SENTENCE_END.search(" ".join(words)) or len(" ".join(words)) > WIDTH:
            break
    text = " ".join(words)
    end = _SENTENCE_END.search(text)
    if end:
        text = text[: end.start() + 1]
    if len(text) > WIDTH:
        text = text[: WIDTH - 1].rsplit(" ", 1)[0] + " …"
    if text:
        return text
    for line in lines:
        if line.startswith("_target_:"):
            return line.split(":", 1)[1].split("#", 1)[0].strip()
    return ""


def entries(kind: str, conf: Path | None = None) -> list[tuple[str, str]]:
    """``(name, description)`` of every option of ``kind`` (a key of :data:`KINDS`), sorted.

    Raises ``ValueError`` for an unknown kind, naming the kinds.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown list kind {kind!r}; kinds: {', '.join([*KINDS, 'all'])}")
    group = KINDS[kind][0]
    if not group:
        from data_tools.phantoms import PHANTOMS

        return [(name, "") for name in PHANTOMS]
    folder = (conf or config_dir()) / group
    return [
        (path.relative_to(folder).with_suffix("").as_posix(), describe(path))
        for path in sorted(folder.rglob("*.yaml"))
    ]


def format_listing(kinds: Sequence[str], conf: Path | None = None) -> str:
    """The listing of ``kinds``: a header per kind, then one line per option."""
    blocks = []
    for kind in kinds:
        found = entries(kind, conf)
        width = max((len(name) for name, _ in found), default=0)
        lines = [f"{kind} ({KINDS[kind][1]}):"]
        lines += [f"  {name:<{width}}  {text}".rstrip() for name, text in found]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _groups_of(path: Path) -> set[str]:
    """The config groups a config's defaults list chooses from."""
    found = set()
    for item in OmegaConf.load(path).get("defaults") or []:
        if not isinstance(item, str):  # plain strings include other configs, not group options
            for key in item:
                name = str(key).removeprefix("override ").removeprefix("optional ")
                found.add(name.strip().lstrip("/").split("@", 1)[0])
    return found


def command_groups(config_name: str, conf: Path | None = None) -> list[str]:
    """The config groups a command uses: those of its root config's defaults list and those
    its groups' configs choose from (an experiment's ``/objective``), Hydra's own left out.

    Example
    -------
    >>> command_groups("eval")
    ['data', 'hparams_search', 'model', 'operator', 'paths', 'protocol', 'recon']
    """
    conf = conf or config_dir()
    groups = _groups_of(conf / f"{config_name}.yaml")
    for group in sorted(groups):
        for path in sorted((conf / group).rglob("*.yaml")):
            groups |= _groups_of(path)
    return sorted(g for g in groups if g.split("/")[0] != "hydra" and (conf / g).is_dir())


def command_help(command: str, config_name: str, conf: Path | None = None) -> str:
    """The ``--help`` text of ``command``: what it does (its root config's leading comment), its
    config groups with their options, and how to list and override."""
    conf = conf or config_dir()
    root = conf / f"{config_name}.yaml"
    intro = []
    for line in root.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        intro.append(line.lstrip("#").strip())
    groups = []
    for group in command_groups(config_name, conf):
        folder = conf / group
        options = [p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml")]
        groups.append(f"{group}: {', '.join(sorted(options))}")
    keys = [str(k) for k in OmegaConf.load(root) if str(k) not in ("defaults", "hydra")]
    return "\n".join(
        [
            *(intro or [command]),
            "",
            "== Configuration groups ==",
            "Compose your configuration from those groups (group=option)",
            "",
            *groups,
            "",
            "== Config ==",
            f"Override anything in the config (key=value); its own keys: {', '.join(keys)}.",
            f"The composed config: {command} [overrides] --cfg job",
            "",
            "== Lists ==",
            f"What exists, one line each: {command} --list KIND",
            f"KIND: {', '.join([*KINDS, 'all'])}",
            "",
            f"Hydra's own flags and groups (multirun -m, launchers, sweepers): {command} "
            "--hydra-help",
        ]
    )


def intercept(argv: Sequence[str], *, command: str, config_name: str) -> int | None:
    """Handle ``--list [KIND]`` and ``--help``/``-h`` in ``argv`` (the arguments after the
    program name) before Hydra parses them: print, and return the exit status (0, or 2 for an
    unknown kind, with the kinds named on stderr). ``None`` when neither is there, so Hydra runs.

    Example
    -------
    >>> intercept(["--list", "nothing"], command="recon-train", config_name="config")
    2
    >>> intercept(["experiment=quickstart/lpd"], command="recon-train", config_name="config")
    """
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg == "--list" or arg.startswith("--list="):
            if "=" in arg:
                kind = arg.split("=", 1)[1]
            elif i + 1 < len(argv) and not argv[i + 1].startswith("-") and "=" not in argv[i + 1]:
                kind = argv[i + 1]
            else:
                kind = "all"
            if kind != "all" and kind not in KINDS:
                print(
                    f"{command}: unknown list kind {kind!r}; kinds: {', '.join([*KINDS, 'all'])}",
                    file=sys.stderr,
                )
                return 2
            print(format_listing(list(KINDS) if kind == "all" else [kind]))
            return 0
    if "--help" in argv or "-h" in argv:
        print(command_help(command, config_name))
        return 0
    return None
