"""Projection stacks from files: a folder of TIFF files (one per angle) or an HDF5 file.

Both readers return a :class:`ProjectionData` (projections, flats, darks, angles in radians and
metadata) and can read a subset of the angles (``indices``) and a band of detector rows
(``rows``), so a large scan need not fit in memory. Nothing is unpickled: TIFF files are read
with tifffile, HDF5 files with h5py, numeric datasets only.

Example
-------
>>> import tempfile, tifffile
>>> folder = Path(tempfile.mkdtemp())
>>> for i in range(12):
...     tifffile.imwrite(folder / f"proj_{i}.tif", np.full((4, 6), i, np.uint16))
>>> data = read_tiff_projections(folder, indices=slice(0, None, 5), rows=(1, 3))
>>> data.projections.shape, data.projections[:, 0, 0].tolist(), data.indices.tolist()
((3, 2, 6), [0.0, 5.0, 10.0], [0, 5, 10])
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm.auto import tqdm

from data_tools.datasets.files import read_image
from data_tools.projections.normalise import DEFAULT_MIN_TRANSMISSION, to_line_integrals

__all__ = [
    "ANGLE_UNITS",
    "DXCHANGE",
    "ProjectionData",
    "angles_to_radians",
    "natural_key",
    "read_hdf5_projections",
    "read_tiff_projections",
]

#: Accepted spellings of the angle units, and what they mean.
ANGLE_UNITS = {
    "deg": "deg",
    "degree": "deg",
    "degrees": "deg",
    "rad": "rad",
    "radian": "rad",
    "radians": "rad",
}

#: Dataset paths of the DXchange layout (APS, tomopy, NeXus-style ``/exchange`` group).
DXCHANGE = {
    "data": "/exchange/data",
    "flats": "/exchange/data_white",
    "darks": "/exchange/data_dark",
    "angles": "/exchange/theta",
}

Rows = slice | tuple[int, int] | None
Indices = slice | range | Sequence[int] | np.ndarray | None


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class ProjectionData:
    """Raw projections as read from files, with what is needed to turn them into line integrals.

    Attributes
    ----------
    projections : numpy.ndarray
        ``(n, rows, cols)`` (or ``(n, n_detectors)`` for a sinogram stored in HDF5), in the
        file's dtype for HDF5 and float32 for TIFF.
    flats, darks : numpy.ndarray or None
        Stacks of flat fields (beam, no object) and dark fields (no beam), ``(k, *detector)``.
    flats_after : numpy.ndarray or None
        Flat fields taken after the scan, if read separately (then flats are interpolated
        along the scan by :meth:`line_integrals`).
    angles : numpy.ndarray or None
        The projection angles in radians (float64), one per projection read.
    indices : numpy.ndarray
        Position of each projection read in the full scan (``0 .. n_scan − 1``).
    n_scan : int
        Number of projections in the full scan.
    metadata : dict
        Where the data came from: format, source, dataset paths or file names, full shape,
        dtype, the angle unit of the file and the row band read.

    Example
    -------
    >>> data = ProjectionData(np.full((3, 4), 5100.0), flats=np.full((2, 4), 10100.0),
    ...                       darks=np.full((2, 4), 100.0))
    >>> data
    ProjectionData(projections=(3, 4) float64, flats=(2, 4), darks=(2, 4), angles=None)
    >>> np.round(data.line_integrals(), 4)[0]
    array([0.6931, 0.6931, 0.6931, 0.6931], dtype=float32)
    """

    projections: np.ndarray
    flats: np.ndarray | None = None
    darks: np.ndarray | None = None
    angles: np.ndarray | None = None
    indices: np.ndarray | None = None
    n_scan: int | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    flats_after: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.projections)
        if self.indices is None:
            object.__setattr__(self, "indices", np.arange(n))
        if self.n_scan is None:
            object.__setattr__(self, "n_scan", int(self.indices[-1]) + 1 if n else 0)
        if len(self.indices) != n:
            raise ValueError(f"indices has {len(self.indices)} entries for {n} projections")
        if self.angles is not None and len(self.angles) != n:
            raise ValueError(f"angles has {len(self.angles)} entries for {n} projections")

    @property
    def scan_positions(self) -> np.ndarray:
        """Where each projection read lies in the scan, from 0 (first) to 1 (last)."""
        return self.indices / max(self.n_scan - 1, 1)

    def line_integrals(
        self, *, min_transmission: float = DEFAULT_MIN_TRANSMISSION, dtype: Any = None
    ) -> np.ndarray:
        """:func:`to_line_integrals` of the projections with the flats and darks read.

        Stacks of flats and darks are averaged per pixel; with ``flats_after``, the flats are
        interpolated along the scan (at :attr:`scan_positions`). Without darks, the dark field
        is taken as 0.
        """
        if self.flats is None:
            raise ValueError(
                "no flat fields were read: pass flats= to the reader, or call "
                "to_line_integrals(data.projections, flat, dark) with your own"
            )
        return to_line_integrals(
            self.projections,
            self.flats,
            0.0 if self.darks is None else self.darks,
            flat_after=self.flats_after,
            scan_position=None if self.flats_after is None else self.scan_positions,
            min_transmission=min_transmission,
            dtype=dtype,
        )

    def __repr__(self) -> str:
        def shape(a: np.ndarray | None) -> str:
            return "None" if a is None else str(tuple(a.shape))

        after = "" if self.flats_after is None else f", flats_after={shape(self.flats_after)}"
        angles = "None"
        if self.angles is not None and len(self.angles):
            low, high = np.degrees(self.angles.min()), np.degrees(self.angles.max())
            angles = f"{len(self.angles)} in [{low:.4g}°, {high:.4g}°]"
        return (
            f"{type(self).__name__}(projections={shape(self.projections)} "
            f"{self.projections.dtype}, flats={shape(self.flats)}{after}, "
            f"darks={shape(self.darks)}, angles={angles})"
        )


def natural_key(name: str) -> list[Any]:
    """Sort key that orders the numbers in file names by value: ``proj_2`` before ``proj_10``.

    Example
    -------
    >>> sorted(["p10.tif", "p9.tif", "p100.tif"], key=natural_key)
    ['p9.tif', 'p10.tif', 'p100.tif']
    """
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def angles_to_radians(angles: Any, unit: str | None) -> np.ndarray:
    """Angles as float64 radians, from ``unit`` ``"deg"`` or ``"rad"`` (or their long names).

    The unit must be given: a scan over 180 "radians" is a silent, wrong result. Radians beyond
    2π in magnitude raise ``ValueError``, since they are almost surely degrees.

    Example
    -------
    >>> angles_to_radians([0, 90, 180], "deg").round(4).tolist()
    [0.0, 1.5708, 3.1416]
    """
    if unit is None:
        raise ValueError("give the unit of the angles: angle_unit='deg' or angle_unit='rad'")
    key = ANGLE_UNITS.get(str(unit).strip().lower())
    if key is None:
        raise ValueError(f"unknown angle unit {unit!r}; use 'deg' or 'rad'")
    values = np.asarray(angles)
    if values.dtype.kind not in "uif" or values.ndim != 1:
        raise ValueError(f"angles must be a 1D array of numbers, got {values.dtype} {values.shape}")
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError("angles contain NaN or inf")
    if key == "deg":
        return np.deg2rad(values)
    if len(values) and np.abs(values).max() > 2 * math.pi + 1e-6:
        raise ValueError(
            f"angles reach {np.abs(values).max():.4g}, more than 2π radians: they look like "
            "degrees; pass angle_unit='deg'"
        )
    return values


def _select(indices: Indices, n: int) -> np.ndarray:
    """The projections to read as strictly increasing ints in ``[0, n)``."""
    if indices is None:
        return np.arange(n)
    if isinstance(indices, slice):
        chosen = np.arange(n)[indices]
    else:
        chosen = np.asarray(indices)
        if chosen.dtype.kind not in "iu" or chosen.ndim != 1:
            raise ValueError(f"indices must be a slice or a 1D sequence of ints, got {indices!r}")
        if len(chosen) and (chosen.min() < 0 or chosen.max() >= n):
            raise ValueError(f"indices must lie in [0, {n}) for a scan of {n} projections")
        if np.any(np.diff(chosen) <= 0):
            raise ValueError("indices must be strictly increasing (each projection once)")
    if not len(chosen):
        raise ValueError(f"indices {indices!r} select no projection of the {n}")
    return chosen.astype(np.int64)


def _row_slice(rows: Rows, n_rows: int) -> slice:
    """A band of detector rows as a slice with step 1 inside ``[0, n_rows)``."""
    if rows is None:
        return slice(0, n_rows)
    if isinstance(rows, slice):
        start, stop, step = rows.indices(n_rows)
        if step != 1:
            raise ValueError(f"rows must be a contiguous band (step 1), got {rows!r}")
    elif (
        isinstance(rows, (tuple, list))
        and len(rows) == 2
        and all(isinstance(r, (int, np.integer)) and not isinstance(r, bool) for r in rows)
    ):
        start, stop = int(rows[0]), int(rows[1])
        if not 0 <= start < stop <= n_rows:
            raise ValueError(f"rows {tuple(rows)} must satisfy 0 <= start < stop <= {n_rows}")
    else:
        raise ValueError(f"rows must be a slice or a pair (start, stop), got {rows!r}")
    if stop <= start:
        raise ValueError(f"rows {rows!r} select no row of the {n_rows}")
    return slice(start, stop)


def _tiff_files(source: str | os.PathLike[str], name: str) -> list[Path]:
    """The TIFF files of a folder, or the files matching a glob pattern, in natural order."""
    path = Path(source).expanduser()
    if path.is_dir():
        files = [f for f in path.iterdir() if f.is_file() and f.suffix.lower() in (".tif", ".tiff")]
        where = f"no .tif or .tiff files in the folder {path}"
    elif path.parent.is_dir():
        files = [f for f in path.parent.glob(path.name) if f.is_file()]
        where = f"no files match {path}"
    else:
        raise FileNotFoundError(f"{name}: no folder {path.parent}")
    if not files:
        raise FileNotFoundError(f"{name}: {where}")
    return sorted(files, key=lambda f: natural_key(f.name))


def _read_stack(
    files: Sequence[Path], rows: Rows, desc: str, progress: bool | None
) -> tuple[np.ndarray, slice]:
    """The TIFF files as one float32 stack ``(n, rows, cols)``, all checked to share one shape,
    and the band of rows kept."""
    first = read_image(files[0])
    band = _row_slice(rows, first.shape[0])
    stack = np.empty((len(files), band.stop - band.start, first.shape[1]), np.float32)
    bar = tqdm(files, desc=desc, disable=None if progress is None else not progress)
    for i, path in enumerate(bar):
        image = first if i == 0 else read_image(path)
        if image.shape != first.shape:
            raise ValueError(
                f"{path} has shape {image.shape}, but {files[0].name} has {first.shape}; "
                "all images of a stack must have one shape"
            )
        stack[i] = image[band]
    return stack, band


def read_tiff_projections(
    projections: str | os.PathLike[str],
    *,
    flats: str | os.PathLike[str] | None = None,
    darks: str | os.PathLike[str] | None = None,
    flats_after: str | os.PathLike[str] | None = None,
    angles: Any = None,
    angle_unit: str | None = None,
    indices: Indices = None,
    rows: Rows = None,
    progress: bool | None = None,
) -> ProjectionData:
    """Projections from TIFF files, one 2D image per angle, in the natural order of their names.

    Each of ``projections``, ``flats``, ``darks`` and ``flats_after`` is a folder (all its
    ``.tif``/``.tiff`` files) or a glob pattern (``"scan/proj_*.tif"``, for flats and darks in
    the same folder). Files are sorted with numbers compared by value (``proj_2`` before
    ``proj_10``). Images are read with tifffile and stored as float32.

    Parameters
    ----------
    projections, flats, darks, flats_after : str or path
        Folder or glob pattern; ``flats``, ``darks`` and ``flats_after`` are optional.
    angles : array, optional
        One angle per projection file of the full scan (before ``indices``).
    angle_unit : {"deg", "rad"}
        The unit of ``angles``; required with them.
    indices : slice or sequence of int, optional
        The projections to read, e.g. ``slice(0, None, 4)`` for every 4th; strictly increasing.
    rows : slice or (start, stop), optional
        A band of detector rows to keep (of projections, flats and darks).
    progress : bool, optional
        Show a progress bar; by default only on a terminal.

    Returns
    -------
    ProjectionData

    Raises
    ------
    FileNotFoundError
        For a missing folder or one without TIFF files (or a pattern matching none).
    ValueError
        For images of different shapes (naming the file), or angles that do not fit.

    Example
    -------
    >>> import tempfile, tifffile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for i in range(4):
    ...     tifffile.imwrite(folder / f"proj_{i}.tif", np.full((2, 3), 5100, np.uint16))
    >>> tifffile.imwrite(folder / "flat.tif", np.full((2, 3), 10100, np.uint16))
    >>> tifffile.imwrite(folder / "dark.tif", np.full((2, 3), 100, np.uint16))
    >>> scan = read_tiff_projections(folder / "proj_*.tif", flats=folder / "flat.tif",
    ...                              darks=folder / "dark.tif", angles=[0, 45, 90, 135],
    ...                              angle_unit="deg")
    >>> scan
    ProjectionData(projections=(4, 2, 3) float32, flats=(1, 2, 3), darks=(1, 2, 3),
                   angles=4 in [0°, 135°])
    >>> scan.line_integrals()[0].round(4)
    array([[0.6931, 0.6931, 0.6931],
           [0.6931, 0.6931, 0.6931]], dtype=float32)
    """
    files = _tiff_files(projections, "projections")
    chosen = _select(indices, len(files))
    radians = None
    if angles is not None:
        radians = angles_to_radians(angles, angle_unit)
        if len(radians) != len(files):
            raise ValueError(
                f"angles has {len(radians)} entries but there are {len(files)} projection files"
            )
        radians = radians[chosen]
    elif angle_unit is not None:
        raise ValueError("angle_unit is given without angles; pass angles= too")
    selected = [files[i] for i in chosen]
    stack, band = _read_stack(selected, rows, "projections", progress)
    stacks = {}
    for key, source in (("flats", flats), ("darks", darks), ("flats_after", flats_after)):
        stacks[key] = None
        if source is not None:
            stacks[key] = _read_stack(_tiff_files(source, key), rows, key, progress)[0]
            if stacks[key].shape[1:] != stack.shape[1:]:
                raise ValueError(
                    f"{key} images have shape {stacks[key].shape[1:]} (after rows), "
                    f"projections {stack.shape[1:]}"
                )
    metadata = {
        "format": "tiff",
        "source": str(Path(projections).expanduser()),
        "files": [f.name for f in selected],
        "rows": (band.start, band.stop),
        "angle_unit": None if angles is None else ANGLE_UNITS[str(angle_unit).strip().lower()],
    }
    return ProjectionData(
        stack, angles=radians, indices=chosen, n_scan=len(files), metadata=metadata, **stacks
    )


def _datasets(f: h5py.File) -> list[str]:
    names: list[str] = []
    f.visititems(
        lambda name, obj: names.append("/" + name) if isinstance(obj, h5py.Dataset) else None
    )
    return names


def _dataset(f: h5py.File, key: str, what: str, path: Path) -> h5py.Dataset:
    if key not in f or not isinstance(f[key], h5py.Dataset):
        present = _datasets(f)
        listed = ", ".join(present[:20]) + (" ..." if len(present) > 20 else "")
        raise ValueError(
            f"{path} has no dataset {key!r} for the {what}; pass its path as {what}=. "
            f"Datasets present: {listed or 'none'}"
        )
    dset = f[key]
    if dset.dtype.kind not in "uif":
        raise ValueError(f"{path}: {key!r} holds {dset.dtype}, not numbers")
    return dset


def _optional(f: h5py.File, key: str | None, what: str, path: Path) -> h5py.Dataset | None:
    """The dataset at ``key``; ``None`` if ``key`` is None or is the DXchange default and absent."""
    if key is None or (key == DXCHANGE[what] and key not in f):
        return None
    return _dataset(f, key, what, path)


def _read_field(dset: h5py.Dataset, data_ndim: int, band: slice | None) -> np.ndarray:
    """A stack of flat or dark frames ``(k, *detector)``; one frame is read as a stack of one."""
    if dset.ndim == data_ndim - 1:
        frames = dset[band] if band is not None else dset[()]
        return np.asarray(frames)[None]
    if dset.ndim != data_ndim or dset.shape[0] == 0:
        raise ValueError(
            f"{dset.file.filename}: {dset.name!r} has shape {dset.shape}, not a frame or a stack "
            "of frames of the detector"
        )
    return np.asarray(dset[:, band] if band is not None else dset[()])


def _plain(value: Any) -> Any:
    """An HDF5 attribute as a plain Python value (str, number or list)."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.size <= 64 else f"array{value.shape}"
    return value.item() if isinstance(value, np.generic) else value


