"""Analytic phantoms rasterised on the square [-1, 1]².

Image convention (shared by every phantom here): an image of shape ``(H, W)`` samples the square
``[-1, 1]²`` at pixel centres, row 0 is the top (``y = +1``) and column 0 the left (``x = -1``)::

    x_j = (2 j + 1 - W) / W,        y_i = (H - 1 - 2 i) / H.

Pixels are sampled at their centres (no supersampling), so an ellipse edge is exact to within one
pixel.

Random phantoms:

- :func:`random_ellipses` draws dival's "ellipses" distribution. Its parameters
  (:func:`random_ellipse_params`) live on the square [-1, 1]², so the same ellipses can be
  rendered at any resolution with :func:`render_random_ellipses` (what
  :func:`data_tools.simulate.simulate` needs to avoid the inverse crime). With
  ``**FEW_ELLIPSES`` it draws a handful of ellipses per image instead of about 40, and with
  ``**SMOOTH_ELLIPSES`` the same handful as smooth bumps instead of constant-valued ellipses.
- :func:`vessels` and :func:`balls` are photoacoustic phantoms drawn in pixel units. Row 0 is
  the sensor row and is kept at zero over a margin of a few pixels.

Every random phantom takes either a ``torch.Generator`` or an integer ``seed`` (not both); with
neither it uses torch's global generator. The same generator state gives the same images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

__all__ = [
    "FEW_ELLIPSES",
    "PROFILES",
    "SMOOTH_ELLIPSES",
    "SHEPP_LOGAN_ELLIPSES",
    "balls",
    "ellipses_image",
    "random_ellipse_params",
    "random_ellipses",
    "render_random_ellipses",
    "shepp_logan",
    "vessels",
]

# The ten ellipses of Shepp & Logan (1974) as tabulated by Kak & Slaney (1988, Table 3.1) and Toft
# (1996, Table B.2). Columns: value in the original phantom, value in Toft's modified phantom,
# semi-axis a (along the ellipse's own x axis), semi-axis b, centre x0, centre y0, angle phi in
# degrees (counter-clockwise from the x axis to the a axis).
SHEPP_LOGAN_ELLIPSES: tuple[tuple[float, float, float, float, float, float, float], ...] = (
    # orig    mod      a       b       x0      y0      phi
    (2.00, 1.0, 0.6900, 0.9200, 0.00, 0.0000, 0.0),  # skull
    (-0.98, -0.8, 0.6624, 0.8740, 0.00, -0.0184, 0.0),  # brain
    (-0.02, -0.2, 0.1100, 0.3100, 0.22, 0.0000, -18.0),  # right ventricle (x > 0)
    (-0.02, -0.2, 0.1600, 0.4100, -0.22, 0.0000, 18.0),  # left ventricle (x < 0)
    (0.01, 0.1, 0.2100, 0.2500, 0.00, 0.3500, 0.0),
    (0.01, 0.1, 0.0460, 0.0460, 0.00, 0.1000, 0.0),
    (0.01, 0.1, 0.0460, 0.0460, 0.00, -0.1000, 0.0),
    (0.01, 0.1, 0.0460, 0.0230, -0.08, -0.6050, 0.0),
    (0.01, 0.1, 0.0230, 0.0230, 0.00, -0.6060, 0.0),
    (0.01, 0.1, 0.0230, 0.0460, 0.06, -0.6050, 0.0),
)


def _check_shape(shape: int | Sequence[int]) -> tuple[int, int]:
    """Return ``shape`` as ``(H, W)``, raising ``ValueError`` unless it holds positive integers."""
    if isinstance(shape, bool):
        raise ValueError(f"shape must be an int or a pair of ints, got {shape!r}")
    if isinstance(shape, int):
        shape = (shape, shape)
    try:
        dims = tuple(shape)
    except TypeError:
        raise ValueError(f"shape must be an int or a pair of ints, got {shape!r}") from None
    if len(dims) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) for n in dims):
        raise ValueError(f"shape must be an int or a pair of ints, got {shape!r}")
    if min(dims) <= 0:
        raise ValueError(f"shape must be positive, got {dims}")
    return dims[0], dims[1]


def _pixel_grid(
    shape: tuple[int, int], *, dtype: torch.dtype, device: torch.device | str | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates ``(x, y)`` of shape ``(1, W)`` and ``(H, 1)``.

    Computed as an exact integer divided by the size, so the grid is exactly symmetric about both
    axes.
    """
    height, width = shape
    x = (2 * torch.arange(width, dtype=dtype, device=device) + 1 - width) / width
    y = (height - 1 - 2 * torch.arange(height, dtype=dtype, device=device)) / height
    return x[None, :], y[:, None]


