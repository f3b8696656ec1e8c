"""GPU checks: run only where CUDA and ASTRA-with-CUDA are present, skipped visibly elsewhere.

ASTRA's CUDA forward projector (ray-driven, texture interpolation) and back projector
(voxel-driven) are matched only up to interpolation error, so the dot-test tolerance here is
looser than for the CPU backends; the exact figures are reported by ``benchmarks.gpu_check``.
"""

from __future__ import annotations

import pytest
import torch

from operators import ConeBeam3D, FanBeam2D, Parallel2D, Parallel3D, RayTransform
from operators.ct.astra_backend import astra_cuda_available
from operators.testing import check_adjoint, check_autograd

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not astra_cuda_available(), reason="needs a CUDA GPU and ASTRA with CUDA"),
]

GEOMETRIES = [
    pytest.param(Parallel2D((64, 64), n_angles=30), id="parallel2d"),
    pytest.param(
        FanBeam2D((64, 64), n_angles=40, source_distance=200.0, detector_distance=100.0), id="fan2d"
    ),
    pytest.param(Parallel3D(32, n_angles=20), id="parallel3d"),
    pytest.param(
        ConeBeam3D(32, n_angles=20, source_distance=150.0, detector_distance=100.0), id="cone3d"
    ),
]


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_cuda_dot_test_and_autograd(geometry):
    A = RayTransform(geometry, backend="astra")
    assert check_adjoint(A, device="cuda") < 1e-2
    assert check_autograd(A, device="cuda") < 1e-6


@pytest.mark.parametrize("geometry", GEOMETRIES[:2])
def test_cuda_agrees_with_cpu(geometry):
    x = torch.rand(4, *geometry.domain_shape, generator=torch.Generator().manual_seed(0))
    cpu = RayTransform(geometry, backend="astra")(x)
    gpu = RayTransform(geometry, backend="astra")(x.cuda()).cpu()
    assert torch.linalg.vector_norm(gpu - cpu) / torch.linalg.vector_norm(cpu) < 2e-2


def test_matrix_backend_on_cuda_equals_cpu():
    g = Parallel2D((64, 64), n_angles=30)
    A = RayTransform(g, backend="matrix")
    x = torch.rand(8, 64, 64)
    torch.testing.assert_close(A(x.cuda()).cpu(), A(x), rtol=1e-5, atol=1e-5)
    assert check_adjoint(A, device="cuda") < 1e-5
