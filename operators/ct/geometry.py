"""CT acquisition geometries as frozen, validated value objects in physical units (mm).

Conventions (the same for every backend):

- 2D images are ``(H, W)`` tensors on a grid of square pixels of side ``pixel_size``, centred
  on the rotation axis. Column ``j`` is at ``x = (j - (W-1)/2) * pixel_size``; row ``i`` at
  ``y = ((H-1)/2 - i) * pixel_size`` (row 0 is the top of the image, ``y`` points up).
- 3D volumes are ``(D, H, W)`` = ``(z, y, x)``, ASTRA's 3D axis order (slices, rows, columns);
  the in-plane orientation of ASTRA's 3D CUDA path is to be confirmed on a GPU (see test_gpu.py).
- Sinograms are ``(n_angles, n_detectors)`` in 2D and ``(n_angles, det_rows, det_cols)`` in 3D.
  Detector element ``k`` is at ``u = (k - (n-1)/2) * detector_spacing + detector_offset``.
- Parallel beam: at angle θ the detector coordinate of a point is ``u = x cos θ + y sin θ``
  (ASTRA's convention). Fan and cone beam (ASTRA's ``fanflat``/``cone``): the source is at
  ``R (sin θ, −cos θ)``, the detector centre at ``D (−sin θ, cos θ)`` and its axis along
  ``(cos θ, sin θ)``, so ``u`` is the magnified ``x cos θ + y sin θ``.
- Values are line integrals in physical units: a unit-valued disc of radius r gives ``2√(r² − u²)``.

Angles are stored in radians. ``angle_unit="deg"`` converts degrees on construction (as
scikit-image's ``radon(theta=)`` takes degrees); radians beyond a full turn (``|θ| > 2π``) are
refused, since they are almost always degrees passed by mistake. ``n_angles`` defaults to
``len(angles)``.

Offsets of real scanners (2D, in mm, along the detector axis ``(cos θ, sin θ)``):

- ``detector_offset = o`` moves the detector by ``o``: element ``k`` then sees ``u = (k −
  (n−1)/2)·spacing + o``, so a point that the centred detector sees at ``u`` lands ``o / spacing``
  elements *lower*. In parallel beam the rotation axis projects to element ``(n−1)/2 − o/spacing``;
  a centre of rotation found at element ``c`` is ``detector_offset = ((n−1)/2 − c)·spacing``.
- ``rotation_offset = c`` (fan beam): the rotation axis lies ``c`` along ``+u`` from the central
  ray (the ray from the source perpendicular to the detector). In the object's frame source and
  detector are moved by ``−c``; the axis projects to ``u = c (R + D)/R − o``.

Any non-zero offset is modelled with ASTRA's vector geometries (``parallel_vec``, ``fanflat_vec``),
as is a free pose per view (:mod:`operators.ct.vector_geometry`); ``to_vectors()`` gives the
vectors of any 2D geometry.

Example
-------
>>> g = Parallel2D(image_shape=(128, 128), n_angles=30)
>>> g.n_detectors, g.range_shape
(182, (30, 182))
>>> Parallel2D((64, 64), angles=np.arange(0, 180, 3.0), angle_unit="deg")
Parallel2D(image_shape=(64, 64), n_angles=60, n_detectors=91, pixel_size=1.0, detector_spacing=1.0,
           angles=60 in [0°, 177°], step 3°, detector_offset=0.0)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import warnings
from collections.abc import Sequence

import numpy as np

from operators.base import as_shape

#: Accepted values of ``angle_unit``.
ANGLE_UNITS = ("rad", "deg")
_TURN = 2 * math.pi
_TURN_TOL = 1e-6  # radians beyond a full turn still accepted (rounding of 2π)


def _as_angles(angles, n_angles, angle_unit: str, full_turn: bool) -> tuple[int, tuple[float, ...]]:
    """``(n_angles, angles in radians)``: the given angles, else uniform on [0, π) or [0, 2π)."""
    if angle_unit not in ANGLE_UNITS:
        raise ValueError(f"angle_unit must be 'rad' or 'deg', got {angle_unit!r}")
    if angles is None:
        if n_angles is None:
            raise ValueError(
                "give n_angles (uniformly spaced angles) or angles (explicit), or both"
            )
        n = as_shape(n_angles, name="n_angles")[0]
        stop = _TURN if full_turn else math.pi
        return n, tuple(float(a) for a in np.linspace(0.0, stop, n, endpoint=False))
    arr = np.asarray(angles, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError("angles must not be empty")
    if n_angles is not None and as_shape(n_angles, name="n_angles")[0] != arr.size:
        raise ValueError(
            f"got {arr.size} angles but n_angles={n_angles}; leave n_angles out, it defaults "
            "to len(angles)"
        )
    if not np.isfinite(arr).all():
        raise ValueError("angles must be finite")
    largest = float(np.abs(arr).max())
    if angle_unit == "deg":
        if arr.size > 1 and largest <= _TURN + _TURN_TOL:
            warnings.warn(
                f"angle_unit='deg' but the angles reach only {largest:.4g}°; if they are radians, "
                "leave angle_unit at 'rad'",
                UserWarning,
                stacklevel=4,
            )
        if largest > 360 * (1 + 1e-9):
            raise ValueError(
                f"angles reach {largest:.4g}°, more than a full turn; wrap them into one turn "
                "(np.mod(angles, 360))"
            )
        arr = np.deg2rad(arr)
    elif largest > _TURN + _TURN_TOL:
        raise ValueError(
            f"angles reach {largest:.4g} rad, more than a full turn (2π ≈ 6.283): they look "
            'like degrees. Pass angle_unit="deg" (degrees, as scikit-image\'s radon(theta=)) '
            "or np.deg2rad(angles); a scan of several turns must be wrapped into one "
            "(np.mod(angles, 2 * np.pi))"
        )
    return int(arr.size), tuple(float(a) for a in arr)


def describe_angles(angles: Sequence[float]) -> str:
    """A one-line summary of angles in radians, in degrees: count, range and step.

    Example
    -------
    >>> describe_angles(np.linspace(0, np.pi, 60, endpoint=False))
    '60 in [0°, 177°], step 3°'
    >>> describe_angles([0.0, 0.5, 2.0])
    '3 in [0°, 114.6°], non-uniform'
    """
    deg = np.rad2deg(np.asarray(angles, dtype=np.float64).ravel()) + 0.0  # no "-0°"
    if deg.size == 1:
        return f"1 at {deg[0]:.4g}°"
    text = f"{deg.size} in [{deg.min():.4g}°, {deg.max():.4g}°]"
    steps = np.diff(deg)
    if np.allclose(steps, steps[0], rtol=1e-6, atol=1e-9):
        return f"{text}, step {steps[0]:.4g}°"
    return f"{text}, non-uniform"


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number (mm), got {value}")
    return value


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number (mm), got {value}")
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


class GeometryBase:
    """Shared behaviour of the geometries: hashing for caches, the angles as an array, a short
    ``repr`` (angles and pose vectors summarised; :meth:`to_dict` keeps every value).

    Every geometry also has ``ndim``, ``n_angles`` and the properties ``domain_shape`` (image or
    volume) and ``range_shape`` (sinogram or projection stack).
    """

    ndim: int

    def to_dict(self) -> dict:
        """A JSON-serialisable description (class name and all fields, angles in radians)."""
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

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "angles":
                text = describe_angles(value)
            elif f.name == "vectors":
                text = f"<{len(value)} poses>"
            else:
                text = repr(value)
            parts.append(f"{f.name}={text}")
        return f"{type(self).__name__}({', '.join(parts)})"


def _check_parallel_coverage(
    diameter_mm: float, n_det: int, spacing: float, what: str, offset: float = 0.0
) -> None:
    width = n_det * spacing
    needed = diameter_mm + 2 * abs(offset)
    if width + 1e-9 * needed < needed:
        need = math.ceil(needed / spacing - 1e-9)
        shifted = f" shifted by {offset:g} mm" if offset else ""
        raise ValueError(
            f"the detector ({n_det} × {spacing} mm = {width:.4g} mm{shifted}) does not see the "
            f"whole {what} (diameter {diameter_mm:.4g} mm); use at least {need} detectors "
            "or a larger spacing" + (" or a smaller detector_offset" if offset else "")
        )


def fan_shadow(
    radius_mm: float,
    src: float,
    det: float,
    detector_offset: float = 0.0,
    rotation_offset: float = 0.0,
) -> tuple[float, float]:
    """The interval ``(u_min, u_max)`` (mm, from the detector centre) that a disc of
    ``radius_mm`` about the rotation axis casts on a flat fan-beam detector.

    Raises ``ValueError`` if the source is inside the disc or the shadow is unbounded.

    Example
    -------
    >>> lo, hi = fan_shadow(10.0, 100.0, 100.0)
    >>> round(hi, 4) == -round(lo, 4) == round(200 * math.tan(math.asin(0.1)), 4)
    True
    """
    if src <= radius_mm:
        raise ValueError(
            f"source_distance {src} mm must exceed the radius {radius_mm:.4g} mm of the object "
            "(the source would sit inside the object)"
        )
    central = math.atan2(rotation_offset, src)  # the ray through the axis, from the normal
    half = math.asin(radius_mm / math.hypot(src, rotation_offset))
    if abs(central) + half >= math.pi / 2:
        raise ValueError(
            f"rotation_offset {rotation_offset} mm puts the object beside the detector plane"
        )
    lo = (src + det) * math.tan(central - half) - detector_offset
    hi = (src + det) * math.tan(central + half) - detector_offset
    return lo, hi


def _shadow(radius_mm, src, det, what, offsets=(0.0, 0.0)) -> tuple[float, float]:
    """:func:`fan_shadow` with errors naming ``what`` (image or volume)."""
    try:
        return fan_shadow(radius_mm, src, det, *offsets)
    except ValueError as err:
        raise ValueError(str(err).replace("the object", f"the {what}")) from None


def _check_divergent_coverage(
    radius_mm: float,
    src: float,
    det: float,
    n_det: int,
    spacing: float,
    what: str,
    offsets: tuple[float, float] = (0.0, 0.0),
) -> None:
    lo, hi = _shadow(radius_mm, src, det, what, offsets)
    needed = 2 * max(abs(lo), abs(hi))
    if n_det * spacing + 1e-9 * needed < needed:
        need = math.ceil(needed / spacing - 1e-9)
        raise ValueError(
            f"the detector ({n_det} × {spacing} mm) does not see the whole {what}: its magnified "
            f"shadow spans u = {lo:.4g} to {hi:.4g} mm about the detector centre; use at least "
            f"{need} detectors"
        )


def _image_fields(g) -> tuple[tuple[int, int], float, float]:
    """Validated (image_shape, pixel_size, detector_spacing) of a 2D geometry."""
    shape = as_shape(g.image_shape, name="image_shape")
    if len(shape) == 1:
        shape = shape * 2
    if len(shape) != 2:
        raise ValueError(f"image_shape must be (H, W), got {shape}")
    ps = _positive("pixel_size", g.pixel_size)
    ds = _positive("detector_spacing", g.detector_spacing)
    return shape, ps, ds


def _set(obj, **values) -> None:
    for name, value in values.items():
        object.__setattr__(obj, name, value)


def _axes(angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per view: the detector axis ``(cos θ, sin θ)`` and its normal ``(−sin θ, cos θ)``."""
    cos, sin = np.cos(angles), np.sin(angles)
    return np.stack([cos, sin], axis=1), np.stack([-sin, cos], axis=1)


