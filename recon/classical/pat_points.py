r"""Fast photoacoustic reconstruction for point sensors (ring and arc arrays): universal
back-projection and delay-and-sum, without applying the operator.

Both back-project filtered sensor traces along circles: the value at pixel ``r`` is

.. math:: x(r) = \sum_k w_k\, q_k\big(|r - z_k| / c\big),

with ``z_k`` the sensor positions, ``c`` the sound speed, ``w_k`` angular weights (the angle
each sensor covers, seen from ``centre``, over 2π: ``1/n`` on a full ring, trapezoid weights on
an arc) and ``q_k`` the trace ``p_k`` of sensor ``k`` after a filter in time:

- ``filter="exact"`` (universal back-projection in 2D): the exact inversion for sensors on a
  circle around the object (docs/guide/photoacoustics.md, "Ring and arc arrays"). The 2D wave
  data are first turned into circular means ``G`` by an Abel inversion, then filtered as in the
  formula of Finch, Haltmeier & Rakesh (2007) for circular means,

  .. math:: q(s) = \int_0^{T} \big(\partial_r\, r\, \partial_r G\big)(r)\,
            \log|r^2 - s^2|\, dr .

  All of it is one ``(n_t, n_t)`` matrix, built once per record length (sample units, so it
  depends on ``n_t`` only). It recovers the amplitude of ``p0`` for sensors that surround the
  object on a circle, with a record at least as long as the circle's diameter over ``c``; on
  an arc, what the arc cannot see is missing (limited view).
- ``filter="none"``: plain delay-and-sum, ``q = p``. Its amplitude is not that of ``p0``;
  it is the quickest look at the data.

The cost is one matrix product over time and one gather of ``n_pixels × n_sensors`` samples
(linear interpolation in time), in torch, batched, on the device and in the dtype of ``y``,
and differentiable in ``y``. Pixels farther from a sensor than the record reaches get nothing
from it.

:class:`UniversalBackProjection` reads the grid, the sound speed, the time grid and the sensor
positions from a :class:`~operators.KSpaceWave` (point or mask sensors, homogeneous medium, 2D).
Config: ``conf/recon/pat_ubp.yaml``.

Example
-------
>>> import torch
>>> from operators import KSpaceWave, PATGrid, SensorPoints, TimeGrid
>>> grid = PATGrid((32, 32), spacing=0.1)
>>> ring = SensorPoints.circle(1.5, 32, grid=grid)
>>> A = KSpaceWave(grid, time=TimeGrid.from_cfl(grid), sensor=ring)
>>> UniversalBackProjection()(torch.zeros(2, *A.range_shape), A).shape
torch.Size([2, 32, 32])
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch

from operators.pat.grid import Medium, PATGrid, SensorMask, SensorPoints, TimeGrid
from recon.base import Reconstructor, check_measurements
from recon.checks import check_bool, check_choice

__all__ = [
    "FILTERS",
    "UniversalBackProjection",
    "angular_weights",
    "circular_filter",
    "point_sensor_setup",
    "sensor_positions",
    "universal_back_projection",
]

#: The time filters of :func:`universal_back_projection`.
FILTERS = ("exact", "none")

# pixels × sensors gathered at once (bounds the memory of the back-projection)
_CHUNK = 1 << 22


# --------------------------------------------------------------------------- set-up
def sensor_positions(sensor: SensorPoints | SensorMask, grid: PATGrid) -> np.ndarray:
    """Positions ``(n_sensors, ndim)`` in mm (centred grid coordinates) of a sensor, in the
    order of the data rows: the points of :class:`~operators.SensorPoints`, or the grid points of
    a :class:`~operators.SensorMask` in ``numpy.nonzero`` order.

    Example
    -------
    >>> sensor_positions(SensorMask.first_row((3, 3)), PATGrid((3, 3), spacing=0.5))
    array([[-0.5, -0.5],
           [-0.5,  0. ],
           [-0.5,  0.5]])
    """
    if isinstance(sensor, SensorPoints):
        sensor.check_grid(grid)
        return np.array(sensor.points, dtype=np.float64)
    if isinstance(sensor, SensorMask):
        sensor.check_grid(grid)
        idx = np.nonzero(sensor.mask)
        return np.stack([grid.coordinates(d)[i] for d, i in enumerate(idx)], axis=-1)
    raise ValueError(f"sensor must be a SensorPoints or SensorMask, got {type(sensor).__name__}")


def point_sensor_setup(op: Any) -> tuple[PATGrid, float, TimeGrid, np.ndarray]:
    """The grid, sound speed (m/s), time grid and sensor positions (mm) of a PAT operator.

    Accepts :class:`~operators.KSpaceWave` (point or mask sensors) in a homogeneous medium on a
    2D grid, and wrappers that pass these attributes through
    (:class:`~operators.CountingOperator`).

    Raises
    ------
    ValueError
        If ``op`` has no PAT grid, medium, time grid or sensor, the sound speed is a map, the
        grid is 3D, or ``op.range_shape`` is not ``(n_sensors, n_t)``.

    Example
    -------
    >>> from operators import KSpaceWave, PATGrid, SensorPoints, TimeGrid
    >>> grid = PATGrid((16, 16), spacing=0.1)
    >>> A = KSpaceWave(grid, time=TimeGrid(dt=2e-8, n_t=10), sensor=SensorPoints.circle(0.5, 8))
    >>> grid_, c, time, points = point_sensor_setup(A)
    >>> c, time.n_t, points.shape
    (1500.0, 10, (8, 2))
    """
    name = type(op).__name__
    try:
        grid, medium, time, sensor = op.grid, op.medium, op.time, op.sensor
    except AttributeError:
        raise ValueError(
            "universal back-projection needs a photoacoustic operator with a grid, medium, time "
            f"grid and sensor (KSpaceWave); got {name}"
        ) from None
    if not (
        isinstance(grid, PATGrid) and isinstance(medium, Medium) and isinstance(time, TimeGrid)
    ):
        raise ValueError(f"{name}.grid/.medium/.time are not a PATGrid, Medium and TimeGrid")
    if grid.ndim != 2:
        raise ValueError(
            f"universal back-projection is implemented for 2D grids; {name} has a {grid.ndim}D "
            "grid: use BackProjection or TV with KSpaceWave instead"
        )
    if not isinstance(medium.sound_speed, float):
        raise ValueError(
            "universal back-projection needs a homogeneous sound speed (a number), but "
            f"{name} has a sound-speed map; use BackProjection or TV with KSpaceWave instead"
        )
    points = sensor_positions(sensor, grid)
    if tuple(op.range_shape) != (points.shape[0], time.n_t):
        raise ValueError(
            f"{name}.range_shape is {tuple(op.range_shape)}, expected (n_sensors, n_t) = "
            f"{(points.shape[0], time.n_t)}"
        )
    return grid, float(medium.sound_speed), time, points


def angular_weights(points: np.ndarray, centre: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Weights ``w_k = Δφ_k / 2π``: the angle each sensor covers, seen from ``centre``.

    Sensors are sorted by angle; each gets half of the gaps to its two neighbours. A gap wider
    than twice the median gap is an opening of the array (the open side of an arc) and gives
    nothing, so the ends of an arc get half weights (the trapezoid rule). A full ring of ``n``
    evenly spaced sensors gets ``1/n`` each; the weights sum to the fraction of the circle the
    array covers.

    Example
    -------
    >>> ring = SensorPoints.circle(1.0, 4).points
    >>> angular_weights(ring)
    array([0.25, 0.25, 0.25, 0.25])
    >>> arc = SensorPoints.circle(1.0, 5, arc=math.pi).points      # a half circle
    >>> angular_weights(arc) * 8
    array([0.5, 1. , 1. , 1. , 0.5])
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] == 0:
        raise ValueError(f"points must have shape (n_sensors, 2), got {points.shape}")
    rel = points - np.asarray(centre, dtype=np.float64)
    phi = np.arctan2(rel[:, 1], rel[:, 0])
    order = np.argsort(phi, kind="stable")
    sorted_phi = phi[order]
    gaps = np.diff(np.concatenate([sorted_phi, sorted_phi[:1] + 2 * math.pi]))  # gap after each
    gaps = np.where(gaps > 2 * np.median(gaps), 0.0, gaps)
    weights = np.empty_like(phi)
    weights[order] = 0.5 * (gaps + np.roll(gaps, 1)) / (2 * math.pi)
    return weights


def _antiderivatives(s: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Antiderivatives in ``t`` of ``t / √(s² − t²)`` and ``t² / √(s² − t²)`` at ``t = u ≤ s``."""
    u = np.minimum(u, s)
    root = np.sqrt(np.maximum(s * s - u * u, 0.0))
    ratio = np.clip(u / np.where(s > 0, s, 1.0), -1.0, 1.0)
    return -root, 0.5 * s * s * np.arcsin(ratio) - 0.5 * u * root


