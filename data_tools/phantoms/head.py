"""The Shepp–Logan head phantom, rasterised analytically on the square [-1, 1]².

Example
-------
>>> shepp_logan(64).shape
torch.Size([64, 64])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from data_tools.phantoms.common import check_shape
from data_tools.phantoms.ellipses import ellipses_image

__all__ = ["SHEPP_LOGAN_ELLIPSES", "shepp_logan"]

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
    height, width = check_shape(shape)
    column = 1 if modified else 0
    table = [(row[column], *row[2:]) for row in SHEPP_LOGAN_ELLIPSES]
    image = ellipses_image(table, (height, width), dtype=torch.float64, device=device)
    return image.clamp_min(0.0).to(dtype)
