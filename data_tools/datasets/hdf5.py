"""HDF5: a cache that writes a dataset once (atomically, shared by parallel jobs) and reads it back.

Example
-------
>>> import functools, os, tempfile, torch
>>> from operators import Parallel2D, RayTransform
>>> from data_tools.datasets import SyntheticDataset
>>> A = RayTransform(Parallel2D(image_shape=(32, 32), n_angles=10), backend="matrix")
>>> data = SyntheticDataset(phantom=functools.partial(torch.rand), operator=A, size=4)
>>> target = os.path.join(tempfile.mkdtemp(), "cache.h5")
>>> len(HDF5Dataset(cache_to_hdf5(data, target, progress=False)))
4
"""

from __future__ import annotations

import collections
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import filelock
import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from data_tools.datasets.common import check_index

__all__ = ["CACHE_FORMAT_VERSION", "HDF5Dataset", "LazyFiles", "cache_to_hdf5", "finite_sample"]

#: Bumped when the layout written by :func:`cache_to_hdf5` changes.
CACHE_FORMAT_VERSION = 1


def _sample_tensors(sample: Any) -> tuple[torch.Tensor, ...]:
    """A dataset sample as a tuple of tensors: ``(x, y)`` or ``(x,)``."""
    if isinstance(sample, torch.Tensor):
        return (sample,)
    if isinstance(sample, (tuple, list)) and len(sample) in (1, 2):
        if all(isinstance(t, torch.Tensor) for t in sample):
            return tuple(sample)
    raise ValueError(
        "cache_to_hdf5 needs samples that are a tensor x or a pair (x, y) of tensors, got "
        f"{type(sample).__name__}"
    )


def _cache_state(path: Path) -> dict[str, Any] | None:
    """The attributes of a complete, consistent cache at ``path``; ``None`` if missing or broken."""
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            if not bool(attrs.get("complete", False)):
                return None
            keys = json.loads(attrs["keys"])
            size = int(attrs["size"])
            for key in keys:
                if key not in f or f[key].shape[0] != size:
                    return None
            return {"size": size, "keys": keys, "meta": json.loads(attrs["meta"])}
    except (OSError, KeyError, ValueError, TypeError):
        return None


def _meta_json(meta: dict[str, Any] | None) -> str:
    try:
        return json.dumps(meta, sort_keys=True)
    except TypeError as error:
        raise TypeError(f"meta must be JSON-serialisable: {error}") from None


def _check_reusable(path: Path, state: dict[str, Any], size: int, meta_json: str) -> None:
    """Raise if the complete cache at ``path`` holds a different dataset than requested."""
    if state["size"] != size:
        raise ValueError(
            f"cache {path} holds {state['size']} samples but the dataset has {size}; "
            "use another path or overwrite=True"
        )
    if state["meta"] != json.loads(meta_json):
        raise ValueError(
            f"cache {path} was written with meta {json.dumps(state['meta'], sort_keys=True)}, "
            f"not {meta_json}; use another path or overwrite=True"
        )


