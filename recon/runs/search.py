"""A small hyper-parameter search: every combination of a grid, scored on validation data.

Used by ``recon-eval search=true`` to choose TV λ, iteration counts or FBP filter settings on
the *validation* split; the chosen values are then written into the experiment config.

Example
-------
>>> from recon.classical import TV
>>> best, table = grid_search(lambda p: TV(**p), {"lam": [0.01, 0.1], "n_iter": [100]},
...                           y_val, x_val, op)                         # doctest: +SKIP
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence

import torch

from data_tools.metrics import psnr


def grid_points(grid: Mapping[str, Sequence]) -> list[dict]:
    """All combinations of a ``{name: [values]}`` grid, in a stable order."""
    if not grid:
        return [{}]
    for name, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"grid entry {name!r} must be a non-empty list, got {values!r}")
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]


def grid_search(
    make: Callable[[dict], torch.nn.Module],
    grid: Mapping[str, Sequence],
    y: torch.Tensor,
    x: torch.Tensor,
    op,
    *,
    batch_size: int = 32,
    progress=None,
) -> tuple[dict, list[dict]]:
    """Score ``make(params)(y, op)`` by mean PSNR against ``x`` for every grid point.

    Returns the best parameters and the table of all points, best first.
    """
    table = []
    for params in grid_points(grid):
        method = make(params)
        with torch.no_grad():
            recon = torch.cat(
                [method(y[s : s + batch_size], op) for s in range(0, y.shape[0], batch_size)]
            )
        table.append({**params, "psnr": float(psnr(recon, x, ndim=2).mean())})
        if progress is not None:
            progress.update(1)
    table.sort(key=lambda row: -row["psnr"])
    best = {k: v for k, v in table[0].items() if k != "psnr"}
    return best, table


def grid_edges(best: Mapping, grid: Mapping[str, Sequence]) -> list[str]:
    """Names of the numeric parameters whose ``best`` value is the smallest or largest of their
    grid (grids of two or more numbers): the optimum may lie outside the grid, so extend it.

    >>> grid_edges({"lam": 0.25, "mu": 0.1}, {"lam": [0.25, 0.5, 1.0], "mu": [0.01, 0.1, 1.0]})
    ['lam']
    """
    edges = []
    for name, values in grid.items():
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numbers) < 2 or len(numbers) != len(values) or name not in best:
            continue
        if best[name] in (min(numbers), max(numbers)):
            edges.append(name)
    return edges
