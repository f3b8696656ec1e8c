"""Evaluation and training data from a ``data`` config: seeded synthetic splits.

A ``data`` config names, per split, the phantom family, the number of images and a seed; the
noise model and the simulation factor (how much finer the simulation grid is than the
reconstruction grid) are shared::

    factor: 2
    noise: {_target_: data_tools.noise.GaussianNoise, relative: 0.025}
    splits:
      validation: {phantom: random_ellipses, size: 20, seed: 1001}
      test: {phantom: random_ellipses, size: 100, seed: 2002}

Sample ``i`` of a split is the same everywhere (see ``SyntheticDataset``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from omegaconf import DictConfig

from data_tools.datasets import SyntheticDataset
from data_tools.phantoms import random_ellipse_params, render_random_ellipses, shepp_logan
from data_tools.simulate import simulate


def _ellipses(generator: torch.Generator) -> Callable:
    params = random_ellipse_params(1, generator=generator)
    return lambda shape: render_random_ellipses(params, shape)[0]


def _shepp_logan(generator: torch.Generator) -> Callable:
    return lambda shape: shepp_logan(shape)


#: Phantom family name → function(generator) returning a renderer ``shape -> image``.
PHANTOMS: dict[str, Callable[[torch.Generator], Callable]] = {
    "random_ellipses": _ellipses,
    "shepp_logan": _shepp_logan,
}


def make_simulator(phantom: str, geometry, *, factor: int, noise) -> Callable:
    """A ``simulator(generator) -> (x, y)`` drawing one phantom and simulating its measurement."""
    if phantom not in PHANTOMS:
        raise ValueError(f"unknown phantom {phantom!r}; known: {', '.join(PHANTOMS)}")
    draw = PHANTOMS[phantom]

    def simulator(generator: torch.Generator):
        return simulate(draw(generator), geometry, factor=factor, noise=noise, generator=generator)

    return simulator


def build_split(data: DictConfig, split: str, geometry) -> SyntheticDataset:
    """The ``split`` of a ``data`` config as a :class:`SyntheticDataset` for ``geometry``."""
    from hydra.utils import instantiate

    if split not in data.splits:
        raise ValueError(f"data config has no split {split!r}; splits: {list(data.splits)}")
    spec = data.splits[split]
    unknown = set(spec) - {"phantom", "size", "seed"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)} in data.splits.{split}")
    noise = instantiate(data.noise) if data.get("noise") is not None else None
    simulator = make_simulator(spec.phantom, geometry, factor=int(data.factor), noise=noise)
    return SyntheticDataset(simulator=simulator, size=int(spec.size), seed=int(spec.seed))
