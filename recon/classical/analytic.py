r"""Analytic reconstruction: filtered backprojection (:func:`fbp`, 2D parallel and fan beam) and
FDK (:func:`fdk`, circular cone beam), written in torch (CPU and GPU, batched, differentiable in
``y``). They read ``op.geometry`` and use the operator only for its geometry: the backprojection
is their own, with the weights the inversion formula needs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from operators import OperatorLike
from operators.base import as_torch
from operators.ct.geometry import ConeBeam3D, FanBeam2D, Parallel2D
from recon.base import check_measurements
from recon.classical.coverage import (
    AngularCoverageWarning,
    angular_coverage,
    coverage_problem,
    parker_weights,
)

__all__ = [
    "FILTERS",
    "AngularCoverageWarning",
    "check_filter",
    "check_short_scan",
    "fbp",
    "fdk",
]

#: Filter names accepted by :func:`fbp` and :func:`fdk`.
FILTERS: tuple[str, ...] = ("ram-lak", "shepp-logan", "cosine", "hann")

#: Elements gathered at once by the backprojections (bounds their temporary memory).
_GATHER_ELEMENTS = 1 << 22


def check_filter(filter: str, frequency_scaling: float) -> tuple[str, float]:
    """Validated (normalised filter name, frequency scaling).

    Example
    -------
    >>> check_filter("Shepp_Logan", 1)
    ('shepp-logan', 1.0)
    """
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


def check_short_scan(short_scan: bool | None) -> bool | None:
    """The validated ``short_scan`` option of :func:`fbp` and :func:`fdk`: None, True or False.

    Example
    -------
    >>> check_short_scan(None) is None
    True
    """
    if short_scan is None or isinstance(short_scan, (bool, np.bool_)):
        return None if short_scan is None else bool(short_scan)
    raise ValueError(
        f"short_scan must be None (detect short scans), True or False, got {short_scan!r}"
    )


def _warn_coverage(problem: str | None, what: str) -> None:
    if problem is not None:
        warnings.warn(
            f"{what}: {problem}. Filtered backprojection cannot weight such a scan, and its "
            "image will have streaks and missing-wedge artefacts. An iterative method copes "
            "with any angles: SIRT, CGLS or TV (recon.classical.SIRT, CGLS, TV).",
            AngularCoverageWarning,
            stacklevel=4,
        )


def _scan_weights(
    geometry, short_scan: bool | None, fan_angles: np.ndarray | None, what: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Quadrature weights per angle and, for a fan-beam short scan, Parker weights per ray.

    Warns (:class:`AngularCoverageWarning`) on any coverage FBP cannot weight. Parallel beam:
    the midpoint rule modulo π. Fan/cone beam (``fan_angles`` = the signed fan angle of each
    detector column): a full turn gets half the midpoint weights modulo 2π (each line is measured
    twice); one arc of at least π (``short_scan=None``) or any scan (``short_scan=True``) gets the
    full midpoint weights times :func:`parker_weights`; ``short_scan=False`` keeps the full-turn
    weights. Arcs shorter than π (limited angle) get the full weights and no Parker weights.
    """
    angles = geometry.angles_array
    if fan_angles is None:
        if short_scan:
            raise ValueError(
                "short_scan=True asks for Parker weights, which only fan and cone beams need: "
                "a parallel-beam scan over 180° is complete; leave short_scan=None"
            )
        _warn_coverage(coverage_problem(angular_coverage(angles, period=math.pi)), what)
        return _angle_weights(angles, math.pi), None
    radius = math.hypot(*geometry.domain_shape[-2:]) * _cell_size(geometry) / 2
    fan_angle = 2 * math.asin(min(1.0, radius / geometry.source_distance))
    coverage = angular_coverage(angles, period=2 * math.pi)
    _warn_coverage(coverage_problem(coverage, fan_angle=fan_angle), what)
    weights = _angle_weights(angles, 2 * math.pi)
    if short_scan is False or (short_scan is None and coverage.full):
        return weights / 2, None
    if coverage.span + 1.01 * coverage.step < math.pi:
        if short_scan:
            raise ValueError(
                f"short_scan=True needs a scan of at least 180° (plus the fan angle, "
                f"{math.degrees(fan_angle):.1f}°); these angles cover "
                f"{math.degrees(coverage.span):.1f}°: use short_scan=None"
            )
        return weights, None  # limited angle: each line is measured about once
    parker = parker_weights(angles, fan_angles, start=coverage.start, span=coverage.span)
    return weights, parker