def _log_cell_integral(u: np.ndarray) -> np.ndarray:
    """``∫_0^u log|v| dv = u log|u| − u`` (0 at ``u = 0``)."""
    a = np.abs(u)
    return np.where(a > 0, u * np.log(np.where(a > 0, a, 1.0)) - u, 0.0)


def _derivative_matrix(n: int) -> np.ndarray:
    """``∂_t`` on ``n`` unit-spaced samples: 4th-order central differences, 2nd order at the
    two samples next to each end (one-sided at the ends, as ``numpy.gradient``)."""
    d = np.gradient(np.eye(n), axis=0)
    i = np.arange(2, n - 2)
    if i.size:
        d[i] = 0.0
        for offset, coef in ((-2, 1 / 12), (-1, -2 / 3), (1, 2 / 3), (2, -1 / 12)):
            d[i, i + offset] = coef
    return d


@functools.lru_cache(maxsize=8)
def circular_filter(n_t: int) -> np.ndarray:
    r"""The time filter of the exact 2D universal back-projection, as a read-only
    ``(n_t, n_t)`` float64 matrix ``M``: ``q = M p`` for a trace ``p`` sampled at ``n·Δt``.

    Built in sample units (``Δt = 1``, ``c = 1``), in which every step below is scale-free:

    1. ``P = ∫_0^t p`` (trapezoid rule);
    2. the circular means ``G(r) = (2 / (π r)) ∂_r ∫_0^r t P(t) / √(r² − t²) dt``, the Abel
       inversion of the 2D Poisson formula ``p(t) = ∂_t ∫_0^t r G(r) / √(t² − r²) dr``
       (``P`` piecewise linear, integrated exactly; ``∂_r`` by 4th-order central differences);
    3. ``h = ∂_r (r ∂_r G)`` (4th-order central differences, as in step 2);
    4. ``q(s) = ∫_0^T h(r) log|r² − s²| dr`` (``h`` constant on each sample's cell, the log
       integrated exactly).

    Example
    -------
    >>> M = circular_filter(64)
    >>> M.shape, M.flags.writeable
    ((64, 64), False)
    """
    if isinstance(n_t, bool) or not isinstance(n_t, (int, np.integer)) or n_t < 3:
        raise ValueError(f"the record needs at least 3 samples, got n_t = {n_t!r}")
    n = int(n_t)
    t = np.arange(n, dtype=np.float64)
    # 1. cumulative trapezoid: P_i = Σ_{j<=i} p_j − (p_0 + p_i)/2
    cumulative = np.tril(np.ones((n, n)))
    cumulative[:, 0] -= 0.5
    cumulative[np.arange(n), np.arange(n)] -= 0.5
    cumulative[0, 0] = 0.0
    # 2. W_ij = ∫_0^{r_i} t φ_j(t) / √(r_i² − t²) dt for the hat functions φ_j of P
    r = t[:, None]
    j = t[None, :]
    first_lo, second_lo = _antiderivatives(r, j - 1)
    first_mid, second_mid = _antiderivatives(r, j)
    first_hi, second_hi = _antiderivatives(r, j + 1)
    rising = (second_mid - second_lo) - (j - 1) * (first_mid - first_lo)  # φ_j = t − (j − 1)
    falling = (j + 1) * (first_hi - first_mid) - (second_hi - second_mid)  # φ_j = j + 1 − t
    abel = np.where((j >= 1) & (j <= r), rising, 0.0) + np.where(j + 1 <= r, falling, 0.0)
    deriv = _derivative_matrix(n)
    means = np.zeros((n, n))
    means[1:] = 2 / (np.pi * t[1:, None]) * (deriv @ abel)[1:]
    # 3. h = ∂_r (r ∂_r G)
    h = deriv @ (t[:, None] * (deriv @ means))
    # 4. log kernel integrated over each cell [r_j − ½, r_j + ½] ∩ [0, T]
    lo, hi = np.maximum(t - 0.5, 0.0), np.minimum(t + 0.5, n - 1.0)
    s = t[:, None]
    kernel = (
        _log_cell_integral(hi - s)
        - _log_cell_integral(lo - s)
        + _log_cell_integral(hi + s)
        - _log_cell_integral(lo + s)
    )
    matrix = kernel @ h @ cumulative
    matrix.setflags(write=False)
    return matrix


