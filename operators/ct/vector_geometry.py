"""Vector geometries: one source/detector pose per view (ASTRA's ``parallel_vec``/``fanflat_vec``).

For scanners that no circular geometry describes: a wobbling axis, a detector tilt or drift
measured per view, a translated object. Each view is a row of 6 numbers (mm, in the image
coordinates of :mod:`operators.ct.geometry`: ``x`` along columns, ``y`` up):

- :class:`ParallelVec2D`: ``(ray_x, ray_y, d_x, d_y, u_x, u_y)``: the ray direction, the
  detector centre and the vector from one detector element to the next;
- :class:`FanVec2D`: ``(src_x, src_y, d_x, d_y, u_x, u_y)``: the source position instead of the
  ray direction.

Element ``k`` of view ``i`` sits at ``d + (k − (n−1)/2) u``. ``Parallel2D.to_vectors()`` and
``FanBeam2D.to_vectors()`` give the vectors of the circular geometries (offsets included), and
``from_geometry`` turns them into a vector geometry to edit. The ``astra`` and ``matrix``
backends support them (ASTRA's ``linear`` and ``line_fanflat`` CPU projectors, as for the
circular geometries); the ``odl`` backend does not. Analytic FBP does not either: use an iterative
method (SIRT, CGLS, TV).

Example
-------
>>> from operators.ct.geometry import Parallel2D
>>> g = ParallelVec2D.from_geometry(Parallel2D((64, 64), n_angles=30))
>>> g.range_shape
(30, 91)
>>> g
ParallelVec2D(image_shape=(64, 64), vectors=<30 poses>, n_detectors=91, pixel_size=1.0)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from operators.base import as_shape
from operators.ct.geometry import FanBeam2D, GeometryBase, Parallel2D


def _image_shape(value) -> tuple[int, int]:
    shape = as_shape(value, name="image_shape")
    if len(shape) == 1:
        shape = shape * 2
    if len(shape) != 2:
        raise ValueError(f"image_shape must be (H, W), got {shape}")
    return shape


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _as_vectors(vectors, kind: str) -> tuple[tuple[float, ...], ...]:
    """Validate ``(n_views, 6)`` pose vectors; return them as a read-only tuple of tuples."""
    try:
        arr = np.array(vectors, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"vectors must be a numeric (n_views, 6) array: {err}") from None
    if arr.ndim == 1 and arr.size == 6:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 6 or arr.shape[0] == 0:
        raise ValueError(
            f"vectors must have shape (n_views, 6), one row per view as ASTRA's {kind}, got "
            f"{arr.shape}"
        )
    if not np.isfinite(arr).all():
        row = _first_bad(~np.isfinite(arr).all(axis=1))
        raise ValueError(f"vectors must be finite; row {row} is not")
    first, centre, u = arr[:, 0:2], arr[:, 2:4], arr[:, 4:6]
    length = np.linalg.norm(u, axis=1)
    if (length <= 0).any():
        row = _first_bad(length <= 0)
        raise ValueError(f"the detector vector u (columns 4–5) is zero in row {row}")
    if kind == "parallel_vec":
        # rays must cross the detector: the ray direction may not lie along it
        sine = np.abs(_cross(first, u)) / np.maximum(np.linalg.norm(first, axis=1) * length, 1e-300)
        what = "the ray direction (columns 0–1) is zero or parallel to the detector"
    else:
        # the source may not lie on the detector line
        sine = np.abs(_cross(first - centre, u)) / np.maximum(
            np.linalg.norm(first - centre, axis=1) * length, 1e-300
        )
        what = "the source (columns 0–1) lies on the detector line"
    bad = sine < 1e-9
    if bad.any():
        raise ValueError(f"{what} in row {_first_bad(bad)}")
    return tuple(tuple(float(v) for v in row) for row in arr)


class _VectorGeometry(GeometryBase):
    """What the two vector geometries share (shapes, vectors as an array)."""

    image_shape: tuple[int, int]
    vectors: tuple[tuple[float, ...], ...]
    n_detectors: int
    pixel_size: float
    kind = ""
    ndim = 2

    def __post_init__(self) -> None:
        n_det = as_shape(self.n_detectors, name="n_detectors")[0]
        ps = float(self.pixel_size)
        if not (ps > 0 and np.isfinite(ps)):
            raise ValueError(f"pixel_size must be a positive finite number (mm), got {ps}")
        object.__setattr__(self, "image_shape", _image_shape(self.image_shape))
        object.__setattr__(self, "vectors", _as_vectors(self.vectors, self.kind))
        object.__setattr__(self, "n_detectors", n_det)
        object.__setattr__(self, "pixel_size", ps)

    @property
    def n_angles(self) -> int:
        """Number of views (rows of ``vectors``)."""
        return len(self.vectors)

    @property
    def domain_shape(self) -> tuple[int, int]:
        return self.image_shape

    @property
    def range_shape(self) -> tuple[int, int]:
        return (self.n_angles, self.n_detectors)

    def to_vectors(self) -> np.ndarray:
        """The pose vectors as a float64 ``(n_views, 6)`` array (a copy)."""
        return np.array(self.vectors, dtype=np.float64)

    @classmethod
    def from_geometry(cls, geometry):
        """The vector form of a circular geometry (:class:`Parallel2D` for
        :class:`ParallelVec2D`, :class:`FanBeam2D` for :class:`FanVec2D`)."""
        source = Parallel2D if cls is ParallelVec2D else FanBeam2D
        if not isinstance(geometry, source):
            raise TypeError(
                f"{cls.__name__}.from_geometry needs a {source.__name__}, "
                f"got {type(geometry).__name__}"
            )
        return cls(
            geometry.image_shape,
            vectors=geometry.to_vectors(),
            n_detectors=geometry.n_detectors,
            pixel_size=geometry.pixel_size,
        )


@dataclasses.dataclass(frozen=True, repr=False)
class ParallelVec2D(_VectorGeometry):
    """2D parallel beam with one pose per view: rows ``(ray_x, ray_y, d_x, d_y, u_x, u_y)``.

    Parameters
    ----------
    image_shape : int or (H, W)
        Reconstruction grid, centred on the origin of the vectors' coordinates.
    vectors : array-like of shape (n_views, 6)
        ASTRA ``parallel_vec`` rows (mm); see the module docstring.
    n_detectors : int
        Detector elements per view.
    pixel_size : float
        Image pixel size (mm).

    Example
    -------
    >>> v = [[0.0, -1.0, 0.5, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.5, 0.0, 1.0]]
    >>> ParallelVec2D((16, 16), vectors=v, n_detectors=24).range_shape
    (2, 24)
    """

    image_shape: tuple[int, int]
    _: dataclasses.KW_ONLY
    vectors: tuple[tuple[float, ...], ...]
    n_detectors: int
    pixel_size: float = 1.0

    kind = "parallel_vec"


@dataclasses.dataclass(frozen=True, repr=False)
class FanVec2D(_VectorGeometry):
    """2D fan beam, flat detector, one pose per view: rows ``(src_x, src_y, d_x, d_y, u_x, u_y)``.

    Parameters are those of :class:`ParallelVec2D`, with the source position (mm) in place of
    the ray direction (ASTRA's ``fanflat_vec``).

    Example
    -------
    >>> from operators.ct.geometry import FanBeam2D
    >>> fan = FanBeam2D(32, n_angles=8, source_distance=100.0, rotation_offset=1.5)
    >>> FanVec2D.from_geometry(fan).to_vectors()[0]
    array([  -1.5, -100. ,   -1.5,    0. ,    1. ,    0. ])
    """

    image_shape: tuple[int, int]
    _: dataclasses.KW_ONLY
    vectors: tuple[tuple[float, ...], ...]
    n_detectors: int
    pixel_size: float = 1.0

    kind = "fanflat_vec"


#: Every 2D CT geometry, for ``isinstance`` dispatch (2D backends, system matrices).
GEOMETRIES_2D = (Parallel2D, FanBeam2D, ParallelVec2D, FanVec2D)
