"""Photoacoustic grids, media, time grids and sensors: frozen, validated value objects.

Conventions (shared by every PAT operator):

- Images are ``(Nx, Ny)`` or ``(Nx, Ny, Nz)`` tensors of initial pressure ``p0``. Axis 0 is depth:
  the line (2D) or planar (3D) sensor is the first row/plane, ``x = 0``.
- Units: spacing in mm (as the CT geometries), sound speed in m/s, density in kg/m³, time in s.
  Pressure keeps the units of ``p0``.
- Grid point ``i`` along axis ``d`` lies at ``(i − (N_d − 1)/2) · Δ_d`` mm: the grid is centred on
  the origin. Cartesian sensor points (:class:`SensorPoints`) use these coordinates.
- Sensor data are ``(n_sensors, n_t)``; sample ``n`` is time ``n · dt`` and sample 0 is ``p0``
  at the sensors. Mask sensors are ordered as ``numpy.nonzero`` orders them (row-major), so the
  first-row sensor of a 2D grid gives ``data[y, t]``.

Example
-------
>>> grid = PATGrid((128, 128), spacing=0.1)
>>> time = TimeGrid.from_cfl(grid, Medium(sound_speed=1500.0))
>>> round(time.dt * 1e9, 6), time.n_t          # k-Wave's defaults: 20 ns, 604 samples
(20.0, 604)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

from operators.base import as_shape


def _positive(name: str, value: float, unit: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a number ({unit}), got {value!r}") from err
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number ({unit}), got {value}")
    return value


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.array(array, dtype=np.float64, copy=True)
    array.setflags(write=False)
    return array


def _as_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


@dataclasses.dataclass(frozen=True)
class PATGrid:
    """A 2D or 3D Cartesian grid for photoacoustic models.

    Parameters
    ----------
    shape : (Nx, Ny) or (Nx, Ny, Nz)
        Grid points; axis 0 is depth (the line/plane sensor sits at ``x = 0``).
    spacing : float or sequence of float
        Grid spacing in mm, one number or one per axis.

    Example
    -------
    >>> g = PATGrid([64, 64], spacing=0.1)
    >>> g.ndim, g.spacing, round(g.diagonal_mm, 4)
    (2, (0.1, 0.1), 9.051)
    """

    shape: tuple[int, ...]
    spacing: float | tuple[float, ...] = 0.1

    def __post_init__(self) -> None:
        shape = as_shape(self.shape, name="shape")
        if len(shape) not in (2, 3):
            raise ValueError(f"shape must be (Nx, Ny) or (Nx, Ny, Nz), got {shape}")
        if min(shape) < 2:
            raise ValueError(f"every axis needs at least 2 grid points, got shape {shape}")
        spacing = self.spacing
        if isinstance(spacing, (int, float)):
            spacing = (spacing,) * len(shape)
        spacing = tuple(spacing)
        if len(spacing) != len(shape):
            raise ValueError(
                f"spacing must be a number or one value per axis ({len(shape)}), got {spacing!r}"
            )
        spacing = tuple(_positive(f"spacing[{d}]", s, "mm") for d, s in enumerate(spacing))
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "spacing", spacing)

    @property
    def ndim(self) -> int:
        """2 or 3."""
        return len(self.shape)

    @property
    def spacing_m(self) -> tuple[float, ...]:
        """Spacing in metres."""
        return tuple(s * 1e-3 for s in self.spacing)

    @property
    def size_mm(self) -> tuple[float, ...]:
        """Extent ``N_d · Δ_d`` of each axis in mm."""
        return tuple(n * s for n, s in zip(self.shape, self.spacing, strict=True))

    @property
    def diagonal_mm(self) -> float:
        """Length of the domain's diagonal in mm (k-Wave's ``t_end`` uses it)."""
        return math.sqrt(sum(v * v for v in self.size_mm))

    def coordinates(self, axis: int) -> np.ndarray:
        """Positions (mm) of the grid points along ``axis``, centred on 0."""
        n = self.shape[axis]
        return (np.arange(n) - (n - 1) / 2) * self.spacing[axis]


@dataclasses.dataclass(frozen=True, eq=False)
class Medium:
    """Sound speed (m/s) and density (kg/m³): numbers (homogeneous) or maps of the grid's shape.

    Maps are copied into read-only float64 arrays; numpy arrays, torch tensors and nested lists
    are accepted.

    Example
    -------
    >>> Medium().is_homogeneous
    True
    >>> c = np.full((32, 32), 1500.0); c[16:] = 1600.0
    >>> m = Medium(sound_speed=c)
    >>> m.c_min, m.c_max, m.is_homogeneous
    (1500.0, 1600.0, False)
    """

    sound_speed: float | np.ndarray = 1500.0
    density: float | np.ndarray = 1000.0

    def __post_init__(self) -> None:
        for name, unit in (("sound_speed", "m/s"), ("density", "kg/m³")):
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                object.__setattr__(self, name, _positive(name, value, unit))
                continue
            array = _as_numpy(value)
            if array.ndim == 0:
                object.__setattr__(self, name, _positive(name, float(array), unit))
                continue
            if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
                raise ValueError(f"{name} must be real numbers ({unit}), got dtype {array.dtype}")
            if not np.all(np.isfinite(array)) or np.min(array) <= 0:
                raise ValueError(
                    f"{name} must be positive and finite everywhere ({unit}); "
                    f"got min {np.min(array):.6g}, max {np.max(array):.6g}"
                )
            object.__setattr__(self, name, _readonly(array))

    @property
    def is_homogeneous(self) -> bool:
        """True when both sound speed and density are numbers."""
        return isinstance(self.sound_speed, float) and isinstance(self.density, float)

    @property
    def c_max(self) -> float:
        """Largest sound speed (m/s)."""
        return float(np.max(self.sound_speed))

    @property
    def c_min(self) -> float:
        """Smallest sound speed (m/s)."""
        return float(np.min(self.sound_speed))

    def check_grid(self, grid: PATGrid) -> None:
        """Raise ``ValueError`` when a map's shape differs from ``grid.shape``."""
        for name in ("sound_speed", "density"):
            value = getattr(self, name)
            if isinstance(value, np.ndarray) and value.shape != grid.shape:
                raise ValueError(
                    f"the {name} map has shape {value.shape} but the grid is {grid.shape}"
                )


