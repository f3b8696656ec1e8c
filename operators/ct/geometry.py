"""CT acquisition geometries as frozen, validated value objects in physical units (mm).

Conventions (the same for every backend):

- 2D images are ``(H, W)`` tensors on a grid of square pixels of side ``pixel_size``, centred
  on the rotation axis. Column ``j`` is at ``x = (j - (W-1)/2) * pixel_size``; row ``i`` at
  ``y = ((H-1)/2 - i) * pixel_size`` (row 0 is the top of the image, ``y`` points up).
- 3D volumes are ``(D, H, W)`` = ``(z, y, x)``, ASTRA's 3D axis order (slices, rows, columns);
  the in-plane orientation of ASTRA's 3D CUDA path is to be confirmed on a GPU (see test_gpu.py).
- Sinograms are ``(n_angles, n_detectors)`` in 2D and ``(n_angles, det_rows, det_cols)`` in 3D.
  Detector element ``k`` is at ``u = (k - (n-1)/2) * detector_spacing``.
- Parallel beam: at angle θ the detector coordinate of a point is ``u = x cos θ + y sin θ``
  (ASTRA's convention). Fan and cone beam (ASTRA's ``fanflat``/``cone``): the source is at
  ``R (sin θ, −cos θ)``, the detector centre at ``D (−sin θ, cos θ)`` and its axis along
  ``(cos θ, sin θ)``, so ``u`` is the magnified ``x cos θ + y sin θ``.
- Values are line integrals in physical units: a unit-valued disc of radius r gives ``2√(r² − u²)``.

Example
-------
>>> g = Parallel2D(image_shape=(128, 128), n_angles=30)
>>> g.n_detectors, g.range_shape
(182, (30, 182))
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence

import numpy as np

from operators.base import as_shape


def _as_angles(angles: Sequence[float] | np.ndarray | None, n_angles: int, full_turn: bool):
    """Return angles as a read-only float64 tuple: given ones, else uniform on [0, π) or [0, 2π)."""
    if angles is None:
        stop = 2 * math.pi if full_turn else math.pi
        return tuple(float(a) for a in np.linspace(0.0, stop, n_angles, endpoint=False))
    out = tuple(float(a) for a in np.asarray(angles, dtype=np.float64).ravel())
    if len(out) != n_angles:
        raise ValueError(f"got {len(out)} angles but n_angles={n_angles}")
    if not all(math.isfinite(a) for a in out):
        raise ValueError("angles must be finite")
    return out


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number (mm), got {value}")
    return value


def _pair(name: str, value: float | Sequence[float]) -> tuple[float, float]:
    """(row, col) spacing from a scalar or a pair."""
    if isinstance(value, (int, float)):
        value = (value, value)
    vals = tuple(float(v) for v in value)
    if len(vals) != 2:
        raise ValueError(f"{name} must be a number or a (row, col) pair, got {value!r}")
    return (_positive(f"{name}[0]", vals[0]), _positive(f"{name}[1]", vals[1]))


def _default_detectors(extent_cells: float) -> int:
    return int(math.ceil(extent_cells))


class _Geometry:
    """Shared behaviour of the geometries: hashing for caches and the angles as an array.

    Every geometry also has ``ndim`` and the properties ``domain_shape`` (image or volume) and
    ``range_shape`` (sinogram or projection stack).
    """

    ndim: int

    def to_dict(self) -> dict:
        """A JSON-serialisable description (class name and all fields)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"type": type(self).__name__, **fields}

    def fingerprint(self) -> str:
        """A SHA-256 hex digest of :meth:`to_dict`, used as a cache key."""
        payload = json.dumps(self.to_dict(), sort_keys=True, default=list).encode()
        return hashlib.sha256(payload).hexdigest()

    @property
    def angles_array(self) -> np.ndarray:
        """Projection angles as a float64 numpy array (radians)."""
        return np.asarray(self.angles, dtype=np.float64)


def _check_parallel_coverage(diameter_mm: float, n_det: int, spacing: float, what: str) -> None:
    width = n_det * spacing
    if width + 1e-9 * diameter_mm < diameter_mm:
        need = math.ceil(diameter_mm / spacing - 1e-9)
        raise ValueError(
            f"the detector ({n_det} × {spacing} mm = {width:.4g} mm) does not see the whole "
            f"{what} (diameter {diameter_mm:.4g} mm); use at least {need} detectors "
            "or a larger spacing"
        )


def _check_divergent_coverage(
    radius_mm: float, src: float, det: float, n_det: int, spacing: float, what: str
) -> None:
    if src <= radius_mm:
        raise ValueError(
            f"source_distance {src} mm must exceed the {what}'s radius {radius_mm:.4g} mm "
            "(the source would sit inside the object)"
        )
    half_needed = (src + det) * math.tan(math.asin(radius_mm / src))
    if n_det * spacing + 1e-9 * half_needed < 2 * half_needed:
        need = math.ceil(2 * half_needed / spacing - 1e-9)
        raise ValueError(
            f"the detector ({n_det} × {spacing} mm) does not see the whole {what}: the magnified "
            f"shadow is {2 * half_needed:.4g} mm wide; use at least {need} detectors"
        )


