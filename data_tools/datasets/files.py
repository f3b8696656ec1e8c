"""Folders of 2D slices: PNG (and other Pillow formats), TIFF and DICOM files.

Example
-------
>>> import tempfile
>>> from PIL import Image
>>> folder = tempfile.mkdtemp()
>>> Image.fromarray(np.zeros((4, 4), np.uint8)).save(f"{folder}/a.png")
>>> ImageFolderDataset(folder)[0].shape
torch.Size([1, 4, 4])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from data_tools.datasets.common import (
    Noise,
    check_index,
    measure,
    non_negative_int,
    sample_generator,
    with_channel,
)

if TYPE_CHECKING:
    from operators import OperatorLike

__all__ = ["ImageFolderDataset", "read_image"]


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    return np.asarray(tifffile.imread(path), dtype=np.float64)


def _read_dicom(path: Path) -> np.ndarray:
    import pydicom

    ds = pydicom.dcmread(path)
    slope = float(getattr(ds, "RescaleSlope", 1.0))
    intercept = float(getattr(ds, "RescaleIntercept", 0.0))
    return ds.pixel_array.astype(np.float64) * slope + intercept


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img, dtype=np.float64)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """A 2D slice as float64: TIFF via tifffile, DICOM via pydicom (rescaled), others via Pillow.

    A file its reader cannot decode raises ``ValueError`` naming the file and the reader's error;
    a missing reader library raises its ``ImportError``.

    Example
    -------
    >>> import tempfile, tifffile
    >>> path = Path(tempfile.mkdtemp()) / "slice.tif"
    >>> tifffile.imwrite(path, np.ones((2, 3), np.uint16))
    >>> read_image(path).shape
    (2, 3)
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        kind, read = "TIFF", _read_tiff
    elif suffix == ".dcm":
        kind, read = "DICOM", _read_dicom
    else:
        kind, read = "image", _read_pillow
    try:
        image = read(path)
    except ImportError:
        raise
    except Exception as error:  # noqa: BLE001 - each reader raises its own kinds of error
        raise ValueError(
            f"{path} is not a readable {kind} file ({type(error).__name__}: {error}); "
            "fix or remove it, or leave its ending out of extensions"
        ) from error
    if image.ndim != 2:
        raise ValueError(
            f"{path}: expected a 2D grayscale slice, got an array of shape {image.shape}"
        )
    return image


class ImageFolderDataset(torch.utils.data.Dataset):
    """2D slices from a folder of PNG, TIFF or DICOM files, sorted by file name.

    PNG (and other Pillow formats) are read with Pillow, TIFF with tifffile, DICOM with pydicom
    with ``RescaleSlope``/``RescaleIntercept`` applied (Hounsfield units for CT). With
    ``normalize``, each image is scaled to ``[0, 1]`` by its own min and max (a constant image
    becomes zeros). With an ``operator``, measurements ``y = operator(x)`` are simulated, plus
    ``noise`` drawn from :func:`sample_generator` ``(seed, i)``.

    Parameters
    ----------
    root
        The folder (not searched recursively).
    extensions
        File name endings to include (case-insensitive).
    operator
        Optional forward operator; its ``domain_shape`` must equal each image's shape.
    noise
        Optional ``noise(y, generator=None) -> Tensor`` (only with ``operator``).
    seed
        Non-negative seed for the noise.
    normalize
        Scale each image to ``[0, 1]``.

    Returns ``x`` of shape ``(1, H, W)`` float32, or ``(x, y)`` with an operator.

    Example
    -------
    >>> slices = ImageFolderDataset("~/data/slices")  # doctest: +SKIP
    >>> slices[0].shape  # doctest: +SKIP
    torch.Size([1, 512, 512])
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        extensions: Sequence[str] = (".png", ".tif", ".tiff", ".dcm"),
        operator: OperatorLike | None = None,
        noise: Noise | None = None,
        seed: int = 0,
        normalize: bool = True,
    ) -> None:
        if isinstance(extensions, str) or not extensions:
            raise ValueError(
                f"extensions must be a non-empty sequence of endings, got {extensions!r}"
            )
        if noise is not None and operator is None:
            raise ValueError("noise needs an operator to simulate measurements")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        endings = tuple(e.lower() for e in extensions)
        self.files = sorted(
            (p for p in self.root.iterdir() if p.is_file() and p.name.lower().endswith(endings)),
            key=lambda p: p.name,
        )
        if not self.files:
            raise FileNotFoundError(f"no files ending in {', '.join(endings)} in {self.root}")
        self.operator = operator
        self.noise = noise
        self.seed = non_negative_int(seed, "seed")
        self.normalize = bool(normalize)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        i = check_index(index, len(self.files))
        path = self.files[i]
        image = read_image(path)
        if not np.isfinite(image).all():
            raise ValueError(f"{path} contains NaN or inf")
        if self.normalize:
            low, high = image.min(), image.max()
            image = (image - low) / (high - low) if high > low else np.zeros_like(image)
        x = torch.from_numpy(image.astype(np.float32))
        if self.operator is None:
            return x.unsqueeze(0)
        expected = tuple(self.operator.domain_shape)
        if tuple(x.shape) != expected:
            raise ValueError(
                f"{path}: image shape {tuple(x.shape)} does not match the operator's "
                f"domain_shape {expected}"
            )
        y = measure(x, self.operator, self.noise, sample_generator(self.seed, i))
        return x.unsqueeze(0), with_channel(y)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r}, size={len(self.files)})"
