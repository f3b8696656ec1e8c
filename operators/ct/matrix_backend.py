"""The ``matrix`` backend: ASTRA's 2D system matrix, cached on disk, applied as a sparse product.

The matrix ``W`` (float32 values, int32 indices, CSR) is exported once from ASTRA's CPU projector
and saved under the cache directory, keyed by a hash of the geometry. The transpose is
precomputed for the adjoint. Products run over chunks of ``chunk_size`` images (16–32 is
fastest on CPU) and work on CUDA tensors too (the matrix is copied once per device and dtype).

Cache directory: ``$TOMOLEARN_CACHE_DIR`` if set, else the user cache dir (``platformdirs``), in a
``system_matrices`` subfolder. What the cache is trusted with: nothing. A file is used only if it
matches the SHA-256 checksum stored with it, holds the matrix of the requested geometry, and a
projection of a random image agrees with ASTRA; anything else is logged, naming the file, and
rebuilt. Files are written to a temporary name and renamed atomically, under a file lock, so
concurrent processes never see a partial file, and reading needs no lock, so a read-only cache
works. A cache that cannot be written is not fatal: the matrix is built in memory, with a warning.

Every build is logged with the file's size, the build time and the path. It is logged at INFO,
and at WARNING when it took more than :data:`NOTICE_SECONDS` (2 s) or wrote more than
:data:`NOTICE_BYTES` (50 MiB): Python shows only WARNING and above unless the application
configures logging, and a script that silently spends seconds and leaves hundreds of MB in the
user's cache is what a user should hear about once. Logging, rather than ``print`` or
``warnings.warn``, lets a user silence it (``logging.getLogger("operators.ct").setLevel(
logging.ERROR)``) and is not deduplicated per call site. Routine small builds stay at INFO.

The folder is capped (``$TOMOLEARN_CACHE_MAX_BYTES``, default 2 GiB; least recently used files
are deleted after a build, never the one just built) and can be inspected and cleared with
:mod:`operators.ct.matrix_cache` (``python -m operators.ct.matrix_cache [--clear]``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch

from operators.ct.geometry import FanBeam2D, Parallel2D
from operators.ct.vector_geometry import GEOMETRIES_2D

if TYPE_CHECKING:
    from operators.ct.matrix_cache import CacheEntry

log = logging.getLogger(__name__)

#: Bump when the stored format or the projector choice changes.
CACHE_FORMAT = 2
#: Default cap on matrix + transpose bytes for ``backend="auto"`` to pick ``matrix``.
DEFAULT_MAX_BYTES = 2 * 1024**3
#: Dense bytes (inputs + outputs) per sparse product when ``chunk_size`` is not given.
CHUNK_BYTES = 8 * 1024**2
#: Largest disagreement with ASTRA, relative to the largest value, of a cached matrix on load
#: (measured: below 2e-6 up to 256²).
SPOT_CHECK_RTOL = 1e-4
#: A build slower than this (seconds), or a file larger than :data:`NOTICE_BYTES`, is announced
#: at WARNING level, which Python shows by default; smaller ones are logged at INFO.
NOTICE_SECONDS = 2.0
#: See :data:`NOTICE_SECONDS`.
NOTICE_BYTES = 50 * 1024**2


def default_cache_dir() -> Path:
    """The system-matrix cache folder, not created: ``$TOMOLEARN_CACHE_DIR/system_matrices`` if
    the variable is set, else ``system_matrices`` in the user cache dir (``platformdirs``).

    Example
    -------
    >>> default_cache_dir().name
    'system_matrices'
    """
    root = os.environ.get("TOMOLEARN_CACHE_DIR")
    if root:
        base = Path(root)
    else:
        import platformdirs

        base = Path(platformdirs.user_cache_dir("tomolearn"))
    return base / "system_matrices"


def cache_dir() -> Path:
    """The system-matrix cache folder (created if missing); see :func:`default_cache_dir`."""
    path = default_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def estimated_bytes(geometry: Parallel2D | FanBeam2D) -> int:
    """Estimated bytes of matrix + transpose (float32 values, int32 indices).

    Each ray crosses about ``1.8·N`` pixels for the Joseph projector (fewer for line kernels), so
    ``nnz ≈ 1.8 · n_angles · n_detectors · N / √2 ≈ 1.8 · n_angles · N²`` for a square image.
    """
    H, W = geometry.image_shape
    nnz = 1.8 * geometry.n_angles * geometry.n_detectors * max(H, W) / np.sqrt(2)
    rows = geometry.n_angles * geometry.n_detectors
    return int(2 * nnz * 8 + 4 * (rows + H * W))


def cache_key(geometry: Parallel2D | FanBeam2D) -> str:
    """Cache key: hash of the geometry, the format version and ASTRA's version."""
    from operators.ct.astra_backend import import_astra

    astra = import_astra()
    version = getattr(astra, "__version__", "unknown")
    return f"{type(geometry).__name__}-{geometry.fingerprint()[:24]}-f{CACHE_FORMAT}-astra{version}"


