"""The system-matrix cache folder: where it is, how large it grows, what it holds, clearing it.

The ``matrix`` backend (:mod:`operators.ct.matrix_backend`) keeps one ``.npz`` file per geometry
in this folder. A file can be large (a 256² fan-beam matrix with 360 angles is about 240 MB) and
slow to build (about 9 s), so the folder is managed:

- **Where**: ``$TOMOLEARN_CACHE_DIR/system_matrices`` if the variable is set, else
  ``system_matrices`` in the user cache dir (``platformdirs``: ``~/.cache/tomolearn`` on Linux).
- **How large**: at most ``$TOMOLEARN_CACHE_MAX_BYTES`` (default :data:`DEFAULT_CACHE_MAX_BYTES`,
  2 GiB). After each build the least recently used files are deleted until the total fits; the
  file just built is never deleted. Loading a file marks it used (its modification time is set
  to now: access times are unreliable on ``noatime``/``relatime`` mounts). The value is a number
  of bytes, optionally with a unit (``500M``, ``2GiB``, ``1.5 GB``: one-letter and ``iB`` units
  are binary, ``KB``/``MB``/``GB`` decimal); ``none``, ``inf`` or ``unlimited`` switch the cap off.
- **What is in it**: :func:`cache_info` (or ``python -m operators.ct.matrix_cache``).
- **Clearing it**: :func:`clear_cache` (or ``python -m operators.ct.matrix_cache --clear``), or
  delete the folder when no tomolearn process is running. A cleared matrix is rebuilt when next
  needed.

Several processes may share the folder. Matrices are written to a temporary file and renamed, so
only complete ``*.npz`` files are ever candidates for deletion; temporary files and lock files of
other processes are left alone (except temporary files untouched for an hour, left by a crashed
process, which :func:`clear_cache` removes), a file whose lock another process holds (it is being
rebuilt) is skipped, and a file that another process deleted first is simply not counted.

Example
-------
>>> import tempfile
>>> info = cache_info(Path(tempfile.mkdtemp()))
>>> info.total_bytes, len(info.entries)
(0, 0)
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import time
from pathlib import Path

from operators.ct.matrix_backend import cache_dir, default_cache_dir

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CACHE_MAX_BYTES",
    "MAX_BYTES_VARIABLE",
    "CacheEntry",
    "CacheInfo",
    "cache_dir",
    "cache_info",
    "clear_cache",
    "default_cache_dir",
    "evict",
    "format_bytes",
    "mark_used",
    "max_cache_bytes",
]

#: Cap on the folder's total size when ``$TOMOLEARN_CACHE_MAX_BYTES`` is not set.
DEFAULT_CACHE_MAX_BYTES = 2 * 1024**3
#: The environment variable that sets the cap.
MAX_BYTES_VARIABLE = "TOMOLEARN_CACHE_MAX_BYTES"
#: Temporary files older than this (seconds) are debris of a crashed writer.
STALE_TEMP_SECONDS = 3600.0

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
    "t": 1024**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
}
_NO_CAP = ("none", "inf", "unlimited")


def parse_bytes(text: str, *, name: str = MAX_BYTES_VARIABLE) -> int | None:
    """A size such as ``"2G"``, ``"500 MiB"``, ``"1.5GB"`` or ``"1048576"`` in bytes; ``None`` for
    ``"none"``, ``"inf"`` or ``"unlimited"`` (no cap).

    Raises ``ValueError`` naming ``name`` for anything else.

    Example
    -------
    >>> parse_bytes("2G"), parse_bytes("1.5 MB"), parse_bytes("none")
    (2147483648, 1500000, None)
    """
    value = text.strip().lower()
    if value in _NO_CAP:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d*)?)\s*([a-z]*)", value)
    if match is None or match.group(2) not in _UNITS:
        raise ValueError(
            f"{name}={text!r} is not a size: use bytes, optionally with a unit (e.g. 2G, "
            f"500MiB, 1.5GB), or one of {', '.join(_NO_CAP)} for no cap"
        )
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def max_cache_bytes() -> int | None:
    """The cache cap in bytes: ``$TOMOLEARN_CACHE_MAX_BYTES`` parsed by :func:`parse_bytes`, or
    :data:`DEFAULT_CACHE_MAX_BYTES` when unset or empty; ``None`` means no cap.

    Example
    -------
    >>> import os
    >>> os.environ.get(MAX_BYTES_VARIABLE) is not None or max_cache_bytes() == 2 * 1024**3
    True
    """
    text = os.environ.get(MAX_BYTES_VARIABLE, "")
    return DEFAULT_CACHE_MAX_BYTES if not text.strip() else parse_bytes(text)


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units with three significant digits.

    Example
    -------
    >>> format_bytes(512), format_bytes(254_803_968), format_bytes(2 * 1024**3)
    ('512 B', '243 MiB', '2.00 GiB')
    """
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    i = 0
    while abs(n) >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    if i == 0:
        return f"{int(n)} B"
    return f"{n:.0f} {units[i]}" if n >= 100 else f"{n:.{1 if n >= 10 else 2}f} {units[i]}"


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """One cached matrix: its ``path``, size ``nbytes`` and ``last_used`` (POSIX seconds: when it
    was last built or loaded)."""

    path: Path
    nbytes: int
    last_used: float


