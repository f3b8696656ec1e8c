"""``RayTransform``: the CT forward operator as a :class:`~operators.base.LinearOperator`.

Backends are registered in :data:`BACKENDS` under availability flags; ``backend="auto"`` picks one
per call from the input's device:

- CUDA tensor → ``astra`` (ASTRA CUDA, no host round trip);
- CPU tensor, 2D → ``matrix`` if matrix + transpose fit in ``matrix_max_bytes``, else ``astra``;
- CPU tensor, 3D → error: ASTRA's 3D projectors need a GPU.

The same holds for the vector geometries (:class:`~operators.ParallelVec2D`,
:class:`~operators.FanVec2D`) and for 2D geometries with offsets; the ``odl`` backend supports
neither the vector geometries nor a parallel-beam ``detector_offset`` and says so on construction.

Example
-------
>>> import torch
>>> from operators import Parallel2D, RayTransform
>>> A = RayTransform(Parallel2D((64, 64), n_angles=30), backend="astra")
>>> y = A(torch.ones(2, 1, 64, 64))      # any leading batch dims
>>> y.shape
torch.Size([2, 1, 30, 91])
>>> A.T(y).shape
torch.Size([2, 1, 64, 64])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from operators.base import LinearOperator
from operators.ct import astra_backend, matrix_backend, odl_backend
from operators.ct.geometry import ConeBeam3D, FanBeam2D, Parallel2D, Parallel3D
from operators.ct.vector_geometry import GEOMETRIES_2D, FanVec2D, ParallelVec2D

#: Every geometry a RayTransform accepts.
GEOMETRIES = (*GEOMETRIES_2D, Parallel3D, ConeBeam3D)


@dataclasses.dataclass(frozen=True)
class BackendInfo:
    """A registered backend: whether it can run here and what it supports."""

    name: str
    available: Callable[[], bool]
    description: str


#: Backend name → info. ``auto`` is always accepted.
BACKENDS: dict[str, BackendInfo] = {
    "astra": BackendInfo(
        "astra", astra_backend.astra_available, "ASTRA CPU (2D) and CUDA (2D/3D, GPU tensors)"
    ),
    "matrix": BackendInfo(
        "matrix",
        astra_backend.astra_available,
        "ASTRA's 2D system matrix as a batched torch sparse product (CPU and GPU)",
    ),
    "odl": BackendInfo("odl", odl_backend.odl_available, "ODL 1.0's RayTransform (2D)"),
}


def available_backends() -> list[str]:
    """Names of the backends that can run on this machine (plus ``auto``)."""
    return ["auto"] + [name for name, info in BACKENDS.items() if info.available()]


class RayTransform(LinearOperator):
    """The ray transform (X-ray projection) of a CT geometry, with its exact adjoint.

    Parameters
    ----------
    geometry
        :class:`Parallel2D`, :class:`FanBeam2D`, :class:`ParallelVec2D`, :class:`FanVec2D`,
        :class:`Parallel3D` or :class:`ConeBeam3D`.
    backend
        ``"auto"``, ``"astra"``, ``"matrix"`` or ``"odl"``; see :func:`available_backends`.
    matrix_max_bytes
        For ``auto``: largest matrix + transpose to build before falling back to ASTRA.
    threads
        Threads for ASTRA's CPU loop over a batch (default: torch's thread count).
    chunk_size
        Images per sparse product for the ``matrix`` backend (default: chosen from the sizes).
    cache_directory
        System-matrix cache folder (default: ``$TOMOLEARN_CACHE_DIR`` or the user cache dir).

    Inputs are ``(*batch, *geometry.domain_shape)`` tensors, float32 or float64 (ASTRA computes in
    float32), on CPU or GPU; outputs are ``(*batch, *geometry.range_shape)`` in the input's dtype
    and on its device. ``x.grad`` after ``A(x).backward(y)`` is ``A.T(y)``. A numpy array gives a
    numpy array (see :meth:`~operators.LinearOperator.forward`).
    """

    def __init__(
        self,
        geometry: Parallel2D | FanBeam2D | ParallelVec2D | FanVec2D | Parallel3D | ConeBeam3D,
        *,
        backend: str = "auto",
        matrix_max_bytes: int = matrix_backend.DEFAULT_MAX_BYTES,
        threads: int | None = None,
        chunk_size: int | None = None,
        cache_directory: str | None = None,
    ) -> None:
        if not isinstance(geometry, GEOMETRIES):
            raise TypeError(
                f"geometry must be one of {', '.join(g.__name__ for g in GEOMETRIES)}, "
                f"got {type(geometry).__name__}"
            )
        if backend not in BACKENDS and backend != "auto":
            raise ValueError(
                f"unknown backend {backend!r}; available here: {', '.join(available_backends())}"
            )
        if backend != "auto" and not BACKENDS[backend].available():
            raise ValueError(
                f"backend {backend!r} is not available on this machine "
                f"({BACKENDS[backend].description}); available: {', '.join(available_backends())}"
            )
        if backend in ("matrix", "odl") and geometry.ndim != 2:
            raise ValueError(
                f"backend {backend!r} supports 2D geometries only; use 'astra' (CUDA) for "
                f"{type(geometry).__name__}"
            )
        if backend == "odl":
            odl_backend.check_supported(geometry)
        super().__init__(geometry.domain_shape, geometry.range_shape)
        self.geometry = geometry
        self.backend = backend
        self.matrix_max_bytes = int(matrix_max_bytes)
        self.threads = threads
        self.chunk_size = chunk_size
        self.cache_directory = cache_directory
        self._impls: dict[str, object] = {}

    # ----------------------------------------------------------------- backend choice
    def resolve_backend(self, device: torch.device | str) -> str:
        """The backend implementation used for tensors on ``device``: ``astra``, ``astra-cuda``,
        ``matrix`` or ``odl``."""
        device = torch.device(device)
        name = self.backend
        if name == "auto":
            if device.type == "cuda":
                name = "astra"
            elif self.geometry.ndim == 2 and (
                matrix_backend.estimated_bytes(self.geometry) <= self.matrix_max_bytes
            ):
                name = "matrix"
            else:
                name = "astra"
        if name == "astra" and (device.type == "cuda" or self.geometry.ndim == 3):
            if device.type != "cuda":
                raise RuntimeError(
                    f"{type(self.geometry).__name__} needs a GPU: ASTRA has no CPU projector for "
                    "3D geometries. Move the tensor to a CUDA device."
                )
            return "astra-cuda"
        return name

    def implementation(self, device: torch.device | str = "cpu"):
        """The backend object used for tensors on ``device`` (built once, then reused)."""
        name = self.resolve_backend(device)
        impl = self._impls.get(name)
        if impl is None:
            if name == "astra-cuda":
                impl = astra_backend.AstraCUDA(self.geometry)
            elif name == "astra":
                impl = astra_backend.AstraCPU2D(self.geometry, threads=self.threads)
            elif name == "matrix":
                impl = matrix_backend.SparseMatrix2D(
                    self.geometry, chunk_size=self.chunk_size, cache_directory=self.cache_directory
                )
            else:
                impl = odl_backend.ODLRayTransform2D(self.geometry)
            self._impls[name] = impl
        return impl

    # ----------------------------------------------------------------- LinearOperator
    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        return self.implementation(x.device).forward(x)

    def _rmatvec(self, y: torch.Tensor) -> torch.Tensor:
        return self.implementation(y.device).adjoint(y)

    def extra_repr(self) -> str:
        return f"{self.geometry!r}, backend={self.backend!r}"