def _digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the named arrays, in name order, each as its dtype, shape and bytes."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def save_matrix(path: Path, matrix: sp.csr_matrix, *, meta: dict) -> None:
    """Write ``matrix`` (CSR) and ``meta`` to ``path`` as ``.npz`` with a SHA-256 checksum of
    them, atomically: a temporary file in the same folder, then ``os.replace``.

    Raises ``OSError`` (after removing the temporary file) if the folder cannot be written.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "m.npz"
    >>> save_matrix(path, sp.csr_matrix(np.eye(3, dtype=np.float32)), meta={"key": "eye"})
    >>> float(load_matrix(path, key="eye", shape=(3, 3)).toarray().trace())
    3.0
    """
    arrays = {
        "indptr": matrix.indptr.astype(np.int64),
        "indices": matrix.indices.astype(np.int32),
        "data": matrix.data.astype(np.float32),
        "shape": np.asarray(matrix.shape, dtype=np.int64),
        "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
    }
    checksum = np.frombuffer(_digest(arrays).encode(), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, sha256=checksum, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_matrix(path: Path, *, key: str, shape: tuple[int, int]) -> sp.csr_matrix:
    """Read a matrix written by :func:`save_matrix`, checking that it is the one expected.

    Raises
    ------
    ValueError
        If the file has no checksum or its arrays do not match it, it holds another key or shape,
        or the CSR structure is invalid. (A file that is not an ``.npz`` raises what
        :func:`numpy.load` raises.)

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "m.npz"
    >>> save_matrix(path, sp.csr_matrix(np.eye(2, dtype=np.float32)), meta={"key": "eye"})
    >>> load_matrix(path, key="other", shape=(2, 2))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: cache file ... holds another matrix (eye, (2, 2))
    """
    names = ("indptr", "indices", "data", "shape", "meta")
    with np.load(path, allow_pickle=False) as f:
        if "sha256" not in f.files or not set(names) <= set(f.files):
            raise ValueError(f"cache file {path} has no checksum or misses arrays: {f.files}")
        arrays = {name: f[name] for name in names}
        stored = f["sha256"].tobytes().decode(errors="replace")
    if _digest(arrays) != stored:
        raise ValueError(f"cache file {path} does not match its checksum: it was altered")
    meta = json.loads(arrays["meta"].tobytes().decode())
    found = tuple(int(s) for s in arrays["shape"])
    if meta.get("key") != key or found != tuple(shape):
        raise ValueError(f"cache file {path} holds another matrix ({meta.get('key')}, {found})")
    matrix = sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=found)
    matrix.check_format(full_check=True)
    return matrix


def check_against_astra(
    matrix: sp.csr_matrix, geometry: Parallel2D | FanBeam2D, *, rtol: float = SPOT_CHECK_RTOL
) -> None:
    """Spot-check ``matrix`` against ASTRA's projector: one projection of a random image.

    Every entry of ``W x`` must agree with ASTRA's projection of ``x`` to within ``rtol`` times
    the largest; a matrix of another geometry, or with even one entry altered by a few per cent,
    fails. It costs one CPU projection (12 ms at 128² with 30 angles).

    Raises
    ------
    ValueError
        On a disagreement, stating its size, or a shape that is not the geometry's.

    Example
    -------
    >>> g = Parallel2D((8, 8), n_angles=4)
    >>> from operators.ct.astra_backend import AstraCPU2D
    >>> W = AstraCPU2D(g, threads=1).system_matrix()
    >>> check_against_astra(W, g)
    >>> check_against_astra(W * 1.5, g)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: the matrix disagrees with ASTRA's projector by 0.5 of the largest value (...)
    """
    from operators.ct.astra_backend import AstraCPU2D

    expected = (geometry.n_angles * geometry.n_detectors, math.prod(geometry.image_shape))
    if tuple(matrix.shape) != expected:
        raise ValueError(
            f"the matrix has shape {tuple(matrix.shape)}, not the {expected} of the geometry"
        )
    x = np.random.default_rng().random(matrix.shape[1], dtype=np.float32)
    image = torch.from_numpy(x).reshape(1, *geometry.image_shape)
    reference = AstraCPU2D(geometry, threads=1).forward(image)[0].reshape(-1).numpy()
    scale = float(np.abs(reference).max())
    error = float(np.abs(matrix @ x - reference).max()) / max(scale, np.finfo(np.float32).tiny)
    if not error <= rtol:
        raise ValueError(
            f"the matrix disagrees with ASTRA's projector by {error:.2g} of the largest value "
            f"(tolerance {rtol:g})"
        )


