"""CT geometries and the ray transform with ASTRA, ODL and sparse-matrix backends."""

from operators.ct.geometry import ConeBeam3D, FanBeam2D, Parallel2D, Parallel3D
from operators.ct.ray_transform import BACKENDS, RayTransform, available_backends

__all__ = [
    "BACKENDS",
    "ConeBeam3D",
    "FanBeam2D",
    "Parallel2D",
    "Parallel3D",
    "RayTransform",
    "available_backends",
]