@dataclasses.dataclass(frozen=True)
class TimeGrid:
    """Sampling times ``n · dt`` for ``n = 0 … n_t − 1`` (dt in seconds).

    Build it directly or with :meth:`from_cfl` (k-Wave's ``makeTime`` rule).

    Example
    -------
    >>> TimeGrid(dt=2e-8, n_t=100).t_end
    1.98e-06
    """

    dt: float
    n_t: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "dt", _positive("dt", self.dt, "s"))
        object.__setattr__(self, "n_t", as_shape(self.n_t, name="n_t")[0])

    @classmethod
    def from_cfl(
        cls,
        grid: PATGrid,
        medium: Medium | None = None,
        *,
        cfl: float = 0.3,
        n_t: int | None = None,
        t_end: float | None = None,
    ) -> TimeGrid:
        """``dt = cfl · Δ_min / c_max``; ``n_t = floor(t_end / dt) + 1`` with ``t_end`` (s)
        defaulting to the domain diagonal over ``c_min``, unless ``n_t`` is given.

        ``cfl=0.5, n_t=2N`` is the line-sensor training set-up ``dt = Δx / (2c)``, ``2N`` samples.

        Example
        -------
        >>> t = TimeGrid.from_cfl(PATGrid((64, 64), 0.1), cfl=0.5, n_t=128)
        >>> round(t.dt * 3000 / 1e-4, 12), t.n_t     # dt = Δx / (2c)
        (1.0, 128)
        """
        medium = Medium() if medium is None else medium
        cfl = _positive("cfl", cfl, "dimensionless")
        dt = cfl * min(grid.spacing_m) / medium.c_max
        if n_t is not None and t_end is not None:
            raise ValueError("give n_t or t_end, not both")
        if n_t is None:
            if t_end is None:
                t_end = grid.diagonal_mm * 1e-3 / medium.c_min
            t_end = _positive("t_end", t_end, "s")
            n_t = int(math.floor(t_end / dt * (1 + 1e-12))) + 1
        return cls(dt=dt, n_t=n_t)

    @property
    def t_end(self) -> float:
        """Time of the last sample (s)."""
        return (self.n_t - 1) * self.dt

    @property
    def times(self) -> np.ndarray:
        """The sample times (s)."""
        return np.arange(self.n_t) * self.dt


