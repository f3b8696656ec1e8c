"""Datasets of (x, y) pairs: seeded synthetic sets, HDF5 caches, LoDoPaB-CT and image folders.

Rooms:

- ``common``: per-sample seeding (:func:`sample_generator`), index and size checks, the channel
  dimension;
- ``synthetic``: seeded on-the-fly data (:class:`SyntheticDataset`, :class:`SyntheticImages`) and
  an in-memory cache of any dataset (:class:`MemoryCachedDataset`);
- ``hdf5``: write a dataset once to HDF5 (:func:`cache_to_hdf5`) and read it back
  (:class:`HDF5Dataset`);
- ``lodopab``: the LoDoPaB-CT release (:class:`LoDoPaBDataset`);
- ``files``: folders of PNG, TIFF and DICOM slices (:class:`ImageFolderDataset`).

Every dataset returns float32 tensors with a leading channel dimension, as networks see them:
images ``x`` of shape ``(1, H, W)`` and measurements ``y`` of shape ``(1, *operator.range_shape)``
(for 2D CT, ``(1, n_angles, n_detectors)``). A :class:`torch.utils.data.DataLoader` stacks them
into ``(B, 1, H, W)`` and ``(B, 1, n_angles, n_detectors)``.

Reproducibility: sample ``i`` of a seeded dataset draws its randomness from a generator seeded by
``(seed, i)`` alone, so it is the same sample in every call, DataLoader worker and process,
whatever the order of access.

Example
-------
>>> import functools, torch
>>> from operators import Parallel2D, RayTransform
>>> A = RayTransform(Parallel2D(image_shape=(32, 32), n_angles=10), backend="matrix")
>>> data = SyntheticDataset(phantom=functools.partial(torch.rand), operator=A, size=4, seed=1)
>>> x, y = data[0]
>>> x.shape, y.shape
(torch.Size([1, 32, 32]), torch.Size([1, 10, 46]))
"""

from __future__ import annotations

from data_tools.datasets.common import sample_generator
from data_tools.datasets.files import ImageFolderDataset
from data_tools.datasets.hdf5 import CACHE_FORMAT_VERSION, HDF5Dataset, cache_to_hdf5
from data_tools.datasets.lodopab import LODOPAB_SPLITS, LoDoPaBDataset
from data_tools.datasets.synthetic import (
    MeasurementsOnly,
    MemoryCachedDataset,
    SyntheticDataset,
    SyntheticImages,
)

__all__ = [
    "MeasurementsOnly",
    "CACHE_FORMAT_VERSION",
    "LODOPAB_SPLITS",
    "HDF5Dataset",
    "ImageFolderDataset",
    "LoDoPaBDataset",
    "MemoryCachedDataset",
    "SyntheticDataset",
    "SyntheticImages",
    "cache_to_hdf5",
    "sample_generator",
]
