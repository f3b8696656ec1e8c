r"""Photoacoustic (PAT) reconstruction through the common contract ``x = recon(y, op)``.

The measurements are sensor time series ``y`` of shape ``(*batch, n_sensors, n_t)`` and ``op`` is
one of the PAT models of :mod:`operators.pat` (the time stepper :class:`~operators.KSpaceWave`,
the exact line model :class:`~operators.LineSensor`, the regridding model
:class:`~operators.LineSensorRegridding`) or anything with the same shapes.

- :func:`back_projection` / :class:`BackProjection`: the adjoint ``Aᵀ y`` (for the time stepper,
  a time-reversed solve with the data as sources), scaled by the step that fits the data best
  along it, or by a fixed number. Works with every operator.
- :func:`fourier_line_inversion` / :class:`FourierLineInversion`: the exact inversion formula of
  a line (2D) or planar (3D) sensor at ``x = 0`` in a homogeneous medium (Köstli et al. 2001;
  Xu, Feng & Wang 2002; k-Wave's ``kspaceLineRecon``): FFTs and one interpolation in ``ω``.
  It reads the grid, the sound speed and the time grid from ``op``.
- Total-variation regularised least squares with any PAT operator is
  :class:`recon.classical.TV` (Chambolle–Pock, optional non-negativity): ``conf/recon/pat_tv.yaml``.

Configs: ``conf/recon/pat_backprojection.yaml``, ``pat_fourier.yaml``, ``pat_tv.yaml``; the
experiment ``conf/protocol/pat/vessels.yaml`` compares them on vessel phantoms.

Example
-------
>>> import torch
>>> from operators import LineSensor, PATGrid, TimeGrid
>>> grid = PATGrid((32, 32), spacing=0.1)
>>> A = LineSensor(grid, time=TimeGrid.from_cfl(grid, cfl=0.5, n_t=64))
>>> y = A(torch.rand(2, 32, 32))
>>> BackProjection()(y, A).shape, FourierLineInversion()(y, A).shape
(torch.Size([2, 32, 32]), torch.Size([2, 32, 32]))
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch

from operators.pat.fourier import fast_len
from operators.pat.grid import Medium, PATGrid, SensorMask, TimeGrid
from recon.base import Reconstructor, check_measurements
from recon.checks import check_bool

__all__ = [
    "BackProjection",
    "FourierLineInversion",
    "back_projection",
    "fourier_line_inversion",
    "line_sensor_setup",
]


def _check_scale(scale: object) -> str | float:
    if scale == "auto":
        return "auto"
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise ValueError(f"scale must be 'auto' or a positive number, got {scale!r}")
    scale = float(scale)
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be 'auto' or a positive finite number, got {scale}")
    return scale


def _check_pad(name: str, value: object, low: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number >= {low}, got {value!r}")
    value = float(value)
    if not (value >= low and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= {low}, got {value}")
    return value


# --------------------------------------------------------------------------- back-projection
def back_projection(
    y: torch.Tensor, op: Any, *, scale: str | float = "auto", nonneg: bool = False
) -> torch.Tensor:
    r"""Scaled adjoint ``x = s · Aᵀ y``: the back-projection (time reversal) of PAT data.

    For the time stepper :class:`~operators.KSpaceWave`, ``Aᵀ`` runs the wave equation backwards
    with the measured data as sources at the sensors, which is time-reversal reconstruction up to
    the weights of the discrete adjoint; for the Fourier models it is their exact adjoint.
    ``Aᵀ`` alone has the wrong units and amplitude, so it is scaled:

    - ``scale="auto"`` (default): per measurement, the step that fits the data best along
      ``Aᵀ y`` (exact line search of steepest descent from 0),

      .. math:: s = \arg\min_s \|A(s A^T y) - y\|_2^2
                  = \frac{\|A^T y\|_2^2}{\|A A^T y\|_2^2},

      which costs one more application of ``A`` (0 where ``Aᵀ y = 0``);
    - ``scale=a`` (a number): ``x = a · Aᵀ y``.

    Parameters
    ----------
    y : torch.Tensor
        Data ``(*batch, *op.range_shape)``.
    op : LinearOperator
        Any linear operator (``op(x)``, ``op.T(y)``).
    scale : "auto" or float
        The scaling rule, see above.
    nonneg : bool
        Clip negative values to 0 (the initial pressure is non-negative).

    Returns
    -------
    torch.Tensor
        ``(*batch, *op.domain_shape)``.

    Raises
    ------
    ValueError
        For misshapen or non-finite ``y``, or a ``scale`` that is neither "auto" nor positive.

    Example
    -------
    >>> import torch
    >>> from operators import LineSensor, PATGrid, TimeGrid
    >>> grid = PATGrid((32, 32), spacing=0.1)
    >>> A = LineSensor(grid, time=TimeGrid.from_cfl(grid, cfl=0.5, n_t=64))
    >>> y = A(torch.rand(32, 32, dtype=torch.float64))
    >>> torch.allclose(back_projection(y, A, scale=2.0), 2.0 * A.T(y))
    True
    >>> x = back_projection(y, A)                      # the best multiple of Aᵀ y
    >>> bool((A(x) - y).norm() < y.norm())
    True
    """
    scale = _check_scale(scale)
    check_bool("nonneg", nonneg)
    check_measurements(y, op)
    x = op.T(y)
    if scale == "auto":
        n_dom, n_ran = len(tuple(op.domain_shape)), len(tuple(op.range_shape))
        num = x.square().sum(dim=tuple(range(-n_dom, 0)))
        den = op(x).square().sum(dim=tuple(range(-n_ran, 0)))
        positive = den > 0
        s = torch.where(positive, num / torch.where(positive, den, torch.ones_like(den)), 0.0)
        x = x * s.reshape(*s.shape, *([1] * n_dom))
    else:
        x = scale * x
    return x.clamp_min(0) if nonneg else x


class BackProjection(Reconstructor):
    """:func:`back_projection` as a reconstructor: ``BackProjection()(y, op)``.

    Parameters
    ----------
    scale : "auto" or float
        ``"auto"``: the best-fitting multiple of ``Aᵀ y`` per measurement; a number: fixed.
    nonneg : bool
        Clip negative values to 0.

    Example
    -------
    >>> BackProjection(scale="auto", nonneg=True)
    BackProjection(scale='auto', nonneg=True)
    """

    #: Never calls ``op.norm()`` (the evaluation then skips computing it).
    uses_operator_norm = False

    def __init__(self, *, scale: str | float = "auto", nonneg: bool = False) -> None:
        super().__init__()
        self.scale = _check_scale(scale)
        self.nonneg = check_bool("nonneg", nonneg)

    def forward(self, y: torch.Tensor, op: Any) -> torch.Tensor:
        check_measurements(y, op)
        return back_projection(y, op, scale=self.scale, nonneg=self.nonneg)

    def extra_repr(self) -> str:
        return f"scale={self.scale!r}, nonneg={self.nonneg}"


# --------------------------------------------------------------------------- Fourier inversion
def line_sensor_setup(op: Any) -> tuple[PATGrid, float, TimeGrid]:
    """The grid, sound speed (m/s) and time grid of a PAT operator with a line/plane sensor.

    Accepts :class:`~operators.LineSensor`, :class:`~operators.LineSensorRegridding` and
    :class:`~operators.KSpaceWave` whose sensor is the first row (2D) or plane (3D) of the grid
    (the default), in a homogeneous medium, and wrappers that pass these attributes through
    (:class:`~operators.CountingOperator`).

    Raises
    ------
    ValueError
        If ``op`` has no PAT grid, medium or time grid, the sound speed is a map, or the
        sensor is not the first row/plane.

    Example
    -------
    >>> from operators import KSpaceWave, PATGrid, TimeGrid
    >>> grid = PATGrid((16, 16), spacing=0.1)
    >>> grid_, c, time = line_sensor_setup(KSpaceWave(grid, time=TimeGrid(dt=2e-8, n_t=10)))
    >>> grid_ == grid, c, time.n_t
    (True, 1500.0, 10)
    """
    name = type(op).__name__
    try:
        grid, medium, time = op.grid, op.medium, op.time
    except AttributeError:
        raise ValueError(
            f"the Fourier line-sensor inversion needs a photoacoustic operator with a grid, "
            f"medium and time grid (LineSensor, LineSensorRegridding or KSpaceWave); got {name}"
        ) from None
    if not (
        isinstance(grid, PATGrid) and isinstance(medium, Medium) and isinstance(time, TimeGrid)
    ):
        raise ValueError(f"{name}.grid/.medium/.time are not a PATGrid, Medium and TimeGrid")
    if not isinstance(medium.sound_speed, float):
        raise ValueError(
            "the Fourier line-sensor inversion needs a homogeneous sound speed (a number), but "
            f"{name} has a sound-speed map; use back-projection or TV with KSpaceWave instead"
        )
    sensor = getattr(op, "sensor", None)
    if sensor is not None:
        first_row = SensorMask.first_row(grid.shape).mask
        if not (isinstance(sensor, SensorMask) and np.array_equal(sensor.mask, first_row)):
            raise ValueError(
                "the Fourier line-sensor inversion needs the sensor on the first row (2D) or "
                f"plane (3D) of the grid, x = 0; {name} has another sensor"
            )
    n_sensors = math.prod(grid.shape[1:])
    if tuple(op.range_shape) != (n_sensors, time.n_t):
        raise ValueError(
            f"{name}.range_shape is {tuple(op.range_shape)}, expected (n_sensors, n_t) = "
            f"{(n_sensors, time.n_t)}"
        )
    return grid, float(medium.sound_speed), time


def _lateral_wavenumbers(sizes: tuple[int, ...], spacings: tuple[float, ...]) -> np.ndarray:
    """``|k_lat|`` (rad/m) on the real-FFT half grid of the lateral axes, flattened."""
    ks = []
    n = len(sizes)
    for d, (m, h) in enumerate(zip(sizes, spacings, strict=True)):
        f = np.fft.rfftfreq(m, h) if d == n - 1 else np.fft.fftfreq(m, h)
        shape = [1] * n
        shape[d] = f.size
        ks.append((2 * np.pi * f).reshape(shape))
    return np.sqrt(sum(k**2 for k in ks)).reshape(-1)


@functools.lru_cache(maxsize=16)
def _inversion_plan(
    grid: PATGrid, c: float, time: TimeGrid, pad_time: float, pad_lateral: float, pad_depth: float
) -> dict:
    """FFT sizes and the taps/weights that map the data spectrum onto the image spectrum."""
    nx, dx, dt = grid.shape[0], grid.spacing_m[0], time.dt
    m_t = fast_len(math.ceil(pad_time * 2 * time.n_t))
    m_x = fast_len(math.ceil(pad_depth * 2 * nx))
    lateral = tuple(fast_len(math.ceil(pad_lateral * n)) for n in grid.shape[1:])
    n_omega = m_t // 2 + 1
    d_omega = 2 * np.pi / (m_t * dt)
    kx = 2 * np.pi * np.fft.rfftfreq(m_x, dx)  # (n_kx,)
    klat = _lateral_wavenumbers(lateral, grid.spacing_m[1:])  # (n_bins,)
    omega = c * np.sqrt(kx[:, None] ** 2 + klat[None, :] ** 2)  # (n_kx, n_bins)
    q = omega / d_omega
    valid = q <= n_omega - 1  # beyond the data's Nyquist frequency: nothing measured
    base = np.clip(np.floor(q), 0, n_omega - 2).astype(np.int64)
    frac = np.clip(q - base, 0.0, 1.0)
    # Jacobian c² k_x / ω of ω ↦ k_x (its limit c at k = 0), and 1/Δx of the depth sum
    safe = np.where(omega > 0, omega, 1.0)
    jac = np.where(omega > 0, c * c * kx[:, None] / safe, c) / dx * valid
    bins = np.arange(klat.size)[None, :]
    index = bins * n_omega + np.stack([base, base + 1])  # (2, n_kx, n_bins)
    weight = np.stack([(1 - frac) * jac, frac * jac])
    # k_x = 0 with k_y ≠ 0 (grazing incidence): the Jacobian is 0 there but the spectrum is not;
    # it is even and smooth in k_x, so take the next bin's value (error O(Δk_x²))
    if kx.size > 1:
        grazing = klat > 0
        index[:, 0, grazing] = index[:, 1, grazing]
        weight[:, 0, grazing] = weight[:, 1, grazing]
    return {
        "m_t": m_t,
        "m_x": m_x,
        "lateral": lateral,
        "n_bins": int(klat.size),
        "index": index.reshape(2, -1),  # (2, n_kx · n_bins) flat indices into (n_bins, n_ω)
        "weight": weight.reshape(2, -1),
        "n_kx": int(kx.size),
    }


def fourier_line_inversion(
    y: torch.Tensor,
    grid: PATGrid,
    *,
    time: TimeGrid,
    medium: Medium | None = None,
    pad_time: float = 2.0,
    pad_lateral: float = 2.0,
    pad_depth: float = 2.0,
    nonneg: bool = False,
) -> torch.Tensor:
    r"""Fourier inversion of line (2D) or plane (3D) sensor data at ``x = 0`` (``kspaceLineRecon``)

    For a homogeneous medium with sound speed ``c``, the data ``p(0, y, t)`` of an initial pressure
    ``p0(x, y)`` (``x ≥ 0`` the depth) satisfy, per lateral wavenumber ``k_y`` and with
    ``ω = c \sqrt{k_x^2 + k_y^2}`` (Köstli et al. 2001; Xu, Feng & Wang 2002;
    docs/guide/photoacoustics.md §3),

    .. math::

        C(ω, k_y) = 2\int_0^\infty \hat p(0, k_y, t) \cos(ω t)\, dt
                  = \frac{ω}{c^2 k_x}\, \hat p_0^{\cos}(k_x, k_y),
        \qquad \hat p_0^{\cos}(k_x, k_y) = \int_0^\infty \hat p_0(x, k_y) \cos(k_x x)\, dx .

    The inversion reads it backwards:

    1. the cosine transform in time, ``C = Δt [y_0 + 2 Σ_{n≥1} y_n cos(ω nΔt)]`` (the even
       extension of the time series, zero-padded to ``pad_time · 2 n_t`` samples, one real FFT);
    2. a real FFT over the lateral axes (zero-padded to ``pad_lateral · N``);
    3. for every image wavenumber ``(k_x, k_y)`` on the depth grid (zero-padded to
       ``pad_depth · 2 N_x``), ``C`` is interpolated linearly at ``ω(k_x, k_y)`` and weighted by
       the Jacobian ``c² k_x / ω`` (its limit ``c`` at ``k = 0``; 0 above the data's Nyquist
       frequency);
    4. the inverse lateral FFT and the inverse cosine transform in depth (the even extension of
       the image, with the sensor row counted once).

    The ``k_x = 0`` bin, where the Jacobian vanishes for ``k_y ≠ 0`` but the spectrum does not,
    takes the value of the next bin (the spectrum is even and smooth in ``k_x``).

    With the discrete conventions of :class:`~operators.LineSensor` this inverts its data exactly
    in the limit of an infinite sensor and an infinite record. A finite record on a finite
    sensor misses the waves that leave at grazing angles (small ``k_x`` against ``k_y``): the
    formula has no way to fill in that cone of wavenumbers, where an iterative method can lean on
    the finite support of the image. Measured (``tests/recon/classical/test_pat.py``): a
    depth-modulated, laterally smooth object whose spectrum lies inside the sensor's view is
    recovered to < 1 %
    (32 × 64 grid, 128 samples). In the square set-up of the configs (``N × N``, ``2N``
    samples) the relative error is about 0.6 for a Gaussian blob at a third of the depth and
    0.6–0.9 for vessels, as much as the missing cone holds (blur in depth and negative halos;
    ``nonneg=True`` removes the halos). Cost:
    three FFTs of the padded arrays and a gather; everything is torch code (batched, any device,
    differentiable in ``y``).

    Parameters
    ----------
    y : torch.Tensor
        Data ``(*batch, n_sensors, n_t)``, sensors in row-major order of the lateral axes (as the
        PAT operators order them), sample ``n`` at time ``n · dt``.
    grid : PATGrid
        The image grid; the sensor is its first row (2D) or plane (3D).
    time : TimeGrid
        Sampling of the data (``n_t`` must match ``y``).
    medium : Medium, optional
        Homogeneous medium (default 1500 m/s).
    pad_time, pad_lateral, pad_depth : float
        FFT lengths relative to ``2 n_t``, ``N_lateral`` and ``2 N_x`` (rounded up to 5-smooth
        lengths). More time padding refines the ``ω`` grid of the interpolation; more depth padding
        refines ``k_x`` near grazing incidence (the ``k_x = 0`` bin, whose weight is 0 for
        ``k_y ≠ 0``, holds less of the image).
    nonneg : bool
        Clip negative values to 0 (k-Wave's positivity condition).

    Returns
    -------
    torch.Tensor
        Initial pressure ``(*batch, *grid.shape)`` in the units of the data.

    Raises
    ------
    ValueError
        For data of the wrong shape or not finite, a heterogeneous sound speed, or invalid padding.

    Example
    -------
    >>> import torch
    >>> from operators import LineSensor
    >>> grid = PATGrid((32, 64), spacing=0.1)
    >>> time = TimeGrid.from_cfl(grid, cfl=0.5, n_t=128)
    >>> i, j = torch.meshgrid(torch.arange(32.0), torch.arange(64.0), indexing="ij")
    >>> x = torch.exp(-(i - 12) ** 2 / 18 - (j - 32) ** 2 / 72) * torch.cos(1.2 * (i - 12))
    >>> x_rec = fourier_line_inversion(LineSensor(grid, time=time)(x.double()), grid, time=time)
    >>> bool((x_rec - x).norm() / x.norm() < 0.01)              # relative error 0.65 %
    True
    """
    if not isinstance(grid, PATGrid):
        raise ValueError(f"grid must be a PATGrid, got {type(grid).__name__}")
    if not isinstance(time, TimeGrid):
        raise ValueError(f"time must be a TimeGrid, got {type(time).__name__}")
    medium = Medium() if medium is None else medium
    if not isinstance(medium, Medium) or not isinstance(medium.sound_speed, float):
        raise ValueError("fourier_line_inversion needs a homogeneous Medium (a sound speed number)")
    pad_time = _check_pad("pad_time", pad_time, 1.0)
    pad_lateral = _check_pad("pad_lateral", pad_lateral, 1.0)
    pad_depth = _check_pad("pad_depth", pad_depth, 1.0)
    check_bool("nonneg", nonneg)
    lat_shape = grid.shape[1:]
    data_shape = (math.prod(lat_shape), time.n_t)

    class _Shapes:  # what check_measurements reads
        range_shape = data_shape

    batch = check_measurements(y, _Shapes)
    plan = _inversion_plan(grid, medium.sound_speed, time, pad_time, pad_lateral, pad_depth)
    B = math.prod(batch)
    nl = len(lat_shape)
    lat_dims = tuple(range(1, nl + 1))
    s = y.reshape(B, *lat_shape, time.n_t)
    # 1. cosine transform in time: the DFT of the even extension (s_0 counted once)
    C = time.dt * (2 * torch.fft.rfft(s, n=plan["m_t"], dim=-1).real - s[..., :1])
    # 2. lateral FFT: (B, *half, n_ω) → (B, n_bins · n_ω) complex, viewed as real pairs
    C = torch.fft.rfftn(C, s=plan["lateral"], dim=lat_dims)
    C = torch.view_as_real(C).reshape(B, -1, 2)
    # 3. interpolate at ω(k_x, k_y), weighted by the Jacobian
    index = torch.as_tensor(plan["index"], device=y.device)
    weight = torch.as_tensor(plan["weight"], dtype=y.dtype, device=y.device)
    taps = C.index_select(1, index.reshape(-1)).reshape(B, index.shape[0], -1, 2)
    X = (taps * weight[None, :, :, None]).sum(1)  # (B, n_kx · n_bins, 2)
    half = (*plan["lateral"][:-1], plan["lateral"][-1] // 2 + 1)
    X = torch.view_as_complex(X.reshape(B, plan["n_kx"], *half, 2).contiguous())
    # 4. inverse lateral FFT (cropped), then the inverse cosine transform in depth
    X = torch.fft.irfftn(X, s=plan["lateral"], dim=tuple(d + 1 for d in lat_dims))
    X = X[(slice(None), slice(None), *(slice(0, n) for n in lat_shape))]
    x = torch.fft.irfft(2 * X, n=plan["m_x"], dim=1)[:, : grid.shape[0]]
    x = torch.cat([x[:, :1] / 2, x[:, 1:]], dim=1)  # the sensor row is not mirrored
    x = x.reshape(*batch, *grid.shape)
    return x.clamp_min(0) if nonneg else x


class FourierLineInversion(Reconstructor):
    """:func:`fourier_line_inversion` as a reconstructor; grid, medium and time come from ``op``.

    ``op`` must model a line/plane sensor at ``x = 0`` in a homogeneous medium
    (:func:`line_sensor_setup`); the operator itself is never applied.

    Parameters
    ----------
    pad_time, pad_lateral, pad_depth : float
        FFT padding factors, see :func:`fourier_line_inversion`.
    nonneg : bool
        Clip negative values to 0.

    Example
    -------
    >>> FourierLineInversion(nonneg=True)
    FourierLineInversion(pad_time=2.0, pad_lateral=2.0, pad_depth=2.0, nonneg=True)
    """

    #: Never calls ``op.norm()`` (the evaluation then skips computing it).
    uses_operator_norm = False

    def __init__(
        self,
        *,
        pad_time: float = 2.0,
        pad_lateral: float = 2.0,
        pad_depth: float = 2.0,
        nonneg: bool = False,
    ) -> None:
        super().__init__()
        self.pad_time = _check_pad("pad_time", pad_time, 1.0)
        self.pad_lateral = _check_pad("pad_lateral", pad_lateral, 1.0)
        self.pad_depth = _check_pad("pad_depth", pad_depth, 1.0)
        self.nonneg = check_bool("nonneg", nonneg)

    def forward(self, y: torch.Tensor, op: Any) -> torch.Tensor:
        grid, c, time = line_sensor_setup(op)
        check_measurements(y, op)
        return fourier_line_inversion(
            y,
            grid,
            time=time,
            medium=Medium(sound_speed=c),
            pad_time=self.pad_time,
            pad_lateral=self.pad_lateral,
            pad_depth=self.pad_depth,
            nonneg=self.nonneg,
        )

    def extra_repr(self) -> str:
        return (
            f"pad_time={self.pad_time}, pad_lateral={self.pad_lateral}, "
            f"pad_depth={self.pad_depth}, nonneg={self.nonneg}"
        )
