"""Fourier models of a line (2D) or planar (3D) sensor at ``x = 0`` in a homogeneous medium.

- :class:`LineSensor`: the exact model (docs/guide/photoacoustics.md §2). The initial pressure
  is extended evenly in depth, and for each lateral wavenumber ``k_y`` the data are a matrix product
  ``d(k_y, t) = Σ_j p̂0(j, k_y) K_{k_y}(j, t)`` with
  ``K_{k_y}(j, t) = (1/M_x) Σ_{k_x} cos(k_x j Δx) cos(c |k| t)``. Depth and lateral axes are
  zero-padded so that no periodic image reaches the sensor within ``t_end``. It agrees with the
  PML time stepper :class:`~operators.pat.KSpaceWave` to better than 1e-4 relative on
  band-limited images clear of the grid's edges (what is left is the stepper's PML reflection).
- :class:`LineSensorRegridding`: the fast approximate model ``Ã`` (docs/guide/photoacoustics.md
  §3; Köstli 2001, Xu, Feng & Wang 2002): the data spectrum is the initial pressure's spectrum,
  interpolated in ``k_x`` onto ``k_x(ω, k_y) = √(ω²/c² − k_y²)`` and weighted by
  ``½ (Δx/Δt) |ω| / (c² k_x)``.
  Its error against the exact model is structured and large (tens of per cent); it is what a
  learned correction removes.

Both are linear with exact hand-written adjoints, run on the input's device, and use the same
conventions as :class:`~operators.pat.KSpaceWave` with its default sensor: data
``(n_sensors, n_t)`` with the sensors in row-major order of the lateral axes.

Example
-------
>>> import torch
>>> from operators.pat import LineSensor, LineSensorRegridding, PATGrid, TimeGrid
>>> grid = PATGrid((32, 32), spacing=0.1)
>>> time = TimeGrid.from_cfl(grid, cfl=0.5, n_t=64)
>>> A, A_fast = LineSensor(grid, time=time), LineSensorRegridding(grid, time=time)
>>> x = torch.rand(32, 32)
>>> A(x).shape == A_fast(x).shape == (32, 64)
True
"""

from __future__ import annotations

import math

import numpy as np
import torch

from operators.base import LinearOperator
from operators.pat.fourier import fast_len, half_weights
from operators.pat.grid import Medium, PATGrid, TimeGrid


def _setup(grid, medium, time, name):
    if not isinstance(grid, PATGrid):
        raise TypeError(f"grid must be a PATGrid, got {type(grid).__name__}")
    medium = Medium() if medium is None else medium
    if not isinstance(medium, Medium):
        raise TypeError(f"medium must be a Medium, got {type(medium).__name__}")
    if not isinstance(medium.sound_speed, float):
        raise ValueError(
            f"{name} needs a homogeneous sound speed (a number, not a map); "
            "use KSpaceWave for heterogeneous media"
        )
    time = TimeGrid.from_cfl(grid, medium) if time is None else time
    if not isinstance(time, TimeGrid):
        raise TypeError(f"time must be a TimeGrid, got {type(time).__name__}")
    return medium, time


def _lateral_wavenumbers2(sizes, spacings) -> np.ndarray:
    """``|k_lat|²`` on the real-FFT half grid of the lateral axes (last axis halved)."""
    ks = []
    nl = len(sizes)
    for d, (m, h) in enumerate(zip(sizes, spacings, strict=True)):
        f = np.fft.rfftfreq(m, h) if d == nl - 1 else np.fft.fftfreq(m, h)
        shape = [1] * nl
        shape[d] = f.size
        ks.append((2 * np.pi * f).reshape(shape))
    return sum(k**2 for k in ks)


