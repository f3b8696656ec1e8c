"""LoDoPaB-CT as released on Zenodo: pairs of HDF5 files of ground truths and observations.

Example
-------
>>> LODOPAB_SPLITS
('train', 'validation', 'test')
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import h5py
import numpy as np
import torch

from data_tools.datasets.common import check_index
from data_tools.datasets.hdf5 import LazyFiles, finite_sample

__all__ = ["LODOPAB_SPLITS", "LoDoPaBDataset"]

#: The splits of the release.
LODOPAB_SPLITS = ("train", "validation", "test")


class LoDoPaBDataset(torch.utils.data.Dataset):
    """The LoDoPaB-CT dataset as stored on Zenodo: pairs of HDF5 files per block of slices.

    Reads ``root/ground_truth_{split}_{NNN}.hdf5`` and ``root/observation_{split}_{NNN}.hdf5``
    (``NNN`` = 000, 001, ...), each with a dataset ``"data"`` of shape ``(n_in_file, H, W)``
    resp. ``(n_in_file, n_angles, n_detectors)``. Sample ``i`` runs over the files in order.
    Values are returned as stored (observations are post-log, divided by ``MU_MAX`` as in the
    release). Files are opened lazily in each process.

    Parameters
    ----------
    root
        Folder holding the files.
    split
        ``"train"``, ``"validation"`` or ``"test"``.
    max_files
        Use only the first ``max_files`` file pairs (a quick subset).

    Returns ``(x, y)`` float32 tensors of shape ``(1, H, W)`` and ``(1, n_angles, n_detectors)``.

    Example
    -------
    >>> data = LoDoPaBDataset("~/data/lodopab", "validation", max_files=1)  # doctest: +SKIP
    >>> x, y = data[0]  # doctest: +SKIP
    >>> x.shape, y.shape  # doctest: +SKIP
    (torch.Size([1, 362, 362]), torch.Size([1, 1000, 513]))
    """

    def __init__(
        self, root: str | os.PathLike[str], split: str, *, max_files: int | None = None
    ) -> None:
        if split not in LODOPAB_SPLITS:
            raise ValueError(f"split must be one of {LODOPAB_SPLITS}, got {split!r}")
        if max_files is not None and (
            isinstance(max_files, bool) or not isinstance(max_files, int) or max_files < 1
        ):
            raise ValueError(f"max_files must be None or an int >= 1, got {max_files!r}")
        self.root = Path(root).expanduser()
        self.split = split
        numbers = self._numbers()
        if not numbers:
            raise FileNotFoundError(
                f"no LoDoPaB-CT files for split {split!r}: expected "
                f"{self.root / f'ground_truth_{split}_NNN.hdf5'} and "
                f"{self.root / f'observation_{split}_NNN.hdf5'} (NNN = 000, 001, ...)"
            )
        if max_files is not None:
            numbers = numbers[:max_files]
        self.files: list[tuple[Path, Path]] = []
        counts: list[int] = []
        first: dict[str, tuple[Path, tuple[int, ...]]] = {}
        for number in range(len(numbers)):
            gt, obs = self._file_pair(number)
            lengths = {}
            for kind, path in (("images", gt), ("observations", obs)):
                if not path.is_file():
                    raise FileNotFoundError(
                        f"LoDoPaB-CT file missing: {path} (the files of a split come in pairs "
                        f"ground_truth_{split}_NNN.hdf5 and observation_{split}_NNN.hdf5, "
                        "numbered from 000 without gaps)"
                    )
                n, *sample_shape = self._shape(path)
                path0, shape0 = first.setdefault(kind, (path, tuple(sample_shape)))
                if tuple(sample_shape) != shape0:
                    raise ValueError(
                        f"{path} holds {kind} of shape {tuple(sample_shape)} but {path0.name} "
                        f"holds {kind} of shape {shape0}: all files of a split must agree"
                    )
                lengths[kind] = n
            n_gt, n_obs = lengths["images"], lengths["observations"]
            if n_gt != n_obs:
                raise ValueError(
                    f"{gt.name} holds {n_gt} images but {obs.name} holds {n_obs} observations"
                )
            self.files.append((gt, obs))
            counts.append(n_gt)
        self._ends = np.cumsum(counts)
        self._files = LazyFiles(capacity=8)

    def _numbers(self) -> list[int]:
        """The file numbers ``NNN`` present, of ground truths or observations."""
        pattern = re.compile(rf"(?:ground_truth|observation)_{self.split}_(\d{{3,}})\.hdf5")
        return sorted(
            {
                int(m.group(1))
                for p in (self.root.iterdir() if self.root.is_dir() else ())
                if (m := pattern.fullmatch(p.name))
            }
        )

    def _file_pair(self, number: int) -> tuple[Path, Path]:
        return (
            self.root / f"ground_truth_{self.split}_{number:03d}.hdf5",
            self.root / f"observation_{self.split}_{number:03d}.hdf5",
        )

    @staticmethod
    def _shape(path: Path) -> tuple[int, ...]:
        """The shape ``(n_in_file, *sample_shape)`` of the file's ``"data"``, checked 3D."""
        try:
            with h5py.File(path, "r") as f:
                if "data" not in f:
                    raise ValueError(f"{path} has no dataset 'data'; keys present: {sorted(f)}")
                shape = tuple(int(n) for n in f["data"].shape)
        except OSError as error:
            raise ValueError(f"{path} is not a readable HDF5 file: {error}") from error
        if len(shape) != 3:
            raise ValueError(
                f"{path}: 'data' has shape {shape}, expected a stack of 2D slices (n, rows, cols)"
            )
        return shape

    def __len__(self) -> int:
        return int(self._ends[-1])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = check_index(index, len(self))
        file_number = int(np.searchsorted(self._ends, i, side="right"))
        in_file = i - (int(self._ends[file_number - 1]) if file_number else 0)
        gt, obs = self.files[file_number]
        x = finite_sample(self._files.get(gt)["data"][in_file], gt, "data", in_file)
        y = finite_sample(self._files.get(obs)["data"][in_file], obs, "data", in_file)
        return x, y

    def close(self) -> None:
        """Close this process's file handles (reopened on the next access)."""
        self._files.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.root)!r}, {self.split!r}, files={len(self.files)}, "
            f"size={len(self)})"
        )