@dataclasses.dataclass(frozen=True, repr=False)
class Parallel2D(GeometryBase):
    """2D parallel-beam geometry.

    Parameters
    ----------
    image_shape : int or (H, W)
        Reconstruction grid.
    n_angles : int, optional
        Number of projections; default angles uniform on [0, π). Defaults to ``len(angles)``.
    n_detectors : int, optional
        Detector elements; default ``ceil((diagonal + 2|detector_offset|) / detector_spacing)``
        so the whole image is seen.
    pixel_size, detector_spacing : float
        In mm.
    angles : sequence of float, optional
        Explicit projection angles, in ``angle_unit``; stored in radians.
    detector_offset : float
        Shift of the detector along its axis (mm); see the module docstring for its sign.
    angle_unit : {"rad", "deg"}
        Unit of ``angles`` (not stored: ``angles`` are radians once constructed).

    Example
    -------
    >>> Parallel2D((128, 128), n_angles=60, n_detectors=183).range_shape
    (60, 183)
    >>> Parallel2D(64, angles=[0, 45, 90], angle_unit="deg").n_angles
    3
    """

    image_shape: tuple[int, int]
    n_angles: int | None = None
    n_detectors: int | None = None
    pixel_size: float = 1.0
    detector_spacing: float = 1.0
    angles: tuple[float, ...] | None = None
    detector_offset: float = 0.0
    angle_unit: dataclasses.InitVar[str] = "rad"

    ndim = 2

    def __post_init__(self, angle_unit: str) -> None:
        shape, ps, ds = _image_fields(self)
        n_angles, angles = _as_angles(self.angles, self.n_angles, angle_unit, full_turn=False)
        offset = _finite("detector_offset", self.detector_offset)
        diameter = math.hypot(*shape) * ps
        n_det = self.n_detectors
        if n_det is None:
            n_det = _default_detectors((diameter + 2 * abs(offset)) / ds - 1e-9)
        else:
            n_det = as_shape(n_det, name="n_detectors")[0]
        _check_parallel_coverage(diameter, n_det, ds, "image", offset)
        _set(self, image_shape=shape, n_angles=n_angles, n_detectors=n_det, pixel_size=ps)
        _set(self, detector_spacing=ds, angles=angles, detector_offset=offset)

    @property
    def domain_shape(self) -> tuple[int, int]:
        return self.image_shape

    @property
    def range_shape(self) -> tuple[int, int]:
        return (self.n_angles, self.n_detectors)

    def to_vectors(self) -> np.ndarray:
        """ASTRA ``parallel_vec`` vectors ``(n_angles, 6)``: ray direction, detector centre and
        the vector from one detector element to the next, per view (mm).

        Example
        -------
        >>> Parallel2D(16, angles=[0.0], detector_offset=2.0).to_vectors()
        array([[ 0., -1.,  2.,  0.,  1.,  0.]])
        """
        axis, normal = _axes(self.angles_array)
        return np.concatenate(
            [-normal, self.detector_offset * axis, self.detector_spacing * axis], axis=1
        )


