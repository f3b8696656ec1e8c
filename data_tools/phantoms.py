"""Analytic phantoms rasterised on the square [-1, 1]².

Image convention (shared by every phantom here): an image of shape ``(H, W)`` samples the square
``[-1, 1]²`` at pixel centres, row 0 is the top (``y = +1``) and column 0 the left (``x = -1``)::

    x_j = (2 j + 1 - W) / W,        y_i = (H - 1 - 2 i) / H.

Pixels are sampled at their centres (no supersampling), so an ellipse edge is exact to within one
pixel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["SHEPP_LOGAN_ELLIPSES", "ellipses_image", "shepp_logan"]

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


def ellipses_image(
    ellipses: torch.Tensor | Sequence[Sequence[float]],
    shape: int | Sequence[int],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""Rasterise a sum of constant-valued ellipses on the square [-1, 1]².

    Each ellipse ``(value, a, b, x0, y0, phi)`` adds ``value`` to every pixel centre ``(x, y)`` with

    .. math::

        \frac{u^2}{a^2} + \frac{v^2}{b^2} \le 1, \qquad
        \begin{pmatrix} u \\ v \end{pmatrix} =
        \begin{pmatrix} \cos\varphi & \sin\varphi \\ -\sin\varphi & \cos\varphi \end{pmatrix}
        \begin{pmatrix} x - x_0 \\ y - y_0 \end{pmatrix},

    where ``phi`` is given in degrees, counter-clockwise from the x axis to the ``a`` axis. Values
    add up where ellipses overlap and nothing is clipped. Row 0 of the image is ``y = +1`` (top),
    column 0 is ``x = -1`` (left); see the module docstring for the grid.

    Parameters
    ----------
    ellipses : torch.Tensor or sequence of sequences of float
        Ellipse parameters of shape ``(*batch, n, 6)``; leading batch dimensions give a batch of
        images. Semi-axes ``a`` and ``b`` must be positive.
    shape : int or (int, int)
        Image shape ``(H, W)``; an int ``N`` means ``(N, N)``.
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
        holds non-finite values or non-positive semi-axes.

    Examples
    --------
    >>> disc = ellipses_image([[1.0, 0.5, 0.5, 0.0, 0.0, 0.0]], 64)
    >>> disc.shape, float(disc.max())
    (torch.Size([64, 64]), 1.0)
    """
    height, width = _check_shape(shape)
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
    image = torch.zeros((*batch_shape, height, width), dtype=torch.float64, device=params.device)
    # One pass per ellipse keeps memory at one image per batch element; each pass is vectorised over
    # the batch and all pixels.
    for k in range(params.shape[-2]):
        value, a, b, x0, y0, phi = (params[..., k, i, None, None] for i in range(6))
        phi = phi * (math.pi / 180.0)
        cos, sin = torch.cos(phi), torch.sin(phi)
        dx, dy = x - x0, y - y0
        u = dx * cos + dy * sin
        v = -dx * sin + dy * cos
        inside = (u / a) ** 2 + (v / b) ** 2 <= 1.0
        image = image + value * inside
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
