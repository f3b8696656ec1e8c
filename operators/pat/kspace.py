"""The accurate photoacoustic model: a k-space pseudospectral time stepper (as k-Wave's
``kspaceFirstOrder2D/3D``), with a hand-written exact adjoint.

Linear lossless acoustics with split density ``ρ = Σ_d ρ_d``:
``∂u_d/∂t = −(1/ρ0) ∂p/∂d``, ``∂ρ_d/∂t = −ρ0 ∂u_d/∂d``, ``p = c0² Σ_d ρ_d``. Spatial derivatives are
spectral on a staggered grid with the k-space correction ``κ = sinc(c_ref |k| Δt / 2)``, which makes
the scheme exact in time for a homogeneous medium. A perfectly matched layer (PML) of ``M`` points
absorbs outgoing waves; by default it lies outside the image grid (the grid is padded to
``N + 2M`` points per axis, ``M ≥ 16`` chosen so that ``N + 2M`` has only the prime factors
2, 3 and 5).
See ``docs/guide/photoacoustics.md`` §1 for the equations.

The adjoint runs the transposed steps in reverse order (the data act as sources), so it costs one
forward solve and keeps only the current fields in memory, in 2D and 3D. Autograd through the
operator uses that adjoint too (``native_autograd = False``): ``x.grad`` after
``A(x).backward(y)`` is ``A.T(y)``, without storing the ``n_t`` intermediate fields.

Example
-------
>>> import torch
>>> from operators.pat import KSpaceWave, PATGrid, TimeGrid
>>> grid = PATGrid((32, 32), spacing=0.1)
>>> A = KSpaceWave(grid, time=TimeGrid.from_cfl(grid, cfl=0.5, n_t=64))   # line sensor at x = 0
>>> y = A(torch.rand(2, 32, 32))
>>> y.shape, A.T(y).shape
(torch.Size([2, 32, 64]), torch.Size([2, 32, 32]))
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from operators.base import LinearOperator
from operators.pat.fourier import is_smooth
from operators.pat.grid import Medium, PATGrid, SensorMask, SensorPoints, TimeGrid, as_sensor

#: Smallest PML chosen automatically when the PML lies outside the grid.
MIN_PML = 16
#: k-Wave's default PML size, used (when it fits) for a PML inside the grid.
DEFAULT_PML_INSIDE = 20


def _auto_pml(n: int) -> int:
    m = MIN_PML
    while not is_smooth(n + 2 * m):
        m += 1
    return m


def _pml_sizes(grid: PATGrid, pml_size, inside: bool) -> tuple[int, ...]:
    if pml_size is None:
        if inside:
            return tuple(min(DEFAULT_PML_INSIDE, (n - 1) // 4) for n in grid.shape)
        return tuple(_auto_pml(n) for n in grid.shape)
    sizes = (pml_size,) * grid.ndim if isinstance(pml_size, int) else tuple(pml_size)
    if len(sizes) != grid.ndim or any(int(m) != m or m < 0 for m in sizes):
        raise ValueError(
            f"pml_size must be a non-negative int or one per axis ({grid.ndim}), got {pml_size!r}"
        )
    sizes = tuple(int(m) for m in sizes)
    if inside:
        for d, (m, n) in enumerate(zip(sizes, grid.shape, strict=True)):
            if 2 * m >= n:
                raise ValueError(
                    f"a PML of {m} points on each side of axis {d} does not fit inside {n} grid "
                    "points; use pml_inside=False or a smaller pml_size"
                )
    return sizes


def pml_profile(
    length: int, size: int, alpha: float, c_ref: float, spacing: float, dt: float, staggered: bool
) -> np.ndarray:
    """PML factors ``exp(−a Δt / 2)`` along one axis of ``length`` points (1 in the interior).

    ``a = α (c_ref/Δ) (d/M)⁴`` where ``d`` is the distance (in cells) into the layer of ``M``
    points at each end, measured at ``i + ½`` on the staggered grid: ``M + 1 − i`` at the
    ``i``-th point (1-based) from the left edge, mirrored on the right. On the staggered grid the
    right layer includes the half-cell point just outside the interior, as the left one does,
    so that the scheme is exactly mirror-symmetric.

    Example
    -------
    >>> b = pml_profile(10, 2, 2.0, 1500.0, 1e-4, 2e-8, staggered=False)
    >>> bool(b[2:8].min() == 1.0), bool(b[0] < b[1] < 1.0), bool(b[0] == b[-1])
    (True, True, True)
    """
    if size == 0:
        return np.ones(length)
    # continuous position of each point, and the layer's inner edges (the outermost points of the
    # interior): the profile is symmetric about the centre of the axis on both grids
    pos = np.arange(length, dtype=np.float64) + (0.5 if staggered else 0.0)
    left_edge, right_edge = size, length - size - 1
    dist = np.maximum(left_edge - pos, 0.0) + np.maximum(pos - right_edge, 0.0)
    absorption = alpha * (c_ref / spacing) * (dist / size) ** 4
    return np.exp(-absorption * dt / 2)


def _staggered_average(rho: np.ndarray, axis: int) -> np.ndarray:
    """``ρ0`` at ``x_d + Δ_d/2``: the mean with the next cell (the last cell keeps its value)."""
    out = rho.copy()
    n = rho.shape[axis]
    lo = [slice(None)] * rho.ndim
    hi = [slice(None)] * rho.ndim
    lo[axis] = slice(0, n - 1)
    hi[axis] = slice(1, n)
    out[tuple(lo)] = 0.5 * (rho[tuple(lo)] + rho[tuple(hi)])
    return out


class _Fields:
    """The precomputed arrays of one (device, dtype)."""

    def __init__(self, arrays: dict, device: torch.device, dtype: torch.dtype) -> None:
        cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
        for name, value in arrays.items():
            if isinstance(value, list):
                setattr(self, name, [self._tensor(v, device, dtype, cdtype) for v in value])
            else:
                setattr(self, name, self._tensor(value, device, dtype, cdtype))

    @staticmethod
    def _tensor(value, device, dtype, cdtype):
        if isinstance(value, float):
            return value
        array = np.asarray(value)
        if np.iscomplexobj(array):
            return torch.as_tensor(array, dtype=cdtype, device=device)
        if array.dtype.kind in "iu":
            return torch.as_tensor(array, dtype=torch.int64, device=device)
        return torch.as_tensor(array, dtype=dtype, device=device)


class KSpaceWave(LinearOperator):
    """Initial pressure ``p0`` → sensor time series ``(n_sensors, n_t)``, by the k-space
    pseudospectral first-order scheme, with its exact adjoint.

    Parameters
    ----------
    grid : PATGrid
        The image grid (2D or 3D); the operator's domain shape is ``grid.shape``.
    medium : Medium, optional
        Sound speed and density, numbers or maps on the grid (default water-like: 1500 m/s,
        1000 kg/m³). Maps are extended into an outside PML by repeating their edge values.
    time : TimeGrid, optional
        Default :meth:`TimeGrid.from_cfl` (CFL 0.3, ``t_end`` = diagonal / ``c_min``).
    sensor : SensorMask, SensorPoints or boolean array, optional
        Default: the first row (2D) or plane (3D), as :class:`LineSensor`.
    pml_size : int or sequence of int, optional
        PML points at each end of each axis. Default: outside the grid, the smallest ``M ≥ 16``
        with ``N + 2M`` 5-smooth; inside the grid, 20 (k-Wave's default). 0 disables the PML
        (a periodic domain).
    pml_alpha : float
        PML absorption in nepers per grid point (k-Wave's default 2).
    pml_inside : bool
        Place the PML in the outer points of the grid instead of padding around it.
    c_ref : float, optional
        Reference sound speed of the k-space correction; default the largest sound speed, for
        which the scheme is stable at any time step. A smaller one raises ``ValueError`` when
        ``dt`` exceeds ``2/(c_ref k_max) · asin(c_ref/c_max)``.

    Notes
    -----
    Cost per time step: ``3·ndim + 1`` real FFTs of the padded grid, forward and adjoint alike.
    Memory: ``2·ndim + 1`` fields of the padded grid per image, independent of ``n_t``.

    Example
    -------
    >>> import torch
    >>> grid = PATGrid((24, 24), spacing=0.1)
    >>> A = KSpaceWave(grid, time=TimeGrid(dt=2e-8, n_t=50), sensor=SensorPoints([[0.0, 0.0]]))
    >>> A.range_shape, A.padded_shape
    ((1, 50), (60, 60))
    """

    # Autograd calls the hand-written adjoint: memory does not grow with n_t.
    native_autograd = False

    def __init__(
        self,
        grid: PATGrid,
        *,
        medium: Medium | None = None,
        time: TimeGrid | None = None,
        sensor: SensorMask | SensorPoints | np.ndarray | torch.Tensor | None = None,
        pml_size: int | Sequence[int] | None = None,
        pml_alpha: float = 2.0,
        pml_inside: bool = False,
        c_ref: float | None = None,
    ) -> None:
        if not isinstance(grid, PATGrid):
            raise TypeError(f"grid must be a PATGrid, got {type(grid).__name__}")
        medium = Medium() if medium is None else medium
        if not isinstance(medium, Medium):
            raise TypeError(f"medium must be a Medium, got {type(medium).__name__}")
        medium.check_grid(grid)
        time = TimeGrid.from_cfl(grid, medium) if time is None else time
        if not isinstance(time, TimeGrid):
            raise TypeError(f"time must be a TimeGrid, got {type(time).__name__}")
        sensor = as_sensor(sensor, grid)
        alpha = float(pml_alpha)
        if not (alpha >= 0 and math.isfinite(alpha)):
            raise ValueError(f"pml_alpha must be a non-negative number, got {pml_alpha}")
        c_ref = medium.c_max if c_ref is None else float(c_ref)
        if not (c_ref > 0 and math.isfinite(c_ref)):
            raise ValueError(f"c_ref must be a positive sound speed (m/s), got {c_ref}")
        self._check_stability(grid, medium, time, c_ref)
        super().__init__(grid.shape, (sensor.n_sensors, time.n_t))
        self.grid = grid
        self.medium = medium
        self.time = time
        self.sensor = sensor
        self.pml_inside = bool(pml_inside)
        self.pml_size = _pml_sizes(grid, pml_size, self.pml_inside)
        self.pml_alpha = alpha
        self.c_ref = c_ref
        pad = (0,) * grid.ndim if self.pml_inside else self.pml_size
        self._offset = pad
        self.padded_shape = tuple(n + 2 * m for n, m in zip(grid.shape, pad, strict=True))
        self._arrays = self._precompute()
        self._cache: dict[tuple[torch.device, torch.dtype], _Fields] = {}

    # ----------------------------------------------------------------- set-up
    @staticmethod
    def _check_stability(grid: PATGrid, medium: Medium, time: TimeGrid, c_ref: float) -> None:
        c_max = medium.c_max
        if c_ref >= c_max:
            return  # unconditionally stable (lossless, c_ref ≥ max c)
        k_max = math.sqrt(sum((math.pi / s) ** 2 for s in grid.spacing_m))
        limit = 2 / (c_ref * k_max) * math.asin(c_ref / c_max)
        if time.dt > limit:
            raise ValueError(
                f"unstable time step: dt = {time.dt:.4g} s exceeds the stability limit "
                f"{limit:.4g} s of c_ref = {c_ref:g} m/s < c_max = {c_max:g} m/s; use a smaller dt "
                "or c_ref >= the largest sound speed"
            )

    def _precompute(self) -> dict:
        grid, nd, L = self.grid, self.grid.ndim, self.padded_shape
        dt = self.time.dt
        h = grid.spacing_m
        # wavenumbers on the real-FFT half grid (last axis halved)
        ks = []
        for d in range(nd):
            f = np.fft.rfftfreq(L[d], h[d]) if d == nd - 1 else np.fft.fftfreq(L[d], h[d])
            shape = [1] * nd
            shape[d] = f.size
            ks.append((2 * np.pi * f).reshape(shape))
        kmag = np.sqrt(sum(k**2 for k in ks))
        kappa = np.sinc(self.c_ref * kmag * dt / 2 / np.pi)
        eplus = [1j * k * np.exp(1j * k * h[d] / 2) for d, k in enumerate(ks)]
        eminus = [1j * k * np.exp(-1j * k * h[d] / 2) for d, k in enumerate(ks)]

        def along(v: np.ndarray, d: int) -> np.ndarray:
            shape = [1] * nd
            shape[d] = v.size
            return v.reshape(shape)

        m = self.pml_size
        b = [
            along(pml_profile(L[d], m[d], self.pml_alpha, self.c_ref, h[d], dt, False), d)
            for d in range(nd)
        ]
        bsg = [
            along(pml_profile(L[d], m[d], self.pml_alpha, self.c_ref, h[d], dt, True), d)
            for d in range(nd)
        ]
        pads = [(o, o) for o in self._offset]
        c = self.medium.sound_speed
        rho = self.medium.density
        c2 = c * c if isinstance(c, float) else np.pad(c, pads, mode="edge") ** 2
        if isinstance(rho, float):
            rho_sg = [rho] * nd
        else:
            rho = np.pad(rho, pads, mode="edge")
            rho_sg = [_staggered_average(rho, d) for d in range(nd)]
        idx, w = self.sensor.taps(grid)
        idx = idx + np.asarray(self._offset)
        flat = np.ravel_multi_index(tuple(np.moveaxis(idx, -1, 0)), L).reshape(-1)
        return {
            "kappa": kappa,
            "eplus": eplus,
            "eminus": eminus,
            "u_decay": [bs * bs for bs in bsg],
            "u_grad": [bs * (dt / r) for bs, r in zip(bsg, rho_sg, strict=True)],
            "rho_decay": [bb * bb for bb in b],
            "rho_div": [bb * (dt * rho) for bb in b],
            "c2": c2,
            "rho_init": 1.0 / (nd * c2),
            "u_init": [dt / (2 * r) for r in rho_sg],
            "sensor_index": flat,
            "sensor_weight": w,
        }

    def _fields(self, like: torch.Tensor) -> _Fields:
        key = (like.device, like.dtype)
        if key not in self._cache:
            self._cache[key] = _Fields(self._arrays, like.device, like.dtype)
        return self._cache[key]

    # ----------------------------------------------------------------- pieces
    @property
    def _dims(self) -> tuple[int, ...]:
        return tuple(range(-self.grid.ndim, 0))

    def _interior(self) -> tuple[slice, ...]:
        return (slice(None),) + tuple(
            slice(o, o + n) for o, n in zip(self._offset, self.grid.shape, strict=True)
        )

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        if not any(self._offset):
            return x.clone()
        out = x.new_zeros((x.shape[0], *self.padded_shape))
        out[self._interior()] = x
        return out

    def _sample(self, p: torch.Tensor, f: _Fields) -> torch.Tensor:
        vals = p.reshape(p.shape[0], -1)[:, f.sensor_index]
        k = f.sensor_weight.shape[1]
        if k == 1:
            return vals
        return (vals.reshape(p.shape[0], -1, k) * f.sensor_weight).sum(-1)

    def _sample_adjoint(self, s: torch.Tensor, f: _Fields) -> torch.Tensor:
        k = f.sensor_weight.shape[1]
        vals = s if k == 1 else (s[:, :, None] * f.sensor_weight).reshape(s.shape[0], -1)
        out = s.new_zeros((s.shape[0], math.prod(self.padded_shape)))
        out.index_add_(1, f.sensor_index, vals)
        return out.reshape((s.shape[0], *self.padded_shape))

    # ----------------------------------------------------------------- LinearOperator
    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        f = self._fields(x)
        nd, dims, L = self.grid.ndim, self._dims, self.padded_shape
        B, n_t = x.shape[0], self.time.n_t

        def rfft(a):
            return torch.fft.rfftn(a, s=L, dim=dims)

        def irfft(a):
            return torch.fft.irfftn(a, s=L, dim=dims)

        p = self._embed(x)
        out = x.new_empty((B, n_t, self.range_shape[0]))
        out[:, 0] = self._sample(p, f)
        P = rfft(p) * f.kappa
        u = [irfft(P * f.eplus[d]) * f.u_init[d] for d in range(nd)]
        rho = [p * f.rho_init for _ in range(nd)]
        for n in range(1, n_t):
            P = rfft(p) * f.kappa
            for d in range(nd):
                u[d] = f.u_decay[d] * u[d] - f.u_grad[d] * irfft(P * f.eplus[d])
            for d in range(nd):
                div = irfft(rfft(u[d]) * f.kappa * f.eminus[d])
                rho[d] = f.rho_decay[d] * rho[d] - f.rho_div[d] * div
            p = f.c2 * sum(rho)
            out[:, n] = self._sample(p, f)
        return out.transpose(1, 2)

    def _rmatvec(self, y: torch.Tensor) -> torch.Tensor:
        f = self._fields(y)
        nd, dims, L = self.grid.ndim, self._dims, self.padded_shape
        n_t = self.time.n_t

        def rfft(a):
            return torch.fft.rfftn(a, s=L, dim=dims)

        def irfft(a):
            return torch.fft.irfftn(a, s=L, dim=dims)

        kappa = f.kappa
        eplus_c = [e.conj() for e in f.eplus]
        eminus_c = [e.conj() for e in f.eminus]
        data = y.transpose(1, 2)  # (B, n_t, n_sensors)
        shape = (y.shape[0], *L)
        u_bar = [y.new_zeros(shape) for _ in range(nd)]
        rho_bar = [y.new_zeros(shape) for _ in range(nd)]
        p_bar = self._sample_adjoint(data[:, n_t - 1], f)
        # reverse of step n+1: (u^{n+1/2}, ρ^{n+1}, p^{n+1}) → (u^{n-1/2}, ρ^n, p^n)
        for n in range(n_t - 2, -1, -1):
            for d in range(nd):
                rho_bar[d] = rho_bar[d] + f.c2 * p_bar
                src = rfft(f.rho_div[d] * rho_bar[d]) * kappa * eminus_c[d]
                u_bar[d] = u_bar[d] - irfft(src)
                rho_bar[d] = f.rho_decay[d] * rho_bar[d]
            Q = sum(rfft(f.u_grad[d] * u_bar[d]) * eplus_c[d] for d in range(nd))
            p_bar = self._sample_adjoint(data[:, n], f) - irfft(Q * kappa)
            for d in range(nd):
                u_bar[d] = f.u_decay[d] * u_bar[d]
        # reverse of the initial condition
        Q = sum(rfft(f.u_init[d] * u_bar[d]) * eplus_c[d] for d in range(nd))
        g = p_bar + f.rho_init * sum(rho_bar) + irfft(Q * kappa)
        return g[self._interior()]

    def extra_repr(self) -> str:
        return (
            f"grid={self.grid.shape}, n_sensors={self.range_shape[0]}, n_t={self.time.n_t}, "
            f"dt={self.time.dt:.4g}, pml_size={self.pml_size}, pml_inside={self.pml_inside}"
        )


class KSpaceSmoothing(LinearOperator):
    """Low-pass filter of ``p0`` by a radially symmetric Blackman window in k-space.

    The window is 1 at ``k = 0`` and 0 from the Nyquist radius outward, so the mean is kept;
    k-Wave's ``smooth`` also rescales to restore the maximum, which is not linear and is left out.
    The filter is symmetric: its adjoint is itself. Compose it with a model to smooth the
    initial pressure before propagation: ``KSpaceWave(grid) @ KSpaceSmoothing(grid.shape)``.

    Example
    -------
    >>> import torch
    >>> S = KSpaceSmoothing((32, 32))
    >>> x = torch.rand(32, 32, dtype=torch.float64)
    >>> bool(torch.isclose(S(x).mean(), x.mean())), S.T is S
    (True, True)
    """

    native_autograd = True

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__(shape, shape)
        nd = len(self.domain_shape)
        freqs = []
        for d, n in enumerate(self.domain_shape):
            f = np.fft.rfftfreq(n) if d == nd - 1 else np.fft.fftfreq(n)
            s = [1] * nd
            s[d] = f.size
            freqs.append((2 * f).reshape(s))  # in units of the Nyquist frequency
        r = np.sqrt(sum(f**2 for f in freqs))
        window = np.where(r <= 1, 0.42 + 0.5 * np.cos(np.pi * r) + 0.08 * np.cos(2 * np.pi * r), 0)
        self._window = window
        self._cache: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.device, x.dtype)
        if key not in self._cache:
            self._cache[key] = torch.as_tensor(self._window, dtype=x.dtype, device=x.device)
        dims = tuple(range(1, x.ndim))
        X = torch.fft.rfftn(x, dim=dims)
        return torch.fft.irfftn(X * self._cache[key], s=self.domain_shape, dim=dims)

    _rmatvec = _matvec

    def _make_adjoint(self) -> LinearOperator:
        return self