@dataclasses.dataclass(frozen=True, repr=False)
class FanBeam2D(GeometryBase):
    """2D fan-beam geometry with a flat detector.

    The source circles the rotation axis at ``source_distance``; the detector is a line at
    ``detector_distance`` on the other side. Default angles: uniform on [0, 2π). The other
    parameters are those of :class:`Parallel2D`, plus ``rotation_offset`` (mm): the rotation
    axis lies that far along the detector axis from the central ray (see the module docstring).

    Example
    -------
    >>> g = FanBeam2D((256, 256), n_angles=360, source_distance=500.0, detector_distance=500.0)
    >>> g.range_shape[0]
    360
    """

    image_shape: tuple[int, int]
    n_angles: int | None = None
    n_detectors: int | None = None
    source_distance: float = 1000.0
    detector_distance: float = 0.0
    pixel_size: float = 1.0
    detector_spacing: float = 1.0
    angles: tuple[float, ...] | None = None
    detector_offset: float = 0.0
    rotation_offset: float = 0.0
    angle_unit: dataclasses.InitVar[str] = "rad"

    ndim = 2

    def __post_init__(self, angle_unit: str) -> None:
        shape, ps, ds = _image_fields(self)
        n_angles, angles = _as_angles(self.angles, self.n_angles, angle_unit, full_turn=True)
        src, det = _distances(self)
        offsets = (
            _finite("detector_offset", self.detector_offset),
            _finite("rotation_offset", self.rotation_offset),
        )
        radius = math.hypot(*shape) * ps / 2
        n_det = self.n_detectors
        if n_det is None:
            lo, hi = _shadow(radius, src, det, "image", offsets)
            n_det = _default_detectors(2 * max(abs(lo), abs(hi)) / ds - 1e-9)
        else:
            n_det = as_shape(n_det, name="n_detectors")[0]
        _check_divergent_coverage(radius, src, det, n_det, ds, "image", offsets)
        _set(self, image_shape=shape, n_angles=n_angles, n_detectors=n_det)
        _set(self, source_distance=src, detector_distance=det, pixel_size=ps)
        _set(self, detector_spacing=ds, angles=angles)
        _set(self, detector_offset=offsets[0], rotation_offset=offsets[1])

    @property
    def domain_shape(self) -> tuple[int, int]:
        return self.image_shape

    @property
    def range_shape(self) -> tuple[int, int]:
        return (self.n_angles, self.n_detectors)

    def to_vectors(self) -> np.ndarray:
        """ASTRA ``fanflat_vec`` vectors ``(n_angles, 6)``: source position, detector centre and
        the vector from one detector element to the next, per view (mm).

        Example
        -------
        >>> FanBeam2D(16, angles=[0.0], source_distance=50.0, detector_distance=30.0,
        ...           rotation_offset=1.0).to_vectors()
        array([[ -1., -50.,  -1.,  30.,   1.,   0.]])
        """
        axis, normal = _axes(self.angles_array)
        shift = self.detector_offset - self.rotation_offset
        return np.concatenate(
            [
                -self.source_distance * normal - self.rotation_offset * axis,
                self.detector_distance * normal + shift * axis,
                self.detector_spacing * axis,
            ],
            axis=1,
        )


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


