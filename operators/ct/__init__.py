"""CT geometries and the ray transform with ASTRA, ODL and sparse-matrix backends.

Rooms:

- ``geometry``: ``Parallel2D``, ``FanBeam2D``, ``Parallel3D``, ``ConeBeam3D`` in physical units
  (angles in radians or degrees, detector and rotation offsets);
- ``vector_geometry``: ``ParallelVec2D``, ``FanVec2D``: one source/detector pose per view;
- ``ray_transform``: ``RayTransform(geometry, backend=)`` and the backend registry;
- ``astra_backend``: ASTRA's CPU (2D) and CUDA (2D/3D) projectors;
- ``matrix_backend``: ASTRA's 2D system matrix, cached on disk (checksummed and spot-checked),
  applied as a sparse product;
- ``odl_backend``: ODL's ray transform (2D).
"""

from operators.ct.geometry import ConeBeam3D, FanBeam2D, Parallel2D, Parallel3D
from operators.ct.ray_transform import BACKENDS, GEOMETRIES, RayTransform, available_backends
from operators.ct.vector_geometry import GEOMETRIES_2D, FanVec2D, ParallelVec2D

__all__ = [
    "BACKENDS",
    "ConeBeam3D",
    "FanBeam2D",
    "FanVec2D",
    "GEOMETRIES",
    "GEOMETRIES_2D",
    "Parallel2D",
    "Parallel3D",
    "ParallelVec2D",
    "RayTransform",
    "available_backends",
]