@dataclasses.dataclass(frozen=True, eq=False)
class SensorMask:
    """Sensors on grid points: a boolean mask of the grid's shape.

    Example
    -------
    >>> SensorMask.first_row((32, 32)).n_sensors
    32
    """

    mask: np.ndarray

    def __post_init__(self) -> None:
        mask = _as_numpy(self.mask)
        if mask.dtype != bool:
            if not np.all((mask == 0) | (mask == 1)):
                raise ValueError("a sensor mask must be boolean (or contain only 0 and 1)")
            mask = mask.astype(bool)
        if not mask.any():
            raise ValueError("the sensor mask selects no grid point")
        mask = np.array(mask, copy=True)
        mask.setflags(write=False)
        object.__setattr__(self, "mask", mask)

    @classmethod
    def first_row(cls, shape: Sequence[int]) -> SensorMask:
        """The line (2D) or plane (3D) ``x = 0``: the sensor of :class:`LineSensor`."""
        mask = np.zeros(as_shape(shape, name="shape"), dtype=bool)
        mask[0] = True
        return cls(mask)

    @property
    def n_sensors(self) -> int:
        return int(self.mask.sum())

    def check_grid(self, grid: PATGrid) -> None:
        if self.mask.shape != grid.shape:
            raise ValueError(
                f"the sensor mask has shape {self.mask.shape} but the grid is {grid.shape}"
            )

    def taps(self, grid: PATGrid) -> tuple[np.ndarray, np.ndarray]:
        """Grid indices ``(n_sensors, 1, ndim)`` and weights ``(n_sensors, 1)``."""
        self.check_grid(grid)
        idx = np.stack(np.nonzero(self.mask), axis=-1)[:, None, :]
        return idx, np.ones(idx.shape[:2])


