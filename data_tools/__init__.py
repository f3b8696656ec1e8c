"""Phantoms, noise, simulation, datasets, file formats and metrics (knows no networks).

Rooms:

- ``phantoms``: analytic and random phantoms, and the registry of families that data configs
  name (``PHANTOMS``, ``register_phantom``);
- ``noise``: Gaussian and Poisson noise models, seeded by a generator;
- ``simulate``: CT data simulated on a finer grid than the reconstruction's (no inverse crime);
- ``datasets``: seeded synthetic datasets, HDF5 caches, LoDoPaB-CT and folders of image files;
- ``metrics``: PSNR, SSIM and relative error.
"""

from __future__ import annotations

from data_tools.datasets import (
    HDF5Dataset,
    ImageFolderDataset,
    LoDoPaBDataset,
    SyntheticDataset,
    cache_to_hdf5,
)
from data_tools.metrics import psnr, relative_error, ssim
from data_tools.noise import GaussianNoise, NoNoise, PoissonNoise, gaussian_noise, poisson_noise
from data_tools.phantoms import (
    PHANTOMS,
    balls,
    ellipses_image,
    phantom_family,
    random_ellipse_params,
    random_ellipses,
    register_phantom,
    render_random_ellipses,
    shepp_logan,
    vessels,
)
from data_tools.simulate import cached_ray_transform, downsample, fine_geometry, simulate

__all__ = [
    "PHANTOMS",
    "GaussianNoise",
    "HDF5Dataset",
    "ImageFolderDataset",
    "LoDoPaBDataset",
    "SyntheticDataset",
    "cache_to_hdf5",
    "NoNoise",
    "PoissonNoise",
    "balls",
    "cached_ray_transform",
    "downsample",
    "ellipses_image",
    "fine_geometry",
    "gaussian_noise",
    "phantom_family",
    "poisson_noise",
    "psnr",
    "random_ellipse_params",
    "random_ellipses",
    "register_phantom",
    "relative_error",
    "render_random_ellipses",
    "shepp_logan",
    "simulate",
    "ssim",
    "vessels",
]
