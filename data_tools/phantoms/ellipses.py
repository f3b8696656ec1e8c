"""Ellipses rasterised on the square [-1, 1]², and dival's random-ellipse family.

:func:`ellipses_image` sums ellipse tables ``(value, a, b, x0, y0, phi)`` on the grid of
:mod:`data_tools.phantoms.common`, with a flat or a smooth intensity profile (:data:`PROFILES`).
:func:`random_ellipses` draws dival's "ellipses" distribution. Its parameters
(:func:`random_ellipse_params`) live on the square [-1, 1]², so the same ellipses can be rendered
at any resolution with :func:`render_random_ellipses` (what :func:`data_tools.simulate.simulate`
needs to avoid the inverse crime). With ``**FEW_ELLIPSES`` it draws a handful of ellipses per
image instead of about 40, and with ``**SMOOTH_ELLIPSES`` the same handful as smooth bumps instead
of constant-valued ellipses.

Example
-------
>>> random_ellipses(32, seed=0, **FEW_ELLIPSES).shape
torch.Size([32, 32])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from data_tools.phantoms.common import (
    check_count,
    check_shape,
    generator_device,
    make_generator,
    uniform,
)

__all__ = [
    "FEW_ELLIPSES",
    "PROFILES",
    "SMOOTH_ELLIPSES",
    "ellipses_image",
    "random_ellipse_params",
    "random_ellipses",
    "render_random_ellipses",
]


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
    column 0 is ``x = -1`` (left); see :mod:`data_tools.phantoms.common` for the grid.

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
    height, width = check_shape(shape)
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
    n_images = check_count(n_images, "n_images")
    max_ellipses = check_count(max_ellipses, "max_ellipses")
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
    device = generator_device(generator)
    size = (n_images, max_ellipses)

    def exponential() -> torch.Tensor:
        e = torch.empty(size, dtype=torch.float64, device=device)
        return e.exponential_(1.0, generator=generator)

    # Drawn in dival's order: value, a, b, x0, y0, angle, count.
    value = uniform(low, high, size, generator)
    a = (0.2 * exponential()).clamp_min(max(min_axis, 1e-12))
    b = (0.2 * exponential()).clamp_min(max(min_axis, 1e-12))
    x0 = uniform(-0.9, 0.9, size, generator)
    y0 = uniform(-0.9, 0.9, size, generator)
    phi = uniform(0.0, 360.0, size, generator)
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
    check_shape(shape)
    _check_profile(profile)
    count = check_count(n)
    gen = make_generator(generator, seed)
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
