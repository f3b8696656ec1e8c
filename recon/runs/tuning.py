"""Tune a classical reconstructor on validation pairs from Python: ``tune_tv(op, y_val, x_val)``.

The same search as ``recon-eval search=true`` (:func:`recon.runs.search.grid_search`: mean PSNR
over the validation pairs for each grid point), with a default grid for TV's λ around
:func:`recon.solvers.tv.tv_default_lam`, so that a user need not guess its scale.

Example
-------
>>> import torch
>>> from operators import Parallel2D, RayTransform
>>> from data_tools.phantoms import shepp_logan
>>> op = RayTransform(Parallel2D((16, 16), n_angles=12), backend="astra")
>>> x = shepp_logan(16).expand(2, 16, 16)
>>> y = op(x) + 0.05 * torch.randn(2, *op.range_shape, generator=torch.Generator().manual_seed(0))
>>> tv = tune_tv(op, y, x, n_iter=50, progress=False)
>>> tv.lam in tv_lam_grid(op, y, x)
True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from operators import OperatorLike
from recon.base import check_measurements
from recon.classical import TV
from recon.runs.search import grid_edges, grid_search
from recon.solvers.tv import data_norm, tv_default_lam

log = logging.getLogger(__name__)

__all__ = ["GRID_STEPS", "noise_estimate", "tune_tv", "tv_lam_grid"]

#: The default λ grid: ``tv_default_lam · √2**k`` for these ``k``, from ⅛ to 4 times the default
#: (the best λ measured: 0.7–1 times it for CT, 0.28 times for the PAT "vessels" protocol).
GRID_STEPS = tuple(range(-6, 5))


def noise_estimate(op: OperatorLike, y: torch.Tensor, x: torch.Tensor) -> float:
    """The root-mean-square of ``op(x) - y`` over the validation pairs: the noise level (plus
    any model error, as for data simulated on a finer grid), floored at 0.1 % of RMS ``|y|``."""
    with torch.no_grad():
        residual = float((op(x) - y).square().mean().sqrt())
        floor = 1e-3 * float(y.square().mean().sqrt())
    return max(residual, floor, torch.finfo(torch.float32).tiny)


def tv_lam_grid(op: OperatorLike, y_val: torch.Tensor, x_val: torch.Tensor) -> list[float]:
    """The default λ grid of :func:`tune_tv`: :func:`~recon.solvers.tv.tv_default_lam` at the
    validation pairs' noise level (:func:`noise_estimate`) times ``√2**k``, ``k`` in
    :data:`GRID_STEPS` (eleven values, ⅛ to 4 times the default)."""
    centre = tv_default_lam(op, noise_std=noise_estimate(op, y_val, x_val))
    return [float(f"{centre * math.sqrt(2) ** k:.4g}") for k in GRID_STEPS]


def tune_tv(
    op: OperatorLike,
    y_val: torch.Tensor,
    x_val: torch.Tensor,
    *,
    lams: Sequence[float] | None = None,
    n_iter: int = 300,
    nonneg: bool = True,
    op_norm: float | None = None,
    batch_size: int = 32,
    progress: bool | None = None,
) -> TV:
    """A :class:`~recon.classical.TV` with the λ of ``lams`` that gives the best mean PSNR on the
    validation pairs ``(y_val, x_val)``.

    Parameters
    ----------
    op
        The forward operator.
    y_val, x_val
        Validation measurements ``(B, *op.range_shape)`` and images ``(B, *op.domain_shape)``
        (a channel dimension, ``(B, 1, ...)``, is fine): a few images are enough.
    lams
        The λ to try; default :func:`tv_lam_grid` (eleven values, ⅛ to 4 times the default λ of
        the validation data's noise level).
    n_iter, nonneg
        As for :class:`~recon.classical.TV`; each λ runs ``n_iter`` iterations on every pair.
    op_norm
        ``‖A‖`` if known; otherwise computed once (``op.norm()``) and stored in the returned TV.
    batch_size
        Pairs per call.
    progress
        A progress bar over the grid (default: when writing to a terminal).

    Returns
    -------
    TV
        With the best λ. The whole table (λ, PSNR) is logged at INFO; a best λ at the edge of the
        grid is logged at WARNING: extend ``lams`` on that side.

    Raises
    ------
    ValueError
        If ``y_val`` and ``x_val`` do not match ``op`` or each other, or ``lams`` is empty.
    """
    check_measurements(y_val, op)
    if not isinstance(x_val, torch.Tensor) or x_val.shape[0] != y_val.shape[0]:
        got = tuple(x_val.shape) if isinstance(x_val, torch.Tensor) else type(x_val).__name__
        raise ValueError(
            f"x_val must hold one image per measurement ({y_val.shape[0]}), got shape {got}"
        )
    grid_lams = tv_lam_grid(op, y_val, x_val) if lams is None else [float(v) for v in lams]
    norm = data_norm(op, op_norm=op_norm, device=y_val.device)
    grid = {"lam": grid_lams}
    disable = None if progress is None else not progress  # None: off unless a terminal
    with tqdm(total=len(grid_lams), desc="tune TV λ", unit="λ", disable=disable) as bar:
        best, table = grid_search(
            lambda p: TV(lam=p["lam"], n_iter=n_iter, nonneg=nonneg, op_norm=norm),
            grid,
            y_val,
            x_val,
            op,
            batch_size=batch_size,
            progress=bar,
        )
    log.info(
        "tune_tv: best lam %.4g (validation PSNR %.2f); %s",
        best["lam"],
        table[0]["psnr"],
        ", ".join(f"{row['lam']:.4g}: {row['psnr']:.2f}" for row in sorted(table, key=_lam)),
    )
    if grid_edges(best, grid):
        log.warning(
            "tune_tv: the best lam %.4g is at the edge of the grid %s; extend the grid on that "
            "side (lams=...)",
            best["lam"],
            grid_lams,
        )
    return TV(lam=best["lam"], n_iter=n_iter, nonneg=nonneg, op_norm=norm)


def _lam(row: dict) -> float:
    return row["lam"]