def cache_to_hdf5(
    dataset: torch.utils.data.Dataset,
    path: str | os.PathLike[str],
    *,
    meta: dict[str, Any] | None = None,
    overwrite: bool = False,
    chunk: int = 64,
    progress: bool = True,
) -> Path:
    """Write every sample of ``dataset`` to one HDF5 file, atomically and at most once.

    Datasets ``"x"`` (and ``"y"`` if samples are pairs) hold the samples stacked as float32, one
    HDF5 chunk per sample. Attributes: ``size``, ``x_shape``/``y_shape``, ``keys``, ``meta`` (JSON),
    ``format_version`` and, written last, ``complete = True``.

    Concurrency: the work happens under ``filelock.FileLock(path + ".lock")`` into a temporary file
    in the same folder, which is then ``os.replace``-d onto ``path``, so parallel jobs (a sweep)
    share one cache and no reader ever sees a partial file. A complete cache with the same size and
    ``meta`` is reused without computing a sample; a partial or corrupt file (no ``complete``
    attribute, missing datasets, wrong lengths, not HDF5) is rebuilt; a complete cache of a
    different dataset (other size or ``meta``) raises unless ``overwrite``.

    Parameters
    ----------
    dataset
        Map-style dataset whose samples are a tensor ``x`` or a pair ``(x, y)`` of fixed shapes.
    path
        Target file.
    meta
        JSON-serialisable description of the dataset (seed, geometry, noise, ...), stored as the
        ``meta`` attribute and compared on reuse.
    overwrite
        Rebuild even if a complete cache exists.
    chunk
        Samples computed and written per block (bounds the memory used).
    progress
        Show a tqdm progress bar.

    Returns
    -------
    Path
        ``path``.

    Example
    -------
    >>> import functools, torch
    >>> from operators import Parallel2D, RayTransform
    >>> from data_tools.datasets import SyntheticDataset
    >>> A = RayTransform(Parallel2D(image_shape=(32, 32), n_angles=10), backend="matrix")
    >>> data = SyntheticDataset(phantom=functools.partial(torch.rand), operator=A, size=8)
    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "ellipses.h5")
    >>> file = cache_to_hdf5(data, target, meta={"seed": 0}, progress=False)
    >>> torch.equal(HDF5Dataset(file)[3][1], data[3][1])
    True
    """
    path = Path(path)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be an int >= 1, got {chunk!r}")
    size = len(dataset)
    if size < 1:
        raise ValueError("cannot cache an empty dataset")
    meta_json = _meta_json(meta)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} for the cache {path.name} does not exist")

    if not overwrite:  # fast path: a complete file only ever appears through os.replace
        state = _cache_state(path)
        if state is not None:
            _check_reusable(path, state, size, meta_json)
            return path

    with filelock.FileLock(str(path) + ".lock"):
        if not overwrite:  # another job may have written it while we waited
            state = _cache_state(path)
            if state is not None:
                _check_reusable(path, state, size, meta_json)
                return path
        # Whoever holds the lock is the only writer: temporary files left now are from a killed job.
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            _write_cache(
                dataset,
                tmp,
                size=size,
                meta_json=meta_json,
                chunk=chunk,
                progress=progress,
                desc=f"caching {path.name}",
            )
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def _write_cache(
    dataset: torch.utils.data.Dataset,
    tmp: Path,
    *,
    size: int,
    meta_json: str,
    chunk: int,
    progress: bool,
    desc: str,
) -> None:
    first = _sample_tensors(dataset[0])
    keys = ["x", "y"][: len(first)]
    shapes = [tuple(t.shape) for t in first]
    with (
        h5py.File(tmp, "w") as f,
        tqdm(total=size, desc=desc, disable=not progress) as bar,
    ):
        out = [
            f.create_dataset(key, shape=(size, *shape), dtype="float32", chunks=(1, *shape))
            for key, shape in zip(keys, shapes, strict=True)
        ]
        for start in range(0, size, chunk):
            stop = min(start + chunk, size)
            blocks = [np.empty((stop - start, *shape), dtype=np.float32) for shape in shapes]
            for i in range(start, stop):
                sample = first if i == 0 else _sample_tensors(dataset[i])
                if len(sample) != len(keys):
                    raise ValueError(
                        f"sample {i} has {len(sample)} tensors, sample 0 has {len(keys)}"
                    )
                for key, block, shape, tensor in zip(keys, blocks, shapes, sample, strict=True):
                    if tuple(tensor.shape) != shape:
                        raise ValueError(
                            f"sample {i}: {key} has shape {tuple(tensor.shape)}, "
                            f"sample 0 has {shape}"
                        )
                    block[i - start] = tensor.detach().cpu().to(torch.float32).numpy()
                bar.update(1)
            for dset, block in zip(out, blocks, strict=True):
                dset[start:stop] = block
        f.attrs["size"] = size
        f.attrs["keys"] = json.dumps(keys)
        for key, shape in zip(keys, shapes, strict=True):
            f.attrs[f"{key}_shape"] = np.asarray(shape, dtype=np.int64)
        f.attrs["meta"] = meta_json
        f.attrs["format_version"] = CACHE_FORMAT_VERSION
        f.attrs["complete"] = True  # last: a file without it is partial