@dataclasses.dataclass(frozen=True)
class Parallel2D(_Geometry):
    """2D parallel-beam geometry.

    Parameters
    ----------
    image_shape : int or (H, W)
        Reconstruction grid.
    n_angles : int
        Number of projections; default angles uniform on [0, π).
    n_detectors : int, optional
        Detector elements; default ``ceil(diagonal / detector_spacing)`` so the whole image is seen.
    pixel_size, detector_spacing : float
        In mm.
    angles : sequence of float, optional
        Explicit projection angles in radians (``n_angles`` of them).

    Example
    -------
    >>> Parallel2D((128, 128), n_angles=60, n_detectors=183).range_shape
    (60, 183)
    """

    image_shape: tuple[int, int]
    n_angles: int
    n_detectors: int | None = None
    pixel_size: float = 1.0
    detector_spacing: float = 1.0
    angles: tuple[float, ...] | None = None

    ndim = 2

    def __post_init__(self) -> None:
        shape, n_angles, ps, ds = _image_fields(self)
        diameter = math.hypot(*shape) * ps
        n_det = self.n_detectors
        n_det = _default_detectors(diameter / ds - 1e-9) if n_det is None else as_shape(n_det)[0]
        _check_parallel_coverage(diameter, n_det, ds, "image")
        object.__setattr__(self, "image_shape", shape)
        object.__setattr__(self, "n_angles", n_angles)
        object.__setattr__(self, "n_detectors", n_det)
        object.__setattr__(self, "pixel_size", ps)
        object.__setattr__(self, "detector_spacing", ds)
        object.__setattr__(self, "angles", _as_angles(self.angles, n_angles, full_turn=False))

    @property
    def domain_shape(self) -> tuple[int, int]:
        return self.image_shape

    @property
    def range_shape(self) -> tuple[int, int]:
        return (self.n_angles, self.n_detectors)


@dataclasses.dataclass(frozen=True)
class FanBeam2D(_Geometry):
    """2D fan-beam geometry with a flat detector.

    The source circles the rotation axis at ``source_distance``; the detector is a line at
    ``detector_distance`` on the other side. Default angles: uniform on [0, 2π).

    Example
    -------
    >>> g = FanBeam2D((256, 256), n_angles=360, source_distance=500.0, detector_distance=500.0)
    >>> g.range_shape[0]
    360
    """

    image_shape: tuple[int, int]
    n_angles: int
    n_detectors: int | None = None
    source_distance: float = 1000.0
    detector_distance: float = 0.0
    pixel_size: float = 1.0
    detector_spacing: float = 1.0
    angles: tuple[float, ...] | None = None

    ndim = 2

    def __post_init__(self) -> None:
        shape, n_angles, ps, ds = _image_fields(self)
        src, det = _distances(self)
        radius = math.hypot(*shape) * ps / 2
        n_det = self.n_detectors
        if n_det is None:
            if src <= radius:
                _check_divergent_coverage(radius, src, det, 1, ds, "image")
            shadow = 2 * (src + det) * math.tan(math.asin(radius / src))
            n_det = _default_detectors(shadow / ds - 1e-9)
        else:
            n_det = as_shape(n_det)[0]
        _check_divergent_coverage(radius, src, det, n_det, ds, "image")
        object.__setattr__(self, "image_shape", shape)
        object.__setattr__(self, "n_angles", n_angles)
        object.__setattr__(self, "n_detectors", n_det)
        object.__setattr__(self, "source_distance", src)
        object.__setattr__(self, "detector_distance", det)
        object.__setattr__(self, "pixel_size", ps)
        object.__setattr__(self, "detector_spacing", ds)
        object.__setattr__(self, "angles", _as_angles(self.angles, n_angles, full_turn=True))

    @property
    def domain_shape(self) -> tuple[int, int]:
        return self.image_shape

    @property
    def range_shape(self) -> tuple[int, int]:
        return (self.n_angles, self.n_detectors)


def _image_fields(g) -> tuple[tuple[int, int], int, float, float]:
    """Validated (image_shape, n_angles, pixel_size, detector_spacing) of a 2D geometry."""
    shape = as_shape(g.image_shape, name="image_shape")
    if len(shape) == 1:
        shape = shape * 2
    if len(shape) != 2:
        raise ValueError(f"image_shape must be (H, W), got {shape}")
    n_angles = as_shape(g.n_angles, name="n_angles")[0]
    ps = _positive("pixel_size", g.pixel_size)
    ds = _positive("detector_spacing", g.detector_spacing)
    return shape, n_angles, ps, ds


def _distances(g) -> tuple[float, float]:
    """Validated (source_distance, detector_distance) of a divergent-beam geometry."""
    src = _positive("source_distance", g.source_distance)
    det = float(g.detector_distance)
    if not (det >= 0 and math.isfinite(det)):
        raise ValueError(f"detector_distance must be >= 0 (mm), got {det}")
    return src, det


