"""Forward models as differentiable linear operators with exact adjoints (knows no training).

Rooms:

- ``base``: ``LinearOperator`` (``op.T``, ``A @ B``, ``a * A``, ``A + B``, ``norm()``), its
  compositions, ``MatrixOperator`` and the ``OperatorLike`` protocol;
- ``testing``: ``check_adjoint`` and ``check_autograd``, for our operators and users' own;
- ``counting``: ``CountingOperator``, which counts the images an operator was applied to;
- ``ct``: CT geometries (circular and per-view vector ones) and ``RayTransform`` with its ASTRA,
  system-matrix and ODL backends;
- ``resample``: upsampling, detector binning and the supersampled (accurate) ray transform;
- ``pat``: photoacoustic forward models (k-space time stepper, exact line model, Fourier
  regridding);
- ``learned``: learned approximate models ``A_q = F_q ∘ Ã ∘ H_f`` and their training losses.

Example
-------
>>> import torch
>>> from operators import Parallel2D, RayTransform
>>> from operators.testing import check_adjoint
>>> A = RayTransform(Parallel2D((64, 64), n_angles=30))
>>> check_adjoint(A) < 1e-5
True
"""

from operators.base import (
    AdjointOperator,
    ComposedOperator,
    IdentityOperator,
    LinearOperator,
    MatrixOperator,
    OperatorLike,
    ScaledOperator,
    SumOperator,
)
from operators.counting import CountingOperator
from operators.ct import (
    BACKENDS,
    ConeBeam3D,
    FanBeam2D,
    FanVec2D,
    Parallel2D,
    Parallel3D,
    ParallelVec2D,
    RayTransform,
    available_backends,
)
from operators.learned import (
    ADJOINTS,
    LearnedAdjoint,
    LearnedOperator,
    adjoint_loss,
    forward_loss,
    relative_error,
)
from operators.pat import (
    KSpaceSmoothing,
    KSpaceWave,
    LineSensor,
    LineSensorRegridding,
    Medium,
    PATGrid,
    SensorMask,
    SensorPoints,
    TimeGrid,
)
from operators.resample import (
    DetectorBinning,
    SupersampledRayTransform,
    Upsample,
    supersampled_geometry,
)

__all__ = [
    "ADJOINTS",
    "BACKENDS",
    "AdjointOperator",
    "ComposedOperator",
    "DetectorBinning",
    "ConeBeam3D",
    "CountingOperator",
    "FanBeam2D",
    "FanVec2D",
    "IdentityOperator",
    "KSpaceSmoothing",
    "KSpaceWave",
    "LearnedAdjoint",
    "LearnedOperator",
    "LineSensor",
    "LineSensorRegridding",
    "LinearOperator",
    "MatrixOperator",
    "OperatorLike",
    "Medium",
    "PATGrid",
    "Parallel2D",
    "Parallel3D",
    "ParallelVec2D",
    "RayTransform",
    "ScaledOperator",
    "SensorMask",
    "SensorPoints",
    "SumOperator",
    "SupersampledRayTransform",
    "TimeGrid",
    "Upsample",
    "adjoint_loss",
    "available_backends",
    "forward_loss",
    "relative_error",
    "supersampled_geometry",
]
