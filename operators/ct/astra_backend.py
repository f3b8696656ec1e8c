"""ASTRA backends: CPU for 2D, CUDA for 2D and 3D on GPU tensors without a host round trip.

``astra`` is imported lazily so that ``import operators`` works where ASTRA is missing.

- :class:`AstraCPU2D` projects each image with ``astra.experimental.direct_FP2D``/``direct_BP2D``
  on the tensor's own memory (DLPack), spreading the batch over threads (ASTRA releases the GIL).
- :class:`AstraCUDA` maps the geometry to ASTRA's 3D CUDA geometries (2D as one slice) and calls
  ``astra.experimental.direct_FP3D``/``direct_BP3D`` on the CUDA tensors themselves.

2D geometries with a detector or rotation offset, and the vector geometries, go through ASTRA's
vector geometries (``parallel_vec``/``fanflat_vec`` on CPU, ``parallel3d_vec``/``cone_vec`` on
CUDA) built from ``geometry.to_vectors()``; ASTRA's CPU ``linear`` and ``line_fanflat`` projectors
accept both forms, so the projector is the same either way.
"""

from __future__ import annotations

import math
import os
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from operators.ct.geometry import Parallel2D, Parallel3D
from operators.ct.vector_geometry import GEOMETRIES_2D, FanVec2D, ParallelVec2D


def import_astra():
    """Import and return the ``astra`` module, with a clear error if it is missing."""
    try:
        import astra
        import astra.experimental  # noqa: F401
    except ImportError as err:  # pragma: no cover - exercised only without astra
        raise ImportError(
            "the 'astra' backend needs astra-toolbox: pip install astra-toolbox"
        ) from err
    return astra


def astra_available() -> bool:
    """True when astra-toolbox imports."""
    try:
        import_astra()
    except ImportError:
        return False
    return True


def astra_cuda_available() -> bool:
    """True when astra-toolbox imports, was built with CUDA, and torch sees a GPU."""
    if not (torch.cuda.is_available() and astra_available()):
        return False
    astra = import_astra()
    try:
        return bool(astra.use_cuda())
    except Exception:  # noqa: BLE001 - astra raises various errors without a driver
        return False


def _extent(n: int, size: float) -> tuple[float, float]:
    half = n * size / 2
    return -half, half


def uses_vectors(geometry) -> bool:
    """True when ASTRA gets ``geometry`` as a vector geometry: offsets or one pose per view.

    Example
    -------
    >>> uses_vectors(Parallel2D(16, 4)), uses_vectors(Parallel2D(16, 4, detector_offset=0.5))
    (False, True)
    """
    if isinstance(geometry, (ParallelVec2D, FanVec2D)):
        return True
    return bool(
        getattr(geometry, "detector_offset", 0.0) or getattr(geometry, "rotation_offset", 0.0)
    )


def is_parallel(geometry) -> bool:
    """True for the parallel-beam geometries (circular or vector, 2D or 3D)."""
    return isinstance(geometry, (Parallel2D, ParallelVec2D, Parallel3D))


def astra_geometries_2d(geometry) -> tuple[dict, dict, str]:
    """ASTRA 2D volume and projection geometries and the CPU projector type for ``geometry``.

    Parallel beam uses the ``linear`` (Joseph) projector, fan beam ``line_fanflat``: the
    same choices as ODL's ``astra_cpu`` backend. Offsets and vector geometries become
    ``parallel_vec``/``fanflat_vec`` (see :func:`uses_vectors`).
    """
    astra = import_astra()
    if not isinstance(geometry, GEOMETRIES_2D):
        raise ValueError(f"not a 2D CT geometry: {type(geometry).__name__}")
    H, W = geometry.image_shape
    ps = geometry.pixel_size
    vol = astra.create_vol_geom(H, W, *_extent(W, ps), *_extent(H, ps))
    kind = "linear" if is_parallel(geometry) else "line_fanflat"
    if uses_vectors(geometry):
        name = "parallel_vec" if is_parallel(geometry) else "fanflat_vec"
        proj = astra.create_proj_geom(name, geometry.n_detectors, geometry.to_vectors())
        return vol, proj, kind
    angles = geometry.angles_array
    if isinstance(geometry, Parallel2D):
        proj = astra.create_proj_geom(
            "parallel", geometry.detector_spacing, geometry.n_detectors, angles
        )
        return vol, proj, kind
    proj = astra.create_proj_geom(
        "fanflat",
        geometry.detector_spacing,
        geometry.n_detectors,
        angles,
        geometry.source_distance,
        geometry.detector_distance,
    )
    return vol, proj, kind


