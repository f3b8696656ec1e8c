"""The system-matrix cache: reuse, corrupt or altered files, concurrent writers, read-only and
unwritable folders, the cache-dir override; build logging, the LRU size cap, inspecting and
clearing the cache."""

from __future__ import annotations

import errno
import multiprocessing as mp
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from operators import Parallel2D, RayTransform
from operators.ct.matrix_backend import (
    cache_dir,
    cache_key,
    check_against_astra,
    load_matrix,
    load_or_build,
    save_matrix,
)
from operators.ct.matrix_cache import (
    MAX_BYTES_VARIABLE,
    cache_info,
    clear_cache,
    evict,
    format_bytes,
    max_cache_bytes,
)

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
    again = load_matrix(path, key=cache_key(GEOM), shape=good.shape)
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
        save_matrix(path, m, meta={"key": "x"})
    assert path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


# ------------------------------------------------------------------------------ altered files
def _rewrite(path: Path, *, scale: float, keep_checksum: bool) -> None:
    """Multiply the stored values by ``scale``; keep the old checksum or write a matching one."""
    with np.load(path) as f:
        arrays = {name: f[name] for name in f.files}
    arrays["data"] = (arrays["data"] * scale).astype(np.float32)
    if keep_checksum:
        np.savez(path, **arrays)
        return
    meta = json_meta(arrays)
    shape = tuple(int(n) for n in arrays["shape"])
    matrix = sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
    path.unlink()
    save_matrix(path, matrix, meta=meta)


def json_meta(arrays: dict) -> dict:
    import json

    return json.loads(arrays["meta"].tobytes().decode())


@pytest.mark.parametrize("keep_checksum", [True, False], ids=["stale-checksum", "new-checksum"])
def test_an_altered_matrix_is_refused_and_rebuilt(tmp_path, caplog, keep_checksum):
    """Issue 31, item 11: a valid .npz with values x1.5 under the right key was used."""
    good = load_or_build(GEOM, directory=tmp_path)
    (path,) = _entries(tmp_path)
    _rewrite(path, scale=1.5, keep_checksum=keep_checksum)
    with caplog.at_level("WARNING"):
        rebuilt = load_or_build(GEOM, directory=tmp_path)
    assert path.name in caplog.text and "rebuilding" in caplog.text
    reason = "does not match its checksum" if keep_checksum else "disagrees with ASTRA"
    assert reason in caplog.text
    assert (good != rebuilt).nnz == 0
    assert (load_matrix(path, key=cache_key(GEOM), shape=good.shape) != good).nnz == 0


def test_a_file_without_checksum_is_refused(tmp_path):
    good = load_or_build(GEOM, directory=tmp_path)
    (path,) = _entries(tmp_path)
    with np.load(path) as f:
        arrays = {name: f[name] for name in f.files if name != "sha256"}
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="has no checksum"):
        load_matrix(path, key=cache_key(GEOM), shape=good.shape)


def test_spot_check_catches_one_altered_row_and_passes_the_true_matrix():
    good = load_or_build(GEOM)
    check_against_astra(good, GEOM)
    altered = good.tolil()
    row = good.shape[0] // 2
    altered[row] = altered[row] * 1.5
    with pytest.raises(ValueError, match="disagrees with ASTRA's projector"):
        check_against_astra(altered.tocsr(), GEOM)
    with pytest.raises(ValueError, match="disagrees"):  # a matrix of another geometry
        other = Parallel2D((20, 20), n_angles=9, n_detectors=GEOM.n_detectors, detector_spacing=1.1)
        check_against_astra(good, other)
    with pytest.raises(ValueError, match=r"has shape \(261, 400\), not the \(203, 400\)"):
        check_against_astra(good, Parallel2D((20, 20), n_angles=7))


