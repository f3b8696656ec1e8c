"""The ASTRA CUDA path tested on CPU with a stand-in for ASTRA.

The stand-in records which ASTRA entry points are called, with which memory pointers and shapes,
and computes real projections for one-slice (2D) geometries with ASTRA's CPU projector, so the
layout conversions (ASTRA's (rows, angles, cols) vs our (angles, rows, cols)) are checked with
numbers. What only a GPU can show (CUDA kernels, device pointers) is in test_gpu.py.
"""

from __future__ import annotations

import types

import astra as real_astra
import pytest
import torch

from operators import ConeBeam3D, FanBeam2D, Parallel2D, Parallel3D, RayTransform
from operators.ct import astra_backend
from operators.ct.astra_backend import AstraCPU2D, AstraCUDA


class FakeAstra:
    """Records calls; projects 1-slice volumes with the real CPU projector of ``geometry_2d``."""

    def __init__(self, geometry_2d=None):
        self.calls: list[tuple] = []
        self.cpu = AstraCPU2D(geometry_2d, threads=1) if geometry_2d is not None else None
        self.create_vol_geom = real_astra.create_vol_geom
        self.create_proj_geom = real_astra.create_proj_geom
        self.projector = types.SimpleNamespace(delete=lambda i: self.calls.append(("delete", i)))
        self.experimental = types.SimpleNamespace(
            direct_FP3D=self.direct_FP3D,
            direct_BP3D=self.direct_BP3D,
            # the reference CPU projector below runs on the real ASTRA
            direct_FP2D=real_astra.experimental.direct_FP2D,
            direct_BP2D=real_astra.experimental.direct_BP2D,
        )

    def create_projector(self, kind, proj, vol):
        self.calls.append(("create_projector", kind, proj["type"], vol["GridSliceCount"]))
        return 7

    def set_gpu_index(self, index):
        self.calls.append(("set_gpu_index", index))

    def direct_FP3D(self, pid, vol, proj):
        self.calls.append(
            ("FP3D", pid, vol.data_ptr(), tuple(vol.shape), proj.data_ptr(), tuple(proj.shape))
        )
        if self.cpu is not None:
            proj[0] = self.cpu.forward(vol[0][None])[0]
        else:  # label every projection entry by its (row, angle, col) position
            r, a, c = proj.shape
            idx = torch.arange(r * a * c, dtype=torch.float32).reshape(r, a, c)
            proj.copy_(idx + vol.sum())

    def direct_BP3D(self, pid, vol, proj):
        self.calls.append(
            ("BP3D", pid, vol.data_ptr(), tuple(vol.shape), proj.data_ptr(), tuple(proj.shape))
        )
        if self.cpu is not None:
            vol[0] = self.cpu.adjoint(proj[0][None])[0]
        else:
            vol.fill_(float(proj[:, 0, 0].sum()))


@pytest.fixture
def fake(monkeypatch):
    def install(geometry_2d=None):
        f = FakeAstra(geometry_2d)
        monkeypatch.setattr(astra_backend, "import_astra", lambda: f)
        return f

    return install


@pytest.mark.parametrize(
    "geometry",
    [
        pytest.param(Parallel2D((16, 24), n_angles=7), id="parallel"),
        pytest.param(
            FanBeam2D((16, 16), n_angles=9, source_distance=60.0, detector_distance=30.0), id="fan"
        ),
    ],
)
def test_2d_goes_through_one_slice_3d_without_copies(fake, geometry):
    f = fake(geometry)
    syncs = []
    op = AstraCUDA(geometry, sync=lambda device: syncs.append(device))
    kind = "parallel3d" if isinstance(geometry, Parallel2D) else "cone"
    assert f.calls[0] == ("create_projector", "cuda3d", kind, 1)

    x = torch.rand(3, *geometry.image_shape)
    y = op.forward(x)
    fps = [c for c in f.calls if c[0] == "FP3D"]
    assert len(fps) == 3
    H, W = geometry.image_shape
    for i, call in enumerate(fps):
        # ASTRA reads the caller's memory directly: slice i of x, no staging copy
        assert call[2] == x.data_ptr() + i * H * W * 4
        assert call[3] == (1, H, W)
        assert call[5] == (1, geometry.n_angles, geometry.n_detectors)
        # and writes straight into the returned tensor (the single-row permute is free)
        assert call[4] == y.data_ptr() + i * geometry.n_angles * geometry.n_detectors * 4
    assert len(syncs) == 1  # torch's stream is synchronised before ASTRA reads
    torch.testing.assert_close(y, f.cpu.forward(x))

    s = torch.rand(2, *geometry.range_shape)
    b = op.adjoint(s)
    bps = [c for c in f.calls if c[0] == "BP3D"]
    assert [c[4] for c in bps] == [s.data_ptr() + i * s[0].numel() * 4 for i in range(2)]
    assert [c[2] for c in bps] == [b.data_ptr() + i * H * W * 4 for i in range(2)]
    torch.testing.assert_close(b, f.cpu.adjoint(s))


@pytest.mark.parametrize(
    "geometry",
    [
        pytest.param(Parallel3D((4, 6, 8), n_angles=5, detector_shape=(4, 11)), id="parallel3d"),
        pytest.param(
            ConeBeam3D(
                (4, 6, 8),
                n_angles=5,
                detector_shape=(8, 20),
                source_distance=40.0,
                detector_distance=20.0,
            ),
            id="cone",
        ),
    ],
)
def test_3d_layout_is_angles_rows_cols(fake, geometry):
    f = fake()
    op = AstraCUDA(geometry, sync=lambda device: None)
    rows, cols = geometry.detector_shape
    x = torch.zeros(2, *geometry.volume_shape)
    y = op.forward(x)
    assert y.shape == (2, geometry.n_angles, rows, cols)
    fp = [c for c in f.calls if c[0] == "FP3D"][0]
    assert fp[3] == geometry.volume_shape and fp[5] == (rows, geometry.n_angles, cols)
    # the stand-in wrote value r*A*C + a*C + c at ASTRA position (r, a, c)
    A = geometry.n_angles
    r, a, c = 2, 3, 5
    assert y[0, a, r, c].item() == r * A * cols + a * cols + c
    # adjoint input is transposed to ASTRA's layout: its [:, 0, 0] is our [0, :, 0]
    s = torch.zeros(1, *geometry.range_shape)
    s[0, 0, :, 0] = 1.0
    assert op.adjoint(s)[0, 0, 0, 0].item() == rows


def test_gpu_index_follows_the_tensor_device(fake):
    f = fake()
    op = AstraCUDA(Parallel3D(4, n_angles=2), sync=lambda device: None)
    op._select_gpu(torch.device("cuda", 1))
    op._select_gpu(torch.device("cuda", 1))
    op._select_gpu(torch.device("cuda", 0))
    assert [c for c in f.calls if c[0] == "set_gpu_index"] == [
        ("set_gpu_index", 1),
        ("set_gpu_index", 0),
    ]


def test_ray_transform_routes_cuda_tensors_to_astra_cuda(fake):
    fake()
    A = RayTransform(ConeBeam3D(8, n_angles=4, source_distance=50.0, detector_distance=20.0))
    assert isinstance(A.implementation("cuda"), AstraCUDA)
    A2 = RayTransform(Parallel2D(16, n_angles=4), backend="auto")
    assert A2.resolve_backend("cuda:0") == "astra-cuda"
    assert A2.resolve_backend("cpu") == "matrix"
