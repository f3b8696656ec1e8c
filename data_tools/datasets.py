"""Datasets of (x, y) pairs: seeded synthetic sets, HDF5 caches, LoDoPaB-CT and image folders.

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

import collections
import json
import operator as _operator
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import filelock
import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = [
    "HDF5Dataset",
    "ImageFolderDataset",
    "LoDoPaBDataset",
    "MemoryCachedDataset",
    "SyntheticDataset",
    "SyntheticImages",
    "cache_to_hdf5",
    "sample_generator",
]

#: Bumped when the layout written by :func:`cache_to_hdf5` changes.
CACHE_FORMAT_VERSION = 1

LODOPAB_SPLITS = ("train", "validation", "test")


class _Operator(Protocol):
    """What the datasets use of an operator (see :class:`operators.LinearOperator`)."""

    domain_shape: tuple[int, ...]
    range_shape: tuple[int, ...]

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


Phantom = Callable[..., torch.Tensor]  # phantom(shape, *, generator) -> (H, W)
Noise = Callable[..., torch.Tensor]  # noise(y, generator=None) -> y_noisy
Simulator = Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]


# --------------------------------------------------------------------------- helpers
def sample_generator(seed: int, index: int) -> torch.Generator:
    """A CPU :class:`torch.Generator` seeded from ``(seed, index)`` alone.

    The pair goes through :class:`numpy.random.SeedSequence`, so neighbouring seeds and indices give
    unrelated streams (unlike ``seed * k + index``, which collides for large indices).

    Parameters
    ----------
    seed, index
        Non-negative integers.

    Returns
    -------
    torch.Generator
        A fresh generator; the same pair always gives the same stream.

    Example
    -------
    >>> a = torch.rand(3, generator=sample_generator(0, 7))
    >>> b = torch.rand(3, generator=sample_generator(0, 7))
    >>> torch.equal(a, b)
    True
    """
    seed, index = _non_negative_int(seed, "seed"), _non_negative_int(index, "index")
    state = np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0]
    generator = torch.Generator()
    generator.manual_seed(int(state))
    return generator


def _non_negative_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    try:
        value = _operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value}")
    return value


def _check_size(size: Any) -> None:
    """Refuse anything but an int ``size >= 1`` (the number of samples of a dataset)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an int >= 1, got {size!r}")


def _check_index(index: Any, length: int) -> int:
    """``index`` as an int in ``[0, length)``; negative indices count from the end."""
    try:
        i = _operator.index(index)
    except TypeError:
        raise TypeError(f"dataset index must be an int, got {type(index).__name__}") from None
    if not -length <= i < length:
        raise IndexError(f"index {i} out of range for a dataset of {length} samples")
    return i + length if i < 0 else i