# ------------------------------------------------------------------------------ unwritable caches
@pytest.fixture
def read_only(monkeypatch):
    """``read_only(folder)``: writes under ``folder`` fail with EROFS, as on a read-only mount
    (chmod does not stop root, who runs these tests in containers)."""
    folders: list[Path] = []
    real = {name: getattr(os, name) for name in ("open", "mkdir", "replace", "unlink", "rename")}

    def inside(path) -> bool:
        p = Path(os.fsdecode(path)).absolute()
        return any(p == f or f in p.parents for f in folders)

    def refuse(path):
        raise OSError(errno.EROFS, "Read-only file system", os.fsdecode(path))

    def guarded_open(path, flags, *args, **kwargs):
        writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
        if writing and inside(path):
            refuse(path)
        return real["open"](path, flags, *args, **kwargs)

    def guarded(name, n_paths):
        def call(*args, **kwargs):
            if any(inside(path) for path in args[:n_paths]):
                refuse(args[0])
            return real[name](*args, **kwargs)

        return call

    monkeypatch.setattr(os, "open", guarded_open)
    for name, n_paths in (("mkdir", 1), ("unlink", 1), ("replace", 2), ("rename", 2)):
        monkeypatch.setattr(os, name, guarded(name, n_paths))
    return lambda folder: folders.append(Path(folder).absolute())


