"""The ``odl`` backend: ODL 1.0's ``RayTransform`` behind our geometry conventions.

An independent path through ODL's own geometry handling (and an interop point for ODL users).
Our geometries map to ODL's with the angle offset ``θ_odl = θ + π/2`` and the identity on the
image array: ODL's ``uniform_discr`` indexes ``[i, j]`` as ``(x_i, y_j)``, a quarter turn from our
``(row, col)``, which the offset undoes (checked by the backend-agreement tests).

Scaling: ODL's forward is the line integral in physical units like ours. ODL's adjoint is the
adjoint with respect to the *weighted* inner products of its discretised spaces; the Euclidean
adjoint we need is ``(w_domain / w_range) · adjoint_odl`` (``w``: the spaces' constant weightings).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from operators.ct.geometry import FanBeam2D, Parallel2D

ODL_ANGLE_OFFSET = math.pi / 2


def odl_available() -> bool:
    """True when ODL >= 1.0 imports with its tomography module."""
    try:
        import odl  # noqa: F401
        from odl.applications import tomo  # noqa: F401
    except ImportError:
        return False
    return True


def odl_ray_transform(geometry: Parallel2D | FanBeam2D, *, impl: str | None = None):
    """The ODL ``RayTransform`` equal to ours for ``geometry`` (same array convention)."""
    import odl
    from odl.applications import tomo

    if not isinstance(geometry, (Parallel2D, FanBeam2D)):
        raise ValueError(f"the 'odl' backend supports 2D geometries, not {type(geometry).__name__}")
    H, W = geometry.image_shape
    ps = geometry.pixel_size
    # ODL's array axis 0 is x: our (H, W) array is read as an (H × W) grid whose first axis spans
    # the image height; with the π/2 angle offset this reproduces our convention exactly.
    space = odl.uniform_discr(
        [-H * ps / 2, -W * ps / 2], [H * ps / 2, W * ps / 2], (H, W), dtype="float32"
    )
    half = geometry.n_detectors * geometry.detector_spacing / 2
    det_part = odl.uniform_partition(-half, half, geometry.n_detectors)
    angle_part = odl.nonuniform_partition(geometry.angles_array + ODL_ANGLE_OFFSET)
    if isinstance(geometry, Parallel2D):
        odl_geom = tomo.Parallel2dGeometry(angle_part, det_part)
    else:
        odl_geom = tomo.FanBeamGeometry(
            angle_part,
            det_part,
            src_radius=geometry.source_distance,
            det_radius=geometry.detector_distance,
        )
    return tomo.RayTransform(space, odl_geom, impl=impl)


class ODLRayTransform2D:
    """Applies ODL's ray transform image by image (ODL works on host arrays)."""

    name = "odl"

    def __init__(self, geometry: Parallel2D | FanBeam2D, *, impl: str | None = None) -> None:
        self.geometry = geometry
        self.odl_op = odl_ray_transform(geometry, impl=impl)
        w_domain = float(self.odl_op.domain.weighting.const)
        w_range = float(self.odl_op.range.weighting.const)
        self.adjoint_scale = w_domain / w_range

    def _loop(self, src: torch.Tensor, fn, space, out_shape, scale: float = 1.0) -> torch.Tensor:
        arr = src.detach().to("cpu", torch.float32).numpy()
        out = np.empty((arr.shape[0], *out_shape), dtype=np.float32)
        for i in range(arr.shape[0]):
            out[i] = np.asarray(fn(space.element(arr[i])).data)
        if scale != 1.0:
            out *= scale
        return torch.from_numpy(out).to(device=src.device, dtype=src.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forward projection of ``(B, H, W)``."""
        return self._loop(x, self.odl_op, self.odl_op.domain, self.geometry.range_shape)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Euclidean adjoint of ``(B, n_angles, n_detectors)``."""
        return self._loop(
            y,
            self.odl_op.adjoint,
            self.odl_op.range,
            self.geometry.domain_shape,
            self.adjoint_scale,
        )