def _with_channel(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to(device="cpu", dtype=torch.float32).unsqueeze(0).contiguous()


def _measure(
    x: torch.Tensor, operator: _Operator, noise: Noise | None, generator: torch.Generator
) -> torch.Tensor:
    """``y = operator(x)``, plus ``noise(y, generator=generator)`` when a noise model is given."""
    with torch.no_grad():
        y = operator(x)
        if noise is not None:
            y = noise(y, generator=generator)
    return y


# --------------------------------------------------------------------------- synthetic
class SyntheticDataset(torch.utils.data.Dataset):
    """Seeded on-the-fly (x, y) pairs: sample ``i`` is the same every time, everywhere.

    Sample ``i`` draws from :func:`sample_generator` ``(seed, i)``: first the phantom, then the
    noise. Give either ``phantom`` and ``operator``, or ``simulator``.

    Parameters
    ----------
    phantom
        ``phantom(shape, *, generator) -> Tensor (H, W)``, called with ``operator.domain_shape``.
    operator
        Forward operator: ``y = operator(x)``, mapping ``(H, W)`` to ``operator.range_shape``.
    noise
        Optional ``noise(y, generator=None) -> Tensor``, applied to ``y`` (also after a
        ``simulator``, so pass it only if the simulator adds none).
    size
        Number of samples (at least 1).
    seed
        Non-negative base seed.
    simulator
        ``simulator(generator) -> (x, y)`` replacing the phantom/operator path, e.g. one that
        simulates on a finer grid to avoid the inverse crime.

    Returns ``(x, y)`` float32 CPU tensors with a channel dimension: ``(1, H, W)`` and
    ``(1, *operator.range_shape)``.

    Example
    -------
    >>> import functools, torch
    >>> from operators import Parallel2D, RayTransform
    >>> A = RayTransform(Parallel2D(image_shape=(32, 32), n_angles=10), backend="matrix")
    >>> data = SyntheticDataset(phantom=functools.partial(torch.rand), operator=A, size=8)
    >>> len(data), data[3][1].shape
    (8, torch.Size([1, 10, 46]))
    >>> torch.equal(data[3][0], data[3][0])
    True
    """

    def __init__(
        self,
        *,
        phantom: Phantom | None = None,
        operator: _Operator | None = None,
        noise: Noise | None = None,
        size: int,
        seed: int = 0,
        simulator: Simulator | None = None,
    ) -> None:
        if simulator is not None and (phantom is not None or operator is not None):
            raise ValueError("give either phantom and operator, or simulator, not both")
        if simulator is None and (phantom is None or operator is None):
            raise ValueError(
                "SyntheticDataset needs phantom and operator, or simulator; got "
                f"phantom={'set' if phantom is not None else None}, "
                f"operator={'set' if operator is not None else None}"
            )
        _check_size(size)
        self.phantom = phantom
        self.operator = operator
        self.noise = noise
        self.size = size
        self.seed = _non_negative_int(seed, "seed")
        self.simulator = simulator

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = _check_index(index, self.size)
        generator = sample_generator(self.seed, i)
        with torch.no_grad():
            if self.simulator is not None:
                x, y = self.simulator(generator)
                if self.noise is not None:
                    y = self.noise(y, generator=generator)
            else:
                shape = tuple(self.operator.domain_shape)
                x = self.phantom(shape, generator=generator).to(torch.float32)
                if tuple(x.shape) != shape:
                    raise ValueError(
                        f"phantom returned shape {tuple(x.shape)}, expected the operator's "
                        f"domain_shape {shape}"
                    )
                y = _measure(x, self.operator, self.noise, generator)
        return _with_channel(x), _with_channel(y)

    def __repr__(self) -> str:
        source = "simulator" if self.simulator is not None else "phantom+operator"
        return f"{type(self).__name__}(size={self.size}, seed={self.seed}, {source})"


class SyntheticImages(torch.utils.data.Dataset):
    """Seeded on-the-fly images alone, ``(x,)``: a :class:`SyntheticDataset` without measurements.

    For training that needs only clean images (denoisers, generative models), where simulating
    the data would be wasted work. Sample ``i`` calls ``render(sample_generator(seed, i))``; with
    the ``render`` of :func:`recon.data.build_split` (``images_only``) it is the same image as
    sample ``i`` of the full dataset of that split, since the phantom is drawn before the noise.

    Parameters
    ----------
    render
        ``render(generator) -> Tensor (H, W)``.
    size
        Number of samples (at least 1).
    seed
        Non-negative base seed.

    Example
    -------
    >>> images = SyntheticImages(lambda g: torch.rand(8, 8, generator=g), size=3, seed=1)
    >>> len(images), images[2][0].shape, torch.equal(images[2][0], images[2][0])
    (3, torch.Size([1, 8, 8]), True)
    """

    def __init__(
        self, render: Callable[[torch.Generator], torch.Tensor], *, size: int, seed: int = 0
    ) -> None:
        _check_size(size)
        self.render = render
        self.size = size
        self.seed = _non_negative_int(seed, "seed")

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor]:
        i = _check_index(index, self.size)
        with torch.no_grad():
            x = self.render(sample_generator(self.seed, i))
        return (_with_channel(x),)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, seed={self.seed})"


class MemoryCachedDataset(torch.utils.data.Dataset):
    """Keeps every sample of ``dataset`` in memory after its first access.

    For synthetic sets whose samples are costly to simulate (a PAT time-stepper solve per
    sample) and that training visits many times. Each process holds its own cache (use it with
    ``num_workers=0``); samples are returned as stored, so do not modify them in place.

    Example
    -------
    >>> calls = []
    >>> class Slow(torch.utils.data.Dataset):
    ...     def __len__(self):
    ...         return 3
    ...     def __getitem__(self, i):
    ...         calls.append(i)
    ...         return torch.tensor([float(i)])
    >>> data = MemoryCachedDataset(Slow())
    >>> [float(data[i]) for i in (0, 1, 0, 0)], calls
    ([0.0, 1.0, 0.0, 0.0], [0, 1])
    """

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset
        self._cache: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        index = _check_index(index, len(self))
        if index not in self._cache:
            self._cache[index] = self.dataset[index]
        return self._cache[index]


# --------------------------------------------------------------------------- HDF5 cache
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


