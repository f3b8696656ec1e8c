"""Image-quality metrics, per image over the trailing dimensions, with the data range stated.

As in dival, the data range of PSNR and SSIM defaults to the ground truth's ``max − min`` *per
image*. :func:`ssim` reproduces ``skimage.metrics.structural_similarity`` with its default
arguments (uniform 7 × 7 window, K1 = 0.01, K2 = 0.03, sample covariance, mean over the region not
touched by the image border) for a given data range, batched in torch.

Every metric takes ``x`` (the estimate) and ``ref`` (the ground truth) of the same shape
``(*batch, *image)`` where ``image`` is the trailing ``ndim`` dimensions, and returns a tensor of
shape ``batch`` (0-dimensional for a single image). Computation is in float64; the result has the
inputs' floating dtype (float64 for integer inputs).

Example
-------
>>> import torch
>>> ref = torch.zeros(2, 1, 8, 8)
>>> ref[..., 2:6, 2:6] = 1.0
>>> x = ref + 0.1
>>> psnr(x, ref).round(decimals=4)  # data range 1, MSE 0.01
tensor([[20.],
        [20.]])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["psnr", "relative_error", "ssim"]


def _prepare(
    x: torch.Tensor, ref: torch.Tensor, ndim: int
) -> tuple[torch.Tensor, torch.Tensor, torch.dtype]:
    """Both inputs as float64 tensors, checked for equal shapes, and the result dtype."""
    x, ref = torch.as_tensor(x), torch.as_tensor(ref)
    if x.shape != ref.shape:
        raise ValueError(
            f"x and ref must have the same shape, got {tuple(x.shape)} and {tuple(ref.shape)}"
        )
    if isinstance(ndim, bool) or not isinstance(ndim, int) or not 1 <= ndim <= ref.ndim:
        raise ValueError(f"ndim must be an int in [1, {ref.ndim}] for these inputs, got {ndim!r}")
    if x.is_complex() or ref.is_complex():
        raise ValueError("complex inputs are not supported")
    out_dtype = torch.promote_types(x.dtype, ref.dtype)
    if not out_dtype.is_floating_point:
        out_dtype = torch.float64
    return x.to(torch.float64), ref.to(torch.float64), out_dtype


def _flat(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """``(*batch, *image)`` → ``(*batch, prod(image))``."""
    return t.flatten(start_dim=t.ndim - ndim)


def _data_range(
    ref: torch.Tensor, data_range: float | torch.Tensor | None, ndim: int
) -> torch.Tensor:
    """Per-image data range of shape ``batch``: given, or ``ref.max − ref.min`` per image."""
    batch_shape = ref.shape[: ref.ndim - ndim]
    if data_range is None:
        flat = _flat(ref, ndim)
        value = flat.amax(dim=-1) - flat.amin(dim=-1)
        if bool((value == 0).any()):
            raise ValueError(
                "the reference image is constant, so its data range (max - min) is zero; "
                "pass data_range explicitly"
            )
        return value
    value = torch.as_tensor(data_range, dtype=torch.float64, device=ref.device)
    try:
        value = value.broadcast_to(batch_shape)
    except RuntimeError:
        raise ValueError(
            f"data_range of shape {tuple(value.shape)} does not broadcast to the batch shape "
            f"{tuple(batch_shape)}"
        ) from None
    if not bool(torch.isfinite(value).all()) or bool((value <= 0).any()):
        raise ValueError(f"data_range must be positive and finite, got {data_range!r}")
    return value


def psnr(
    x: torch.Tensor,
    ref: torch.Tensor,
    data_range: float | torch.Tensor | None = None,
    *,
    ndim: int = 2,
) -> torch.Tensor:
    r"""Peak signal-to-noise ratio in dB, per image.

    .. math::

        \mathrm{PSNR} = 10 \log_{10} \frac{R^2}{\operatorname{mean}\,(x - \mathrm{ref})^2}

    over the trailing ``ndim`` dimensions, with :math:`R` = ``data_range`` (default: ``ref.max −
    ref.min`` of each image, as dival). Identical images give ``inf``.

    Parameters
    ----------
    x : torch.Tensor
        Estimates ``(*batch, *image)``.
    ref : torch.Tensor
        Ground truth, same shape.
    data_range : float or torch.Tensor, optional
        Data range, a number or a tensor broadcastable to ``batch``.
    ndim : int, optional
        Number of trailing dimensions that make one image (default 2).

    Returns
    -------
    torch.Tensor
        PSNR of shape ``batch``.

    Raises
    ------
    ValueError
        If the shapes differ, ``ndim`` is out of range, or the data range is zero (a constant
        reference without ``data_range``) or not positive.

    Examples
    --------
    >>> ref = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    >>> round(float(psnr(ref + 0.1, ref)), 4)  # data range 1, MSE 0.01
    20.0
    >>> round(float(psnr(ref + 0.1, ref, data_range=2.0)), 4)  # + 20 log10(2)
    26.0206
    """
    x, ref, out_dtype = _prepare(x, ref, ndim)
    value_range = _data_range(ref, data_range, ndim)
    mse = _flat(x - ref, ndim).square().mean(dim=-1)
    return (10.0 * torch.log10(value_range.square() / mse)).to(out_dtype)


def relative_error(x: torch.Tensor, ref: torch.Tensor, *, ndim: int = 2) -> torch.Tensor:
    r"""Relative error :math:`\|x - \mathrm{ref}\|_2 / \|\mathrm{ref}\|_2` per image.

    Parameters
    ----------
    x : torch.Tensor
        Estimates ``(*batch, *image)``.
    ref : torch.Tensor
        Ground truth, same shape.
    ndim : int, optional
        Number of trailing dimensions that make one image (default 2).

    Returns
    -------
    torch.Tensor
        Relative error of shape ``batch``.

    Raises
    ------
    ValueError
        If the shapes differ, ``ndim`` is out of range, or a reference image is zero.

    Examples
    --------
    >>> ref = torch.tensor([[3.0, 4.0]])
    >>> relative_error(ref * 1.1, ref)
    tensor(0.1000)
    """
    x, ref, out_dtype = _prepare(x, ref, ndim)
    ref_norm = torch.linalg.vector_norm(_flat(ref, ndim), dim=-1)
    if bool((ref_norm == 0).any()):
        raise ValueError("a reference image is zero, so its relative error is undefined")
    error = torch.linalg.vector_norm(_flat(x - ref, ndim), dim=-1) / ref_norm
    return error.to(out_dtype)


_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def ssim(
    x: torch.Tensor,
    ref: torch.Tensor,
    data_range: float | torch.Tensor | None = None,
    *,
    ndim: int = 2,
    win_size: int = 7,
) -> torch.Tensor:
    r"""Structural similarity index, per image, as ``skimage.metrics.structural_similarity``.

    With :math:`\mu`, :math:`\sigma^2` and :math:`\sigma_{x r}` the local means, sample variances
    and sample covariance over a uniform ``win_size``\ :sup:`ndim` window (normalised by
    :math:`N_P - 1`, :math:`N_P` = ``win_size ** ndim``),

    .. math::

        S = \frac{(2\mu_x\mu_r + C_1)(2\sigma_{xr} + C_2)}
                 {(\mu_x^2 + \mu_r^2 + C_1)(\sigma_x^2 + \sigma_r^2 + C_2)}, \qquad
        C_1 = (0.01 R)^2,\; C_2 = (0.03 R)^2,

    averaged over the windows that lie wholly inside the image, i.e. skimage's crop of
    ``(win_size − 1) // 2`` pixels at every border. :math:`R` = ``data_range`` (default: ``ref.max
    − ref.min`` of each image, as dival; skimage requires it for float images). The result agrees
    with skimage's default arguments (``gaussian_weights=False``, ``use_sample_covariance=True``)
    given the same data range; skimage computes in the input precision, this function in float64.
    Unlike skimage with ``channel_axis``, channels are not averaged: a ``(B, C, H, W)`` input gives
    ``(B, C)`` values.

    Parameters
    ----------
    x : torch.Tensor
        Estimates ``(*batch, *image)``.
    ref : torch.Tensor
        Ground truth, same shape.
    data_range : float or torch.Tensor, optional
        Data range, a number or a tensor broadcastable to ``batch``.
    ndim : int, optional
        Number of trailing dimensions that make one image: 1, 2 (default) or 3.
    win_size : int, optional
        Odd side of the window, at least 3 and at most the smallest image side (default 7).

    Returns
    -------
    torch.Tensor
        SSIM of shape ``batch``.

    Raises
    ------
    ValueError
        If the shapes differ, ``ndim`` is not 1, 2 or 3, ``win_size`` is invalid, or the data range
        is zero or not positive.

    Examples
    --------
    >>> ref = torch.linspace(0, 1, 64 * 64).reshape(64, 64)
    >>> float(ssim(ref, ref))
    1.0
    >>> ssim(ref.expand(3, 64, 64), ref.flip(0).expand(3, 64, 64)).shape
    torch.Size([3])
    """
    x, ref, out_dtype = _prepare(x, ref, ndim)
    if ndim not in _AVG_POOL:
        raise ValueError(f"ssim supports ndim = 1, 2 or 3, got {ndim}")
    image_shape = ref.shape[ref.ndim - ndim :]
    if isinstance(win_size, bool) or not isinstance(win_size, int) or win_size < 3:
        raise ValueError(f"win_size must be an odd int >= 3, got {win_size!r}")
    if win_size % 2 == 0:
        raise ValueError(f"win_size must be odd, got {win_size}")
    if win_size > min(image_shape):
        raise ValueError(f"win_size {win_size} exceeds the image shape {tuple(image_shape)}")
    value_range = _data_range(ref, data_range, ndim)
    batch_shape = ref.shape[: ref.ndim - ndim]

    # (N, 1, *image) for avg_pool: a "valid" uniform filter, i.e. exactly the windows that
    # skimage keeps after cropping (win_size - 1) // 2 pixels at each border.
    x = x.reshape(-1, 1, *image_shape)
    ref = ref.reshape(-1, 1, *image_shape)
    pool = _AVG_POOL[ndim]

    def mean(t: torch.Tensor) -> torch.Tensor:
        return pool(t, kernel_size=win_size, stride=1)

    n_points = win_size**ndim
    cov_norm = n_points / (n_points - 1)
    ux, ur = mean(x), mean(ref)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vr = cov_norm * (mean(ref * ref) - ur * ur)
    vxr = cov_norm * (mean(x * ref) - ux * ur)
    shape = (-1,) + (1,) * (ndim + 1)
    c1 = (0.01 * value_range).square().reshape(shape)
    c2 = (0.03 * value_range).square().reshape(shape)
    s = ((2 * ux * ur + c1) * (2 * vxr + c2)) / ((ux**2 + ur**2 + c1) * (vx + vr + c2))
    return s.flatten(start_dim=1).mean(dim=-1).reshape(batch_shape).to(out_dtype)
