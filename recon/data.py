"""Evaluation and training data from a ``data`` config: seeded synthetic splits.

A ``data`` config names, per split, the phantom family, the number of images and a seed, plus a
noise model shared by the splits. Phantom families are looked up by name in the registry of
:mod:`data_tools.phantoms.registry` (``PHANTOMS``; add one with ``register_phantom``), so a new
phantom needs no edit here. A config comes in two kinds.

**CT, simulated on a finer grid** (``factor``): the measurements are simulated with the ray
transform of the caller's reconstruction geometry on a grid ``factor`` times finer (see
:func:`data_tools.simulate.simulate`), so :func:`build_split` needs that geometry::

    factor: 2
    noise: {_target_: data_tools.noise.GaussianNoise, relative: 0.025}
    splits:
      validation: {phantom: random_ellipses, size: 20, seed: 1001}
      test: {phantom: random_ellipses, size: 100, seed: 2002}

**Simulated by a named accurate operator** (``simulation``): the config names the forward model
that makes the data, usually a more accurate one than the reconstructions use (photoacoustics:
the k-space time stepper, while methods invert the exact line model or the fast regridding
model); phantoms are drawn on its ``domain_shape`` and no geometry is needed::

    defaults:
      - /operator@simulation.operator: pat_kspace64     # conf/operator/pat_kspace64.yaml
      - _self_
    noise: {_target_: data_tools.noise.GaussianNoise, relative: 0.01, reference: max}
    splits:
      test: {phantom: vessels, size: 20, seed: 2002}

Sample ``i`` of a split is the same everywhere (see ``SyntheticDataset``).

With ``measurements_only: true`` the **train** split yields the measurements alone, ``(y,)``
(:class:`~data_tools.datasets.MeasurementsOnly`), for self-supervised training that must never see
a ground truth; the validation and test splits keep theirs, for evaluation.

With ``images_only: true`` the splits hold the clean images alone, ``(x,)``, without simulating
any data: for training denoisers and generative models, which never look at ``y``. Image ``i``
is the same as in the full split (the phantom is drawn before the noise).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from omegaconf import DictConfig

from data_tools.datasets import MeasurementsOnly, SyntheticDataset, SyntheticImages
from data_tools.phantoms import phantom_family
from data_tools.simulate import downsample, fine_geometry, simulate


def make_simulator(phantom: str, geometry, *, factor: int, noise) -> Callable:
    """A ``simulator(generator) -> (x, y)`` drawing one phantom and simulating its CT data
    on a grid ``factor`` times finer than ``geometry``'s (:func:`data_tools.simulate.simulate`).

    Example
    -------
    >>> from operators import Parallel2D
    >>> sim = make_simulator("shepp_logan", Parallel2D((32, 32), n_angles=8), factor=2, noise=None)
    >>> [t.shape for t in sim(torch.Generator().manual_seed(0))]
    [torch.Size([32, 32]), torch.Size([8, 46])]
    """
    draw = phantom_family(phantom)

    def simulator(generator: torch.Generator):
        return simulate(draw(generator), geometry, factor=factor, noise=noise, generator=generator)

    return simulator


def make_phantom(phantom: str) -> Callable:
    """``phantom(shape, *, generator) -> image`` of a named family, as :class:`SyntheticDataset`
    calls it.

    Example
    -------
    >>> make_phantom("vessels")((32, 32), generator=torch.Generator().manual_seed(0)).shape
    torch.Size([32, 32])
    """
    draw = phantom_family(phantom)

    def render(shape, *, generator: torch.Generator) -> torch.Tensor:
        return draw(generator)(tuple(shape))

    return render


def build_split(
    data: DictConfig, split: str, geometry=None
) -> SyntheticDataset | SyntheticImages | MeasurementsOnly:
    """The ``split`` of a ``data`` config as a :class:`SyntheticDataset` (with ``images_only``,
    a :class:`~data_tools.datasets.SyntheticImages` of the same images).

    CT configs (with ``factor``) simulate for the reconstruction ``geometry``, which is then
    required. Configs with ``simulation.operator`` instantiate that operator, draw the phantoms
    on its ``domain_shape`` and measure them with it (plus noise); ``geometry`` is ignored.

    Raises
    ------
    ValueError
        For an unknown split, phantom or key, a config with both ``factor`` and ``simulation``,
        or a CT config without a ``geometry``.

    Example
    -------
    >>> from omegaconf import OmegaConf
    >>> from operators import Parallel2D
    >>> data = OmegaConf.create({"factor": 2, "splits": {"test": {
    ...     "phantom": "random_ellipses", "size": 3, "seed": 7}}})
    >>> x, y = build_split(data, "test", Parallel2D((32, 32), n_angles=8))[0]
    >>> x.shape, y.shape
    (torch.Size([1, 32, 32]), torch.Size([1, 8, 46]))
    >>> data = OmegaConf.create({
    ...     "simulation": {"operator": {
    ...         "_target_": "operators.LineSensor",
    ...         "grid": {"_target_": "operators.PATGrid", "shape": [32, 32]}}},
    ...     "noise": {"_target_": "data_tools.noise.GaussianNoise", "relative": 0.01,
    ...               "reference": "max"},
    ...     "splits": {"test": {"phantom": "vessels", "size": 2, "seed": 0}}})
    >>> x, y = build_split(data, "test")[1]
    >>> x.shape, y.shape                               # 32 sensors × 151 time samples
    (torch.Size([1, 32, 32]), torch.Size([1, 32, 151]))
    """
    measurements_only = data.get("measurements_only", False)
    if not isinstance(measurements_only, bool):
        raise ValueError(f"data.measurements_only must be true or false, got {measurements_only!r}")
    if measurements_only and data.get("images_only", False):
        raise ValueError("data.measurements_only and data.images_only exclude each other")
    dataset = _build_split(data, split, geometry)
    return MeasurementsOnly(dataset) if measurements_only and split == "train" else dataset


def _build_split(data: DictConfig, split: str, geometry=None) -> SyntheticDataset | SyntheticImages:
    """:func:`build_split` without ``measurements_only``."""
    from hydra.utils import instantiate

    if split not in data.splits:
        raise ValueError(f"data config has no split {split!r}; splits: {list(data.splits)}")
    spec = data.splits[split]
    unknown = set(spec) - {"phantom", "size", "seed"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)} in data.splits.{split}")
    noise = instantiate(data.noise) if data.get("noise") is not None else None
    size, seed = int(spec.size), int(spec.seed)
    simulation = data.get("simulation")
    images_only = data.get("images_only", False)
    if not isinstance(images_only, bool):
        raise ValueError(f"data.images_only must be true or false, got {images_only!r}")
    if simulation is not None:
        if data.get("factor") is not None:
            raise ValueError(
                "a data config gives either factor (CT simulated on a finer grid) or "
                "simulation (a named accurate operator), not both"
            )
        unknown = set(simulation) - {"operator"}
        if unknown or simulation.get("operator") is None:
            raise ValueError(
                "data.simulation must hold exactly one key, operator (an operator config); got "
                f"{sorted(simulation)}"
            )
        operator = instantiate(simulation.operator)
        phantom = make_phantom(spec.phantom)
        if images_only:
            shape = tuple(operator.domain_shape)
            return SyntheticImages(
                lambda generator: phantom(shape, generator=generator), size=size, seed=seed
            )
        return SyntheticDataset(
            phantom=phantom, operator=operator, noise=noise, size=size, seed=seed
        )
    if geometry is None:
        raise ValueError(
            "this data config simulates CT on a finer grid (factor) and needs the "
            "reconstruction geometry: build_split(data, split, op.geometry)"
        )
    factor = int(data.factor)
    if images_only:  # the simulator's ground truth: the fine-grid rendering, downsampled
        draw, fine_shape = phantom_family(spec.phantom), fine_geometry(geometry, factor).image_shape
        return SyntheticImages(
            lambda generator: downsample(draw(generator)(fine_shape), factor), size=size, seed=seed
        )
    simulator = make_simulator(spec.phantom, geometry, factor=factor, noise=noise)
    return SyntheticDataset(simulator=simulator, size=size, seed=seed)
