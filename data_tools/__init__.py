"""Phantoms, noise, simulation, datasets, file formats and metrics (knows no networks).

Rooms:

- ``phantoms``: analytic and random phantoms, and the registry of families that data configs
  name (``PHANTOMS``, ``register_phantom``);
- ``noise``: Gaussian and Poisson noise models, seeded by a generator;
- ``simulate``: CT data simulated on a finer grid than the reconstruction's (no inverse crime);
- ``datasets``: seeded synthetic datasets, HDF5 caches, LoDoPaB-CT and folders of image files;
- ``projections``: raw scanner projections to line integrals: TIFF and HDF5 (DXchange) readers,
  flat/dark correction and −log, dead-pixel and stripe (ring) removal;
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
from data_tools.projections import (
    ProjectionData,
    flat_dark_correct,
    minus_log,
    read_hdf5_projections,
    read_tiff_projections,
    remove_outliers,
    remove_rings,
    to_line_integrals,
)
from data_tools.simulate import (
    cached_ray_transform,
    downsample,
    fine_geometry,
    fine_pat_operator,
    simulate,
    simulate_pat,
)

__all__ = [
    "fine_pat_operator",
    "simulate_pat",
    "PHANTOMS",
    "GaussianNoise",
    "HDF5Dataset",
    "ImageFolderDataset",
    "LoDoPaBDataset",
    "SyntheticDataset",
    "cache_to_hdf5",
    "NoNoise",
    "PoissonNoise",
    "ProjectionData",
    "balls",
    "cached_ray_transform",
    "downsample",
    "ellipses_image",
    "fine_geometry",
    "flat_dark_correct",
    "gaussian_noise",
    "minus_log",
    "phantom_family",
    "poisson_noise",
    "psnr",
    "random_ellipse_params",
    "random_ellipses",
    "read_hdf5_projections",
    "read_tiff_projections",
    "register_phantom",
    "relative_error",
    "remove_outliers",
    "remove_rings",
    "render_random_ellipses",
    "shepp_logan",
    "simulate",
    "ssim",
    "to_line_integrals",
    "vessels",
]
