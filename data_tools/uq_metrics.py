r"""Metrics of uncertainty: how well a Gaussian predictive explains the truth.

For a predictive with mean :math:`\mu`, per-pixel std :math:`s` and, over patches, covariances
:math:`C_p` (from an exact covariance or from samples):

- :func:`gaussian_log_likelihood`: the test log-likelihood per pixel of the truth under Gaussian
  predictives over ``patch_size`` × ``patch_size`` patches (1×1: independent pixels), as reported
  by Antorán et al. (2022): :math:`\frac1N\sum_p \log\mathcal N(x_p; \mu_p, C_p)`;
- :func:`interval_coverage`: the fraction of pixels inside the central 50/90/95 % intervals
  :math:`\mu \pm z_{(1+q)/2}\, s`, and :func:`calibration_curve` for many levels;
- :func:`error_std_correlation`: Spearman's rank correlation between :math:`|x - \mu|` and
  :math:`s` (:func:`spearman`);
- :func:`uq_metrics`: all of them in one dictionary.

Patches (:func:`patch_indices`) tile the image; where a side is not a multiple of the patch size
the last patch along it takes the remaining pixels (the paper's convention).

Example
-------
>>> import torch
>>> mean, std = torch.zeros(8, 8), torch.ones(8, 8)
>>> round(gaussian_log_likelihood(torch.zeros(8, 8), mean, std=std), 4)  # -log(2π)/2
-0.9189
>>> interval_coverage(torch.zeros(8, 8), mean, std)
{0.5: 1.0, 0.9: 1.0, 0.95: 1.0}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import torch

__all__ = [
    "calibration_curve",
    "error_std_correlation",
    "gaussian_log_likelihood",
    "interval_coverage",
    "patch_covariances",
    "patch_indices",
    "spearman",
    "uq_metrics",
]


def _check_image(name: str, value: object, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {type(value).__name__}")
    if shape is None and value.ndim != 2:
        raise ValueError(f"{name} must be one image (H, W), got shape {tuple(value.shape)}")
    if shape is not None and tuple(value.shape) != shape:
        raise ValueError(f"{name} must have the shape {shape}, got {tuple(value.shape)}")
    return value


def _check_patch_size(patch_size: object) -> int:
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
    return patch_size


def patch_indices(shape: tuple[int, int], patch_size: int) -> list[torch.Tensor]:
    """Flat (row-major) pixel indices of the ``patch_size`` × ``patch_size`` patches tiling an
    image of ``shape``; the last patch of a row or column takes any remainder.

    Example
    -------
    >>> [p.tolist() for p in patch_indices((2, 3), 2)]
    [[0, 1, 2, 3, 4, 5]]
    >>> len(patch_indices((28, 28), 10)), len(patch_indices((28, 28), 10)[-1])  # 10 + 18 rows
    (4, 324)
    """
    height, width = (int(n) for n in shape)
    size = min(_check_patch_size(patch_size), height, width)

    def edges(n: int) -> list[tuple[int, int]]:
        starts = list(range(0, n - size + 1, size))
        return [(s, starts[i + 1] if i + 1 < len(starts) else n) for i, s in enumerate(starts)]

    grid = torch.arange(height * width).reshape(height, width)
    return [grid[r0:r1, c0:c1].reshape(-1) for r0, r1 in edges(height) for c0, c1 in edges(width)]


def patch_covariances(
    shape: tuple[int, int],
    patch_size: int,
    *,
    cov: torch.Tensor | None = None,
    samples: torch.Tensor | None = None,
    mean: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """The covariance matrix of every patch of :func:`patch_indices`.

    From the full covariance ``cov`` ``(N, N)`` (``N = H·W``, row-major), or from ``samples``
    ``(n, H, W)``: around ``mean`` (``1/n``) if given, else around their own mean (``1/(n-1)``).

    Example
    -------
    >>> samples = torch.tensor([[[1.0, 0.0]], [[-1.0, 0.0]]])  # (n=2, H=1, W=2)
    >>> patch_covariances((1, 2), 1, samples=samples, mean=torch.zeros(1, 2))
    [tensor([[1.]]), tensor([[0.]])]
    """
    shape = (int(shape[0]), int(shape[1]))
    n_pixels = shape[0] * shape[1]
    if (cov is None) == (samples is None):
        raise ValueError("pass exactly one of cov and samples")
    patches = patch_indices(shape, patch_size)
    if cov is not None:
        _check_image("cov", cov, (n_pixels, n_pixels))
        return [cov[p.to(cov.device)][:, p.to(cov.device)] for p in patches]
    if not isinstance(samples, torch.Tensor) or samples.ndim != 3 or samples.shape[1:] != shape:
        got = tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples)
        raise ValueError(f"samples must have shape (n, {shape[0]}, {shape[1]}), got {got}")
    flat = samples.reshape(len(samples), -1)
    if mean is None:
        if len(samples) < 2:
            raise ValueError("estimating a covariance around the sample mean needs 2 samples")
        flat, denom = flat - flat.mean(dim=0), len(samples) - 1
    else:
        flat, denom = flat - _check_image("mean", mean, shape).reshape(1, -1), len(samples)
    patches = [p.to(flat.device) for p in patches]
    return [flat[:, p].T @ flat[:, p] / denom for p in patches]


def gaussian_log_likelihood(
    truth: torch.Tensor,
    mean: torch.Tensor,
    *,
    std: torch.Tensor | None = None,
    cov: torch.Tensor | None = None,
    samples: torch.Tensor | None = None,
    patch_size: int = 1,
    eps: float = 0.0,
) -> float:
    r"""Test log-likelihood per pixel of ``truth`` under Gaussians over patches.

    :math:`\frac1N\sum_p \log\mathcal N(x_p;\ \mu_p,\ C_p + \varepsilon I)`, where :math:`C_p`
    is the covariance of patch :math:`p` from exactly one of ``std`` (independent pixels; any
    ``patch_size`` gives the same), ``cov`` ``(N, N)``, or ``samples`` ``(n, H, W)`` (around
    ``mean``). ``eps`` (the paper's small image-noise term) keeps near-singular patch
    covariances usable.

    Raises
    ------
    ValueError
        For misshapen inputs, not exactly one source of covariance, or a patch covariance that
        is not positive definite (raise ``eps``).
    """
    truth = _check_image("truth", truth)
    shape = tuple(truth.shape)
    mean = _check_image("mean", mean, shape)
    if sum(x is not None for x in (std, cov, samples)) != 1:
        raise ValueError("pass exactly one of std, cov and samples")
    if not (isinstance(eps, (int, float)) and eps >= 0):
        raise ValueError(f"eps must be a non-negative number, got {eps!r}")
    error = (truth - mean).reshape(-1).to(torch.float64)
    if std is not None:
        var = _check_image("std", std, shape).reshape(-1).to(torch.float64) ** 2 + eps
        if not bool((var > 0).all()):
            raise ValueError("std must be positive everywhere (or pass eps > 0)")
        total = -0.5 * (error**2 / var + var.log() + math.log(2 * math.pi)).sum()
        return float(total) / error.numel()
    covs = patch_covariances(shape, patch_size, cov=cov, samples=samples, mean=mean)
    total = torch.zeros((), dtype=torch.float64, device=error.device)
    for p, c in zip(patch_indices(shape, patch_size), covs, strict=True):
        p = p.to(error.device)
        c = c.to(torch.float64) + eps * torch.eye(len(p), dtype=torch.float64, device=c.device)
        chol, info = torch.linalg.cholesky_ex(0.5 * (c + c.T))
        if int(info) != 0:
            raise ValueError(
                f"the covariance of a {patch_size}x{patch_size} patch is not positive definite; "
                "pass eps > 0 or more samples"
            )
        white = torch.linalg.solve_triangular(chol, error[p, None], upper=False)
        log_det = 2 * chol.diagonal().log().sum()
        total = total - 0.5 * ((white**2).sum() + log_det + len(p) * math.log(2 * math.pi))
    return float(total) / error.numel()


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"interval levels must lie in (0, 1), got {level!r}")
    return NormalDist().inv_cdf(0.5 + level / 2)


def interval_coverage(
    truth: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    levels: Sequence[float] = (0.5, 0.9, 0.95),
) -> dict[float, float]:
    r"""The fraction of pixels whose truth lies in the central interval
    :math:`\mu \pm z_{(1+q)/2}\, s` of each level :math:`q` (calibrated: about :math:`q`).

    Accepts images or stacks of them (any equal shapes)."""
    for name, value in (("truth", truth), ("mean", mean), ("std", std)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a tensor, got {type(value).__name__}")
    if not truth.shape == mean.shape == std.shape:
        raise ValueError(
            f"truth, mean and std must have one shape, got {tuple(truth.shape)}, "
            f"{tuple(mean.shape)}, {tuple(std.shape)}"
        )
    error = (truth - mean).abs()
    return {float(q): float((error <= _z(q) * std).double().mean()) for q in levels}


def calibration_curve(
    truth: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    levels: Sequence[float] | None = None,
) -> tuple[list[float], list[float]]:
    """Nominal levels (default 0.05, 0.10, …, 0.95) and the observed coverage at each, for a
    calibration plot (a calibrated predictive lies on the diagonal)."""
    levels = [round(0.05 * k, 2) for k in range(1, 20)] if levels is None else list(levels)
    observed = interval_coverage(truth, mean, std, levels)
    return levels, [observed[float(q)] for q in levels]


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks from 1 with ties given their average rank."""
    values = values.reshape(-1).to(torch.float64)
    order = torch.argsort(values)
    sorted_values = values[order]
    ranks = torch.empty_like(values)
    ranks[order] = torch.arange(1, len(values) + 1, dtype=torch.float64)
    unique, inverse = torch.unique(sorted_values, return_inverse=True)
    if len(unique) < len(values):  # average the ranks within each tie group
        sums = torch.zeros(len(unique), dtype=torch.float64).index_add_(0, inverse, ranks[order])
        counts = torch.bincount(inverse, minlength=len(unique)).to(torch.float64)
        ranks[order] = (sums / counts)[inverse]
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two equally long sets of values (ties averaged).

    Example
    -------
    >>> round(spearman(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([10.0, 20, 15, 40])), 6)
    0.8
    """
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or a.numel() != b.numel():
        raise ValueError("a and b must be tensors with the same number of values")
    if a.numel() < 2:
        raise ValueError("spearman needs at least two values")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = ra.norm() * rb.norm()
    if float(denom) == 0:
        raise ValueError("spearman is undefined for constant values")
    return float((ra * rb).sum() / denom)


def error_std_correlation(truth: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> float:
    """Spearman's rank correlation between ``|truth - mean|`` and ``std`` over all pixels."""
    if not truth.shape == mean.shape == std.shape:
        raise ValueError("truth, mean and std must have one shape")
    return spearman((truth - mean).abs(), std)


def uq_metrics(
    truth: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    *,
    cov: torch.Tensor | None = None,
    samples: torch.Tensor | None = None,
    patch_sizes: Sequence[int] = (1, 2, 10),
    levels: Sequence[float] = (0.5, 0.9, 0.95),
    eps: float = 0.0,
) -> dict[str, float]:
    """Every metric of this module for one image: ``log_likelihood_{p}x{p}`` (per pixel; patches
    over 1×1 from ``std``, larger ones from ``cov`` or ``samples`` when given),
    ``coverage_{q}`` and ``error_std_spearman`` (left out when the errors or the std are
    constant, where a rank correlation is undefined).

    Example
    -------
    >>> m = uq_metrics(torch.zeros(4, 4), torch.zeros(4, 4), torch.ones(4, 4), patch_sizes=(1,))
    >>> sorted(m)  # doctest: +NORMALIZE_WHITESPACE
    ['coverage_0.5', 'coverage_0.9', 'coverage_0.95', 'log_likelihood_1x1']
    """
    out: dict[str, float] = {}
    for p in patch_sizes:
        if _check_patch_size(p) == 1 or (cov is None and samples is None):
            if p == 1:
                out["log_likelihood_1x1"] = gaussian_log_likelihood(truth, mean, std=std, eps=eps)
            continue
        out[f"log_likelihood_{p}x{p}"] = gaussian_log_likelihood(
            truth,
            mean,
            cov=cov,
            samples=None if cov is not None else samples,
            patch_size=p,
            eps=eps,
        )
    for q, value in interval_coverage(truth, mean, std, levels).items():
        out[f"coverage_{q:g}"] = value
    if float((truth - mean).abs().max()) > 0 and float(std.max() - std.min()) > 0:
        out["error_std_spearman"] = error_std_correlation(truth, mean, std)
    return out