class _LineModel(LinearOperator):
    """Shared plumbing: the lateral real FFTs, the layout of the data, the domain."""

    native_autograd = True

    def __init__(self, grid: PATGrid, medium: Medium, time: TimeGrid, lateral_fft: tuple) -> None:
        n_sensors = math.prod(grid.shape[1:])
        super().__init__(grid.shape, (n_sensors, time.n_t))
        self.grid = grid
        self.medium = medium
        self.time = time
        self.c = float(medium.sound_speed)
        self.lateral_fft = tuple(int(m) for m in lateral_fft)
        self._lat_dims = tuple(range(-(grid.ndim - 1), 0))
        self._lat_crop = (Ellipsis, *(slice(0, n) for n in grid.shape[1:]))

    def _lat_rfft(self, a: torch.Tensor) -> torch.Tensor:
        """Zero-pad the lateral axes and transform: ``(..., *lat)`` → ``(B, L, n_bins)``."""
        A = torch.fft.rfftn(a, s=self.lateral_fft, dim=self._lat_dims)
        return A.reshape(a.shape[0], a.shape[1], -1)

    def _lat_irfft(self, A: torch.Tensor) -> torch.Tensor:
        """``(B, L, n_bins)`` → inverse lateral transform, cropped to ``(B, L, *lat)``."""
        half = (*self.lateral_fft[:-1], self.lateral_fft[-1] // 2 + 1)
        A = A.reshape(A.shape[0], A.shape[1], *half)
        return torch.fft.irfftn(A, s=self.lateral_fft, dim=self._lat_dims)[self._lat_crop]

    def _to_data(self, s: torch.Tensor) -> torch.Tensor:
        """``(B, n_t, *lat)`` → ``(B, n_sensors, n_t)``."""
        return s.reshape(s.shape[0], s.shape[1], -1).transpose(1, 2)

    def _from_data(self, y: torch.Tensor) -> torch.Tensor:
        """``(B, n_sensors, n_t)`` → ``(B, n_t, *lat)``."""
        return y.transpose(1, 2).reshape(y.shape[0], self.time.n_t, *self.grid.shape[1:])


class LineSensor(_LineModel):
    """Exact Fourier model of the line (2D) or plane (3D) sensor at ``x = 0``, homogeneous medium.

    Parameters
    ----------
    grid : PATGrid
        Image grid; the sensor is the first row (2D) or plane (3D).
    medium : Medium, optional
        Homogeneous (numbers only); the density plays no role.
    time : TimeGrid, optional
        Default :meth:`TimeGrid.from_cfl` (k-Wave's rule).
    margin : int
        Extra cells of zero padding beyond the distance ``c · t_end`` that sound travels, in depth
        and laterally, against periodic wrap-around.
    max_kernel_bytes : int
        The kernels ``K_{k_y}(j, t)`` (``n_bins × Nx × n_t`` numbers) are cached when they fit in
        this many bytes; otherwise they are recomputed in chunks at every application (3D).

    Notes
    -----
    Cost per image: ``2 · n_bins · Nx · n_t`` multiply-adds (``n_bins`` lateral frequencies of the
    padded grid), plus FFTs; independent of the medium's size in depth beyond ``Nx``.

    Example
    -------
    >>> import torch
    >>> grid = PATGrid((16, 20), spacing=0.1)
    >>> A = LineSensor(grid, time=TimeGrid.from_cfl(grid, cfl=0.5, n_t=32))
    >>> x = torch.zeros(16, 20); x[0, 5] = 1.0     # a point on the sensor line
    >>> float(A(x)[5, 0])                           # sample 0 is p0 at the sensors
    1.0
    """

    def __init__(
        self,
        grid: PATGrid,
        *,
        medium: Medium | None = None,
        time: TimeGrid | None = None,
        margin: int = 16,
        max_kernel_bytes: int = 2**28,
    ) -> None:
        medium, time = _setup(grid, medium, time, "LineSensor")
        if int(margin) != margin or margin < 0:
            raise ValueError(f"margin must be a non-negative int, got {margin!r}")
        reach_m = float(medium.sound_speed) * time.t_end
        h = grid.spacing_m
        need = [
            n - 1 + math.ceil(reach_m / s - 1e-9) + int(margin)
            for n, s in zip(grid.shape, h, strict=True)
        ]
        depth_fft = fast_len(max(2 * grid.shape[0] - 1, need[0]))
        super().__init__(grid, medium, time, tuple(fast_len(n) for n in need[1:]))
        self.margin = int(margin)
        self.depth_fft = depth_fft
        self.max_kernel_bytes = int(max_kernel_bytes)
        self._klat2 = _lateral_wavenumbers2(self.lateral_fft, h[1:]).reshape(-1)
        self._cache: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    @property
    def n_bins(self) -> int:
        return int(self._klat2.size)

    def _chunk(self) -> int:
        nx, n_kx, n_t = self.grid.shape[0], self.depth_fft // 2 + 1, self.time.n_t
        return max(1, (32 * 2**20) // (8 * n_kx * max(n_t, nx)))

    def kernel(self, sl: slice, *, device="cpu", dtype=torch.float64) -> torch.Tensor:
        """``K_{k_y}(j, t)`` for the lateral bins ``sl``: shape ``(bins, Nx, n_t)``."""
        nx, m = self.grid.shape[0], self.depth_fft
        dx = self.grid.spacing_m[0]
        kx = torch.as_tensor(2 * np.pi * np.fft.rfftfreq(m, dx), dtype=torch.float64)
        j = torch.arange(nx, dtype=torch.float64)
        depth = torch.as_tensor(half_weights(m) / m) * torch.cos(j[:, None] * dx * kx[None, :])
        t = torch.as_tensor(self.time.times, dtype=torch.float64)
        klat2 = torch.as_tensor(self._klat2[sl])
        omega = self.c * torch.sqrt(kx[None, :] ** 2 + klat2[:, None])  # (bins, n_kx)
        k = depth @ torch.cos(omega[:, :, None] * t)  # (bins, Nx, n_t)
        return k.to(device=device, dtype=dtype)

    def _kernels(self, like: torch.Tensor):
        """Yield ``(slice, kernel)`` over the lateral bins, from the cache when it fits."""
        key = (like.device, like.dtype)
        if key in self._cache:
            yield slice(None), self._cache[key]
            return
        size = self.n_bins * self.grid.shape[0] * self.time.n_t * like.element_size()
        step = self._chunk()
        parts = []
        for start in range(0, self.n_bins, step):
            sl = slice(start, min(start + step, self.n_bins))
            k = self.kernel(sl, device=like.device, dtype=like.dtype)
            if size <= self.max_kernel_bytes:
                parts.append(k)
            else:
                yield sl, k
        if parts:
            self._cache[key] = torch.cat(parts)
            yield slice(None), self._cache[key]

    def _apply(self, Z: torch.Tensor, out_len: int, transpose: bool) -> torch.Tensor:
        """Per-bin matrix products on complex ``Z`` of shape ``(B, L_in, n_bins)``."""
        B, n_in, n_bins = Z.shape
        Zr = torch.view_as_real(Z).permute(2, 0, 3, 1).reshape(n_bins, 2 * B, n_in)
        out = Zr.new_empty((n_bins, 2 * B, out_len))
        for sl, k in self._kernels(Zr):
            out[sl] = torch.bmm(Zr[sl], k.transpose(1, 2) if transpose else k)
        out = out.reshape(n_bins, B, 2, out_len).permute(1, 3, 0, 2).contiguous()
        return torch.view_as_complex(out)

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        X = self._lat_rfft(x)  # (B, Nx, bins)
        D = self._apply(X, self.time.n_t, transpose=False)  # (B, n_t, bins)
        return self._to_data(self._lat_irfft(D))

    def _rmatvec(self, y: torch.Tensor) -> torch.Tensor:
        Y = self._lat_rfft(self._from_data(y))  # (B, n_t, bins)
        X = self._apply(Y, self.grid.shape[0], transpose=True)  # (B, Nx, bins)
        return self._lat_irfft(X)

    def extra_repr(self) -> str:
        return (
            f"grid={self.grid.shape}, n_t={self.time.n_t}, dt={self.time.dt:.4g}, "
            f"depth_fft={self.depth_fft}, lateral_fft={self.lateral_fft}"
        )


def _interp_taps(q: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer taps ``(n_taps, *q.shape)`` and weights for interpolating at positions ``q``."""
    if order == 0:
        return np.rint(q)[None].astype(np.int64), np.ones((1, *q.shape))
    base = np.floor(q)
    f = q - base
    base = base.astype(np.int64)
    if order == 1:
        return np.stack([base, base + 1]), np.stack([1 - f, f])
    # cubic convolution (Keys, a = −1/2)
    taps = np.stack([base - 1, base, base + 1, base + 2])
    w = np.stack(
        [
            ((-0.5 * f + 1.0) * f - 0.5) * f,
            (1.5 * f - 2.5) * f * f + 1.0,
            ((-1.5 * f + 2.0) * f + 0.5) * f,
            (0.5 * f - 0.5) * f * f,
        ]
    )
    return taps, w


class LineSensorRegridding(_LineModel):
    """The fast approximate line/plane-sensor model ``Ã``: Fourier regridding ``k_x → ω``.

    Parameters
    ----------
    grid : PATGrid
        Image grid; the sensor is the first row (2D) or plane (3D).
    medium : Medium, optional
        Homogeneous (numbers only).
    time : TimeGrid, optional
        Default :meth:`TimeGrid.from_cfl`. The line-sensor set-up is ``cfl=0.5, n_t=2·Nx``.
    pad_depth, pad_lateral, pad_time : float
        FFT lengths relative to the minimum: ``pad_depth · 2Nx`` for the even extension in depth,
        ``pad_lateral · N`` laterally, ``pad_time · 2 n_t`` for the even extension in time
        (each rounded up to a 5-smooth length). More padding means finer ``k_x`` sampling and
        less periodic wrap in y and t.
    angle_limit : float, optional
        Largest angle (degrees) from the sensor's normal that is kept: the weight is zeroed
        where ``k_x < (|ω|/c) cos θ_max``. ``None`` keeps every propagating wave.
    order : {0, 1, 3}
        Interpolation in ``k_x``: nearest, linear or cubic (Keys).

    Notes
    -----
    Cost per image: three real FFTs of the padded arrays and one gather of
    ``(order + 1) · n_ω · n_bins`` samples; its adjoint is the reversed chain (scatter-add).
    The relative error against the exact model is 0.35–0.55 at the defaults on vessel-like
    images (0.6–1.0 without padding), with the amplitude underestimated (best scalar fit ≈ 0.75);
    ``tests/operators/test_pat.py`` holds the band measured for each setting.

    Example
    -------
    >>> import torch
    >>> grid = PATGrid((32, 32), spacing=0.1)
    >>> A = LineSensorRegridding(grid, time=TimeGrid.from_cfl(grid, cfl=0.5, n_t=64),
    ...                          angle_limit=60.0)
    >>> A.T(A(torch.rand(3, 32, 32))).shape
    torch.Size([3, 32, 32])
    """

    def __init__(
        self,
        grid: PATGrid,
        *,
        medium: Medium | None = None,
        time: TimeGrid | None = None,
        pad_depth: float = 1.0,
        pad_lateral: float = 2.0,
        pad_time: float = 2.0,
        angle_limit: float | None = None,
        order: int = 1,
    ) -> None:
        medium, time = _setup(grid, medium, time, "LineSensorRegridding")
        for name, v in (("pad_depth", pad_depth), ("pad_lateral", pad_lateral)):
            if not (float(v) >= 1 and math.isfinite(float(v))):
                raise ValueError(f"{name} must be a number >= 1, got {v!r}")
        if not (float(pad_time) >= 0.5 and math.isfinite(float(pad_time))):
            raise ValueError(f"pad_time must be a number >= 0.5, got {pad_time!r}")
        if angle_limit is not None and not (0 < float(angle_limit) <= 90):
            raise ValueError(f"angle_limit must be in (0, 90] degrees or None, got {angle_limit}")
        if order not in (0, 1, 3):
            raise ValueError(f"order must be 0 (nearest), 1 (linear) or 3 (cubic), got {order!r}")
        lateral = tuple(fast_len(math.ceil(float(pad_lateral) * n)) for n in grid.shape[1:])
        super().__init__(grid, medium, time, lateral)
        self.pad_depth = float(pad_depth)
        self.pad_lateral = float(pad_lateral)
        self.pad_time = float(pad_time)
        self.angle_limit = None if angle_limit is None else float(angle_limit)
        self.order = int(order)
        self.depth_fft = fast_len(math.ceil(self.pad_depth * 2 * grid.shape[0]))
        self.time_fft = max(fast_len(math.ceil(self.pad_time * 2 * time.n_t)), time.n_t)
        self._arrays = self._precompute()
        self._cache: dict[tuple[torch.device, torch.dtype], dict] = {}

    def _precompute(self) -> dict:
        m_x, m_t = self.depth_fft, self.time_fft
        dx, dt, c = self.grid.spacing_m[0], self.time.dt, self.c
        dkx = 2 * np.pi / (m_x * dx)
        klat = np.sqrt(_lateral_wavenumbers2(self.lateral_fft, self.grid.spacing_m[1:]))
        klat = klat.reshape(-1)
        omega = 2 * np.pi * np.fft.rfftfreq(m_t, dt)
        kw = omega[:, None] / c  # |ω|/c, (n_ω, 1)
        kx2 = kw**2 - klat[None, :] ** 2
        # propagating (|ω| > c|k_y|); exact grazing incidence (k_x = 0, where the frequency grids
        # coincide) has no finite weight and is dropped with the evanescent part
        valid = kx2 > 1e-9 * kw**2
        normal = np.broadcast_to(klat[None, :] == 0, valid.shape)  # k_y = 0: k_x = |ω|/c
        valid |= normal
        kx = np.where(normal, kw, np.sqrt(np.where(valid, kx2, 1.0)))
        valid &= kx <= np.pi / dx  # beyond the grid's Nyquist: no sample to interpolate
        if self.angle_limit is not None:
            valid &= kx >= kw * math.cos(math.radians(self.angle_limit)) * (1 - 1e-12)
        # ½ (Δx/Δt) |ω| / (c² k_x), whose limit at ω = 0 on the normal (k_y = 0) is ½ (Δx/Δt) / c
        weight = np.where(normal, 1.0, kw / np.where(normal, 1.0, kx)) * 0.5 * (dx / dt) / c
        pos = np.flatnonzero(valid)  # (ω, bin) pairs with a non-zero weight, row-major
        w_idx, bin_idx = np.unravel_index(pos, valid.shape)
        taps, tap_w = _interp_taps(kx[w_idx, bin_idx] / dkx, self.order)
        taps = np.mod(taps, m_x)
        taps = np.minimum(taps, m_x - taps)  # the spectrum is even and m_x-periodic in k_x
        n_omega = int(w_idx.max()) + 1 if pos.size else 1  # higher frequencies are all zero
        return {
            "pos": pos,  # flat index into (n_ω, n_bins)
            "tap_index": (taps * klat.size + bin_idx[None, :]).reshape(-1),
            "tap_weight": tap_w * weight[w_idx, bin_idx][None, :],  # (taps, n_valid)
            "depth_w": half_weights(m_x),
            "time_w": half_weights(m_t)[:n_omega] / m_t,
            "n_omega": n_omega,
            "n_bins": klat.size,
        }

    def _tensors(self, like: torch.Tensor) -> dict:
        key = (like.device, like.dtype)
        if key not in self._cache:
            a = self._arrays
            self._cache[key] = {
                "pos": torch.as_tensor(a["pos"], device=like.device),
                "tap_index": torch.as_tensor(a["tap_index"], device=like.device),
                "tap_weight": torch.as_tensor(
                    a["tap_weight"], dtype=like.dtype, device=like.device
                ),
                "depth_w": torch.as_tensor(a["depth_w"], dtype=like.dtype, device=like.device),
                "time_w": torch.as_tensor(a["time_w"], dtype=like.dtype, device=like.device),
            }
        return self._cache[key]

    # The batch is the last axis throughout: the gathers then move contiguous rows of 2B numbers.
    def _along0(self, v: torch.Tensor, ndim: int) -> torch.Tensor:
        return v.reshape(-1, *([1] * (ndim - 1)))

    def _lateral(self) -> tuple[tuple[int, ...], tuple]:
        nl = self.grid.ndim - 1
        dims = tuple(range(1, nl + 1))
        crop = (slice(None), *(slice(0, n) for n in self.grid.shape[1:]), slice(None))
        return dims, crop

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        t = self._tensors(x)
        a = self._arrays
        B, n_t = x.shape[0], self.time.n_t
        dims, crop = self._lateral()
        half = (*self.lateral_fft[:-1], self.lateral_fft[-1] // 2 + 1)
        xb = x.movedim(0, -1)  # (Nx, *lat, B)
        # F_x of the even extension: 2 Σ_j p0_j cos(k_x j Δx), k_x ≥ 0
        px = 2 * torch.fft.rfft(xb, n=self.depth_fft, dim=0).real
        P = torch.fft.rfftn(px, s=self.lateral_fft, dim=dims)  # (n_kx, *half, B)
        P = torch.view_as_real(P).reshape(-1, 2 * B)
        n_taps = t["tap_weight"].shape[0]
        v = P.index_select(0, t["tap_index"]).view(n_taps, -1, 2 * B)
        vals = (v * t["tap_weight"][:, :, None]).sum(0)
        S = P.new_zeros((a["n_omega"] * a["n_bins"], 2 * B)).index_copy(0, t["pos"], vals)
        S = torch.view_as_complex(S.view(a["n_omega"], *half, B, 2))
        R = torch.fft.irfftn(S, s=self.lateral_fft, dim=dims)[crop]  # (n_ω, *lat, B)
        s = torch.fft.irfft(R, n=self.time_fft, dim=0)[:n_t]  # (n_t, *lat, B)
        return s.reshape(n_t, -1, B).permute(2, 1, 0)

    def _rmatvec(self, y: torch.Tensor) -> torch.Tensor:
        t = self._tensors(y)
        a = self._arrays
        B, n_t = y.shape[0], self.time.n_t
        dims, crop = self._lateral()
        half = (*self.lateral_fft[:-1], self.lateral_fft[-1] // 2 + 1)
        s = y.permute(2, 1, 0).reshape(n_t, *self.grid.shape[1:], B)
        R = torch.fft.rfft(s, n=self.time_fft, dim=0).real[: a["n_omega"]]
        R = R * self._along0(t["time_w"], R.ndim)
        S = torch.view_as_real(torch.fft.rfftn(R, s=self.lateral_fft, dim=dims))
        sv = S.reshape(-1, 2 * B).index_select(0, t["pos"])  # (n_valid, 2B)
        vals = (sv[None] * t["tap_weight"][:, :, None]).reshape(-1, 2 * B)
        n_kx = self.depth_fft // 2 + 1
        P = y.new_zeros((n_kx * a["n_bins"], 2 * B)).index_add(0, t["tap_index"], vals)
        P = torch.view_as_complex(P.view(n_kx, *half, B, 2))
        px = torch.fft.irfftn(P, s=self.lateral_fft, dim=dims)[crop]  # (n_kx, *lat, B)
        # adjoint of 2 Σ_j x_j cos(k_x j Δx): 2 Σ_k p_k cos(k_x j Δx) = 2 M_x irfft(p / w)_j
        px = px / self._along0(t["depth_w"], px.ndim)
        xb = torch.fft.irfft(px, n=self.depth_fft, dim=0)[: self.grid.shape[0]]
        return (2 * self.depth_fft) * xb.movedim(-1, 0)

    def extra_repr(self) -> str:
        return (
            f"grid={self.grid.shape}, n_t={self.time.n_t}, depth_fft={self.depth_fft}, "
            f"lateral_fft={self.lateral_fft}, time_fft={self.time_fft}, "
            f"angle_limit={self.angle_limit}, order={self.order}"
        )