class _LazyFiles:
    """Read-only h5py handles opened on first use in each process, at most ``capacity`` at once.

    h5py handles must not cross a fork, so a handle is reused only in the process that opened it;
    pickling (spawned DataLoader workers) drops the handles.
    """

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        self._pid: int | None = None
        self._files: collections.OrderedDict[Path, h5py.File] = collections.OrderedDict()

    def get(self, path: Path) -> h5py.File:
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
        if self._pid == os.getpid():
            for f in self._files.values():
                f.close()
        self._files = collections.OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {"capacity": self.capacity}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["capacity"])


def _finite(array: np.ndarray, path: Path, key: str, index: int) -> torch.Tensor:
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
        self._files = _LazyFiles(capacity=1)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        i = _check_index(index, self._length)
        f = self._files.get(self.path)
        x = _finite(f[self.x_key][i], self.path, self.x_key, i)[0]
        if self.y_key is None:
            return x
        return x, _finite(f[self.y_key][i], self.path, self.y_key, i)[0]

    def close(self) -> None:
        """Close this process's file handle (reopened on the next access)."""
        self._files.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, size={self._length})"


# --------------------------------------------------------------------------- LoDoPaB-CT
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
        pattern = re.compile(rf"ground_truth_{split}_(\d{{3,}})\.hdf5")
        numbers = sorted(
            int(m.group(1))
            for p in (self.root.iterdir() if self.root.is_dir() else ())
            if (m := pattern.fullmatch(p.name))
        )
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
        for expected, number in enumerate(numbers):
            gt, obs = self._file_pair(expected)
            if number != expected or not obs.is_file():
                missing = obs if number == expected else gt
                raise FileNotFoundError(f"LoDoPaB-CT file missing: {missing}")
            n_gt, n_obs = self._length(gt), self._length(obs)
            if n_gt != n_obs:
                raise ValueError(
                    f"{gt.name} holds {n_gt} images but {obs.name} holds {n_obs} observations"
                )
            self.files.append((gt, obs))
            counts.append(n_gt)
        self._ends = np.cumsum(counts)
        self._files = _LazyFiles(capacity=8)

    def _file_pair(self, number: int) -> tuple[Path, Path]:
        return (
            self.root / f"ground_truth_{self.split}_{number:03d}.hdf5",
            self.root / f"observation_{self.split}_{number:03d}.hdf5",
        )

    @staticmethod
    def _length(path: Path) -> int:
        try:
            with h5py.File(path, "r") as f:
                if "data" not in f:
                    raise ValueError(f"{path} has no dataset 'data'; keys present: {sorted(f)}")
                return int(f["data"].shape[0])
        except OSError as error:
            raise ValueError(f"{path} is not a readable HDF5 file: {error}") from error

    def __len__(self) -> int:
        return int(self._ends[-1])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = _check_index(index, len(self))
        file_number = int(np.searchsorted(self._ends, i, side="right"))
        in_file = i - (int(self._ends[file_number - 1]) if file_number else 0)
        gt, obs = self.files[file_number]
        x = _finite(self._files.get(gt)["data"][in_file], gt, "data", in_file)
        y = _finite(self._files.get(obs)["data"][in_file], obs, "data", in_file)
        return x, y

    def close(self) -> None:
        """Close this process's file handles (reopened on the next access)."""
        self._files.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.root)!r}, {self.split!r}, files={len(self.files)}, "
            f"size={len(self)})"
        )


# --------------------------------------------------------------------------- image folders
def _read_image(path: Path) -> np.ndarray:
    """A 2D slice as float64: TIFF via tifffile, DICOM via pydicom (rescaled), others via Pillow."""
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        import tifffile

        image = np.asarray(tifffile.imread(path), dtype=np.float64)
    elif suffix == ".dcm":
        import pydicom

        ds = pydicom.dcmread(path)
        slope = float(getattr(ds, "RescaleSlope", 1.0))
        intercept = float(getattr(ds, "RescaleIntercept", 0.0))
        image = ds.pixel_array.astype(np.float64) * slope + intercept
    else:
        from PIL import Image

        with Image.open(path) as img:
            image = np.asarray(img, dtype=np.float64)
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
        operator: _Operator | None = None,
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
        self.seed = _non_negative_int(seed, "seed")
        self.normalize = bool(normalize)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        i = _check_index(index, len(self.files))
        path = self.files[i]
        image = _read_image(path)
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
        y = _measure(x, self.operator, self.noise, sample_generator(self.seed, i))
        return x.unsqueeze(0), _with_channel(y)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r}, size={len(self.files)})"