def _writable(directory: Path) -> OSError | None:
    """``None`` if a file can be created in ``directory`` (made if missing), else the error."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        return error
    return None


def _load_checked(
    path: Path, geometry: Parallel2D | FanBeam2D, key: str, shape: tuple[int, int]
) -> sp.csr_matrix | None:
    """The verified matrix in ``path`` (then marked as used), or ``None`` (logged, naming the
    file) if it fails."""
    try:
        matrix = load_matrix(path, key=key, shape=shape)
        check_against_astra(matrix, geometry)
    except FileNotFoundError:
        log.info("system-matrix cache %s was deleted meanwhile (evicted?); rebuilding", path)
        return None
    except Exception as err:  # noqa: BLE001 - any unreadable or untrusted file is rebuilt
        log.warning("system-matrix cache %s is unreadable or untrusted (%s); rebuilding", path, err)
        return None
    from operators.ct.matrix_cache import mark_used

    mark_used(path)
    return matrix


def _describe(geometry: Parallel2D | FanBeam2D) -> str:
    h, w = geometry.image_shape
    return (
        f"{type(geometry).__name__} {h}x{w}, {geometry.n_angles} angles, "
        f"{geometry.n_detectors} detectors"
    )


def _build(geometry: Parallel2D | FanBeam2D) -> tuple[sp.csr_matrix, float]:
    from operators.ct.astra_backend import AstraCPU2D

    start = time.perf_counter()
    matrix = AstraCPU2D(geometry, threads=1).system_matrix()
    return matrix, time.perf_counter() - start


def report_build(
    path: Path,
    geometry: Parallel2D | FanBeam2D,
    *,
    seconds: float,
    nbytes: int,
    evicted: Sequence[CacheEntry] = (),
) -> None:
    """Log that ``path`` (``nbytes``) was built for ``geometry`` in ``seconds``, with the cache's
    total and the files ``evicted`` to make room; at WARNING when slow or large (module
    docstring), else INFO.

    Example
    -------
    >>> import tempfile                                      # INFO: nothing shown by default
    >>> report_build(Path(tempfile.mkdtemp()) / "m.npz", Parallel2D((8, 8), n_angles=4),
    ...              seconds=0.1, nbytes=1234)
    """
    from operators.ct.matrix_cache import cache_info, format_bytes

    info = cache_info(path.parent)
    cap = "no cap" if info.max_bytes is None else f"cap {format_bytes(info.max_bytes)}"
    freed = ""
    if evicted:
        total = format_bytes(sum(e.nbytes for e in evicted))
        freed = f"; deleted {len(evicted)} least recently used files ({total}) to stay under it"
    level = logging.WARNING if seconds > NOTICE_SECONDS or nbytes > NOTICE_BYTES else logging.INFO
    log.log(
        level,
        "built the system matrix of %s in %.1f s: %s written to %s (the cache holds %s, %s%s; "
        "inspect or clear it with `python -m operators.ct.matrix_cache [--clear]`)",
        _describe(geometry),
        seconds,
        format_bytes(nbytes),
        path,
        format_bytes(info.total_bytes),
        cap,
        freed,
    )


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def load_or_build(geometry: Parallel2D | FanBeam2D, *, directory: Path | None = None):
    """Return the float32 CSR system matrix of ``geometry``, from the cache or built with ASTRA.

    A cached file is used only if it matches its SHA-256 checksum and its key, and a projection
    of a random image agrees with ASTRA (:func:`check_against_astra`); otherwise a warning naming
    the file is logged and the matrix rebuilt. Reading needs no lock, so a read-only cache works.
    Builders serialise on a file lock, and each write is atomic (temporary file +
    ``os.replace``), so a reader never sees a partial file.

    A build is logged with its size, time and path (:func:`report_build`); then the least
    recently used files are deleted while the folder exceeds its cap
    (:func:`operators.ct.matrix_cache.evict`), never the file just built. A file loaded is marked
    as used.

    If the cache folder cannot be written, the matrix is built in memory for this process, with
    one warning saying how to fix it (``TOMOLEARN_CACHE_DIR`` or ``cache_directory``).

    Example
    -------
    >>> import tempfile
    >>> load_or_build(Parallel2D((8, 8), n_angles=4), directory=Path(tempfile.mkdtemp())).shape
    (48, 64)
    """
    from filelock import FileLock

    # Imported here: ``python -m operators.ct.matrix_cache`` must find it not yet imported.
    from operators.ct.matrix_cache import evict, max_cache_bytes

    directory = default_cache_dir() if directory is None else Path(directory)
    max_cache_bytes()  # a malformed $TOMOLEARN_CACHE_MAX_BYTES fails before a long build
    key = cache_key(geometry)
    path = directory / f"{key}.npz"
    rows = geometry.n_angles * geometry.n_detectors
    expected = (rows, int(np.prod(geometry.image_shape)))
    seen = _stat(path)
    # Files only ever appear through os.replace, so reading without the lock is safe.
    if seen is not None and (matrix := _load_checked(path, geometry, key, expected)) is not None:
        return matrix
    problem = _writable(directory)
    if problem is None:
        try:
            with FileLock(str(path) + ".lock", timeout=600):
                now = _stat(path)
                if now is not None and now != seen:  # another process wrote it while we waited
                    matrix = _load_checked(path, geometry, key, expected)
                    if matrix is not None:
                        return matrix
                matrix, seconds = _build(geometry)
                save_matrix(path, matrix, meta={"key": key, "geometry": geometry.to_dict()})
                nbytes = path.stat().st_size
        except OSError as error:
            problem = error
        else:
            evicted = evict(directory, keep=path)
            report_build(path, geometry, seconds=seconds, nbytes=nbytes, evicted=evicted)
            return matrix
    warnings.warn(
        f"the system-matrix cache {directory} cannot be written ({problem}); building the "
        "matrix in memory for this process. Set TOMOLEARN_CACHE_DIR (or cache_directory) to a "
        "writable folder to keep it.",
        RuntimeWarning,
        stacklevel=2,
    )
    matrix, seconds = _build(geometry)
    log.info("built the system matrix of %s in memory in %.1f s", _describe(geometry), seconds)
    return matrix


def _torch_csr(matrix: sp.csr_matrix) -> torch.Tensor:
    with warnings.catch_warnings():
        # torch warns that sparse CSR is beta on every construction; the API we use is stable.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int32)),
            torch.from_numpy(matrix.indices.astype(np.int32)),
            torch.from_numpy(matrix.data.astype(np.float32)),
            size=matrix.shape,
            check_invariants=False,
        )


class SparseMatrix2D:
    """Batched sparse-matrix ray transform for one 2D geometry.

    Parameters
    ----------
    geometry
        :class:`Parallel2D` or :class:`FanBeam2D`.
    chunk_size
        Images per sparse product; default: as many as keep the chunk's dense input and output
        within :data:`CHUNK_BYTES` (8 MB), between 8 and 32. Measured here: at 256² with 180
        angles the forward took 3.2 ms/image in chunks of 16 and 7.4 ms in chunks of 32; at
        128² (≈ 0.1 MB per image) 32 is best.
    cache_directory
        Overrides :func:`cache_dir`.
    """

    name = "matrix"

    def __init__(
        self,
        geometry: Parallel2D | FanBeam2D,
        *,
        chunk_size: int | None = None,
        cache_directory: str | os.PathLike | None = None,
    ) -> None:
        if not isinstance(geometry, GEOMETRIES_2D):
            raise ValueError(
                f"the 'matrix' backend is 2D only; {type(geometry).__name__} is not supported"
            )
        if chunk_size is None:
            per_image = 4 * (math.prod(geometry.domain_shape) + math.prod(geometry.range_shape))
            chunk_size = min(32, max(8, CHUNK_BYTES // per_image))
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.geometry = geometry
        self.chunk_size = int(chunk_size)
        csr = load_or_build(
            geometry, directory=None if cache_directory is None else Path(cache_directory)
        )
        self.nnz = int(csr.nnz)
        self._host = {False: _torch_csr(csr), True: _torch_csr(csr.T.tocsr())}
        self._copies: dict[tuple[bool, torch.device, torch.dtype], torch.Tensor] = {}

    @property
    def nbytes(self) -> int:
        """Bytes held by the matrix and its transpose on the host."""
        return sum(
            m.values().nbytes + m.col_indices().nbytes + m.crow_indices().nbytes
            for m in self._host.values()
        )

    def _matrix(self, transpose: bool, like: torch.Tensor) -> torch.Tensor:
        key = (transpose, like.device, like.dtype)
        m = self._copies.get(key)
        if m is None:
            m = self._host[transpose]
            if like.dtype != torch.float32 or like.device.type != "cpu":
                m = m.to(device=like.device, dtype=like.dtype)
            self._copies[key] = m
        return m

    def _product(self, src: torch.Tensor, transpose: bool, out_shape) -> torch.Tensor:
        src = src.detach()
        m = self._matrix(transpose, src)
        flat = src.reshape(src.shape[0], -1)
        outs = [
            (m @ flat[s : s + self.chunk_size].T.contiguous()).T
            for s in range(0, flat.shape[0], self.chunk_size)
        ]
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)
        return out.contiguous().reshape(src.shape[0], *out_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``W x`` for a batch ``(B, H, W)``."""
        return self._product(x, False, self.geometry.range_shape)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``Wᵀ y`` for a batch ``(B, n_angles, n_detectors)``."""
        return self._product(y, True, self.geometry.domain_shape)
