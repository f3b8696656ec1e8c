"""The system-matrix cache: reuse, corrupt files, concurrent writers, the cache-dir override."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest

from operators import Parallel2D
from operators.ct import matrix_backend
from operators.ct.matrix_backend import cache_dir, cache_key, load_or_build

GEOM = Parallel2D((20, 20), n_angles=9)


def _entries(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix == ".npz")


def test_cache_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TOMOLEARN_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" / "system_matrices"
    assert cache_dir().is_dir()


def test_built_once_then_loaded(tmp_path, monkeypatch):
    first = load_or_build(GEOM, directory=tmp_path)
    (path,) = _entries(tmp_path)
    assert path.name.startswith(cache_key(GEOM))
    # A second call must not rebuild: make building fail and load again.
    monkeypatch.setattr(
        "operators.ct.astra_backend.AstraCPU2D.system_matrix",
        lambda self: pytest.fail("rebuilt although the cache was valid"),
    )
    second = load_or_build(GEOM, directory=tmp_path)
    assert (first != second).nnz == 0
    assert second.dtype == np.float32 and second.shape == (9 * GEOM.n_detectors, 400)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda p: p.write_bytes(b"not a zip file"), id="garbage"),
        pytest.param(
            lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), id="truncated"
        ),
        pytest.param(lambda p: p.write_bytes(b""), id="empty"),
    ],
)
def test_corrupt_file_is_rebuilt(tmp_path, damage, caplog):
    good = load_or_build(GEOM, directory=tmp_path)
    (path,) = _entries(tmp_path)
    damage(path)
    with caplog.at_level("WARNING"):
        rebuilt = load_or_build(GEOM, directory=tmp_path)
    assert "rebuilding" in caplog.text
    assert (good != rebuilt).nnz == 0
    # and the file on disk is valid again
    again = matrix_backend._load(path, good.shape, cache_key(GEOM))
    assert (good != again).nnz == 0


def test_file_of_another_geometry_is_not_trusted(tmp_path):
    other = Parallel2D((20, 20), n_angles=10)
    load_or_build(other, directory=tmp_path)
    (other_path,) = _entries(tmp_path)
    target = tmp_path / f"{cache_key(GEOM)}.npz"
    target.write_bytes(other_path.read_bytes())
    m = load_or_build(GEOM, directory=tmp_path)
    assert m.shape == (9 * GEOM.n_detectors, 400)


def _build_in_child(directory: str, queue) -> None:
    m = load_or_build(GEOM, directory=Path(directory))
    queue.put((m.nnz, float(m.data.sum())))


def test_concurrent_writers_leave_one_valid_file(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_build_in_child, args=(str(tmp_path), queue)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    results = [queue.get(timeout=5) for _ in procs]
    assert len(set(results)) == 1
    assert len(_entries(tmp_path)) == 1
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]
    m = load_or_build(GEOM, directory=tmp_path)
    assert (m.nnz, float(m.data.sum())) == results[0]


def test_atomic_save_never_leaves_a_partial_file(tmp_path, monkeypatch):
    m = load_or_build(GEOM, directory=tmp_path)
    path = _entries(tmp_path)[0]
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        matrix_backend._save_atomic(path, m, {"key": "x"})
    assert path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]