@dataclasses.dataclass(frozen=True, eq=False)
class SensorPoints:
    """Sensors at Cartesian points (mm, centred grid coordinates), read by (bi/tri)linear
    interpolation of the grid's pressure.

    Parameters
    ----------
    points : array of shape (n_sensors, ndim)
        Positions in mm, coordinates in axis order ``(x, y[, z])``.

    Example
    -------
    >>> SensorPoints([[0.0, 0.0], [0.05, -0.5]]).n_sensors
    2
    """

    points: np.ndarray

    def __post_init__(self) -> None:
        pts = _as_numpy(self.points).astype(np.float64)
        if pts.ndim != 2 or pts.shape[0] == 0 or pts.shape[1] not in (2, 3):
            raise ValueError(f"points must have shape (n_sensors, 2 or 3), got {pts.shape}")
        if not np.all(np.isfinite(pts)):
            raise ValueError("sensor points must be finite")
        object.__setattr__(self, "points", _readonly(pts))

    @classmethod
    def circle(
        cls,
        radius: float,
        n: int,
        *,
        arc: float = 2 * math.pi,
        start_angle: float = 0.0,
        centre: Sequence[float] = (0.0, 0.0),
        grid: PATGrid | None = None,
    ) -> SensorPoints:
        """``n`` points evenly spaced on a circle or an arc in 2D: a ring or arc array
        (k-Wave's ``makeCartCircle``).

        Point ``k`` lies at angle ``θ_k = start_angle + k·Δθ`` (radians), at
        ``centre + radius·(cos θ_k, sin θ_k)`` mm: the angle is measured from the depth axis
        ``x`` (axis 0) towards ``y`` (axis 1). As in ``makeCartCircle``, a full circle
        (``arc = 2π``) has ``Δθ = 2π/n`` and no duplicated end point, and a partial arc has
        ``Δθ = arc/(n − 1)``, so both of its ends carry a sensor (one sensor sits at
        ``start_angle``). k-Wave's ``makeCartCircle(radius, n, centre, arc)`` gives the same
        set of points (in metres, and in another order) as
        ``circle(radius, n, arc=arc, start_angle=3π/2 - arc, centre=centre)``.

        Parameters
        ----------
        radius : float
            Radius in mm, > 0.
        n : int
            Number of sensors, ≥ 1 (≥ 2 for a partial arc).
        arc : float
            Opening angle in **radians**, in (0, 2π]; ``2π`` (the default) is a full ring.
            Use ``math.radians`` for degrees: values above 2π are refused.
        start_angle : float
            Angle of the first sensor in **radians**, in [−2π, 2π].
        centre : (float, float)
            Centre of the circle in mm (grid coordinates: the grid is centred on the origin).
        grid : PATGrid, optional
            When given, every point must lie inside it (:meth:`check_grid`), so that a ring too
            large for the grid is refused here rather than by the operator.

        Raises
        ------
        ValueError
            For a non-positive radius, ``n < 1`` (or ``n < 2`` on a partial arc), an angle
            outside the ranges above (say, degrees), or points outside ``grid``.

        Example
        -------
        >>> ring = SensorPoints.circle(2.0, 4)                       # 2 mm, every 90°
        >>> np.round(ring.points, 12) + 0.0
        array([[ 2.,  0.],
               [ 0.,  2.],
               [-2.,  0.],
               [ 0., -2.]])
        >>> arc = SensorPoints.circle(1.0, 3, arc=math.pi, start_angle=-math.pi / 2)
        >>> np.round(arc.points, 12) + 0.0                           # both ends included
        array([[ 0., -1.],
               [ 1.,  0.],
               [ 0.,  1.]])
        """
        radius = _positive("radius", radius, "mm")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n (the number of sensors) must be an int >= 1, got {n!r}")
        n = int(n)
        two_pi = 2 * math.pi
        try:
            arc, start_angle = float(arc), float(start_angle)
        except (TypeError, ValueError) as err:
            raise ValueError("arc and start_angle must be numbers (radians)") from err
        if not (0 < arc <= two_pi * (1 + 1e-12)):
            raise ValueError(
                f"arc must lie in (0, 2π] radians, got {arc:g}; for an angle in degrees pass "
                f"math.radians({arc:g})"
            )
        if not (math.isfinite(start_angle) and abs(start_angle) <= two_pi * (1 + 1e-12)):
            raise ValueError(
                f"start_angle must lie in [-2π, 2π] radians, got {start_angle:g}; for an angle "
                f"in degrees pass math.radians({start_angle:g})"
            )
        full = math.isclose(arc, two_pi, rel_tol=1e-12)
        if not full and n < 2:
            raise ValueError(f"a partial arc needs n >= 2 sensors (one at each end), got {n}")
        centre = np.asarray(_as_numpy(centre), dtype=np.float64)
        if centre.shape != (2,) or not np.all(np.isfinite(centre)):
            raise ValueError(f"centre must be two finite numbers (mm), got {centre!r}")
        step = two_pi / n if full else arc / (n - 1)
        theta = start_angle + step * np.arange(n)
        points = centre + radius * np.stack([np.cos(theta), np.sin(theta)], axis=-1)
        sensor = cls(points)
        if grid is not None:
            sensor.check_grid(grid)
        return sensor

    @property
    def n_sensors(self) -> int:
        return int(self.points.shape[0])

    def check_grid(self, grid: PATGrid) -> None:
        """Raise ``ValueError`` when the points' dimension differs from the grid's or a point
        lies outside it."""
        if self.points.shape[1] != grid.ndim:
            raise ValueError(
                f"sensor points are {self.points.shape[1]}D but the grid is {grid.ndim}D"
            )
        for d in range(grid.ndim):
            lo, hi = grid.coordinates(d)[[0, -1]]
            tol = 1e-9 * grid.spacing[d]
            bad = np.nonzero((self.points[:, d] < lo - tol) | (self.points[:, d] > hi + tol))[0]
            if bad.size:
                i = int(bad[0])
                raise ValueError(
                    f"sensor point {i} at {tuple(self.points[i])} mm is outside the grid: axis "
                    f"{d} spans [{lo:.6g}, {hi:.6g}] mm ({bad.size} point(s) outside)"
                )

    def taps(self, grid: PATGrid) -> tuple[np.ndarray, np.ndarray]:
        """Grid indices ``(n_sensors, 2**ndim, ndim)`` and linear weights ``(n, 2**ndim)``."""
        self.check_grid(grid)
        n, nd = self.points.shape
        frac = np.empty((n, nd))
        base = np.empty((n, nd), dtype=np.int64)
        for d in range(nd):
            f = self.points[:, d] / grid.spacing[d] + (grid.shape[d] - 1) / 2
            f = np.clip(f, 0, grid.shape[d] - 1)
            base[:, d] = np.clip(np.floor(f), 0, grid.shape[d] - 2).astype(np.int64)
            frac[:, d] = f - base[:, d]
        corners = np.array(np.meshgrid(*[[0, 1]] * nd, indexing="ij")).reshape(nd, -1).T
        idx = base[:, None, :] + corners[None, :, :]
        w = np.prod(np.where(corners[None] == 1, frac[:, None, :], 1 - frac[:, None, :]), axis=-1)
        return idx, w


def as_sensor(sensor, grid: PATGrid) -> SensorMask | SensorPoints:
    """The sensor of ``grid``: ``None`` → the first row/plane, a boolean array or tensor →
    :class:`SensorMask`; masks and points are checked against the grid.

    Example
    -------
    >>> as_sensor(None, PATGrid((8, 6))).n_sensors
    6
    >>> as_sensor(np.eye(8, dtype=bool), PATGrid((8, 8))).n_sensors
    8
    """
    if sensor is None:
        sensor = SensorMask.first_row(grid.shape)
    elif not isinstance(sensor, (SensorMask, SensorPoints)):
        sensor = SensorMask(sensor)
    sensor.check_grid(grid)
    return sensor