def _angle_unit(dset: h5py.Dataset, angle_unit: str | None) -> str:
    """The unit of the angles: ``angle_unit``, else the ``units`` attribute, else degrees."""
    stored = dset.attrs.get("units", dset.attrs.get("unit"))
    stored = None if stored is None else str(_plain(stored)).strip().lower()
    if stored is not None and stored not in ANGLE_UNITS:
        stored = None  # an attribute we cannot read is no evidence either way
    if angle_unit is None:
        return ANGLE_UNITS[stored] if stored is not None else "deg"
    given = ANGLE_UNITS.get(str(angle_unit).strip().lower())
    if given is None:
        raise ValueError(f"unknown angle unit {angle_unit!r}; use 'deg' or 'rad'")
    if stored is not None and ANGLE_UNITS[stored] != given:
        raise ValueError(
            f"angle_unit={angle_unit!r} contradicts the file's units attribute {stored!r}; "
            "leave angle_unit out to use the file's"
        )
    return given


def read_hdf5_projections(
    path: str | os.PathLike[str],
    *,
    data: str = DXCHANGE["data"],
    flats: str | None = DXCHANGE["flats"],
    darks: str | None = DXCHANGE["darks"],
    angles: str | None = DXCHANGE["angles"],
    flats_after: str | None = None,
    angle_unit: str | None = None,
    indices: Indices = None,
    rows: Rows = None,
) -> ProjectionData:
    """Projections, flats, darks and angles from an HDF5 file (by default the DXchange layout).

    The defaults are the DXchange paths: ``/exchange/data`` (projections ``(n, rows, cols)``),
    ``/exchange/data_white`` (flats), ``/exchange/data_dark`` (darks) and ``/exchange/theta``
    (angles, in degrees). Flats, darks and angles at their default paths are read when present
    and skipped when absent; a path you pass must exist. A sinogram ``(n, n_detectors)`` works
    too (then ``rows`` is not allowed). Only the selected projections and rows are read from disk,
    and the data keep the file's dtype (e.g. uint16).

    Angle units: ``angle_unit`` if given, else the angles dataset's ``units`` attribute
    (``"deg"``, ``"rad"`` or their long names), else degrees as DXchange specifies; the result
    is in radians. ``angle_unit`` contradicting the attribute raises, and radians beyond 2π
    raise (they look like degrees).

    Parameters
    ----------
    path : str or path
        The HDF5 file.
    data, flats, darks, angles, flats_after : str or None
        Dataset paths; None skips one.
    angle_unit : {"deg", "rad"}, optional
        The unit of the angles dataset.
    indices : slice or sequence of int, optional
        The projections to read, e.g. ``slice(0, None, 4)``; strictly increasing.
    rows : slice or (start, stop), optional
        A band of detector rows to read (of projections, flats and darks).

    Returns
    -------
    ProjectionData

    Example
    -------
    >>> import tempfile
    >>> file = Path(tempfile.mkdtemp()) / "scan.h5"
    >>> with h5py.File(file, "w") as f:
    ...     f["/exchange/data"] = np.full((8, 3, 4), 5100, np.uint16)
    ...     f["/exchange/data_white"] = np.full((2, 3, 4), 10100, np.uint16)
    ...     f["/exchange/data_dark"] = np.full((2, 3, 4), 100, np.uint16)
    ...     f["/exchange/theta"] = np.linspace(0.0, 180.0, 8, endpoint=False)
    >>> scan = read_hdf5_projections(file, indices=slice(0, None, 2), rows=(0, 2))
    >>> scan
    ProjectionData(projections=(4, 2, 4) uint16, flats=(2, 2, 4), darks=(2, 2, 4),
                   angles=4 in [0°, 135°])
    >>> round(float(scan.line_integrals().mean()), 4)
    0.6931
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"HDF5 file not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path} is not a readable HDF5 file: {error}") from error
    with f:
        dset = _dataset(f, data, "data", path)
        if dset.ndim not in (2, 3) or dset.shape[0] == 0:
            raise ValueError(
                f"{path}: {data!r} has shape {dset.shape}; expected projections (n, rows, cols) "
                "or a sinogram (n, n_detectors)"
            )
        if dset.ndim == 2 and rows is not None:
            raise ValueError(
                f"{path}: {data!r} is a sinogram {dset.shape}; it has no rows to select"
            )
        n_scan = dset.shape[0]
        chosen = _select(indices, n_scan)
        band = _row_slice(rows, dset.shape[1]) if dset.ndim == 3 else None
        steps = np.diff(chosen)
        if len(chosen) == 1 or np.all(steps == steps[0]):
            step = int(steps[0]) if len(steps) else 1
            pick: slice | list[int] = slice(int(chosen[0]), int(chosen[-1]) + 1, step)
        else:
            pick = chosen.tolist()
        projections = np.asarray(dset[pick, band] if band is not None else dset[pick])
        sources = {
            "flats": _optional(f, flats, "flats", path),
            "darks": _optional(f, darks, "darks", path),
            "flats_after": flats_after and _dataset(f, flats_after, "flats_after", path),
        }
        fields = {}
        for what, source in sources.items():
            fields[what] = None if source is None else _read_field(source, dset.ndim, band)
            if fields[what] is not None and fields[what].shape[1:] != projections.shape[1:]:
                raise ValueError(
                    f"{path}: {source.name!r} frames have shape {fields[what].shape[1:]}, "
                    f"projections {projections.shape[1:]}"
                )
        radians, unit = None, None
        angle_set = _optional(f, angles, "angles", path)
        if angle_set is not None:
            if angle_set.shape != (n_scan,):
                raise ValueError(
                    f"{path}: {angles!r} has shape {angle_set.shape}, but {data!r} holds "
                    f"{n_scan} projections: one angle each is needed"
                )
            unit = _angle_unit(angle_set, angle_unit)
            radians = angles_to_radians(angle_set[()], unit)[chosen]
        metadata = {
            "format": "hdf5",
            "source": str(path),
            "datasets": {
                what: None if source is None else source.name
                for what, source in {"data": dset, **sources, "angles": angle_set}.items()
            },
            "shape": tuple(dset.shape),
            "dtype": str(dset.dtype),
            "rows": None if band is None else (band.start, band.stop),
            "angle_unit": unit,
            "attrs": {k: _plain(v) for k, v in dset.attrs.items()},
        }
    return ProjectionData(
        projections, angles=radians, indices=chosen, n_scan=n_scan, metadata=metadata, **fields
    )