@dataclasses.dataclass(frozen=True)
class CacheInfo:
    """The cache folder's matrices, most recently used first, and the cap (``None``: no cap).

    ``str(info)`` is a short table, as ``python -m operators.ct.matrix_cache`` prints it.
    """

    directory: Path
    entries: tuple[CacheEntry, ...]
    max_bytes: int | None

    @property
    def total_bytes(self) -> int:
        """Bytes of all cached matrices."""
        return sum(e.nbytes for e in self.entries)

    def __str__(self) -> str:
        cap = "no cap" if self.max_bytes is None else f"cap {format_bytes(self.max_bytes)}"
        lines = [
            f"system-matrix cache {self.directory}: {len(self.entries)} files, "
            f"{format_bytes(self.total_bytes)} ({cap}, ${MAX_BYTES_VARIABLE})"
        ]
        for e in self.entries:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used))
            lines.append(f"  {format_bytes(e.nbytes):>10}  {when}  {e.path.name}")
        return "\n".join(lines)


def _entries(directory: Path) -> list[CacheEntry]:
    found = []
    try:
        paths = list(directory.glob("*.npz"))
    except OSError:
        return []
    for path in paths:
        try:
            st = path.stat()
        except OSError:  # deleted meanwhile by another process
            continue
        found.append(CacheEntry(path, st.st_size, st.st_mtime))
    found.sort(key=lambda e: (-e.last_used, e.path.name))
    return found


def cache_info(directory: str | os.PathLike | None = None) -> CacheInfo:
    """What the cache holds: its ``*.npz`` matrices, most recently used first, and the cap.

    ``directory`` defaults to :func:`default_cache_dir`; a missing folder is an empty cache.

    Example
    -------
    >>> import tempfile
    >>> print(cache_info(Path(tempfile.mkdtemp())))  # doctest: +ELLIPSIS
    system-matrix cache ...: 0 files, 0 B (...)
    """
    directory = default_cache_dir() if directory is None else Path(directory)
    return CacheInfo(directory, tuple(_entries(directory)), max_cache_bytes())


def mark_used(path: str | os.PathLike) -> None:
    """Set ``path``'s modification time to now, so that eviction sees it as recently used.

    Fails silently (a read-only cache stays usable; it is just not reordered).
    """
    try:
        os.utime(path)
    except OSError as error:
        log.debug("could not mark %s as used: %s", path, error)


