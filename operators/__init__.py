"""Forward models as differentiable linear operators with exact adjoints.

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
    ScaledOperator,
    SumOperator,
)
from operators.counting import CountingOperator
from operators.ct import (
    BACKENDS,
    ConeBeam3D,
    FanBeam2D,
    Parallel2D,
    Parallel3D,
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
    "IdentityOperator",
    "KSpaceSmoothing",
    "KSpaceWave",
    "LearnedAdjoint",
    "LearnedOperator",
    "LineSensor",
    "LineSensorRegridding",
    "LinearOperator",
    "MatrixOperator",
    "Medium",
    "PATGrid",
    "Parallel2D",
    "Parallel3D",
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