class LazyFiles:
    """Read-only h5py handles opened on first use in each process, at most ``capacity`` at once.

    h5py handles must not cross a fork, so a handle is reused only in the process that opened it;
    pickling (spawned DataLoader workers) drops the handles.

    Example
    -------
    >>> files = LazyFiles(capacity=2)
    >>> files.close()
    """

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        self._pid: int | None = None
        self._files: collections.OrderedDict[Path, h5py.File] = collections.OrderedDict()

    def get(self, path: Path) -> h5py.File:
        """The open handle of ``path`` in this process (opened now if needed)."""
        if self._pid != os.getpid():  # a forked child: the parent's handles are not ours
            self._files = collections.OrderedDict()
            self._pid = os.getpid()
        f = self._files.get(path)
        if f is None:
            f = h5py.File(path, "r")
            self._files[path] = f
            while len(self._files) > self.capacity:
                self._files.popitem(last=False)[1].close()
        else:
            self._files.move_to_end(path)
        return f

    def close(self) -> None:
        """Close this process's handles."""
        if self._pid == os.getpid():
            for f in self._files.values():
                f.close()
        self._files = collections.OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {"capacity": self.capacity}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["capacity"])


def finite_sample(array: np.ndarray, path: Path, key: str, index: int) -> torch.Tensor:
    """A stored sample as a float32 tensor with a channel dimension, or ``ValueError`` naming
    the file, the key and the index if it holds NaN or inf.

    Example
    -------
    >>> finite_sample(np.zeros((2, 2)), Path("a.h5"), "x", 0).shape
    torch.Size([1, 2, 2])
    """
    if not np.isfinite(array).all():
        raise ValueError(f"{path}: {key!r} sample {index} contains NaN or inf")
    return torch.from_numpy(np.asarray(array, dtype=np.float32)).unsqueeze(0)


def _parse_meta(raw: Any) -> Any:
    """The ``meta`` attribute of a cache as written (JSON), or as stored if it is not JSON."""
    if isinstance(raw, (str, bytes)):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


class HDF5Dataset(torch.utils.data.Dataset):
    """Samples stored in one HDF5 file, e.g. a cache written by :func:`cache_to_hdf5`.

    The file is checked when the dataset is made and opened lazily, once per process, on the
    first ``__getitem__`` (h5py handles are not fork-safe), so it works in DataLoader workers.

    Parameters
    ----------
    path
        The HDF5 file.
    x_key, y_key
        Names of the datasets, each of shape ``(n, *sample_shape)``. With ``y_key=None`` the
        dataset returns ``x`` alone.

    Returns ``(x, y)`` float32 tensors as stored (a cache keeps the channel dimension).
    A sample with NaN or inf raises ``ValueError`` naming the file and the index.

    Example
    -------
    >>> import functools, torch
    >>> from operators import Parallel2D, RayTransform
    >>> from data_tools.datasets import SyntheticDataset
    >>> A = RayTransform(Parallel2D(image_shape=(32, 32), n_angles=10), backend="matrix")
    >>> data = SyntheticDataset(phantom=functools.partial(torch.rand), operator=A, size=8)
    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "cache.h5")
    >>> cached = HDF5Dataset(cache_to_hdf5(data, target, progress=False))
    >>> len(cached), cached[0][0].shape
    (8, torch.Size([1, 32, 32]))
    """

    def __init__(
        self, path: str | os.PathLike[str], *, x_key: str = "x", y_key: str | None = "y"
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"HDF5 file not found: {self.path}")
        self.x_key = x_key
        self.y_key = y_key
        keys = [x_key] if y_key is None else [x_key, y_key]
        try:
            with h5py.File(self.path, "r") as f:
                present = sorted(f.keys())
                lengths = {}
                for key in keys:
                    if key not in f or not isinstance(f[key], h5py.Dataset):
                        raise ValueError(
                            f"{self.path} has no dataset {key!r}; keys present: {present}"
                        )
                    if f[key].ndim < 1:
                        raise ValueError(
                            f"{self.path}: {key!r} is a scalar, not a stack of samples"
                        )
                    lengths[key] = f[key].shape[0]
                self.meta = _parse_meta(f.attrs.get("meta"))
        except OSError as error:
            raise ValueError(f"{self.path} is not a readable HDF5 file: {error}") from error
        if len(set(lengths.values())) != 1:
            raise ValueError(f"{self.path}: datasets have different lengths {lengths}")
        self._length = lengths[x_key]
        self._files = LazyFiles(capacity=1)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        i = check_index(index, self._length)
        f = self._files.get(self.path)
        x = finite_sample(f[self.x_key][i], self.path, self.x_key, i)[0]
        if self.y_key is None:
            return x
        return x, finite_sample(f[self.y_key][i], self.path, self.y_key, i)[0]

    def close(self) -> None:
        """Close this process's file handle (reopened on the next access)."""
        self._files.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, size={self._length})"
