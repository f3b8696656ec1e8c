"""Phantoms, noise, simulation, datasets, file formats and metrics (knows no networks)."""

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
    balls,
    ellipses_image,
    random_ellipse_params,
    random_ellipses,
    render_random_ellipses,
    shepp_logan,
    vessels,
)
from data_tools.simulate import cached_ray_transform, downsample, fine_geometry, simulate

__all__ = [
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
    "poisson_noise",
    "psnr",
    "random_ellipse_params",
    "random_ellipses",
    "relative_error",
    "render_random_ellipses",
    "shepp_logan",
    "simulate",
    "ssim",
    "vessels",
]