def _ellipse_pixel_boxes(tables: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel index ranges ``(row0, row1, col0, col1)`` covering each ellipse, shape ``(B, n, 4)``.

    The half-widths of the axis-aligned box around an ellipse rotated by ``phi`` are
    ``sqrt(a² cos² + b² sin²)`` in x and ``sqrt(a² sin² + b² cos²)`` in y; the range is widened by
    one pixel each side so that rounding never drops a pixel centre. Ellipses of value 0 get an
    empty range.
    """
    value, a, b, x0, y0, phi = tables.unbind(-1)
    phi = phi * (math.pi / 180.0)
    cos2, sin2 = torch.cos(phi) ** 2, torch.sin(phi) ** 2
    half_x = torch.sqrt(a**2 * cos2 + b**2 * sin2)
    half_y = torch.sqrt(a**2 * sin2 + b**2 * cos2)
    # Column j has centre x = (2j + 1 - W)/W, row i has centre y = (H - 1 - 2i)/H.
    col0 = torch.floor(((x0 - half_x) * width + width - 1) / 2) - 1
    col1 = torch.ceil(((x0 + half_x) * width + width - 1) / 2) + 2
    row0 = torch.floor((height - 1 - (y0 + half_y) * height) / 2) - 1
    row1 = torch.ceil((height - 1 - (y0 - half_y) * height) / 2) + 2
    boxes = torch.stack(
        (row0.clamp(0, height), row1.clamp(0, height), col0.clamp(0, width), col1.clamp(0, width)),
        dim=-1,
    ).to(torch.int64)
    return torch.where((value == 0)[..., None], torch.zeros_like(boxes), boxes)


#: Intensity profiles of :func:`ellipses_image`: constant inside the ellipse (``"flat"``) or the
#: bump :math:`(1 - ρ^2)^2` (``"smooth"``).
PROFILES: tuple[str, ...] = ("flat", "smooth")


def _check_profile(profile: object) -> None:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")


def ellipses_image(
    ellipses: torch.Tensor | Sequence[Sequence[float]],
    shape: int | Sequence[int],
    *,
    profile: str = "flat",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""Rasterise a sum of ellipses on the square [-1, 1]².

    Each ellipse ``(value, a, b, x0, y0, phi)`` adds ``value · p(ρ²)`` to every pixel centre
    ``(x, y)`` with

    .. math::

        \frac{u^2}{a^2} + \frac{v^2}{b^2} \le 1, \qquad
        \begin{pmatrix} u \\ v \end{pmatrix} =
        \begin{pmatrix} \cos\varphi & \sin\varphi \\ -\sin\varphi & \cos\varphi \end{pmatrix}
        \begin{pmatrix} x - x_0 \\ y - y_0 \end{pmatrix},

    where ``phi`` is given in degrees, counter-clockwise from the x axis to the ``a`` axis, and
    :math:`ρ^2 = u^2/a^2 + v^2/b^2`. The ``profile`` ``p`` is ``1`` (``"flat"``: constant-valued
    ellipses, as in Shepp-Logan and dival) or :math:`(1 - ρ^2)^2` (``"smooth"``: a bump that
    peaks at ``value`` in the centre and falls to 0 with zero slope at the edge, so the image is
    continuously differentiable; see :data:`PROFILES`). Values add up where ellipses overlap and
    nothing is clipped. Row 0 of the image is ``y = +1`` (top),
    column 0 is ``x = -1`` (left); see the module docstring for the grid.

    Parameters
    ----------
    ellipses : torch.Tensor or sequence of sequences of float
        Ellipse parameters of shape ``(*batch, n, 6)``; leading batch dimensions give a batch of
        images. Semi-axes ``a`` and ``b`` must be positive.
    shape : int or (int, int)
        Image shape ``(H, W)``; an int ``N`` means ``(N, N)``.
    profile : {"flat", "smooth"}, optional
        Intensity profile of each ellipse (default ``"flat"``).
    dtype : torch.dtype, optional
        Floating dtype of the result. The geometry is evaluated in float64 whatever the dtype.
    device : torch.device or str, optional
        Device of the result; defaults to that of ``ellipses`` if it is a tensor, else the CPU.

    Returns
    -------
    torch.Tensor
        Image of shape ``(*batch, H, W)``.

    Raises
    ------
    ValueError
        If ``shape`` is not positive integers, ``ellipses`` does not end in a dimension of 6, or
        holds non-finite values or non-positive semi-axes, or ``profile`` is unknown.

    Examples
    --------
    >>> disc = ellipses_image([[1.0, 0.5, 0.5, 0.0, 0.0, 0.0]], 64)
    >>> disc.shape, float(disc.max())
    (torch.Size([64, 64]), 1.0)
    >>> bump = ellipses_image([[1.0, 0.5, 0.5, 0.0, 0.0, 0.0]], 64, profile="smooth")
    >>> bool(bump.max() < 1) and bool(bump.sum() < disc.sum())
    True
    """
    height, width = _check_shape(shape)
    _check_profile(profile)
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    if device is None and isinstance(ellipses, torch.Tensor):
        device = ellipses.device
    params = torch.as_tensor(ellipses, dtype=torch.float64, device=device)
    if params.ndim < 2 or params.shape[-1] != 6:
        raise ValueError(f"ellipses must have shape (*batch, n, 6), got {tuple(params.shape)}")
    if not torch.isfinite(params).all():
        raise ValueError("ellipses must be finite")
    if (params[..., 1:3] <= 0).any():
        raise ValueError("ellipse semi-axes a and b must be positive")

    x, y = _pixel_grid((height, width), dtype=torch.float64, device=params.device)
    batch_shape = params.shape[:-2]
    flat = params.reshape(-1, params.shape[-2], 6)
    image = torch.zeros((flat.shape[0], height, width), dtype=torch.float64, device=params.device)
    # Each ellipse is evaluated only on the pixels of its bounding box (padded by one pixel), and
    # ellipses of value 0 are skipped: the sums are the same as over the whole grid, in the same
    # order, but a table of 70 small ellipses renders 10-20x faster. The box bounds come from one
    # host copy of the table.
    boxes = _ellipse_pixel_boxes(flat, height, width).tolist()
    for n, (table, image_boxes) in enumerate(zip(flat, boxes, strict=True)):
        for k, (row0, row1, col0, col1) in enumerate(image_boxes):
            if row0 >= row1 or col0 >= col1:
                continue
            value, a, b, x0, y0, phi = table[k]
            phi = phi * (math.pi / 180.0)
            cos, sin = torch.cos(phi), torch.sin(phi)
            dx, dy = x[:, col0:col1] - x0, y[row0:row1] - y0
            u = dx * cos + dy * sin
            v = -dx * sin + dy * cos
            rho2 = (u / a) ** 2 + (v / b) ** 2
            if profile == "flat":
                image[n, row0:row1, col0:col1] += value * (rho2 <= 1.0)
            else:
                image[n, row0:row1, col0:col1] += value * (1.0 - rho2).clamp_min(0.0) ** 2
    image = image.reshape(*batch_shape, height, width)
    return image.to(dtype)


def shepp_logan(
    shape: int | Sequence[int],
    *,
    modified: bool = True,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""The Shepp–Logan head phantom, rasterised analytically on the square [-1, 1]².

    The image is the sum of the ten ellipses of :data:`SHEPP_LOGAN_ELLIPSES` (see
    :func:`ellipses_image` for the maths), clipped to be non-negative. With ``modified=True`` the
    values are Toft's higher-contrast ones (1, -0.8, -0.2, -0.2, 0.1, ...), so the skull is 1.0,
    the brain 0.2 and the ventricles 0.0; this is the phantom of
    ``skimage.data.shepp_logan_phantom`` and of the "adler" benchmark. With ``modified=False``
    the original values (2, -0.98, -0.02, -0.02, 0.01, ...) give a skull of 2.0 and a brain of
    1.02.

    Parameters
    ----------
    shape : int or (int, int)
        Image shape ``(H, W)``; an int ``N`` means ``(N, N)``. A non-square shape stretches the
        phantom, which always fills the square [-1, 1]².
    modified : bool, optional
        Toft's modified contrasts (default) or the original ones.
    dtype : torch.dtype, optional
        Floating dtype of the result (default float32).
    device : torch.device or str, optional
        Device of the result (default CPU).

    Returns
    -------
    torch.Tensor
        Image of shape ``(H, W)``, row 0 at the top (``y = +1``), column 0 at the left (``x = -1``).

    Raises
    ------
    ValueError
        If ``shape`` is not an int or a pair of positive ints.

    Examples
    --------
    >>> x = shepp_logan((128, 128))
    >>> x.shape, x.dtype, float(x.max())
    (torch.Size([128, 128]), torch.float32, 1.0)
    >>> round(float(x[64, 64]), 6)  # the brain, just below the centre
    0.2
    """
    height, width = _check_shape(shape)
    column = 1 if modified else 0
    table = [(row[column], *row[2:]) for row in SHEPP_LOGAN_ELLIPSES]
    image = ellipses_image(table, (height, width), dtype=torch.float64, device=device)
    return image.clamp_min(0.0).to(dtype)


# ---------------------------------------------------------------------------------------------
# Random phantoms: shared argument handling
# ---------------------------------------------------------------------------------------------


def _make_generator(generator: torch.Generator | None, seed: int | None) -> torch.Generator | None:
    """The generator to draw from: ``generator``, a new one seeded with ``seed``, or ``None``
    (torch's global generator)."""
    if generator is not None and seed is not None:
        raise ValueError("pass either generator or seed, not both")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        return torch.Generator().manual_seed(seed)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return generator


def _generator_device(generator: torch.Generator | None) -> torch.device:
    return torch.device("cpu") if generator is None else generator.device


def _check_count(n: int | None, name: str = "n") -> int:
    """``n`` as a positive int (``None`` means 1)."""
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be a positive int or None, got {n!r}")
    return n


def _check_range(
    name: str, value: Sequence[float], *, low: float = 0.0, strict: bool = False
) -> tuple[float, float]:
    """A ``(lo, hi)`` pair of finite numbers with ``low <= lo <= hi`` (``low < lo`` if strict)."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high) of numbers, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"{name} must be finite with low <= high, got {value!r}")
    if lo < low or (strict and lo == low):
        bound = ">" if strict else ">="
        raise ValueError(f"{name} must be {bound} {low}, got {value!r}")
    return lo, hi


def _check_int_range(name: str, value: Sequence[int], *, low: int) -> tuple[int, int]:
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high) of ints, got {value!r}") from None
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{name} must be a pair (low, high) of ints, got {value!r}")
    if lo < low or lo > hi:
        raise ValueError(f"{name} must satisfy {low} <= low <= high, got {value!r}")
    return lo, hi


def _uniform(
    lo: float, hi: float, size: int | tuple[int, ...], generator: torch.Generator | None
) -> torch.Tensor:
    """Float64 uniform samples on ``[lo, hi)`` on the generator's device."""
    size = (size,) if isinstance(size, int) else size
    u = torch.rand(
        size, generator=generator, dtype=torch.float64, device=_generator_device(generator)
    )
    return lo + (hi - lo) * u


def _zero_margin(images: torch.Tensor, margin: int) -> torch.Tensor:
    if margin > 0:
        images[..., :margin, :] = 0.0
    return images


# ---------------------------------------------------------------------------------------------
# Random ellipses (dival's "ellipses" data set)
# ---------------------------------------------------------------------------------------------


#: The "few ellipses" family: dival's distribution with Poisson(4) ellipses per image, at most 8,
#: values in U(0.1, 1) and semi-axes at least 0.05, so that no image is empty
#: (``random_ellipses(shape, **FEW_ELLIPSES)``).
#: Its images are a handful of overlapping shapes, a family a small generative model can
#: represent (issue 10's in-distribution protocol); dival's 40 ellipses per image are out of reach
#: of a 128-dimensional autoencoder (19 dB).
FEW_ELLIPSES: dict = {
    "mean_ellipses": 4.0,
    "max_ellipses": 8,
    "min_axis": 0.05,
    "value_range": (0.1, 1.0),
}

#: The "smooth ellipses" family: the ellipses of :data:`FEW_ELLIPSES` drawn as smooth bumps
#: :math:`(1 - ρ^2)^2` instead of constant values (``random_ellipses(shape, **SMOOTH_ELLIPSES)``).
#: Its ellipses have no edges and no flat interior: the opposite of the piecewise-constant images
#: that total variation favours.
SMOOTH_ELLIPSES: dict = {**FEW_ELLIPSES, "profile": "smooth"}


def random_ellipse_params(
    n_images: int,
    *,
    generator: torch.Generator | None = None,
    mean_ellipses: float = 40.0,
    max_ellipses: int = 70,
    min_axis: float = 0.0,
    value_range: tuple[float, float] = (-0.4, 1.0),
) -> torch.Tensor:
    r"""Draw ellipse tables from dival's "ellipses" distribution.

    This is the distribution of ``dival.datasets.EllipsesDataset.generator`` in dival's current
    source (``dival/datasets/ellipses_dataset.py``; early versions drew 50 ellipses of value
    U(-0.5, 0.5)·Exp(0.4) instead), translated to the conventions of :func:`ellipses_image`
    (coordinates on [-1, 1]², angles in degrees). For each image, ``max_ellipses`` ellipses are
    drawn with

    - value (intensity) ~ U(-0.4, 1.0),
    - semi-axes ``a``, ``b`` ~ 0.2 · Exp(1), independently (mean 0.2, unbounded),
    - centre ``x0``, ``y0`` ~ U(-0.9, 0.9), independently,
    - angle ~ U(0, 360) degrees (dival: U(0, 2π) radians);

    the number of active ellipses is ``min(Poisson(mean_ellipses), max_ellipses)``, but at least 1
    (dival allows 0, which gives an empty image it cannot normalise), and the values of the others
    are set to 0. The table therefore always has ``max_ellipses`` rows; rows of value 0 draw
    nothing. Ellipses add up where they overlap. The draws come from torch, not from numpy's
    ``RandomState``, so the images follow dival's distribution but are not dival's images.

    Semi-axes are clamped below at 1e-12 so that a (vanishingly unlikely) zero draw stays valid.

    Parameters
    ----------
    n_images : int
        Number of tables to draw.
    generator : torch.Generator, optional
        Source of randomness; default torch's global generator.
    mean_ellipses : float, optional
        Mean of the Poisson number of ellipses per image (dival: 40).
    max_ellipses : int, optional
        Cap on the number of ellipses, and the number of rows of each table (dival: 70).
    min_axis : float, optional
        Lower bound on the semi-axes (dival: none). With ``min_axis >= 0.05`` every ellipse
        covers a pixel centre on grids of 32² and finer, so no image is empty (constant): with
        only a few ellipses per image, an unbounded draw can miss every pixel.
    value_range : (float, float), optional
        The ellipses' values are uniform on this interval (dival: (-0.4, 1.0)). An image whose
        ellipses are all negative normalises to zero (see :func:`render_random_ellipses`), which
        with only a few ellipses per image happens often: :data:`FEW_ELLIPSES` draws positive
        values.

    Returns
    -------
    torch.Tensor
        Float64 tensor of shape ``(n_images, max_ellipses, 6)`` with columns
        ``(value, a, b, x0, y0, phi_degrees)``, on the generator's device. Render it with
        :func:`render_random_ellipses` (dival's normalisation to [0, 1]) or :func:`ellipses_image`
        (raw sums).

    Raises
    ------
    ValueError
        If ``n_images`` or ``max_ellipses`` is not a positive int, or ``mean_ellipses`` is not a
        positive finite number.

    Examples
    --------
    >>> params = random_ellipse_params(2, generator=torch.Generator().manual_seed(0))
    >>> params.shape
    torch.Size([2, 70, 6])
    >>> coarse = render_random_ellipses(params, 64)
    >>> fine = render_random_ellipses(params, 128)  # the same ellipses, twice the resolution
    >>> coarse.shape, fine.shape
    (torch.Size([2, 64, 64]), torch.Size([2, 128, 128]))
    """
    n_images = _check_count(n_images, "n_images")
    max_ellipses = _check_count(max_ellipses, "max_ellipses")
    mean_ellipses = float(mean_ellipses)
    if not (mean_ellipses > 0 and math.isfinite(mean_ellipses)):
        raise ValueError(f"mean_ellipses must be a positive finite number, got {mean_ellipses}")
    min_axis = float(min_axis)
    if not (0 <= min_axis < 1):
        raise ValueError(f"min_axis must lie in [0, 1), got {min_axis}")
    low, high = (float(v) for v in value_range)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"value_range must be finite with low < high, got {tuple(value_range)}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    device = _generator_device(generator)
    size = (n_images, max_ellipses)

    def exponential() -> torch.Tensor:
        e = torch.empty(size, dtype=torch.float64, device=device)
        return e.exponential_(1.0, generator=generator)

    # Drawn in dival's order: value, a, b, x0, y0, angle, count.
    value = _uniform(low, high, size, generator)
    a = (0.2 * exponential()).clamp_min(max(min_axis, 1e-12))
    b = (0.2 * exponential()).clamp_min(max(min_axis, 1e-12))
    x0 = _uniform(-0.9, 0.9, size, generator)
    y0 = _uniform(-0.9, 0.9, size, generator)
    phi = _uniform(0.0, 360.0, size, generator)
    rate = torch.full((n_images,), mean_ellipses, dtype=torch.float64, device=device)
    count = torch.poisson(rate, generator=generator).clamp(1, max_ellipses)
    active = torch.arange(max_ellipses, device=device)[None, :] < count[:, None]
    value = torch.where(active, value, torch.zeros_like(value))
    return torch.stack((value, a, b, x0, y0, phi), dim=-1)


def render_random_ellipses(
    params: torch.Tensor,
    shape: int | Sequence[int],
    *,
    profile: str = "flat",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Render ellipse tables with dival's normalisation of the "ellipses" data set.

    The ellipses are summed with :func:`ellipses_image`; then, as in dival, the foreground (every
    non-zero pixel) is shifted by the image's minimum, ``x[x != 0] -= x.min()``, and the image is
    divided by its maximum. The background stays exactly 0 and the image lies in [0, 1] with
    maximum exactly 1 (computed in float64). When the minimum is negative the shift lifts the
    whole foreground, so a negative ellipse becomes a darker region inside brighter ones rather
    than being clipped away. A degenerate image that cannot be normalised (nothing drawn, or a
    constant foreground that the shift sends to 0) is returned as all zeros.

    The min and max are taken over the rendered pixels, so images of the same table at two
    resolutions agree up to the sampling of the ellipse edges.

    Parameters
    ----------
    params : torch.Tensor
        Ellipse tables of shape ``(*batch, n, 6)``, e.g. from :func:`random_ellipse_params`.
    shape : int or (int, int)
        Image shape ``(H, W)``.
    profile : {"flat", "smooth"}, optional
        Intensity profile of the ellipses (:func:`ellipses_image`; default ``"flat"``).
    dtype : torch.dtype, optional
        Floating dtype of the result (default float32).
    device : torch.device or str, optional
        Device of the result; default that of ``params``.

    Returns
    -------
    torch.Tensor
        Images of shape ``(*batch, H, W)`` in [0, 1].

    Raises
    ------
    ValueError
        As :func:`ellipses_image`.

    Examples
    --------
    >>> table = torch.tensor([[1.0, 0.5, 0.5, 0.0, 0.0, 0.0], [-0.5, 0.2, 0.2, 0.0, 0.0, 0.0]])
    >>> image = render_random_ellipses(table, 64)
    >>> float(image.min()), float(image.max()), float(image[32, 32])  # hole: 0.5 - 0.5 + 0.5
    (0.0, 1.0, 0.5)
    """
    params = torch.as_tensor(params, dtype=torch.float64)
    if params.ndim >= 2 and params.shape[-1] == 6 and params.shape[-2] > 0:
        # Rows of value 0 draw nothing; drop the trailing ones shared by the whole batch.
        drawn = (params[..., 0] != 0).reshape(-1, params.shape[-2]).any(dim=0)
        keep = int(drawn.nonzero().max()) + 1 if bool(drawn.any()) else 1
        params = params[..., :keep, :]
    image = ellipses_image(params, shape, profile=profile, dtype=torch.float64, device=device)
    flat = image.flatten(-2)
    low = flat.amin(dim=-1)[..., None, None]
    image = torch.where(image != 0, image - low, image)
    high = image.flatten(-2).amax(dim=-1)[..., None, None]
    image = torch.where(high > 0, image / torch.where(high > 0, high, 1.0), 0.0)
    return image.to(dtype)


def random_ellipses(
    shape: int | Sequence[int],
    *,
    n: int | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    mean_ellipses: float = 40.0,
    max_ellipses: int = 70,
    min_axis: float = 0.0,
    value_range: tuple[float, float] = (-0.4, 1.0),
    profile: str = "flat",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Random-ellipse images from dival's "ellipses" distribution, in [0, 1].

    Draws tables with :func:`random_ellipse_params` (see there for the distribution: about 40
    ellipses of value U(-0.4, 1), semi-axes 0.2·Exp(1), centres U(-0.9, 0.9)², any angle) and
    renders them with :func:`render_random_ellipses` (dival's normalisation: background 0,
    foreground shifted by the minimum, divided by the maximum, so the maximum is exactly 1).

    The ellipses live on [-1, 1]², so with the same generator state the same ellipses come out at
    any resolution. To render one draw at two resolutions (a finer simulation grid), draw the
    tables once with :func:`random_ellipse_params` and render them twice.

    Parameters
    ----------
    shape : int or (int, int)
        Image shape ``(H, W)``.
    n : int, optional
        Number of images; ``None`` (default) gives one image without a batch dimension.
    generator : torch.Generator, optional
        Source of randomness. Give this or ``seed``, not both; with neither, torch's global
        generator is used.
    seed : int, optional
        Seed of a fresh generator: the same seed always gives the same images.
    mean_ellipses : float, optional
        Mean number of ellipses per image (dival: 40; :data:`FEW_ELLIPSES`: 4).
    max_ellipses : int, optional
        Cap on the number of ellipses per image (dival: 70; :data:`FEW_ELLIPSES`: 8).
    min_axis : float, optional
        Lower bound on the semi-axes (dival: 0; :data:`FEW_ELLIPSES`: 0.05).
    value_range : (float, float), optional
        Interval of the ellipses' values (dival: (-0.4, 1); :data:`FEW_ELLIPSES`: (0.1, 1)).
    profile : {"flat", "smooth"}, optional
        Intensity profile of the ellipses (dival: ``"flat"``; :data:`SMOOTH_ELLIPSES`:
        ``"smooth"``), see :func:`ellipses_image`.
    dtype : torch.dtype, optional
        Floating dtype of the result (default float32).
    device : torch.device or str, optional
        Device of the result (default: the generator's device, CPU without one).

    Returns
    -------
    torch.Tensor
        ``(H, W)`` if ``n`` is None, else ``(n, H, W)``.

    Raises
    ------
    ValueError
        If both ``generator`` and ``seed`` are given, or an argument is out of range.

    Examples
    --------
    >>> x = random_ellipses(128, seed=0)
    >>> x.shape, float(x.min()), float(x.max())
    (torch.Size([128, 128]), 0.0, 1.0)
    >>> torch.equal(x, random_ellipses(128, seed=0))
    True
    >>> random_ellipses(64, n=4, seed=1).shape
    torch.Size([4, 64, 64])
    >>> simple = random_ellipses(64, seed=0, **FEW_ELLIPSES)  # a handful of ellipses
    >>> bumps = random_ellipses(64, seed=0, **SMOOTH_ELLIPSES)  # the same, as smooth bumps
    """
    _check_shape(shape)
    _check_profile(profile)
    count = _check_count(n)
    gen = _make_generator(generator, seed)
    params = random_ellipse_params(
        count,
        generator=gen,
        mean_ellipses=mean_ellipses,
        max_ellipses=max_ellipses,
        min_axis=min_axis,
        value_range=value_range,
    )
    if device is None:
        device = params.device
    images = render_random_ellipses(params, shape, profile=profile, dtype=dtype, device=device)
    return images[0] if n is None else images


# ---------------------------------------------------------------------------------------------
# Photoacoustic phantoms: vessels and balls (pixel units, row 0 is the sensor row)
# ---------------------------------------------------------------------------------------------

# Smooth random walk of the vessel centre lines: the heading turns by a curvature that follows an
# AR(1) process kappa <- _CURVATURE_MEMORY * kappa + N(0, _CURVATURE_STD²) per step of 1 px
# (stationary std of kappa ≈ 0.023 rad/px; the heading drifts by about 1 rad per 100 px).
_STEP_PX = 1.0
_CURVATURE_MEMORY = 0.9
_CURVATURE_STD = 0.01
_MAX_BRANCHES_PER_TREE = 32
# Length budget of a root branch, in steps, as a fraction of max(H, W); a child gets the parent's
# remaining budget scaled by its radius ratio, so finer vessels are shorter.
_ROOT_LENGTH = 1.5


def _smoothstep(t: torch.Tensor) -> torch.Tensor:
    t = t.clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _walk_tree(
    height: int,
    width: int,
    root_radius: float,
    min_radius: float,
    branch_probability: float,
    margin: int,
    generator: torch.Generator | None,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Centre lines of one branching vessel tree as ``(points (S+1, 2), radii (S,))`` per branch,
    in (row, col) pixel coordinates."""
    device = _generator_device(generator)
    root_length = _ROOT_LENGTH * max(height, width)
    start = _uniform(0.0, 1.0, 3, generator).tolist()
    row = margin + root_radius + start[0] * max(height - 1 - margin - root_radius, 0.0)
    col = start[1] * (width - 1)
    # Each queued branch: start point, heading, radius and length budget in steps. The root is a
    # vessel through the start point: two branches in opposite directions.
    heading = 2.0 * math.pi * start[2]
    queue = [
        (row, col, heading + math.pi, root_radius, int(root_length / 2)),
        (row, col, heading, root_radius, int(root_length / 2)),
    ]
    branches = []
    while queue:
        row, col, heading, radius, budget = queue.pop()
        # One row of draws per step: curvature noise, branching test, split fraction, angle.
        draws = torch.rand((budget, 4), generator=generator, dtype=torch.float64, device=device)
        noise = torch.special.ndtri(draws[:, 0].clamp(1e-12, 1 - 1e-12)).tolist()
        u_branch, u_split, u_angle = (draws[:, j].tolist() for j in (1, 2, 3))
        points, radii = [(row, col)], []
        kappa = 0.0
        for k in range(budget):
            if u_branch[k] < branch_probability:
                # Murray's law: r³ = r1³ + r2³ with the flow split f : 1 - f, f ~ U(0.25, 0.75).
                f = 0.25 + 0.5 * u_split[k]
                r1, r2 = radius * f ** (1 / 3), radius * (1 - f) ** (1 / 3)
                child_budget = int((budget - k) * r2 / radius)
                room = len(branches) + len(queue) + 1 < _MAX_BRANCHES_PER_TREE
                if min(r1, r2) >= min_radius and child_budget > 0 and room:
                    side = 1.0 if u_angle[k] < 0.5 else -1.0
                    angle = math.radians(20.0 + 40.0 * abs(2.0 * u_angle[k] - 1.0))  # 20°-60°
                    queue.append((row, col, heading + side * angle, r2, child_budget))
                    heading -= side * 0.5 * angle
                    radius = r1
            kappa = _CURVATURE_MEMORY * kappa + _CURVATURE_STD * noise[k]
            heading += kappa
            row -= _STEP_PX * math.sin(heading)  # heading 0 points right, π/2 up (to row 0)
            col += _STEP_PX * math.cos(heading)
            points.append((row, col))
            radii.append(radius)
            slack = radius + 1.0
            if not (-slack <= row <= height - 1 + slack and -slack <= col <= width - 1 + slack):
                break
        branches.append(
            (torch.tensor(points, dtype=torch.float64), torch.tensor(radii, dtype=torch.float64))
        )
    return branches


def _render_tubes(
    branches: list[tuple[torch.Tensor, torch.Tensor]], height: int, width: int
) -> torch.Tensor:
    """Max over the soft tubes of all branches: 1 inside radius, a 1-px smooth edge, 0 outside.

    Segments are taken in runs of 16 consecutive ones, each evaluated on its own bounding box.
    """
    image = torch.zeros((height, width), dtype=torch.float64)
    run = 16
    for points, radii in branches:
        for s in range(0, radii.numel(), run):
            e = min(s + run, radii.numel())
            a, b, r = points[s:e], points[s + 1 : e + 1], radii[s:e, None, None]
            ends = points[s : e + 1]
            reach = float(r.max()) + 1.0
            r0 = max(math.floor(float(ends[:, 0].min()) - reach), 0)
            r1 = min(math.ceil(float(ends[:, 0].max()) + reach) + 1, height)
            c0 = max(math.floor(float(ends[:, 1].min()) - reach), 0)
            c1 = min(math.ceil(float(ends[:, 1].max()) + reach) + 1, width)
            if r0 >= r1 or c0 >= c1:
                continue
            rows = torch.arange(r0, r1, dtype=torch.float64)[:, None]
            cols = torch.arange(c0, c1, dtype=torch.float64)[None, :]
            a_r, a_c = a[:, 0, None, None], a[:, 1, None, None]
            d_r, d_c = (b[:, 0] - a[:, 0])[:, None, None], (b[:, 1] - a[:, 1])[:, None, None]
            length2 = (d_r**2 + d_c**2).clamp_min(1e-12)
            t = (((rows - a_r) * d_r + (cols - a_c) * d_c) / length2).clamp(0.0, 1.0)
            dist = torch.hypot(rows - a_r - t * d_r, cols - a_c - t * d_c)
            tube = _smoothstep(r + 0.5 - dist).amax(dim=0)
            image[r0:r1, c0:c1] = torch.maximum(image[r0:r1, c0:c1], tube)
    return image


def vessels(
    shape: int | Sequence[int],
    *,
    n: int | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    n_trees: Sequence[int] = (1, 4),
    branch_probability: Sequence[float] = (0.02, 0.05),
    radius: Sequence[float] = (0.5, 3.0),
    amplitude: Sequence[float] = (0.3, 1.0),
    margin: int = 4,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Random branching blood vessels, a photoacoustic phantom (PAT_NOTES §6).

    Each image holds ``U{n_trees}`` vessel trees. A tree's root vessel runs both ways from a
    uniformly random point below the margin, in a random direction; every centre line is a smooth
    random walk of 1-px steps (the heading turns by an AR(1) curvature and drifts by about 1 rad
    per 100 px). At every step a vessel branches with a probability drawn once per image from
    U(``branch_probability``); the radii follow Murray's law ``r³ = r1³ + r2³`` with a flow split
    f : 1 − f, f ~ U(0.25, 0.75); the child leaves at 20°–60° and the parent turns half as far the
    other way. A branch is not made if a radius would fall below ``radius[0]`` or the tree already
    has 32 branches. Root radii are U(mid, ``radius[1]``) with mid the centre of ``radius``, so the
    children span the rest of the range. The root has a length budget of 1.5·max(H, W) steps
    (half each way) and a child the parent's remaining budget times ``r_child / r_parent``, so finer
    vessels are shorter; a walk also ends when it leaves the image.

    Each tree is a soft tube (1 inside the radius, a smooth 1-px edge) times an amplitude
    U(``amplitude``); the trees are summed, clipped to [0, 1], and the first ``margin`` rows (the
    sensor row 0 and its neighbours) are set to 0. Sizes are in pixels, so a larger ``shape``
    gives a larger field of view, not a finer rendering.

    Parameters
    ----------
    shape : int or (int, int)
        Image shape ``(H, W)``.
    n : int, optional
        Number of images; ``None`` (default) gives one image without a batch dimension.
    generator : torch.Generator, optional
        Source of randomness; give this or ``seed``, not both (neither: torch's global one).
    seed : int, optional
        Seed of a fresh generator.
    n_trees : (int, int), optional
        Inclusive range of the number of trees per image.
    branch_probability : (float, float), optional
        Range of the per-step branching probability.
    radius : (float, float), optional
        Range of vessel radii in pixels.
    amplitude : (float, float), optional
        Range of the tree amplitudes.
    margin : int, optional
        Rows at the top (the sensor side) that are kept at zero.
    dtype : torch.dtype, optional
        Floating dtype of the result (default float32).
    device : torch.device or str, optional
        Device of the result (default CPU).

    Returns
    -------
    torch.Tensor
        ``(H, W)`` if ``n`` is None, else ``(n, H, W)``, in [0, 1].

    Raises
    ------
    ValueError
        If both ``generator`` and ``seed`` are given, or an argument is out of range.

    Examples
    --------
    >>> x = vessels(128, seed=0)
    >>> x.shape, float(x.min()) >= 0.0, float(x.max()) <= 1.0, float(x[:4].abs().max())
    (torch.Size([128, 128]), True, True, 0.0)
    """
    height, width = _check_shape(shape)
    count = _check_count(n)
    gen = _make_generator(generator, seed)
    tree_lo, tree_hi = _check_int_range("n_trees", n_trees, low=0)
    p_lo, p_hi = _check_range("branch_probability", branch_probability)
    if p_hi > 1.0:
        raise ValueError(f"branch_probability must lie in [0, 1], got {branch_probability!r}")
    r_lo, r_hi = _check_range("radius", radius, strict=True)
    a_lo, a_hi = _check_range("amplitude", amplitude)
    margin = _check_margin(margin, height)

    images = torch.zeros((count, height, width), dtype=torch.float64)
    for i in range(count):
        n_tree = int(
            torch.randint(tree_lo, tree_hi + 1, (1,), generator=gen, device=_generator_device(gen))
        )
        p_branch = float(_uniform(p_lo, p_hi, 1, gen))
        for _ in range(n_tree):
            r_root, amp = _uniform(0.0, 1.0, 2, gen).tolist()
            r_root = 0.5 * (r_lo + r_hi) + 0.5 * (r_hi - r_lo) * r_root
            amp = a_lo + (a_hi - a_lo) * amp
            tree = _walk_tree(height, width, r_root, r_lo, p_branch, margin, gen)
            images[i] += amp * _render_tubes(tree, height, width)
    images = _zero_margin(images.clamp_(0.0, 1.0), margin)
    images = images.to(dtype=dtype, device=device)
    return images[0] if n is None else images


def _check_margin(margin: int, height: int) -> int:
    if isinstance(margin, bool) or not isinstance(margin, int) or not 0 <= margin < height:
        raise ValueError(f"margin must be an int in [0, H), got {margin!r}")
    return margin


def balls(
    shape: int | Sequence[int],
    *,
    n: int | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    n_balls: Sequence[int] = (1, 5),
    radius: Sequence[float] = (3.0, 16.0),
    amplitude: Sequence[float] = (0.3, 1.0),
    kind: Literal["mixed", "disc", "gaussian"] = "mixed",
    margin: int = 4,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Random discs and Gaussian blobs, a photoacoustic phantom (PAT_NOTES §6).

    Each image holds ``U{n_balls}`` objects with radius U(``radius``) pixels and amplitude
    U(``amplitude``), centred uniformly where they fit inside the image below the margin. A disc
    is 1 inside its radius with a smooth 1-px edge; a Gaussian is ``exp(-d² / (2 σ²))`` with
    ``σ = radius / 2``. With ``kind="mixed"`` each object is a disc or a Gaussian with probability
    1/2. The objects are summed, clipped to [0, 1], and the first ``margin`` rows (the sensor side)
    are set to 0. Sizes are in pixels.

    Parameters
    ----------
    shape : int or (int, int)
        Image shape ``(H, W)``.
    n : int, optional
        Number of images; ``None`` (default) gives one image without a batch dimension.
    generator : torch.Generator, optional
        Source of randomness; give this or ``seed``, not both (neither: torch's global one).
    seed : int, optional
        Seed of a fresh generator.
    n_balls : (int, int), optional
        Inclusive range of the number of objects per image.
    radius : (float, float), optional
        Range of radii in pixels.
    amplitude : (float, float), optional
        Range of amplitudes.
    kind : {"mixed", "disc", "gaussian"}, optional
        Which objects to draw.
    margin : int, optional
        Rows at the top (the sensor side) that are kept at zero.
    dtype : torch.dtype, optional
        Floating dtype of the result (default float32).
    device : torch.device or str, optional
        Device of the result (default CPU).

    Returns
    -------
    torch.Tensor
        ``(H, W)`` if ``n`` is None, else ``(n, H, W)``, in [0, 1].

    Raises
    ------
    ValueError
        If both ``generator`` and ``seed`` are given, or an argument is out of range.

    Examples
    --------
    >>> x = balls(64, n=3, seed=0, kind="disc")
    >>> x.shape, bool((x >= 0).all() and (x <= 1).all()), float(x[:, :4].abs().max())
    (torch.Size([3, 64, 64]), True, 0.0)
    """
    height, width = _check_shape(shape)
    count = _check_count(n)
    gen = _make_generator(generator, seed)
    lo, hi = _check_int_range("n_balls", n_balls, low=0)
    r_lo, r_hi = _check_range("radius", radius, strict=True)
    a_lo, a_hi = _check_range("amplitude", amplitude)
    if kind not in ("mixed", "disc", "gaussian"):
        raise ValueError(f"kind must be 'mixed', 'disc' or 'gaussian', got {kind!r}")
    margin = _check_margin(margin, height)

    gen_device = _generator_device(gen)
    rows = torch.arange(height, dtype=torch.float64)[:, None]
    cols = torch.arange(width, dtype=torch.float64)[None, :]
    images = torch.zeros((count, height, width), dtype=torch.float64)
    for i in range(count):
        k = int(torch.randint(lo, hi + 1, (1,), generator=gen, device=gen_device))
        draws = torch.rand((k, 5), generator=gen, dtype=torch.float64, device=gen_device).cpu()
        r = r_lo + (r_hi - r_lo) * draws[:, 0]
        amp = a_lo + (a_hi - a_lo) * draws[:, 1]
        # Centres where the object fits (if it can): rows in [margin + r, H - 1 - r], cols alike.
        row_lo = (margin + r).clamp(max=height - 1.0)
        row_hi = (height - 1.0 - r).clamp(min=row_lo)
        col_lo = r.clamp(max=width - 1.0)
        col_hi = (width - 1.0 - r).clamp(min=col_lo)
        row_c = (row_lo + (row_hi - row_lo) * draws[:, 2])[:, None, None]
        col_c = (col_lo + (col_hi - col_lo) * draws[:, 3])[:, None, None]
        is_disc = draws[:, 4] < 0.5 if kind == "mixed" else torch.full((k,), kind == "disc")
        dist = torch.hypot(rows - row_c, cols - col_c)  # (k, H, W)
        rr = r[:, None, None]
        disc = _smoothstep(rr + 0.5 - dist)
        gauss = torch.exp(-0.5 * (dist / (0.5 * rr)) ** 2)
        objects = torch.where(is_disc[:, None, None], disc, gauss)
        images[i] = (amp[:, None, None] * objects).sum(dim=0)
    images = _zero_margin(images.clamp_(0.0, 1.0), margin)
    images = images.to(dtype=dtype, device=device)
    return images[0] if n is None else images