def test_a_read_only_cache_is_read_without_a_lock(tmp_path, monkeypatch, read_only):
    """Issue 31, item 6: a read-only cache holding the matrix but no lock file was fatal."""
    good = load_or_build(GEOM, directory=tmp_path)
    for lock in tmp_path.glob("*.lock"):
        lock.unlink()
    read_only(tmp_path)
    monkeypatch.setattr(
        "filelock.FileLock", lambda *a, **k: pytest.fail("took a lock to read a valid matrix")
    )
    monkeypatch.setattr(
        "operators.ct.astra_backend.AstraCPU2D.system_matrix",
        lambda self: pytest.fail("rebuilt although the cache was valid"),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = load_or_build(GEOM, directory=tmp_path)
    assert (m != good).nnz == 0


def test_a_read_only_cache_with_an_altered_file_builds_in_memory(tmp_path, read_only):
    good = load_or_build(GEOM, directory=tmp_path)
    (path,) = _entries(tmp_path)
    _rewrite(path, scale=1.5, keep_checksum=False)
    read_only(tmp_path)
    with pytest.warns(RuntimeWarning, match=r"cannot be written .*TOMOLEARN_CACHE_DIR"):
        m = load_or_build(GEOM, directory=tmp_path)
    assert (m != good).nnz == 0


def test_an_unwritable_cache_builds_the_matrix_in_memory(tmp_path):
    (tmp_path / "a-file").write_text("")
    blocked = tmp_path / "a-file" / "system_matrices"  # cannot be created, even by root
    with pytest.warns(RuntimeWarning, match=rf"cache {blocked} cannot be written"):
        m = load_or_build(GEOM, directory=blocked)
    assert (m != load_or_build(GEOM, directory=tmp_path / "ok")).nnz == 0


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_a_chmod_read_only_cache_is_read_and_not_fatal(tmp_path):
    good = load_or_build(GEOM, directory=tmp_path)
    for lock in tmp_path.glob("*.lock"):
        lock.unlink()
    tmp_path.chmod(0o555)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert (load_or_build(GEOM, directory=tmp_path) != good).nnz == 0
        other = Parallel2D((20, 20), n_angles=7)
        with pytest.warns(RuntimeWarning, match="cannot be written"):
            load_or_build(other, directory=tmp_path)
    finally:
        tmp_path.chmod(0o755)


def test_auto_backend_with_an_unwritable_cache_works_with_one_warning(tmp_path):
    """Issue 31, item 6: ``backend="auto"`` with an unwritable cache raised."""
    (tmp_path / "a-file").write_text("")
    A = RayTransform(GEOM, cache_directory=str(tmp_path / "a-file" / "cache"))
    x = torch.rand(2, *GEOM.image_shape, generator=torch.Generator().manual_seed(0))
    with pytest.warns(RuntimeWarning, match="cannot be written") as record:
        y = A(x)
        A(x)
        A.T(y)
    assert len([w for w in record if "cannot be written" in str(w.message)]) == 1
    assert A.resolve_backend("cpu") == "matrix"
    reference = RayTransform(GEOM, backend="astra")(x)
    torch.testing.assert_close(y, reference, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------ size cap, logging
# Issue 37, item 8: the cache wrote 442 MB without a word and never shrank.
def _geometry(n_angles: int) -> Parallel2D:
    return Parallel2D((8, 8), n_angles=n_angles)


def test_a_build_logs_its_size_time_and_path(tmp_path, caplog):
    with caplog.at_level("INFO", logger="operators.ct.matrix_backend"):
        load_or_build(_geometry(4), directory=tmp_path)
    (path,) = _entries(tmp_path)
    (record,) = [r for r in caplog.records if "built the system matrix" in r.getMessage()]
    message = record.getMessage()
    assert record.levelname == "INFO"  # small and fast: not announced at WARNING
    assert str(path) in message and "Parallel2D 8x8, 4 angles" in message
    assert format_bytes(path.stat().st_size) in message and " s: " in message
    assert "python -m operators.ct.matrix_cache" in message
    caplog.clear()
    with caplog.at_level("INFO", logger="operators.ct.matrix_backend"):
        load_or_build(_geometry(4), directory=tmp_path)  # loaded: no build, no message
    assert "built" not in caplog.text


def test_a_slow_or_large_build_is_announced_at_warning(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr("operators.ct.matrix_backend.NOTICE_BYTES", 100)
    with caplog.at_level("WARNING", logger="operators.ct.matrix_backend"):
        load_or_build(_geometry(4), directory=tmp_path)
    assert [r.levelname for r in caplog.records if "built" in r.getMessage()] == ["WARNING"]


def test_loading_marks_a_file_used(tmp_path):
    load_or_build(_geometry(4), directory=tmp_path)
    (path,) = _entries(tmp_path)
    os.utime(path, (1_000_000, 1_000_000))
    load_or_build(_geometry(4), directory=tmp_path)
    assert path.stat().st_mtime > 1_000_000 + 3600


def _build_all(tmp_path, angles) -> dict[int, Path]:
    """Build one 8x8 matrix per angle count, as if used at times 1000, 2000, ... in order."""
    paths = {}
    for i, n in enumerate(angles):
        load_or_build(_geometry(n), directory=tmp_path)
        paths[n] = tmp_path / f"{cache_key(_geometry(n))}.npz"
        os.utime(paths[n], (1000.0 * (i + 1), 1000.0 * (i + 1)))
    return paths


def test_lru_eviction_deletes_the_least_recently_used_first(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(MAX_BYTES_VARIABLE, "none")
    paths = _build_all(tmp_path, [3, 4, 5])  # used in the order 3, 4, 5
    load_or_build(_geometry(3), directory=tmp_path)  # 3 is now the most recently used
    size = {n: p.stat().st_size for n, p in paths.items()}
    new = tmp_path / f"{cache_key(_geometry(6))}.npz"
    load_or_build(_geometry(6), directory=tmp_path / "probe")  # to learn its size
    size[6] = (tmp_path / "probe" / new.name).stat().st_size
    # room for 3, 5 and the new file: building it must delete 4 (the LRU) only
    monkeypatch.setenv(MAX_BYTES_VARIABLE, str(size[3] + size[5] + size[6] + 100))
    with caplog.at_level("INFO"):
        load_or_build(_geometry(6), directory=tmp_path)
    assert set(_entries(tmp_path)) == {paths[3], paths[5], new}
    assert "deleted 1 least recently used files" in caplog.text
    # a cap that fits nothing: all but the file just built go, least recently used first
    monkeypatch.setenv(MAX_BYTES_VARIABLE, "0")
    with caplog.at_level("WARNING"):
        load_or_build(_geometry(7), directory=tmp_path)
    assert _entries(tmp_path) == [tmp_path / f"{cache_key(_geometry(7))}.npz"]
    assert "over its cap" in caplog.text


def test_evict_order_keep_and_no_cap(tmp_path):
    paths = _build_all(tmp_path, [3, 4, 5])
    assert evict(tmp_path, max_bytes=None) == []
    removed = evict(tmp_path, max_bytes=0, keep=paths[3])
    assert [e.path for e in removed] == [paths[4], paths[5]]  # least recently used first
    assert _entries(tmp_path) == [paths[3]]


def test_eviction_spares_locked_temporary_and_lock_files(tmp_path):
    from filelock import FileLock

    paths = _build_all(tmp_path, [3, 4])
    temp = tmp_path / f"{paths[3].name}.abc.tmp"  # another process's write in progress
    temp.write_bytes(b"x" * 10_000)
    with FileLock(str(paths[3]) + ".lock"):  # held by "another process" that rebuilds it
        removed = evict(tmp_path, max_bytes=0)
    assert [e.path for e in removed] == [paths[4]]
    assert paths[3].exists() and temp.exists()
    assert {p.name for p in tmp_path.glob("*.lock")} >= {p.name + ".lock" for p in paths.values()}


def test_eviction_tolerates_a_file_deleted_by_another_process(tmp_path, monkeypatch):
    paths = _build_all(tmp_path, [3, 4])
    real_unlink = Path.unlink

    def raced(self, *args, **kwargs):  # another process deletes it just before us
        real_unlink(self, *args, **kwargs)
        raise FileNotFoundError(self)

    monkeypatch.setattr(Path, "unlink", raced)
    removed = evict(tmp_path, max_bytes=0, keep=paths[4])
    assert [e.path for e in removed] == [paths[3]]
    assert _entries(tmp_path) == [paths[4]]


def test_a_file_evicted_between_stat_and_load_is_rebuilt(tmp_path, monkeypatch, caplog):
    load_or_build(_geometry(4), directory=tmp_path)
    (path,) = _entries(tmp_path)

    def gone(*args, **kwargs):
        path.unlink()
        raise FileNotFoundError(path)

    monkeypatch.setattr("operators.ct.matrix_backend.load_matrix", gone)
    with caplog.at_level("INFO"):
        m = load_or_build(_geometry(4), directory=tmp_path)
    assert "deleted meanwhile" in caplog.text and "unreadable" not in caplog.text
    assert m.shape == (4 * _geometry(4).n_detectors, 64) and path.exists()


def test_cache_info_and_clear_cache_use_the_environment_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TOMOLEARN_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(MAX_BYTES_VARIABLE, "1G")
    for n in (3, 4):
        RayTransform(_geometry(n), backend="matrix")(torch.zeros(8, 8))  # builds on first use
    info = cache_info()
    folder = tmp_path / "system_matrices"
    assert info.directory == folder and len(info.entries) == 2 and info.max_bytes == 1024**3
    assert info.total_bytes == sum(p.stat().st_size for p in folder.glob("*.npz")) > 0
    assert "2 files" in str(info) and "cap 1.00 GiB" in str(info)
    stale = folder / "x.npz.123.tmp"  # debris of a crashed writer
    stale.write_bytes(b"x")
    os.utime(stale, (1000, 1000))
    fresh = folder / "y.npz.456.tmp"  # a write in progress
    fresh.write_bytes(b"x")
    removed = clear_cache()
    assert len(removed) == 3 and not list(folder.glob("*.npz")) and not stale.exists()
    assert fresh.exists()
    assert cache_info().entries == () and cache_info().total_bytes == 0


def test_cache_command_line_shows_and_clears(tmp_path, capsys):
    from operators.ct.matrix_cache import main

    load_or_build(_geometry(4), directory=tmp_path)
    assert main(["--dir", str(tmp_path)]) == 0
    assert "1 files" in capsys.readouterr().out
    assert main(["--dir", str(tmp_path), "--clear"]) == 0
    out = capsys.readouterr().out
    assert "deleted 1 files" in out and "0 files, 0 B" in out
    assert _entries(tmp_path) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 2 * 1024**3),
        ("12345", 12345),
        ("500M", 500 * 1024**2),
        ("2 GiB", 2 * 1024**3),
        ("1.5GB", 1_500_000_000),
        ("none", None),
        ("Unlimited", None),
        ("0", 0),
    ],
)
def test_cache_cap_from_the_environment(monkeypatch, text, expected):
    monkeypatch.setenv(MAX_BYTES_VARIABLE, text)
    assert max_cache_bytes() == expected


def test_a_malformed_cap_fails_before_building(tmp_path, monkeypatch):
    monkeypatch.setenv(MAX_BYTES_VARIABLE, "2 gigs")
    monkeypatch.setattr(
        "operators.ct.astra_backend.AstraCPU2D.system_matrix",
        lambda self: pytest.fail("built before checking the cap"),
    )
    with pytest.raises(ValueError, match=r"TOMOLEARN_CACHE_MAX_BYTES='2 gigs' is not a size"):
        load_or_build(_geometry(4), directory=tmp_path)
