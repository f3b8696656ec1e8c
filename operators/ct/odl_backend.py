"""The ``odl`` backend: ODL 1.0's ``RayTransform`` behind our geometry conventions.

An independent path through ODL's own geometry handling (and an interop point for ODL users).
Our geometries map to ODL's with the angle offset ``θ_odl = θ + π/2`` and the identity on the
image array: ODL's ``uniform_discr`` indexes ``[i, j]`` as ``(x_i, y_j)``, a quarter turn from our
``(row, col)``, which the offset undoes (checked by the backend-agreement tests).

Scaling: ODL's forward is the line integral in physical units like ours. ODL's adjoint is the
adjoint with respect to the *weighted* inner products of its discretised spaces; the Euclidean
adjoint we need is ``(w_domain / w_range) · adjoint_odl`` (``w``: the spaces' constant weightings).

Offsets: for ``FanBeam2D`` the detector partition is shifted by ``detector_offset −
rotation_offset`` and the source by ``−rotation_offset`` along ODL's source tangent (which is our
``+u`` under the angle offset); ODL then builds ASTRA's ``fanflat_vec``, and the result equals
ours exactly. ODL's 2D parallel-beam CPU path ignores a shifted detector (it builds ASTRA's plain
``parallel`` geometry), and ODL has no per-view pose geometry: ``Parallel2D`` with a
``detector_offset`` and the vector geometries raise ``NotImplementedError`` here (see
:func:`check_supported`); use the ``astra`` or ``matrix`` backend for them.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from operators.ct.geometry import FanBeam2D, Parallel2D
from operators.ct.vector_geometry import FanVec2D, ParallelVec2D

ODL_ANGLE_OFFSET = math.pi / 2


def import_odl():
    """``(odl, odl.applications.tomo)``, imported without ODL's side effect on numpy: its import
    switches numpy's printing to the 1.13 legacy style for the whole process; the user's print
    options are restored here."""
    options = np.get_printoptions()
    try:
        import odl
        from odl.applications import tomo
    finally:
        np.set_printoptions(**options)
    return odl, tomo


def odl_available() -> bool:
    """True when ODL >= 1.0 imports with its tomography module."""
    try:
        import_odl()
    except ImportError:
        return False
    return True


def check_supported(geometry) -> None:
    """Raise if the ``odl`` backend cannot model ``geometry``, naming the backends that can.

    Raises
    ------
    NotImplementedError
        For the vector geometries and for ``Parallel2D`` with a ``detector_offset``.
    ValueError
        For anything that is not a 2D CT geometry.

    Example
    -------
    >>> check_supported(Parallel2D(16, 4))
    >>> check_supported(Parallel2D(16, 4, detector_offset=1.0))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    NotImplementedError: the 'odl' backend does not support Parallel2D with a detector_offset ...
    """
    if isinstance(geometry, (ParallelVec2D, FanVec2D)):
        raise NotImplementedError(
            f"the 'odl' backend does not support {type(geometry).__name__} (ODL has no per-view "
            "pose geometry); use backend='astra' or 'matrix'"
        )
    if isinstance(geometry, Parallel2D) and geometry.detector_offset:
        raise NotImplementedError(
            "the 'odl' backend does not support Parallel2D with a detector_offset (ODL's CPU "
            "parallel-beam path ignores detector shifts); use backend='astra' or 'matrix'"
        )
    if not isinstance(geometry, (Parallel2D, FanBeam2D)):
        raise ValueError(f"the 'odl' backend supports 2D geometries, not {type(geometry).__name__}")


def odl_ray_transform(geometry: Parallel2D | FanBeam2D, *, impl: str | None = None):
    """The ODL ``RayTransform`` equal to ours for ``geometry`` (same array convention)."""
    odl, tomo = import_odl()
    check_supported(geometry)
    H, W = geometry.image_shape
    ps = geometry.pixel_size
    # ODL's array axis 0 is x: our (H, W) array is read as an (H × W) grid whose first axis spans
    # the image height; with the π/2 angle offset this reproduces our convention exactly.
    space = odl.uniform_discr(
        [-H * ps / 2, -W * ps / 2], [H * ps / 2, W * ps / 2], (H, W), dtype="float32"
    )
    half = geometry.n_detectors * geometry.detector_spacing / 2
    angle_part = odl.nonuniform_partition(geometry.angles_array + ODL_ANGLE_OFFSET)
    if isinstance(geometry, Parallel2D):
        det_part = odl.uniform_partition(-half, half, geometry.n_detectors)
        odl_geom = tomo.Parallel2dGeometry(angle_part, det_part)
    else:
        shift = geometry.detector_offset - geometry.rotation_offset
        det_part = odl.uniform_partition(-half + shift, half + shift, geometry.n_detectors)
        extra = {}
        if geometry.rotation_offset:
            src_shift = np.array([[0.0, -geometry.rotation_offset]])
            extra["src_shift_func"] = lambda angle: src_shift
        odl_geom = tomo.FanBeamGeometry(
            angle_part,
            det_part,
            src_radius=geometry.source_distance,
            det_radius=geometry.detector_distance,
            **extra,
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