def vectors_3d(geometry) -> np.ndarray:
    """ASTRA ``parallel3d_vec``/``cone_vec`` rows ``(n_angles, 12)`` of a 2D geometry seen as
    one slice of thickness ``pixel_size`` (the ``z`` components are zero, ``v = (0, 0, ps)``).

    Example
    -------
    >>> vectors_3d(Parallel2D(16, angles=[0.0], detector_offset=2.0))[0].tolist()
    [0.0, -1.0, 0.0, 2.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    """
    vec2 = geometry.to_vectors()
    out = np.zeros((vec2.shape[0], 12))
    out[:, [0, 1, 3, 4, 6, 7]] = vec2
    out[:, 11] = geometry.pixel_size
    return out


def astra_geometries_3d(geometry) -> tuple[dict, dict]:
    """ASTRA 3D (CUDA) volume and projection geometries; 2D geometries become one slice.

    ASTRA's projection data are laid out ``(det_rows, n_angles, det_cols)``.
    """
    astra = import_astra()
    if isinstance(geometry, GEOMETRIES_2D):
        H, W = geometry.image_shape
        ps = geometry.pixel_size
        vol = astra.create_vol_geom(H, W, 1, *_extent(W, ps), *_extent(H, ps), *_extent(1, ps))
        if uses_vectors(geometry):
            name = "parallel3d_vec" if is_parallel(geometry) else "cone_vec"
            proj = astra.create_proj_geom(name, 1, geometry.n_detectors, vectors_3d(geometry))
            return vol, proj
        spacing = (geometry.detector_spacing, ps)  # (col spacing, row spacing)
        rows, cols = 1, geometry.n_detectors
    else:
        D, H, W = geometry.volume_shape
        vs = geometry.voxel_size
        vol = astra.create_vol_geom(H, W, D, *_extent(W, vs), *_extent(H, vs), *_extent(D, vs))
        spacing = (geometry.detector_spacing[1], geometry.detector_spacing[0])
        rows, cols = geometry.detector_shape
    angles = geometry.angles_array
    if is_parallel(geometry):
        proj = astra.create_proj_geom("parallel3d", *spacing, rows, cols, angles)
    else:
        proj = astra.create_proj_geom(
            "cone",
            *spacing,
            rows,
            cols,
            angles,
            geometry.source_distance,
            geometry.detector_distance,
        )
    return vol, proj


def _default_threads() -> int:
    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1))