def _cell_size(geometry) -> float:
    return geometry.pixel_size if hasattr(geometry, "pixel_size") else geometry.voxel_size


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
    op: OperatorLike,
    *,
    filter: str = "ram-lak",
    frequency_scaling: float = 1.0,
    padding: bool = True,
    short_scan: bool | None = None,
) -> torch.Tensor | np.ndarray:
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

    where ``L`` is the distance from the source to the pixel along the central ray.

    **Short scans** (fan beam). The integral above needs a full turn. One contiguous arc of at
    least 180° plus the fan angle is enough if each ray is weighted with Parker's weights
    :math:`w(θ, γ)` (:func:`~recon.classical.coverage.parker_weights`) instead of ½, so that
    the two measurements of every line add up to one, as ASTRA's ``ShortScan`` option.
    ``short_scan=None`` (the default) applies them whenever the angles are one arc shorter than
    a full turn; ``True`` always (an overscan up to a full turn is fine), ``False`` never.

    **Coverage FBP cannot weight** raises an
    :class:`AngularCoverageWarning` that names iterative alternatives (SIRT, CGLS, TV): gaps
    wider than ``max(4 × the median angle step, 5°)`` (for example 60–90° missing), a parallel
    scan covering less than 180°, a fan-beam arc shorter than 180° + the fan angle. The image is
    still computed (limited-angle arcs are not stretched to fill the missing wedge).

    A ``detector_offset`` ``o`` of the geometry (element ``k`` at ``(k − (n−1)/2)·Δu + o``) is
    honoured in both geometries; a fan-beam ``rotation_offset`` is not (it raises).

    The backprojection is pixel-driven: every pixel's detector coordinate is computed per angle and
    the filtered projection is interpolated linearly there (zero outside the detector), in chunks
    of angles. Everything is torch code, so it runs on the device of ``y``, in its dtype, over any
    leading batch dimensions, and is differentiable in ``y``.

    Parameters
    ----------
    y : torch.Tensor or array-like
        Sinograms of shape ``(*batch, n_angles, n_detectors)``. A numpy array (or a nested list)
        is computed on the CPU in its own floating dtype (float32 for integers).
    op : RayTransform
        An operator whose ``geometry`` is a ``Parallel2D`` or ``FanBeam2D``.
    filter : {"ram-lak", "shepp-logan", "cosine", "hann"}
        Window applied to the ramp (ODL's definitions).
    frequency_scaling : float
        In (0, 1]: the filter is cut off at this fraction of the Nyquist frequency (and the window
        is stretched to end there), as in ODL's ``fbp_op``.
    padding : bool
        Zero-pad before the FFT (default). Without it the convolution wraps around the detector.
    short_scan : bool or None
        Parker weights for fan-beam short scans: ``None`` detects them, ``True`` forces them,
        ``False`` turns them off. Parallel beam needs none (``True`` raises).

    Returns
    -------
    torch.Tensor or numpy.ndarray
        Images of shape ``(*batch, H, W)``: a tensor for a tensor ``y``, a numpy array for a
        numpy array or array-like ``y``.

    Raises
    ------
    ValueError
        If ``op`` has no 2D parallel or fan-beam geometry, ``y`` is misshapen or not finite, the
        filter options are invalid, or ``short_scan=True`` cannot apply (parallel beam, or a
        fan-beam scan shorter than 180°).

    Example
    -------
    >>> import operators
    >>> from data_tools.phantoms import shepp_logan
    >>> op = operators.RayTransform(operators.Parallel2D((64, 64), n_angles=90), backend="astra")
    >>> x = fbp(op(shepp_logan((64, 64))), op, filter="hann")
    >>> x.shape
    torch.Size([64, 64])

    A fan-beam short scan (180° + the fan angle) gets Parker weights by itself; numpy in, numpy
    out:

    >>> import numpy as np
    >>> g = operators.FanBeam2D(64, n_angles=120, source_distance=150.0, angles=np.deg2rad(
    ...     np.arange(0, 240, 2.0)))
    >>> fan = operators.RayTransform(g, backend="astra")
    >>> x = fbp(fan(shepp_logan((64, 64))).numpy(), fan)
    >>> type(x).__name__, x.shape
    ('ndarray', (64, 64))
    """
    geometry = getattr(op, "geometry", None)
    if not isinstance(geometry, (Parallel2D, FanBeam2D)):
        hint = " (use fdk for ConeBeam3D)" if isinstance(geometry, ConeBeam3D) else ""
        raise ValueError(
            "fbp needs an operator with a Parallel2D or FanBeam2D geometry (a RayTransform), "
            f"got {type(op).__name__} with geometry {type(geometry).__name__}{hint}"
        )
    name, scaling = check_filter(filter, frequency_scaling)
    short_scan = check_short_scan(short_scan)
    y, was_array = as_torch(y)
    batch_shape = check_measurements(y, op)
    n_angles, n_det = geometry.range_shape
    H, W = geometry.image_shape
    dtype, device = y.dtype, y.device
    ds, ps = geometry.detector_spacing, geometry.pixel_size
    sino = y.reshape(-1, n_angles, n_det)
    angles = geometry.angles_array
    fan = isinstance(geometry, FanBeam2D)
    offset = float(getattr(geometry, "detector_offset", 0.0))  # element k sees (k-(n-1)/2)·ds + o

    if fan:
        if float(getattr(geometry, "rotation_offset", 0.0)) != 0.0:
            raise ValueError(
                "fbp does not support a fan-beam rotation_offset (the central ray missing the "
                "rotation axis); use an iterative method (SIRT, CGLS or TV in recon.classical), "
                "or express the shift as a detector_offset if the source is centred"
            )
        R, D = geometry.source_distance, geometry.detector_distance
        iso = R / (R + D)  # detector → isocentre scaling
        s = _centred(n_det, ds * iso, dtype=torch.float64, device="cpu") + offset * iso
        weights, parker = _scan_weights(geometry, short_scan, torch.atan(s / R).numpy(), "fbp")
        s = s.to(dtype=dtype, device=device)
        sino = sino * (R / torch.sqrt(R * R + s * s))
        if parker is not None:
            sino = sino * torch.as_tensor(parker, dtype=dtype, device=device)
        filtered = _ramp_filter(sino, ds * iso, name, scaling, padding)
    else:
        weights, _ = _scan_weights(geometry, short_scan, None, "fbp")
        filtered = _ramp_filter(sino, ds, name, scaling, padding)

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
        index = (u - offset) / ds + (n_det - 1) / 2
        values = _interp_linear(filtered[:, start:stop], index)  # (B, c, P)
        image = image + (values * w).sum(dim=1)
    image = image.reshape(*batch_shape, H, W)
    return image.detach().cpu().numpy() if was_array else image


def fdk(
    y: torch.Tensor,
    op: OperatorLike,
    *,
    filter: str = "ram-lak",
    frequency_scaling: float = 1.0,
    padding: bool = True,
    short_scan: bool | None = None,
) -> torch.Tensor | np.ndarray:
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
    artefacts of FDK grow with the cone angle). Short scans (one arc of at least 180° plus the
    in-plane fan angle) get Parker weights in the in-plane fan angle, and coverage FBP cannot
    weight raises an :class:`AngularCoverageWarning`, both as in :func:`fbp`.

    Parameters
    ----------
    y : torch.Tensor or array-like
        Projections of shape ``(*batch, n_angles, det_rows, det_cols)`` (numpy as in :func:`fbp`).
    op : RayTransform
        An operator whose ``geometry`` is a ``ConeBeam3D``.
    filter, frequency_scaling, padding, short_scan
        As in :func:`fbp`.

    Returns
    -------
    torch.Tensor or numpy.ndarray
        Volumes of shape ``(*batch, D, H, W)``, of the type of ``y`` (numpy for array-likes).

    Raises
    ------
    ValueError
        If ``op`` has no ``ConeBeam3D`` geometry, ``y`` is misshapen or not finite, the filter
        options are invalid, or ``short_scan=True`` is given for a scan shorter than 180°.

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
    name, scaling = check_filter(filter, frequency_scaling)
    short_scan = check_short_scan(short_scan)
    y, was_array = as_torch(y)
    batch_shape = check_measurements(y, op)
    n_angles, n_rows, n_cols = geometry.range_shape
    D, H, W = geometry.volume_shape
    dtype, device = y.dtype, y.device
    ds_row, ds_col = geometry.detector_spacing
    vs = geometry.voxel_size
    R, Dd = geometry.source_distance, geometry.detector_distance
    iso = R / (R + Dd)
    proj = y.reshape(-1, n_angles, n_rows, n_cols)

    a = _centred(n_cols, ds_col * iso, dtype=torch.float64, device="cpu")
    weights, parker = _scan_weights(geometry, short_scan, torch.atan(a / R).numpy(), "fdk")
    a = a.to(dtype=dtype, device=device)
    b = _centred(n_rows, ds_row * iso, dtype=dtype, device=device)
    proj = proj * (R / torch.sqrt(R * R + a[None, :] ** 2 + b[:, None] ** 2))
    if parker is not None:
        proj = proj * torch.as_tensor(parker, dtype=dtype, device=device)[:, None, :]
    filtered = _ramp_filter(proj, ds_col * iso, name, scaling, padding)

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
    volume = volume.reshape(*batch_shape, D, H, W)
    return volume.detach().cpu().numpy() if was_array else volume