@dataclasses.dataclass(frozen=True, repr=False)
class Parallel3D(GeometryBase):
    """3D parallel-beam geometry (rotation about the z axis); needs a GPU (ASTRA CUDA).

    ``detector_spacing`` is a number or a (row, col) pair in mm. The default detector has as many
    rows as the volume has slices and enough columns to see the in-plane diagonal. ``angles``,
    ``n_angles`` and ``angle_unit`` work as in :class:`Parallel2D`.

    Example
    -------
    >>> Parallel3D((64, 64, 64), n_angles=90).range_shape
    (90, 64, 91)
    """

    volume_shape: tuple[int, int, int]
    n_angles: int | None = None
    detector_shape: tuple[int, int] | None = None
    voxel_size: float = 1.0
    detector_spacing: float | tuple[float, float] = 1.0
    angles: tuple[float, ...] | None = None
    angle_unit: dataclasses.InitVar[str] = "rad"

    ndim = 3

    def __post_init__(self, angle_unit: str) -> None:
        shape, vs = _volume_fields(self.volume_shape, self.voxel_size)
        n_angles, angles = _as_angles(self.angles, self.n_angles, angle_unit, full_turn=False)
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
        _set(self, volume_shape=shape, n_angles=n_angles, detector_shape=det_shape)
        _set(self, voxel_size=vs, detector_spacing=ds, angles=angles)

    @property
    def domain_shape(self) -> tuple[int, int, int]:
        return self.volume_shape

    @property
    def range_shape(self) -> tuple[int, int, int]:
        return (self.n_angles, *self.detector_shape)