def _volume_fields(volume_shape, voxel_size):
    shape = as_shape(volume_shape, name="volume_shape")
    if len(shape) == 1:
        shape = shape * 3
    if len(shape) != 3:
        raise ValueError(f"volume_shape must be (D, H, W), got {shape}")
    return shape, _positive("voxel_size", voxel_size)


def _detector_shape(detector_shape, default: tuple[int, int]) -> tuple[int, int]:
    if detector_shape is None:
        return default
    shape = as_shape(detector_shape, name="detector_shape")
    if len(shape) == 1:
        shape = shape * 2
    if len(shape) != 2:
        raise ValueError(f"detector_shape must be (rows, cols), got {shape}")
    return shape


@dataclasses.dataclass(frozen=True)
class Parallel3D(_Geometry):
    """3D parallel-beam geometry (rotation about the z axis); needs a GPU (ASTRA CUDA).

    ``detector_spacing`` is a number or a (row, col) pair in mm. The default detector has as many
    rows as the volume has slices and enough columns to see the in-plane diagonal.

    Example
    -------
    >>> Parallel3D((64, 64, 64), n_angles=90).range_shape
    (90, 64, 91)
    """

    volume_shape: tuple[int, int, int]
    n_angles: int
    detector_shape: tuple[int, int] | None = None
    voxel_size: float = 1.0
    detector_spacing: float | tuple[float, float] = 1.0
    angles: tuple[float, ...] | None = None

    ndim = 3

    def __post_init__(self) -> None:
        shape, vs = _volume_fields(self.volume_shape, self.voxel_size)
        n_angles = as_shape(self.n_angles, name="n_angles")[0]
        ds = _pair("detector_spacing", self.detector_spacing)
        D, H, W = shape
        diameter = math.hypot(H, W) * vs
        default = (
            _default_detectors(D * vs / ds[0] - 1e-9),
            _default_detectors(diameter / ds[1] - 1e-9),
        )
        det_shape = _detector_shape(self.detector_shape, default)
        _check_parallel_coverage(diameter, det_shape[1], ds[1], "volume")
        _check_parallel_coverage(D * vs, det_shape[0], ds[0], "volume's height")
        object.__setattr__(self, "volume_shape", shape)
        object.__setattr__(self, "n_angles", n_angles)
        object.__setattr__(self, "detector_shape", det_shape)
        object.__setattr__(self, "voxel_size", vs)
        object.__setattr__(self, "detector_spacing", ds)
        object.__setattr__(self, "angles", _as_angles(self.angles, n_angles, full_turn=False))

    @property
    def domain_shape(self) -> tuple[int, int, int]:
        return self.volume_shape

    @property
    def range_shape(self) -> tuple[int, int, int]:
        return (self.n_angles, *self.detector_shape)


@dataclasses.dataclass(frozen=True)
class ConeBeam3D(_Geometry):
    """3D circular cone-beam geometry with a flat detector; needs a GPU (ASTRA CUDA).

    Example
    -------
    >>> g = ConeBeam3D((128, 128, 128), n_angles=180, source_distance=500.0,
    ...                detector_distance=500.0)
    >>> g.range_shape[0]
    180
    """

    volume_shape: tuple[int, int, int]
    n_angles: int
    detector_shape: tuple[int, int] | None = None
    source_distance: float = 1000.0
    detector_distance: float = 0.0
    voxel_size: float = 1.0
    detector_spacing: float | tuple[float, float] = 1.0
    angles: tuple[float, ...] | None = None

    ndim = 3

    def __post_init__(self) -> None:
        shape, vs = _volume_fields(self.volume_shape, self.voxel_size)
        n_angles = as_shape(self.n_angles, name="n_angles")[0]
        ds = _pair("detector_spacing", self.detector_spacing)
        src, det = _distances(self)
        D, H, W = shape
        radius = math.hypot(H, W) * vs / 2
        if src <= radius:
            _check_divergent_coverage(radius, src, det, 1, ds[1], "volume")
        mag = (src + det) / (src - radius)  # worst-case magnification (nearest point)
        default = (
            _default_detectors(D * vs * mag / ds[0] - 1e-9),
            _default_detectors(2 * (src + det) * math.tan(math.asin(radius / src)) / ds[1] - 1e-9),
        )
        det_shape = _detector_shape(self.detector_shape, default)
        _check_divergent_coverage(radius, src, det, det_shape[1], ds[1], "volume")
        object.__setattr__(self, "volume_shape", shape)
        object.__setattr__(self, "n_angles", n_angles)
        object.__setattr__(self, "detector_shape", det_shape)
        object.__setattr__(self, "source_distance", src)
        object.__setattr__(self, "detector_distance", det)
        object.__setattr__(self, "voxel_size", vs)
        object.__setattr__(self, "detector_spacing", ds)
        object.__setattr__(self, "angles", _as_angles(self.angles, n_angles, full_turn=True))

    @property
    def domain_shape(self) -> tuple[int, int, int]:
        return self.volume_shape

    @property
    def range_shape(self) -> tuple[int, int, int]:
        return (self.n_angles, *self.detector_shape)


Geometry = Parallel2D | FanBeam2D | Parallel3D | ConeBeam3D
