"""Classical reconstruction algorithms as functions with a visible loop.

Every solver takes measurements ``y`` of shape ``(*batch, *op.range_shape)`` and a linear operator
``op`` (``op(x)``, ``op.T(y)``, ``op.domain_shape``, ``op.range_shape``), treats each batch element
as an independent problem, and reports progress through an optional ``callback(k, x)``.

- Analytic: :func:`fbp` (parallel and fan beam, 2D) and :func:`fdk` (circular cone beam), written
  in torch (CPU and GPU, batched, differentiable in ``y``). They read ``op.geometry`` and use the
  operator only for its geometry: the backprojection is their own, with the weights the inversion
  formula needs.
- Iterative: :func:`landweber`, :func:`sirt`, :func:`cgls` and :func:`tv_pdhg` (total variation
  by Chambolle–Pock), applying ``op`` to the whole batch at once.
- :class:`FBP`, :class:`FDK`, :class:`Landweber`, :class:`SIRT`, :class:`CGLS` and :class:`TV` wrap
  them as :class:`~recon.base.Reconstructor` modules for configs: ``x = FBP()(y, op)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch

from operators.ct.geometry import ConeBeam3D, FanBeam2D, Parallel2D
from recon.base import Reconstructor, check_measurements

__all__ = [
    "FILTERS",
    "CGLS",
    "FBP",
    "FDK",
    "SIRT",
    "TV",
    "Landweber",
    "cgls",
    "divergence2d",
    "divergence3d",
    "fbp",
    "fdk",
    "gradient2d",
    "gradient3d",
    "landweber",
    "sirt",
    "tv_objective",
    "tv_pdhg",
]

#: Filter names accepted by :func:`fbp` and :func:`fdk`.
FILTERS: tuple[str, ...] = ("ram-lak", "shepp-logan", "cosine", "hann")

#: Elements gathered at once by the backprojections (bounds their temporary memory).
_GATHER_ELEMENTS = 1 << 22


class _LinearOperatorLike(Protocol):
    """What the solvers use of an operator (``operators.LinearOperator`` provides it)."""

    domain_shape: tuple[int, ...]
    range_shape: tuple[int, ...]

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    @property
    def T(self) -> Callable[[torch.Tensor], torch.Tensor]: ...


# --------------------------------------------------------------------------- small helpers
def _sq_norm(v: torch.Tensor, n_trailing: int) -> torch.Tensor:
    """Squared norm over the ``n_trailing`` last dimensions, of shape ``v.shape[:-n_trailing]``."""
    if n_trailing == 0:
        return v * v
    return (v * v).sum(dim=tuple(range(-n_trailing, 0)))


def _expand(scalars: torch.Tensor, n_trailing: int) -> torch.Tensor:
    """Append ``n_trailing`` size-1 dimensions so per-element scalars broadcast over an image."""
    return scalars.reshape(*scalars.shape, *([1] * n_trailing))


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den > 0``, else 0 (no NaN in values or gradients)."""
    positive = den > 0
    return torch.where(positive, num / torch.where(positive, den, torch.ones_like(den)), 0.0)


def _check_n_iter(n_iter: object) -> int:
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 0:
        raise ValueError(f"n_iter must be a non-negative int, got {n_iter!r}")
    return n_iter