@dataclasses.dataclass(frozen=True, repr=False)
class ConeBeam3D(GeometryBase):
    """3D circular cone-beam geometry with a flat detector; needs a GPU (ASTRA CUDA).

    ``angles``, ``n_angles`` and ``angle_unit`` work as in :class:`FanBeam2D`.

    Example
    -------
    >>> g = ConeBeam3D((128, 128, 128), n_angles=180, source_distance=500.0,
    ...                detector_distance=500.0)
    >>> g.range_shape[0]
    180
    """

    volume_shape: tuple[int, int, int]
    n_angles: int | None = None
    detector_shape: tuple[int, int] | None = None
    source_distance: float = 1000.0
    detector_distance: float = 0.0
    voxel_size: float = 1.0
    detector_spacing: float | tuple[float, float] = 1.0
    angles: tuple[float, ...] | None = None
    angle_unit: dataclasses.InitVar[str] = "rad"

    ndim = 3

    def __post_init__(self, angle_unit: str) -> None:
        shape, vs = _volume_fields(self.volume_shape, self.voxel_size)
        n_angles, angles = _as_angles(self.angles, self.n_angles, angle_unit, full_turn=True)
        ds = _pair("detector_spacing", self.detector_spacing)
        src, det = _distances(self)
        D, H, W = shape
        radius = math.hypot(H, W) * vs / 2
        _shadow(radius, src, det, "volume")  # the source must be outside the volume
        mag = (src + det) / (src - radius)  # worst-case magnification (nearest point)
        default = (
            _default_detectors(D * vs * mag / ds[0] - 1e-9),
            _default_detectors(2 * (src + det) * math.tan(math.asin(radius / src)) / ds[1] - 1e-9),
        )
        det_shape = _detector_shape(self.detector_shape, default)
        _check_divergent_coverage(radius, src, det, det_shape[1], ds[1], "volume")
        _set(self, volume_shape=shape, n_angles=n_angles, detector_shape=det_shape)
        _set(self, source_distance=src, detector_distance=det, voxel_size=vs)
        _set(self, detector_spacing=ds, angles=angles)

    @property
    def domain_shape(self) -> tuple[int, int, int]:
        return self.volume_shape

    @property
    def range_shape(self) -> tuple[int, int, int]:
        return (self.n_angles, *self.detector_shape)


Geometry = Parallel2D | FanBeam2D | Parallel3D | ConeBeam3D