@functools.lru_cache(maxsize=4)
def _plan(
    grid: PATGrid,
    points: bytes,
    n_sensors: int,
    c: float,
    time: TimeGrid,
    centre: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat sample indices ``(P, S)`` and the two interpolation weights (times ``w_k``)."""
    pts = np.frombuffer(points, dtype=np.float64).reshape(n_sensors, grid.ndim)
    weights = angular_weights(pts, centre)
    axes = np.meshgrid(*[grid.coordinates(d) for d in range(grid.ndim)], indexing="ij")
    pixels = np.stack([a.reshape(-1) for a in axes], axis=-1)  # (P, ndim) mm
    dist = np.sqrt(((pixels[:, None, :] - pts[None, :, :]) ** 2).sum(-1))  # (P, S) mm
    samples = dist * 1e-3 / (c * time.dt)
    n_t = time.n_t
    base = np.clip(np.floor(samples), 0, n_t - 2).astype(np.int64)
    frac = samples - base
    inside = samples <= n_t - 1
    index = base + (np.arange(n_sensors) * n_t)[None, :]
    w0 = np.where(inside, (1 - frac) * weights, 0.0)
    w1 = np.where(inside, frac * weights, 0.0)
    return index, w0, w1


# --------------------------------------------------------------------------- reconstruction
def universal_back_projection(
    y: torch.Tensor,
    grid: PATGrid,
    *,
    time: TimeGrid,
    points: np.ndarray | SensorPoints | SensorMask,
    medium: Medium | None = None,
    filter: str = "exact",
    centre: tuple[float, float] = (0.0, 0.0),
    nonneg: bool = False,
) -> torch.Tensor:
    r"""Universal back-projection (``filter="exact"``) or delay-and-sum (``filter="none"``) of
    point-sensor data in 2D: ``x(r) = Σ_k w_k q_k(|r − z_k| / c)`` (see the module docstring).

    Parameters
    ----------
    y : torch.Tensor
        Data ``(*batch, n_sensors, n_t)``, sample ``n`` at time ``n·Δt`` (sample 0 is ``p0`` at
        the sensors).
    grid : PATGrid
        The 2D image grid.
    time : TimeGrid
        Sampling of the data (``n_t`` must match ``y``).
    points : array (n_sensors, 2), SensorPoints or SensorMask
        Sensor positions in mm (centred grid coordinates), in the order of the rows of ``y``.
    medium : Medium, optional
        Homogeneous medium (default 1500 m/s).
    filter : {"exact", "none"}
        ``"exact"``: the exact 2D filter (:func:`circular_filter`); ``"none"``: delay-and-sum.
    centre : (float, float)
        Where the angular weights are measured from (mm): the centre of a ring or an arc.
    nonneg : bool
        Clip negative values to 0.

    Returns
    -------
    torch.Tensor
        ``(*batch, *grid.shape)``, on the device and in the dtype of ``y``.

    Raises
    ------
    ValueError
        For data of the wrong shape or not finite, a 3D grid, a sound-speed map, an unknown
        filter or sensor positions outside the grid.

    Example
    -------
    An impulse at 1 µs in the trace of the sensor at (1.1, 0) mm is delayed back onto the
    circle of radius c·t = 1.5 mm around it, which crosses the grid's y axis at x = −0.4 mm:

    >>> import torch
    >>> grid = PATGrid((25, 25), spacing=0.1)               # pixel (i, j) at (i − 12, j − 12)·0.1
    >>> ring = SensorPoints.circle(1.1, 16)
    >>> y = torch.zeros(16, 120); y[0, 50] = 1.0            # sample 50 · 20 ns = 1 µs
    >>> x = universal_back_projection(y, grid, time=TimeGrid(dt=2e-8, n_t=120), points=ring,
    ...                               filter="none")
    >>> x.shape, int(x[:, 12].argmax()) - 12               # depth of the arc on the y = 0 column
    (torch.Size([25, 25]), -4)
    """
    if not isinstance(grid, PATGrid):
        raise ValueError(f"grid must be a PATGrid, got {type(grid).__name__}")
    if grid.ndim != 2:
        raise ValueError(f"universal back-projection is implemented for 2D grids, got {grid.shape}")
    if not isinstance(time, TimeGrid):
        raise ValueError(f"time must be a TimeGrid, got {type(time).__name__}")
    medium = Medium() if medium is None else medium
    if not isinstance(medium, Medium) or not isinstance(medium.sound_speed, float):
        raise ValueError("universal back-projection needs a homogeneous Medium (a sound speed)")
    filter = check_choice("filter", filter, FILTERS)
    check_bool("nonneg", nonneg)
    if isinstance(points, (SensorPoints, SensorMask)):
        points = sensor_positions(points, grid)
    else:
        points = SensorPoints(points)
        points.check_grid(grid)
        points = np.array(points.points)
    centre = tuple(float(v) for v in centre)
    if len(centre) != 2 or not all(math.isfinite(v) for v in centre):
        raise ValueError(f"centre must be two finite numbers (mm), got {centre!r}")
    n_sensors, n_t = points.shape[0], time.n_t

    class _Shapes:  # what check_measurements reads
        range_shape = (n_sensors, n_t)

    batch = check_measurements(y, _Shapes)
    B = math.prod(batch)
    q = y.reshape(B, n_sensors, n_t)
    if filter == "exact":
        matrix = torch.as_tensor(np.array(circular_filter(n_t)), dtype=y.dtype, device=y.device)
        q = q @ matrix.T
    q = q.reshape(B, n_sensors * n_t)
    index, w0, w1 = _plan(
        grid, points.tobytes(), n_sensors, float(medium.sound_speed), time, centre
    )
    n_pix = index.shape[0]
    chunk = max(1, _CHUNK // max(B * n_sensors, 1))
    out = []
    for start in range(0, n_pix, chunk):
        sl = slice(start, start + chunk)
        idx = torch.as_tensor(index[sl], device=y.device)
        a0 = torch.as_tensor(w0[sl], dtype=y.dtype, device=y.device)
        a1 = torch.as_tensor(w1[sl], dtype=y.dtype, device=y.device)
        g0 = q[:, idx.reshape(-1)].reshape(B, *idx.shape)
        g1 = q[:, (idx + 1).reshape(-1)].reshape(B, *idx.shape)
        out.append((g0 * a0 + g1 * a1).sum(-1))
    x = torch.cat(out, dim=1).reshape(*batch, *grid.shape)
    return x.clamp_min(0) if nonneg else x


class UniversalBackProjection(Reconstructor):
    """:func:`universal_back_projection` as a reconstructor; grid, sound speed, time grid and
    sensor positions come from ``op`` (:func:`point_sensor_setup`), which is never applied.

    Parameters
    ----------
    filter : {"exact", "none"}
        ``"exact"``: universal back-projection (the exact 2D inversion on a circle);
        ``"none"``: delay-and-sum.
    centre : (float, float)
        Centre of the ring or arc in mm, where the angular weights are measured from.
    nonneg : bool
        Clip negative values to 0.

    Example
    -------
    >>> UniversalBackProjection(nonneg=True)
    UniversalBackProjection(filter='exact', centre=(0.0, 0.0), nonneg=True)
    """

    #: Never calls ``op.norm()`` (the evaluation then skips computing it).
    uses_operator_norm = False

    def __init__(
        self,
        *,
        filter: str = "exact",
        centre: tuple[float, float] | list[float] = (0.0, 0.0),
        nonneg: bool = False,
    ) -> None:
        super().__init__()
        self.filter = check_choice("filter", filter, FILTERS)
        try:
            centre = tuple(float(v) for v in centre)
        except (TypeError, ValueError) as err:
            raise ValueError(f"centre must be two numbers (mm), got {centre!r}") from err
        if len(centre) != 2 or not all(math.isfinite(v) for v in centre):
            raise ValueError(f"centre must be two finite numbers (mm), got {centre!r}")
        self.centre = centre
        self.nonneg = check_bool("nonneg", nonneg)

    def forward(self, y: torch.Tensor, op: Any) -> torch.Tensor:
        check_measurements(y, op)
        grid, c, time, points = point_sensor_setup(op)
        return universal_back_projection(
            y,
            grid,
            time=time,
            points=points,
            medium=Medium(sound_speed=c),
            filter=self.filter,
            centre=self.centre,
            nonneg=self.nonneg,
        )

    def extra_repr(self) -> str:
        return f"filter={self.filter!r}, centre={self.centre}, nonneg={self.nonneg}"