def _check_positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    """``value`` as a float, raising ``ValueError`` unless it is a finite positive real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a finite {kind} number, got {value}")
    return value


def _initial_guess(
    x0: torch.Tensor | None,
    y: torch.Tensor,
    batch_shape: tuple[int, ...],
    domain_shape: tuple[int, ...],
) -> torch.Tensor:
    """``x0`` (validated, on ``y``'s device and dtype) or zeros of shape ``(*batch, *domain)``."""
    shape = (*batch_shape, *domain_shape)
    if x0 is None:
        return torch.zeros(shape, dtype=y.dtype, device=y.device)
    if not isinstance(x0, torch.Tensor) or tuple(x0.shape) != shape:
        got = tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__
        raise ValueError(f"x0 must have shape (*batch, *op.domain_shape) = {shape}, got {got}")
    if not torch.isfinite(x0).all():
        raise ValueError("x0 contains NaN or infinite values")
    return x0.to(dtype=y.dtype, device=y.device)


def _operator_norm(op: _LinearOperatorLike) -> float:
    norm = getattr(op, "norm", None)
    if not callable(norm):
        raise ValueError(
            f"{type(op).__name__} has no norm() method: pass the step size(s) explicitly"
        )
    return float(norm())


# --------------------------------------------------------------------------- FBP / FDK
def _check_filter(filter: str, frequency_scaling: float) -> tuple[str, float]:
    """Validated (normalised filter name, frequency scaling)."""
    if not isinstance(filter, str):
        raise ValueError(f"filter must be one of {FILTERS}, got {filter!r}")
    name = filter.lower().replace("_", "-")
    if name not in FILTERS:
        raise ValueError(f"unknown filter {filter!r}; choose one of {', '.join(FILTERS)}")
    if isinstance(frequency_scaling, bool) or not isinstance(frequency_scaling, (int, float)):
        raise ValueError(f"frequency_scaling must be a number in (0, 1], got {frequency_scaling!r}")
    scaling = float(frequency_scaling)
    if not 0.0 < scaling <= 1.0:
        raise ValueError(f"frequency_scaling must be in (0, 1], got {frequency_scaling}")
    return name, scaling


def _fft_length(n: int, padding: bool) -> int:
    """The next power of two ≥ 2n (linear convolution without wrap-around), or n without padding."""
    return 1 << (2 * n - 1).bit_length() if padding else n


def _ramp_response(
    n_fft: int, filter: str, frequency_scaling: float, *, dtype: torch.dtype, device
) -> torch.Tensor:
    r"""Frequency response (``rfft`` bins) of the windowed, band-limited ramp kernel, per sample.

    The ramp is the DFT of the band-limited kernel sampled at unit spacing (Kak & Slaney 1988,
    eq. 3.61): ``h[0] = 1/4``, ``h[n] = -1/(π n)²`` for odd ``n`` and 0 for even ``n ≠ 0``. Its
    DFT is ``≈ |ν|`` (cycles per sample) but keeps the correct, non-zero DC value, so a
    zero-padded convolution has no DC offset. The window is ODL's, in the normalised frequency
    ``r = (ν / ν_Nyquist) / frequency_scaling``: 1 (Ram-Lak), ``sinc(r/2)`` (Shepp-Logan),
    ``cos(π r/2)`` (cosine), ``cos²(π r/2)`` (Hann), and zero for ``r > 1``.
    """
    k = torch.arange(n_fft, dtype=torch.float64)
    offset = torch.where(k <= n_fft // 2, k, k - n_fft)
    kernel = torch.zeros(n_fft, dtype=torch.float64)
    kernel[0] = 0.25
    odd = offset.remainder(2) == 1
    kernel[odd] = -1.0 / (math.pi * offset[odd]) ** 2
    response = torch.fft.rfft(kernel).real
    normalised = torch.arange(response.shape[0], dtype=torch.float64) * (2.0 / n_fft)
    r = normalised / frequency_scaling
    if filter == "shepp-logan":
        window = torch.sinc(r / 2)
    elif filter == "cosine":
        window = torch.cos(r * (math.pi / 2))
    elif filter == "hann":
        window = torch.cos(r * (math.pi / 2)) ** 2
    else:
        window = torch.ones_like(r)
    response = response * window * (r <= 1.0 + 1e-12)
    return response.to(dtype=dtype, device=device)


def _ramp_filter(
    p: torch.Tensor,
    spacing: float,
    filter: str,
    frequency_scaling: float,
    padding: bool,
) -> torch.Tensor:
    r"""Convolve ``p`` along its last axis with the ramp kernel of samples ``spacing`` apart.

    Approximates :math:`q(u) = \int p(u') h(u - u')\,du'` with :math:`\hat h(\nu) = |\nu|`
    (``ν`` in cycles per mm): ``q = (1/spacing) · IDFT(DFT(p) · H)`` with ``H`` from
    :func:`_ramp_response`, zero-padded to the next power of two ≥ ``2 n``.
    """
    n = p.shape[-1]
    n_fft = _fft_length(n, padding)
    response = _ramp_response(n_fft, filter, frequency_scaling, dtype=p.dtype, device=p.device)
    spectrum = torch.fft.rfft(p, n=n_fft, dim=-1)
    return torch.fft.irfft(spectrum * response, n=n_fft, dim=-1)[..., :n] / spacing


def _angle_weights(angles: Sequence[float], period: float) -> np.ndarray:
    r"""Quadrature weights :math:`Δθ_i` for angles on a circle of circumference ``period``.

    Angles are reduced modulo ``period`` (``π`` for parallel beam, where θ and θ + π measure the
    same lines; ``2π`` for divergent beams) and each gets half the gaps to its two neighbours (the
    midpoint rule), so uniform angles on [0, π) get ``π/n``, irregular angles get their own
    share, and repeated coverage (a parallel scan over [0, 2π)) splits its weight. A gap wider
    than a quarter of the period is a missing wedge (a limited-angle scan): the angle beside it
    takes its other gap there instead, so the scan is not stretched to fill the wedge.
    """
    a = np.mod(np.asarray(angles, dtype=np.float64), period)
    n = a.size
    if n == 1:
        return np.array([period])
    order = np.argsort(a, kind="stable")
    s = a[order]
    right = np.diff(np.append(s, s[0] + period))  # gap after each sorted angle
    left = np.roll(right, 1)  # gap before it
    nonzero = right[right > 1e-9 * period]
    typical = float(np.median(nonzero)) if nonzero.size else period / n
    wedge = period / 4 * (1 + 1e-9)
    big_left, big_right = left > wedge, right > wedge
    left_eff = np.where(big_left, np.where(big_right, typical, right), left)
    right_eff = np.where(big_right, np.where(big_left, typical, left), right)
    weights = np.empty(n)
    weights[order] = (left_eff + right_eff) / 2
    return weights


def _centred(n: int, spacing: float, *, dtype, device, flip: bool = False) -> torch.Tensor:
    """Coordinates ``(k - (n-1)/2) · spacing`` (or reversed: ``((n-1)/2 - k) · spacing``)."""
    k = torch.arange(n, dtype=torch.float64)
    c = ((n - 1) / 2 - k) if flip else (k - (n - 1) / 2)
    return (c * spacing).to(dtype=dtype, device=device)


def _interp_linear(q: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of ``q (B, c, n)`` at fractional detector indices ``index (c, P)``.

    Returns ``(B, c, P)``; positions outside ``[-1, n]`` give 0 (the detector is zero-extended).
    """
    b, c, n = q.shape
    padded = torch.nn.functional.pad(q, (1, 1))
    pos = (index + 1).clamp(0, n + 1)
    i0 = pos.floor().clamp(max=n)
    frac = pos - i0
    i0 = i0.long()
    lo = torch.gather(padded, 2, i0.expand(b, c, -1))
    hi = torch.gather(padded, 2, (i0 + 1).expand(b, c, -1))
    return lo + frac * (hi - lo)


def _interp_bilinear(q: torch.Tensor, row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
    """Bilinear interpolation of ``q (B, c, rows, cols)`` at ``row, col (c, P)`` → ``(B, c, P)``.

    Positions outside ``[-1, rows] × [-1, cols]`` give 0 (the detector is zero-extended).
    """
    b, c, n_rows, n_cols = q.shape
    padded = torch.nn.functional.pad(q, (1, 1, 1, 1)).reshape(b, c, -1)
    width = n_cols + 2
    r = (row + 1).clamp(0, n_rows + 1)
    s = (col + 1).clamp(0, n_cols + 1)
    r0, s0 = r.floor().clamp(max=n_rows), s.floor().clamp(max=n_cols)
    fr, fs = r - r0, s - s0
    base = r0.long() * width + s0.long()

    def at(offset: int) -> torch.Tensor:
        return torch.gather(padded, 2, (base + offset).expand(b, c, -1))

    top = at(0) + fs * (at(1) - at(0))
    bottom = at(width) + fs * (at(width + 1) - at(width))
    return top + fr * (bottom - top)


def fbp(
    y: torch.Tensor,
    op: _LinearOperatorLike,
    *,
    filter: str = "ram-lak",
    frequency_scaling: float = 1.0,
    padding: bool = True,
) -> torch.Tensor:
    r"""Filtered backprojection for 2D parallel-beam and flat-detector fan-beam geometries.

    Reads ``op.geometry`` (:class:`~operators.Parallel2D` or :class:`~operators.FanBeam2D`) and
    inverts the ray transform in physical units, so the result approximates the attenuation
    (per mm) whatever the pixel size and detector spacing.

    **Parallel beam.** With :math:`p(θ, u)` the line integrals and :math:`h` the ramp kernel
    (:math:`\hat h(ν) = |ν|`, ν in cycles per mm),

    .. math::

        f(x, y) = \int_0^π (p(θ, \cdot) * h)(x\cos θ + y\sin θ)\,dθ
        \approx \sum_i Δθ_i\, q_i(x\cos θ_i + y\sin θ_i),

    with :math:`q_i = p_i * h` computed by FFT along the detector (zero-padded to the next power
    of two ≥ 2·n_detectors, the band-limited kernel of Kak & Slaney, divided by the detector
    spacing) and :math:`Δθ_i = π / n` for angles uniform on [0, π) (in general: the midpoint rule
    on angles modulo π, so a [0, 2π) scan is averaged, see ``_angle_weights``).

    **Fan beam** (source at :math:`R(\sin θ, -\cos θ)`, flat detector at distance ``R + D`` from
    it). Detector coordinates are scaled to the isocentre, :math:`s = u R / (R + D)`; the data
    are cosine-weighted, ramp-filtered along ``s`` and backprojected with the distance weight
    (Kak & Slaney 1988, §3.4.2):

    .. math::

        f(\mathbf{x}) = \frac12 \int_0^{2π} \Big(\frac{R}{L}\Big)^2
        \Big(\big[p(θ, s)\, \tfrac{R}{\sqrt{R^2 + s^2}}\big] * h\Big)
        \Big(\frac{R\,(x\cos θ + y\sin θ)}{L}\Big)\,dθ,
        \qquad L = R - x\sin θ + y\cos θ,

    where ``L`` is the distance from the source to the pixel along the central ray. The
    integral needs a full turn (the default angles); shorter scans get no Parker weights.

    The backprojection is pixel-driven: every pixel's detector coordinate is computed per angle and
    the filtered projection is interpolated linearly there (zero outside the detector), in chunks
    of angles. Everything is torch code, so it runs on the device of ``y``, in its dtype, over any
    leading batch dimensions, and is differentiable in ``y``.

    Parameters
    ----------
    y : torch.Tensor
        Sinograms of shape ``(*batch, n_angles, n_detectors)``.
    op : RayTransform
        An operator whose ``geometry`` is a ``Parallel2D`` or ``FanBeam2D``.
    filter : {"ram-lak", "shepp-logan", "cosine", "hann"}
        Window applied to the ramp (ODL's definitions).
    frequency_scaling : float
        In (0, 1]: the filter is cut off at this fraction of the Nyquist frequency (and the window
        is stretched to end there), as in ODL's ``fbp_op``.
    padding : bool
        Zero-pad before the FFT (default). Without it the convolution wraps around the detector.

    Returns
    -------
    torch.Tensor
        Images of shape ``(*batch, H, W)``.

    Raises
    ------
    ValueError
        If ``op`` has no 2D parallel or fan-beam geometry, ``y`` is misshapen or not finite, or the
        filter options are invalid.

    Example
    -------
    >>> import operators
    >>> from data_tools.phantoms import shepp_logan
    >>> op = operators.RayTransform(operators.Parallel2D((64, 64), n_angles=90), backend="astra")
    >>> x = fbp(op(shepp_logan((64, 64))), op, filter="hann")
    >>> x.shape
    torch.Size([64, 64])
    """
    geometry = getattr(op, "geometry", None)
    if not isinstance(geometry, (Parallel2D, FanBeam2D)):
        hint = " (use fdk for ConeBeam3D)" if isinstance(geometry, ConeBeam3D) else ""
        raise ValueError(
            "fbp needs an operator with a Parallel2D or FanBeam2D geometry (a RayTransform), "
            f"got {type(op).__name__} with geometry {type(geometry).__name__}{hint}"
        )
    name, scaling = _check_filter(filter, frequency_scaling)
    batch_shape = check_measurements(y, op)
    n_angles, n_det = geometry.range_shape
    H, W = geometry.image_shape
    dtype, device = y.dtype, y.device
    ds, ps = geometry.detector_spacing, geometry.pixel_size
    sino = y.reshape(-1, n_angles, n_det)
    angles = geometry.angles_array
    fan = isinstance(geometry, FanBeam2D)

    if fan:
        R, D = geometry.source_distance, geometry.detector_distance
        iso = R / (R + D)  # detector → isocentre scaling
        s = _centred(n_det, ds * iso, dtype=dtype, device=device)
        sino = sino * (R / torch.sqrt(R * R + s * s))
        filtered = _ramp_filter(sino, ds * iso, name, scaling, padding)
        weights = _angle_weights(angles, 2 * math.pi) / 2
    else:
        filtered = _ramp_filter(sino, ds, name, scaling, padding)
        weights = _angle_weights(angles, math.pi)

    xs = _centred(W, ps, dtype=dtype, device=device)[None, :].expand(H, W).reshape(1, -1)
    ys = _centred(H, ps, dtype=dtype, device=device, flip=True)[:, None].expand(H, W).reshape(1, -1)
    image = torch.zeros((sino.shape[0], H * W), dtype=dtype, device=device)
    chunk = max(1, _GATHER_ELEMENTS // max(1, sino.shape[0] * H * W))
    for start in range(0, n_angles, chunk):
        stop = min(start + chunk, n_angles)
        theta = torch.as_tensor(angles[start:stop], dtype=torch.float64)
        cos = torch.cos(theta).to(dtype=dtype, device=device)[:, None]
        sin = torch.sin(theta).to(dtype=dtype, device=device)[:, None]
        w = torch.as_tensor(weights[start:stop], dtype=dtype, device=device)[:, None]
        t = xs * cos + ys * sin  # (c, P): coordinate along the detector axis
        if fan:
            L = R - xs * sin + ys * cos  # source-to-pixel distance along the central ray
            u = t * ((R + D) / L)
            w = w * (R / L) ** 2
        else:
            u = t
        index = u / ds + (n_det - 1) / 2
        values = _interp_linear(filtered[:, start:stop], index)  # (B, c, P)
        image = image + (values * w).sum(dim=1)
    return image.reshape(*batch_shape, H, W)


def fdk(
    y: torch.Tensor,
    op: _LinearOperatorLike,
    *,
    filter: str = "ram-lak",
    frequency_scaling: float = 1.0,
    padding: bool = True,
) -> torch.Tensor:
    r"""Feldkamp–Davis–Kress reconstruction for circular cone beam with a flat detector.

    Reads ``op.geometry`` (:class:`~operators.ConeBeam3D`): source at :math:`R(\sin θ, -\cos θ, 0)`,
    detector centre at :math:`D(-\sin θ, \cos θ, 0)`, detector columns along
    :math:`(\cos θ, \sin θ, 0)` and rows along ``+z``. Volumes are ``(D, H, W) = (z, y, x)`` with
    slice ``k`` at :math:`z = (k - (D-1)/2)\,v` (``v`` the voxel size) and rows and columns as in
    2D; detector row ``r`` is at :math:`(r - (n_r-1)/2)\,Δ_r` along ``+z``. (ASTRA's in-plane and
    axial orientation in 3D is still to be confirmed on a GPU, see ``operators/ct/geometry.py``.)

    With detector coordinates scaled to the isocentre, :math:`(a, b) = (u, v) R / (R + D)`,

    .. math::

        f(x, y, z) = \frac12 \int_0^{2π} \Big(\frac{R}{L}\Big)^2
        \Big(\big[p(θ, a, b)\,\tfrac{R}{\sqrt{R^2 + a^2 + b^2}}\big] *_a h\Big)
        \Big(\frac{R\,(x\cos θ + y\sin θ)}{L}, \frac{R\,z}{L}\Big)\,dθ,
        \qquad L = R - x\sin θ + y\cos θ:

    cosine weighting, ramp filtering along each detector row (as in :func:`fbp`) and a
    voxel-driven backprojection with the distance weight and bilinear interpolation, in torch
    (CPU or GPU, batched). Exact in the central plane, approximate away from it (the cone-beam
    artefacts of FDK grow with the cone angle).

    Parameters
    ----------
    y : torch.Tensor
        Projections of shape ``(*batch, n_angles, det_rows, det_cols)``.
    op : RayTransform
        An operator whose ``geometry`` is a ``ConeBeam3D``.
    filter, frequency_scaling, padding
        As in :func:`fbp`.

    Returns
    -------
    torch.Tensor
        Volumes of shape ``(*batch, D, H, W)``.

    Raises
    ------
    ValueError
        If ``op`` has no ``ConeBeam3D`` geometry, ``y`` is misshapen or not finite, or the filter
        options are invalid.

    Example
    -------
    >>> import operators
    >>> g = operators.ConeBeam3D((16, 16, 16), n_angles=32, source_distance=100.0)
    >>> op = operators.RayTransform(g)        # projecting needs a GPU; FDK does not
    >>> fdk(torch.zeros(g.range_shape), op).shape
    torch.Size([16, 16, 16])
    """
    geometry = getattr(op, "geometry", None)
    if not isinstance(geometry, ConeBeam3D):
        raise ValueError(
            "fdk needs an operator with a ConeBeam3D geometry (a RayTransform), "
            f"got {type(op).__name__} with geometry {type(geometry).__name__}"
        )
    name, scaling = _check_filter(filter, frequency_scaling)
    batch_shape = check_measurements(y, op)
    n_angles, n_rows, n_cols = geometry.range_shape
    D, H, W = geometry.volume_shape
    dtype, device = y.dtype, y.device
    ds_row, ds_col = geometry.detector_spacing
    vs = geometry.voxel_size
    R, Dd = geometry.source_distance, geometry.detector_distance
    iso = R / (R + Dd)
    proj = y.reshape(-1, n_angles, n_rows, n_cols)

    a = _centred(n_cols, ds_col * iso, dtype=dtype, device=device)
    b = _centred(n_rows, ds_row * iso, dtype=dtype, device=device)
    proj = proj * (R / torch.sqrt(R * R + a[None, :] ** 2 + b[:, None] ** 2))
    filtered = _ramp_filter(proj, ds_col * iso, name, scaling, padding)
    weights = _angle_weights(geometry.angles_array, 2 * math.pi) / 2

    xs = _centred(W, vs, dtype=dtype, device=device)[None, :].expand(H, W).reshape(1, 1, -1)
    ys = _centred(H, vs, dtype=dtype, device=device, flip=True)[:, None]
    ys = ys.expand(H, W).reshape(1, 1, -1)
    zs = _centred(D, vs, dtype=dtype, device=device).reshape(1, D, 1)
    n_batch = proj.shape[0]
    volume = torch.zeros((n_batch, D * H * W), dtype=dtype, device=device)
    chunk = max(1, _GATHER_ELEMENTS // max(1, n_batch * D * H * W))
    for start in range(0, n_angles, chunk):
        stop = min(start + chunk, n_angles)
        theta = torch.as_tensor(geometry.angles_array[start:stop], dtype=torch.float64)
        cos = torch.cos(theta).to(dtype=dtype, device=device)[:, None, None]
        sin = torch.sin(theta).to(dtype=dtype, device=device)[:, None, None]
        w = torch.as_tensor(weights[start:stop], dtype=dtype, device=device)[:, None, None]
        L = R - xs * sin + ys * cos  # (c, 1, H·W)
        magnify = (R + Dd) / L
        col = (xs * cos + ys * sin) * magnify / ds_col + (n_cols - 1) / 2  # (c, 1, H·W)
        row = zs * magnify / ds_row + (n_rows - 1) / 2  # (c, D, H·W)
        c = stop - start
        col = col.expand(c, D, H * W).reshape(c, -1)
        values = _interp_bilinear(filtered[:, start:stop], row.reshape(c, -1), col)
        weight = (w * (R / L) ** 2).expand(c, D, H * W).reshape(c, -1)
        volume = volume + (values * weight).sum(dim=1)
    return volume.reshape(*batch_shape, D, H, W)


# --------------------------------------------------------------------------- iterative
def landweber(
    y: torch.Tensor,
    op: _LinearOperatorLike,
    *,
    n_iter: int,
    step: float | None = None,
    x0: torch.Tensor | None = None,
    nonneg: bool = False,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    r"""Landweber iteration (gradient descent on :math:`\tfrac12\|Ax - y\|^2`).

    .. math:: x_{k+1} = x_k + ω A^T (y - A x_k)\quad(\text{then } \max(x_{k+1}, 0)
              \text{ if nonneg}),

    with :math:`ω = 1/\|A\|^2` by default (``op.norm()``, power iteration, cached). It converges
    for :math:`0 < ω < 2/\|A\|^2` to the least-squares solution nearest to :math:`x_0` (to the
    non-negative least-squares solution with ``nonneg``); early stopping regularises.

    Parameters
    ----------
    y : torch.Tensor
        Measurements ``(*batch, *op.range_shape)``.
    op : LinearOperator
        The forward operator.
    n_iter : int
        Number of iterations.
    step : float, optional
        Step size ω; default ``1 / op.norm()**2``.
    x0 : torch.Tensor, optional
        Initial guess ``(*batch, *op.domain_shape)``; zeros by default.
    nonneg : bool
        Project onto ``x ≥ 0`` after each step.
    callback : callable, optional
        ``callback(k, x)`` after iteration ``k``.

    Returns
    -------
    torch.Tensor
        ``(*batch, *op.domain_shape)``.

    Raises
    ------
    ValueError
        For misshapen or non-finite ``y`` or ``x0``, a negative ``n_iter``, a non-positive step.

    Example
    -------
    >>> import operators
    >>> op = operators.RayTransform(operators.Parallel2D((32, 32), n_angles=30), backend="astra")
    >>> x = landweber(op(torch.ones(32, 32)), op, n_iter=10, nonneg=True)
    >>> x.shape
    torch.Size([32, 32])
    """
    n_iter = _check_n_iter(n_iter)
    batch_shape = check_measurements(y, op)
    step = _operator_norm(op) ** -2 if step is None else _check_positive("step", step)
    x = _initial_guess(x0, y, batch_shape, tuple(op.domain_shape))
    for k in range(n_iter):
        x = x + step * op.T(y - op(x))
        if nonneg:
            x = x.clamp_min(0)
        if callback is not None:
            callback(k, x)
    return x.clone() if n_iter == 0 else x


def sirt(
    y: torch.Tensor,
    op: _LinearOperatorLike,
    *,
    n_iter: int,
    x0: torch.Tensor | None = None,
    nonneg: bool = False,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    r"""Simultaneous iterative reconstruction technique (SIRT).

    .. math:: x_{k+1} = x_k + C A^T R (y - A x_k),\qquad
              R = \operatorname{diag}(1 / A\mathbf 1),\quad
              C = \operatorname{diag}(1 / A^T\mathbf 1)

    (row and column sums of a non-negative ``A``; rays or pixels whose sum is zero get weight 0).
    Since :math:`\|C^{1/2} A^T R A C^{1/2}\| \le 1`, it converges without a step size to the
    minimiser of :math:`\|Ax - y\|_R^2` (the ``R``-weighted least-squares solution) nearest to
    :math:`x_0` in the :math:`C^{-1}` norm; with ``nonneg``, each iterate is clipped at 0.

    Parameters
    ----------
    y : torch.Tensor
        Measurements ``(*batch, *op.range_shape)``.
    op : LinearOperator
        A forward operator with non-negative entries (a ray transform).
    n_iter : int
        Number of iterations.
    x0 : torch.Tensor, optional
        Initial guess; zeros by default.
    nonneg : bool
        Project onto ``x ≥ 0`` after each step.
    callback : callable, optional
        ``callback(k, x)`` after iteration ``k``.

    Returns
    -------
    torch.Tensor
        ``(*batch, *op.domain_shape)``.

    Raises
    ------
    ValueError
        For misshapen or non-finite ``y`` or ``x0``, or a negative ``n_iter``.

    Example
    -------
    >>> import operators
    >>> op = operators.RayTransform(operators.Parallel2D((32, 32), n_angles=30), backend="astra")
    >>> sirt(op(torch.ones(32, 32)), op, n_iter=10).shape
    torch.Size([32, 32])
    """
    n_iter = _check_n_iter(n_iter)
    batch_shape = check_measurements(y, op)
    x = _initial_guess(x0, y, batch_shape, tuple(op.domain_shape))
    kw = {"dtype": y.dtype, "device": y.device}
    ones_x = torch.ones(tuple(op.domain_shape), **kw)
    ones_y = torch.ones(tuple(op.range_shape), **kw)
    row_weight = _safe_div(torch.ones_like(ones_y), op(ones_x))  # R = 1 / (A 1)
    col_weight = _safe_div(torch.ones_like(ones_x), op.T(ones_y))  # C = 1 / (Aᵀ 1)
    for k in range(n_iter):
        x = x + col_weight * op.T(row_weight * (y - op(x)))
        if nonneg:
            x = x.clamp_min(0)
        if callback is not None:
            callback(k, x)
    return x.clone() if n_iter == 0 else x


def cgls(
    y: torch.Tensor,
    op: _LinearOperatorLike,
    *,
    n_iter: int = 20,
    x0: torch.Tensor | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    r"""Conjugate gradient on the normal equations (CGLS) for :math:`\min_x \|A x - y\|_2^2`.

    This is the conjugate gradient method applied to :math:`A^T A x = A^T y` without forming
    :math:`A^T A` (Björck 1996, Alg. 7.4.1). Starting from :math:`x_0`, with
    :math:`r_0 = y - A x_0`, :math:`s_0 = p_0 = A^T r_0`, :math:`\gamma_0 = \|s_0\|^2`, each
    iteration does

    .. math::

        q_k = A p_k,\quad \alpha_k = \gamma_k / \|q_k\|^2,\quad
        x_{k+1} = x_k + \alpha_k p_k,\quad r_{k+1} = r_k - \alpha_k q_k,

        s_{k+1} = A^T r_{k+1},\quad \gamma_{k+1} = \|s_{k+1}\|^2,\quad
        p_{k+1} = s_{k+1} + (\gamma_{k+1} / \gamma_k)\, p_k.

    One iteration costs one forward and one adjoint application. Each batch element is its own
    problem with its own step sizes: inner products run over the trailing ``op.range_shape`` or
    ``op.domain_shape`` dimensions only. A step whose denominator is zero (the residual of that
    element is already zero or orthogonal to the range) is taken as zero, so a converged element
    stays put instead of turning into NaN. Early stopping acts as regularisation; ``n_iter`` is
    the regularisation parameter.

    Parameters
    ----------
    y : torch.Tensor
        Measurements of shape ``(*batch, *op.range_shape)``, floating point and finite.
    op : LinearOperator
        Linear operator with ``op(x)``, adjoint ``op.T(y)``, ``op.domain_shape`` and
        ``op.range_shape``.
    n_iter : int, optional
        Number of iterations (default 20); 0 returns a copy of the initial guess.
    x0 : torch.Tensor, optional
        Initial guess of shape ``(*batch, *op.domain_shape)``; zeros by default.
    callback : callable, optional
        Called as ``callback(k, x)`` after iteration ``k = 0, ..., n_iter - 1`` with the current
        iterate ``x``.

    Returns
    -------
    torch.Tensor
        The iterate after ``n_iter`` iterations, of shape ``(*batch, *op.domain_shape)`` and with
        the dtype and device of ``y``.

    Raises
    ------
    ValueError
        If ``y`` does not end in ``op.range_shape``, is not floating point or holds NaN or
        infinite values; if ``x0`` has the wrong shape; if ``n_iter`` is not a non-negative int.

    Examples
    --------
    >>> import operators
    >>> from data_tools.phantoms import shepp_logan
    >>> op = operators.RayTransform(
    ...     operators.Parallel2D(image_shape=(128, 128), n_angles=60, n_detectors=183),
    ...     backend="auto",
    ... )
    >>> x_true = shepp_logan((128, 128))
    >>> x = cgls(op(x_true), op, n_iter=20)
    >>> x.shape
    torch.Size([128, 128])
    """
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 0:
        raise ValueError(f"n_iter must be a non-negative int, got {n_iter!r}")
    batch_shape = check_measurements(y, op)
    domain_shape = tuple(op.domain_shape)
    n_domain, n_range = len(domain_shape), len(tuple(op.range_shape))

    if x0 is None:
        x = torch.zeros((*batch_shape, *domain_shape), dtype=y.dtype, device=y.device)
        r = y
    else:
        if not isinstance(x0, torch.Tensor) or tuple(x0.shape) != (*batch_shape, *domain_shape):
            got = tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__
            raise ValueError(
                f"x0 must have shape (*batch, *op.domain_shape) = {(*batch_shape, *domain_shape)}, "
                f"got {got}"
            )
        x = x0.to(dtype=y.dtype, device=y.device)
        r = y - op(x)
    s = op.T(r)
    p = s
    gamma = _sq_norm(s, n_domain)

    for k in range(n_iter):
        q = op(p)
        alpha = _safe_div(gamma, _sq_norm(q, n_range))  # one step size per batch element
        x = x + _expand(alpha, n_domain) * p
        r = r - _expand(alpha, n_range) * q
        s = op.T(r)
        gamma_next = _sq_norm(s, n_domain)
        beta = _safe_div(gamma_next, gamma)
        p = s + _expand(beta, n_domain) * p
        gamma = gamma_next
        if callback is not None:
            callback(k, x)
    return x.clone() if n_iter == 0 else x


# --------------------------------------------------------------------------- total variation
def _gradient(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Forward differences over the last ``ndim`` axes, stacked at dimension ``-ndim - 1``."""
    parts = []
    for axis in range(-ndim, 0):
        diff = torch.diff(x, dim=axis)
        pad = [0, 0] * (-axis - 1) + [0, 1]  # zero last difference: Neumann boundary
        parts.append(torch.nn.functional.pad(diff, pad))
    return torch.stack(parts, dim=-ndim - 1)


def _divergence(q: torch.Tensor, ndim: int) -> torch.Tensor:
    """``-∇ᵀ q`` for ``q`` of shape ``(*batch, ndim, *spatial)``."""
    out = None
    for i, axis in enumerate(range(-ndim, 0)):
        qi = q.select(-ndim - 1, i)
        n = qi.shape[axis]
        inner = qi.narrow(axis, 0, n - 1)  # the last entry does not enter ∇ᵀ (Neumann)
        pad = [0, 0] * (-axis - 1)
        # div[j] = q[j] - q[j-1] with q[-1] = q[n-1] = 0
        term = torch.nn.functional.pad(inner, [*pad, 0, 1]) - torch.nn.functional.pad(
            inner, [*pad, 1, 0]
        )
        out = term if out is None else out + term
    return out


def _check_spatial(x: torch.Tensor, ndim: int, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < ndim:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} needs a tensor with at least {ndim} dimensions, got {got}")


def gradient2d(x: torch.Tensor) -> torch.Tensor:
    r"""Image gradient by forward differences with Neumann boundary.

    .. math:: (\nabla x)_{0,i,j} = x_{i+1,j} - x_{i,j},\quad
              (\nabla x)_{1,i,j} = x_{i,j+1} - x_{i,j},

    with the last difference along each axis set to 0. :math:`\|\nabla\|^2 \le 8`.

    Parameters
    ----------
    x : torch.Tensor
        Images ``(*batch, H, W)``.

    Returns
    -------
    torch.Tensor
        ``(*batch, 2, H, W)``: the row (``i``) and column (``j``) differences.

    Example
    -------
    >>> gradient2d(torch.tensor([[0.0, 1.0], [2.0, 4.0]]))
    tensor([[[2., 3.],
             [0., 0.]],
    <BLANKLINE>
            [[1., 0.],
             [2., 0.]]])
    """
    _check_spatial(x, 2, "gradient2d")
    return _gradient(x, 2)


def divergence2d(q: torch.Tensor) -> torch.Tensor:
    r"""Divergence, the negative adjoint of :func:`gradient2d`: div = -∇ᵀ.

    .. math:: (\operatorname{div} q)_{i,j} = (q_{0,i,j} - q_{0,i-1,j})
              + (q_{1,i,j} - q_{1,i,j-1}),

    with :math:`q_{0,-1,j} = q_{0,H-1,j} = 0` (and likewise for columns), so that
    :math:`\langle \nabla x, q\rangle = -\langle x, \operatorname{div} q\rangle` for every ``q``.

    Parameters
    ----------
    q : torch.Tensor
        Vector fields ``(*batch, 2, H, W)``.

    Returns
    -------
    torch.Tensor
        ``(*batch, H, W)``.

    Example
    -------
    >>> divergence2d(gradient2d(torch.tensor([[0.0, 1.0], [2.0, 4.0]])))
    tensor([[ 3.,  2.],
            [ 0., -5.]])
    """
    _check_spatial(q, 3, "divergence2d")
    if q.shape[-3] != 2:
        raise ValueError(f"divergence2d needs q of shape (*batch, 2, H, W), got {tuple(q.shape)}")
    return _divergence(q, 2)


def gradient3d(x: torch.Tensor) -> torch.Tensor:
    r"""Volume gradient by forward differences with Neumann boundary, :math:`\|\nabla\|^2 \le 12`.

    Parameters
    ----------
    x : torch.Tensor
        Volumes ``(*batch, D, H, W)``.

    Returns
    -------
    torch.Tensor
        ``(*batch, 3, D, H, W)``: differences along ``D``, ``H`` and ``W``.

    Example
    -------
    >>> gradient3d(torch.zeros(2, 4, 5, 6)).shape
    torch.Size([2, 3, 4, 5, 6])
    """
    _check_spatial(x, 3, "gradient3d")
    return _gradient(x, 3)


def divergence3d(q: torch.Tensor) -> torch.Tensor:
    r"""Divergence in 3D, :math:`-\nabla^T` for :func:`gradient3d`.

    Parameters
    ----------
    q : torch.Tensor
        Vector fields ``(*batch, 3, D, H, W)``.

    Returns
    -------
    torch.Tensor
        ``(*batch, D, H, W)``.

    Example
    -------
    >>> divergence3d(torch.zeros(3, 4, 5, 6)).shape
    torch.Size([4, 5, 6])
    """
    _check_spatial(q, 4, "divergence3d")
    if q.shape[-4] != 3:
        raise ValueError(
            f"divergence3d needs q of shape (*batch, 3, D, H, W), got {tuple(q.shape)}"
        )
    return _divergence(q, 3)


def _tv_ndim(op: _LinearOperatorLike) -> int:
    ndim = len(tuple(op.domain_shape))
    if ndim not in (2, 3):
        raise ValueError(
            f"TV needs a 2D or 3D domain, but op.domain_shape is {tuple(op.domain_shape)}"
        )
    return ndim


def _pointwise_norm(q: torch.Tensor, ndim: int) -> torch.Tensor:
    """``|q|`` at each pixel, over the component dimension ``-ndim - 1``."""
    return torch.sqrt((q * q).sum(dim=-ndim - 1))


def tv_objective(
    x: torch.Tensor, y: torch.Tensor, op: _LinearOperatorLike, lam: float
) -> torch.Tensor:
    r"""The objective of :func:`tv_pdhg`, per batch element.

    .. math:: \tfrac12\|A x - y\|_2^2 + λ \sum_{\text{pixels}} |(\nabla x)_{\text{pixel}}|_2

    (isotropic TV, forward differences, Neumann boundary; the non-negativity constraint is not
    included: evaluate it at feasible ``x``).

    Parameters
    ----------
    x : torch.Tensor
        Images ``(*batch, *op.domain_shape)``.
    y : torch.Tensor
        Measurements ``(*batch, *op.range_shape)``.
    op : LinearOperator
        Forward operator with a 2D or 3D domain.
    lam : float
        Regularisation weight λ ≥ 0.

    Returns
    -------
    torch.Tensor
        Objective values of shape ``batch``.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> tv_objective(torch.eye(2), torch.zeros(2, 2), IdentityOperator((2, 2)), lam=1.0)
    tensor(4.4142)
    """
    lam = _check_positive("lam", lam, allow_zero=True)
    ndim = _tv_ndim(op)
    batch_shape = check_measurements(y, op)
    domain_shape = tuple(op.domain_shape)
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != (*batch_shape, *domain_shape):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(
            f"x must have shape (*batch, *op.domain_shape) = {(*batch_shape, *domain_shape)}, "
            f"got {got}"
        )
    data = 0.5 * _sq_norm(op(x) - y, len(tuple(op.range_shape)))
    tv = _pointwise_norm(_gradient(x, ndim), ndim).sum(dim=tuple(range(-ndim, 0)))
    return data + lam * tv


def tv_pdhg(
    y: torch.Tensor,
    op: _LinearOperatorLike,
    *,
    lam: float,
    n_iter: int,
    nonneg: bool = True,
    x0: torch.Tensor | None = None,
    tau: float | None = None,
    sigma: float | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
    return_objective: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Total-variation regularised least squares by the primal-dual hybrid gradient method.

    Solves

    .. math:: \min_x \tfrac12\|A x - y\|_2^2 + λ\,\mathrm{TV}(x) \;(+\, ι_{x \ge 0}),\qquad
              \mathrm{TV}(x) = \sum_{\text{pixels}} |(\nabla x)_{\text{pixel}}|_2,

    by Chambolle–Pock (2011, Alg. 1, θ = 1) with :math:`K = [A; \nabla]`, duals ``p`` (data) and
    ``q`` (gradient):

    .. math::

        p &\leftarrow \frac{p + σ (A\bar x - y)}{1 + σ}
            \quad(\text{prox of } σ F_1^*,\ F_1 = \tfrac12\|\cdot - y\|^2)\\
        q &\leftarrow \frac{q + σ\nabla\bar x}{\max(1, |q + σ\nabla\bar x| / λ)}
            \quad(\text{projection onto the } λ\text{-ball, pixelwise})\\
        x^+ &\leftarrow \max\big(0,\ x - τ (A^T p - \operatorname{div} q)\big),\qquad
        \bar x \leftarrow 2x^+ - x,\quad x \leftarrow x^+.

    Steps: :math:`\|K\| \le \sqrt{\|A\|^2 + 8}` in 2D (``+ 12`` in 3D), and by default
    :math:`τ = σ = 0.99/\|K\|`; given steps must satisfy :math:`τσ\|K\|^2 \le 1`. Every batch
    element is an independent problem, but the operator is applied to the whole batch at once.

    Parameters
    ----------
    y : torch.Tensor
        Measurements ``(*batch, *op.range_shape)``.
    op : LinearOperator
        Forward operator with a 2D or 3D domain (and a ``norm()`` unless both steps are given).
    lam : float
        Regularisation weight λ ≥ 0 (0 gives (non-negative) least squares).
    n_iter : int
        Number of iterations.
    nonneg : bool
        Constrain ``x ≥ 0`` (default).
    x0 : torch.Tensor, optional
        Initial primal iterate; zeros by default. The duals start at zero.
    tau, sigma : float, optional
        Primal and dual step sizes. By default, block-diagonal steps: ``σ_A = 1/‖A‖`` for the data
        dual, ``σ_∇ = 1/‖∇‖`` for the TV dual and ``τ = 0.99/(‖A‖ + ‖∇‖)``. Given both, one scalar
        ``σ`` serves both duals (as in ODL's ``pdhg``) and ``τσ‖K‖² ≤ 1`` is checked; given one,
        the other is ``0.99² / (‖K‖² · given)``.
    callback : callable, optional
        ``callback(k, x)`` after iteration ``k``.
    return_objective : bool
        Also return :func:`tv_objective` after every iteration (one more operator call each).

    Returns
    -------
    torch.Tensor or (torch.Tensor, torch.Tensor)
        ``x`` of shape ``(*batch, *op.domain_shape)``, and with ``return_objective`` the objective
        values of shape ``(n_iter, *batch)``.

    Raises
    ------
    ValueError
        For misshapen or non-finite ``y`` or ``x0``, negative ``lam`` or ``n_iter``, non-positive
        steps or steps with :math:`τσ\|K\|^2 > 1`, or a domain that is not 2D or 3D.

    Example
    -------
    >>> import operators
    >>> from data_tools.phantoms import shepp_logan
    >>> op = operators.RayTransform(operators.Parallel2D((32, 32), n_angles=20), backend="astra")
    >>> x, objective = tv_pdhg(op(shepp_logan(32)), op, lam=0.1, n_iter=50,
    ...                        return_objective=True)
    >>> x.shape, objective.shape
    (torch.Size([32, 32]), torch.Size([50]))
    """
    lam = _check_positive("lam", lam, allow_zero=True)
    n_iter = _check_n_iter(n_iter)
    ndim = _tv_ndim(op)
    batch_shape = check_measurements(y, op)
    domain_shape = tuple(op.domain_shape)
    x = _initial_guess(x0, y, batch_shape, domain_shape)

    grad_norm = math.sqrt(4 * ndim)  # ‖∇‖ ≤ √(4·ndim) for forward differences
    if tau is None and sigma is None:
        # Block-diagonal dual steps (Pock & Chambolle 2011): σ_A = 1/‖A‖ for the data block,
        # σ_∇ = 1/‖∇‖ for the TV block, τ = 0.99/(‖A‖ + ‖∇‖), so that
        # τ (σ_A ‖A‖² + σ_∇ ‖∇‖²) = 0.99 < 1. A ray transform's norm (≈ 60 at 128², 30 angles)
        # dwarfs ‖∇‖ ≈ 2.8; one scalar σ would leave the TV dual nearly frozen.
        a_norm = _operator_norm(op)
        sigma_data, sigma_tv = 1.0 / a_norm, 1.0 / grad_norm
        tau = 0.99 / (a_norm + grad_norm)
    elif tau is None or sigma is None:
        k_norm = math.sqrt(_operator_norm(op) ** 2 + grad_norm**2)
        if tau is None:
            sigma = _check_positive("sigma", sigma)
            tau = 0.99**2 / (k_norm**2 * sigma)
        else:
            tau = _check_positive("tau", tau)
            sigma = 0.99**2 / (k_norm**2 * tau)
        sigma_data = sigma_tv = sigma
    else:
        tau, sigma = _check_positive("tau", tau), _check_positive("sigma", sigma)
        norm = getattr(op, "norm", None)
        if callable(norm):
            k_norm = math.sqrt(float(norm()) ** 2 + grad_norm**2)
            if tau * sigma * k_norm**2 > 1.0:
                raise ValueError(
                    f"tau * sigma * ||K||^2 = {tau * sigma * k_norm**2:.4g} > 1 "
                    f"(||K|| ≈ {k_norm:.4g}): PDHG may diverge; use smaller steps"
                )
        sigma_data = sigma_tv = sigma
    x_bar = x
    p = torch.zeros_like(y)
    q = torch.zeros((*batch_shape, ndim, *domain_shape), dtype=y.dtype, device=y.device)
    objectives = []
    for k in range(n_iter):
        # dual ascent, then the proximal maps of F* (data term and λ-ball)
        p = (p + sigma_data * (op(x_bar) - y)) / (1 + sigma_data)
        if lam > 0:
            q = q + sigma_tv * _gradient(x_bar, ndim)
            q = q / (_pointwise_norm(q, ndim) / lam).clamp_min(1.0).unsqueeze(-ndim - 1)
        # primal descent and the prox of G (projection onto x >= 0)
        x_new = x - tau * (op.T(p) - _divergence(q, ndim))
        if nonneg:
            x_new = x_new.clamp_min(0)
        x_bar = 2 * x_new - x  # over-relaxation, θ = 1
        x = x_new
        if callback is not None:
            callback(k, x)
        if return_objective:
            objectives.append(tv_objective(x, y, op, lam=lam))
    x = x.clone() if n_iter == 0 else x
    if return_objective:
        empty = torch.zeros((0, *batch_shape), dtype=y.dtype, device=y.device)
        return x, torch.stack(objectives) if objectives else empty
    return x


# --------------------------------------------------------------------------- Reconstructors
class FBP(Reconstructor):
    """:func:`fbp` as a reconstructor: ``FBP(filter="hann")(y, op)``.

    Example
    -------
    >>> FBP(filter="hann", frequency_scaling=0.8)
    FBP(filter='hann', frequency_scaling=0.8, padding=True)
    """

    def __init__(
        self,
        *,
        filter: str = "ram-lak",
        frequency_scaling: float = 1.0,
        padding: bool = True,
    ) -> None:
        super().__init__()
        self.filter, self.frequency_scaling = _check_filter(filter, frequency_scaling)
        self.padding = bool(padding)

    def forward(self, y: torch.Tensor, op: _LinearOperatorLike) -> torch.Tensor:
        check_measurements(y, op)
        return fbp(
            y,
            op,
            filter=self.filter,
            frequency_scaling=self.frequency_scaling,
            padding=self.padding,
        )

    def extra_repr(self) -> str:
        return (
            f"filter={self.filter!r}, frequency_scaling={self.frequency_scaling}, "
            f"padding={self.padding}"
        )


class FDK(FBP):
    """:func:`fdk` as a reconstructor: ``FDK()(y, op)`` for cone-beam operators.

    Example
    -------
    >>> FDK(filter="shepp-logan")
    FDK(filter='shepp-logan', frequency_scaling=1.0, padding=True)
    """

    def forward(self, y: torch.Tensor, op: _LinearOperatorLike) -> torch.Tensor:
        check_measurements(y, op)
        return fdk(
            y,
            op,
            filter=self.filter,
            frequency_scaling=self.frequency_scaling,
            padding=self.padding,
        )


class Landweber(Reconstructor):
    """:func:`landweber` as a reconstructor.

    Example
    -------
    >>> Landweber(n_iter=50, nonneg=True)
    Landweber(n_iter=50, step=None, nonneg=True)
    """

    def __init__(self, *, n_iter: int = 100, step: float | None = None, nonneg: bool = False):
        super().__init__()
        self.n_iter = _check_n_iter(n_iter)
        self.step = None if step is None else _check_positive("step", step)
        self.nonneg = bool(nonneg)

    def forward(self, y: torch.Tensor, op: _LinearOperatorLike) -> torch.Tensor:
        check_measurements(y, op)
        return landweber(y, op, n_iter=self.n_iter, step=self.step, nonneg=self.nonneg)

    def extra_repr(self) -> str:
        return f"n_iter={self.n_iter}, step={self.step}, nonneg={self.nonneg}"


class SIRT(Reconstructor):
    """:func:`sirt` as a reconstructor.

    Example
    -------
    >>> SIRT(n_iter=200)
    SIRT(n_iter=200, nonneg=False)
    """

    def __init__(self, *, n_iter: int = 100, nonneg: bool = False) -> None:
        super().__init__()
        self.n_iter = _check_n_iter(n_iter)
        self.nonneg = bool(nonneg)

    def forward(self, y: torch.Tensor, op: _LinearOperatorLike) -> torch.Tensor:
        check_measurements(y, op)
        return sirt(y, op, n_iter=self.n_iter, nonneg=self.nonneg)

    def extra_repr(self) -> str:
        return f"n_iter={self.n_iter}, nonneg={self.nonneg}"


class CGLS(Reconstructor):
    """:func:`cgls` as a reconstructor.

    Example
    -------
    >>> CGLS(n_iter=10)
    CGLS(n_iter=10)
    """

    def __init__(self, *, n_iter: int = 20) -> None:
        super().__init__()
        self.n_iter = _check_n_iter(n_iter)

    def forward(self, y: torch.Tensor, op: _LinearOperatorLike) -> torch.Tensor:
        check_measurements(y, op)
        return cgls(y, op, n_iter=self.n_iter)

    def extra_repr(self) -> str:
        return f"n_iter={self.n_iter}"


class TV(Reconstructor):
    """:func:`tv_pdhg` as a reconstructor; ``lam`` has no default (it depends on the data scale).

    Example
    -------
    >>> TV(lam=0.05, n_iter=200)
    TV(lam=0.05, n_iter=200, nonneg=True)
    """

    def __init__(self, *, lam: float, n_iter: int = 300, nonneg: bool = True) -> None:
        super().__init__()
        self.lam = _check_positive("lam", lam, allow_zero=True)
        self.n_iter = _check_n_iter(n_iter)
        self.nonneg = bool(nonneg)

    def forward(self, y: torch.Tensor, op: _LinearOperatorLike) -> torch.Tensor:
        check_measurements(y, op)
        return tv_pdhg(y, op, lam=self.lam, n_iter=self.n_iter, nonneg=self.nonneg)

    def extra_repr(self) -> str:
        return f"lam={self.lam}, n_iter={self.n_iter}, nonneg={self.nonneg}"