class AstraCPU2D:
    """ASTRA CPU projector for one 2D geometry, applied image by image over a batch.

    Parameters
    ----------
    geometry
        A 2D geometry: :class:`Parallel2D`, :class:`FanBeam2D`, :class:`ParallelVec2D` or
        :class:`FanVec2D`.
    threads
        Python threads over the batch (ASTRA releases the GIL); default: torch's thread count.
    """

    name = "astra"

    def __init__(self, geometry, *, threads: int | None = None) -> None:
        if not isinstance(geometry, GEOMETRIES_2D):
            raise ValueError(
                f"ASTRA's CPU projectors are 2D only; {type(geometry).__name__} needs a GPU "
                "(CUDA tensors) with the 'astra' backend"
            )
        astra = import_astra()
        self.geometry = geometry
        self.threads = _default_threads() if threads is None else max(1, int(threads))
        vol, proj, kind = astra_geometries_2d(geometry)
        self.projector_id = astra.create_projector(kind, proj, vol)
        self._finalizer = weakref.finalize(self, astra.projector.delete, self.projector_id)
        self._pool: ThreadPoolExecutor | None = None

    def _map(self, fn, n: int) -> None:
        if self.threads == 1 or n == 1:
            for i in range(n):
                fn(i)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="astra")
        chunk = math.ceil(n / self.threads)
        ranges = [range(s, min(s + chunk, n)) for s in range(0, n, chunk)]
        for fut in [self._pool.submit(lambda r=r: [fn(i) for i in r]) for r in ranges]:
            fut.result()

    def _run(self, src: torch.Tensor, out_shape, direct) -> torch.Tensor:
        if src.is_cuda:
            raise RuntimeError("AstraCPU2D got a CUDA tensor; use AstraCUDA")
        src32 = src.detach().to(torch.float32).contiguous()
        out = torch.empty((src.shape[0], *out_shape), dtype=torch.float32)
        direct(src32, out)
        return out.to(src.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project a batch ``(B, H, W)`` to ``(B, n_angles, n_detectors)``."""
        astra = import_astra()

        def direct(src, out):
            self._map(
                lambda i: astra.experimental.direct_FP2D(self.projector_id, src[i], out[i]),
                src.shape[0],
            )

        return self._run(x, self.geometry.range_shape, direct)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Back-project a batch ``(B, n_angles, n_detectors)`` to ``(B, H, W)`` (exact adjoint)."""
        astra = import_astra()

        def direct(src, out):
            self._map(
                lambda i: astra.experimental.direct_BP2D(self.projector_id, out[i], src[i]),
                src.shape[0],
            )

        return self._run(y, self.geometry.domain_shape, direct)

    def system_matrix(self):
        """The projector's system matrix as a ``scipy.sparse.csr_matrix`` (float32)."""
        astra = import_astra()
        matrix_id = astra.projector.matrix(self.projector_id)
        try:
            return astra.matrix.get(matrix_id).astype(np.float32).tocsr()
        finally:
            astra.matrix.delete(matrix_id)


def _cuda_sync(device: torch.device) -> None:
    """Wait for torch's pending work on ``device`` before ASTRA (on its own stream) reads it."""
    if device.type == "cuda":
        torch.cuda.current_stream(device).synchronize()


class AstraCUDA:
    """ASTRA CUDA projector for 2D or 3D geometries, working on CUDA tensors in place.

    The input tensor's memory is handed to ASTRA through DLPack (``direct_FP3D``/``direct_BP3D``):
    no copy to the host. The output is allocated on the same device in ASTRA's layout
    ``(det_rows, n_angles, det_cols)`` and returned as a permuted view made contiguous on the GPU.
    """

    name = "astra"

    def __init__(self, geometry, *, sync=_cuda_sync) -> None:
        astra = import_astra()
        self.geometry = geometry
        vol, proj = astra_geometries_3d(geometry)
        self.vol_shape = (vol["GridSliceCount"], vol["GridRowCount"], vol["GridColCount"])
        rows = proj["DetectorRowCount"]
        self.proj_shape = (rows, geometry.n_angles, proj["DetectorColCount"])
        self.projector_id = astra.create_projector("cuda3d", proj, vol)
        self._finalizer = weakref.finalize(self, astra.projector.delete, self.projector_id)
        self._sync = sync
        self._gpu_index: int | None = None

    def _select_gpu(self, device: torch.device) -> None:
        index = device.index if device.index is not None else 0
        if device.type == "cuda" and index != self._gpu_index:
            import_astra().set_gpu_index(index)
            self._gpu_index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project ``(B, *domain_shape)`` on the tensor's GPU to ``(B, *range_shape)``."""
        astra = import_astra()
        self._select_gpu(x.device)
        src = x.detach().to(torch.float32).contiguous().reshape(-1, *self.vol_shape)
        out = torch.empty((src.shape[0], *self.proj_shape), dtype=torch.float32, device=x.device)
        self._sync(x.device)
        for i in range(src.shape[0]):
            astra.experimental.direct_FP3D(self.projector_id, src[i], out[i])
        # (B, rows, angles, cols) -> (B, angles, rows, cols); 2D drops the single row.
        out = out.permute(0, 2, 1, 3).contiguous()
        return out.reshape(src.shape[0], *self.geometry.range_shape).to(x.dtype)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Back-project ``(B, *range_shape)`` on the tensor's GPU to ``(B, *domain_shape)``."""
        astra = import_astra()
        self._select_gpu(y.device)
        rows, n_angles, cols = self.proj_shape
        src = y.detach().to(torch.float32).reshape(-1, n_angles, rows, cols)
        src = src.permute(0, 2, 1, 3).contiguous()
        out = torch.empty((src.shape[0], *self.vol_shape), dtype=torch.float32, device=y.device)
        self._sync(y.device)
        for i in range(src.shape[0]):
            astra.experimental.direct_BP3D(self.projector_id, out[i], src[i])
        return out.reshape(src.shape[0], *self.geometry.domain_shape).to(y.dtype)


__all__ = [
    "AstraCPU2D",
    "AstraCUDA",
    "astra_available",
    "astra_cuda_available",
    "astra_geometries_2d",
    "astra_geometries_3d",
    "import_astra",
    "is_parallel",
    "uses_vectors",
    "vectors_3d",
]