def _delete_unless_locked(entry: CacheEntry) -> bool:
    """Delete ``entry`` unless another process holds its lock; ``True`` if its bytes are gone."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(entry.path) + ".lock", timeout=0)
    try:
        with lock:
            entry.path.unlink()
    except FileNotFoundError:
        return True  # another process deleted it first
    except Timeout:
        log.info("system-matrix cache: %s is being written by another process; kept", entry.path)
        return False
    except OSError as error:
        log.warning("system-matrix cache: could not delete %s (%s)", entry.path, error)
        return False
    return True


def evict(
    directory: str | os.PathLike | None = None,
    *,
    keep: str | os.PathLike | None = None,
    max_bytes: int | None | str = "env",
) -> list[CacheEntry]:
    """Delete least recently used matrices until the folder's total is at most ``max_bytes``.

    Parameters
    ----------
    directory
        The cache folder (default :func:`default_cache_dir`).
    keep
        A file never deleted (the one just built), even if it alone exceeds the cap.
    max_bytes
        The cap; default ``"env"``: :func:`max_cache_bytes`. ``None``: no cap, nothing deleted.

    Returns
    -------
    list of CacheEntry
        The files deleted, least recently used first.

    Example
    -------
    >>> import tempfile
    >>> evict(Path(tempfile.mkdtemp()), max_bytes=0)
    []
    """
    directory = default_cache_dir() if directory is None else Path(directory)
    cap = max_cache_bytes() if max_bytes == "env" else max_bytes
    if cap is None:
        return []
    keep_path = None if keep is None else Path(keep).absolute()
    entries = _entries(directory)
    total = sum(e.nbytes for e in entries)
    removed = []
    for entry in reversed(entries):  # least recently used first
        if total <= cap:
            break
        if entry.path.absolute() == keep_path:
            continue
        if _delete_unless_locked(entry):
            total -= entry.nbytes
            removed.append(entry)
            log.info(
                "system-matrix cache: deleted %s (%s, least recently used) to stay within %s",
                entry.path,
                format_bytes(entry.nbytes),
                format_bytes(cap),
            )
    if total > cap and keep_path is not None:
        log.warning(
            "system-matrix cache %s holds %s, over its cap of %s; raise %s to keep more",
            directory,
            format_bytes(total),
            format_bytes(cap),
            MAX_BYTES_VARIABLE,
        )
    return removed


def clear_cache(directory: str | os.PathLike | None = None) -> list[CacheEntry]:
    """Delete every cached matrix (and temporary files of crashed writers, untouched for
    :data:`STALE_TEMP_SECONDS`); they are rebuilt when next needed. Returns what was deleted.

    Lock files are kept: they are empty, and deleting one that another process holds would let
    two processes build the same matrix at once. Delete the folder itself when no tomolearn
    process runs.

    Example
    -------
    >>> import tempfile
    >>> clear_cache(Path(tempfile.mkdtemp()))
    []
    """
    directory = default_cache_dir() if directory is None else Path(directory)
    removed = [e for e in _entries(directory) if _delete_unless_locked(e)]
    now = time.time()
    for tmp in directory.glob("*.tmp") if directory.is_dir() else ():
        try:
            st = tmp.stat()
            if now - st.st_mtime > STALE_TEMP_SECONDS:
                tmp.unlink()
                removed.append(CacheEntry(tmp, st.st_size, st.st_mtime))
        except OSError:
            continue
    if removed:
        total = sum(e.nbytes for e in removed)
        log.info("cleared %s from the system-matrix cache %s", format_bytes(total), directory)
    return removed


def main(argv: list[str] | None = None) -> int:
    """``python -m operators.ct.matrix_cache [--clear] [--dir DIR]``: print or clear the cache."""
    parser = argparse.ArgumentParser(
        prog="python -m operators.ct.matrix_cache",
        description="Show (or clear) tomolearn's system-matrix cache.",
    )
    parser.add_argument("--clear", action="store_true", help="delete every cached matrix")
    parser.add_argument("--dir", default=None, help="cache folder (default: the user's)")
    args = parser.parse_args(argv)
    if args.clear:
        removed = clear_cache(args.dir)
        total = sum(e.nbytes for e in removed)
        print(f"deleted {len(removed)} files, {format_bytes(total)}")
    print(cache_info(args.dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
