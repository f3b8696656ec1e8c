"""Projection stacks read back from TIFF folders and HDF5 files, with subsets and clear errors."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import tifffile

from data_tools.projections import (
    DXCHANGE,
    ProjectionData,
    angles_to_radians,
    read_hdf5_projections,
    read_tiff_projections,
    to_line_integrals,
)

N, ROWS, COLS = 12, 5, 7


def projection(i: int) -> np.ndarray:
    """Projection i: counts that encode its index, row and column."""
    rows, cols = np.mgrid[0:ROWS, 0:COLS]
    return (1000 + 100 * i + 10 * rows + cols).astype(np.uint16)


@pytest.fixture
def tiff_scan(tmp_path):
    """Projections proj_0.tif … proj_11.tif (unpadded: natural order ≠ text order), plus
    flat_*.tif and dark_*.tif in the same folder and flats after the scan in a sub-folder."""
    for i in range(N):
        tifffile.imwrite(tmp_path / f"proj_{i}.tif", projection(i))
    for i in range(3):
        tifffile.imwrite(tmp_path / f"flat_{i}.tif", np.full((ROWS, COLS), 5000 + i, np.uint16))
        tifffile.imwrite(tmp_path / f"dark_{i}.tiff", np.full((ROWS, COLS), 100, np.uint16))
    (tmp_path / "after").mkdir()
    tifffile.imwrite(tmp_path / "after" / "flat.tif", np.full((ROWS, COLS), 6000, np.uint16))
    return tmp_path


def test_tiff_folder_in_natural_order_with_subset_rows_and_angles(tiff_scan):
    data = read_tiff_projections(
        tiff_scan / "proj_*.tif",
        flats=tiff_scan / "flat_*.tif",
        darks=tiff_scan / "dark_*.tiff",
        angles=np.linspace(0, 165, N),
        angle_unit="deg",
        indices=slice(1, None, 3),
        rows=(1, 4),
    )
    assert data.indices.tolist() == [1, 4, 7, 10] and data.n_scan == N
    assert data.projections.shape == (4, 3, COLS) and data.projections.dtype == np.float32
    expected = np.stack([projection(i)[1:4] for i in (1, 4, 7, 10)])
    np.testing.assert_array_equal(data.projections, expected)
    assert data.flats.shape == (3, 3, COLS) and data.darks.shape == (3, 3, COLS)
    np.testing.assert_allclose(data.angles, np.deg2rad([15, 60, 105, 150]))
    assert data.metadata["files"] == ["proj_1.tif", "proj_4.tif", "proj_7.tif", "proj_10.tif"]
    assert data.metadata["rows"] == (1, 4) and data.metadata["angle_unit"] == "deg"
    np.testing.assert_allclose(data.scan_positions, [1 / 11, 4 / 11, 7 / 11, 10 / 11])
    np.testing.assert_array_equal(
        data.line_integrals(), to_line_integrals(expected, data.flats, data.darks)
    )
    assert "4 in [15°, 150°]" in repr(data)


def test_tiff_folder_whole_and_listed_indices(tiff_scan):
    (tiff_scan / "notes.txt").write_text("not an image")
    data = read_tiff_projections(tiff_scan / "proj_*.tif", indices=[0, 2, 11], rows=slice(3, None))
    assert data.projections[:, 0, 0].tolist() == [1030, 1230, 2130]
    assert data.flats is None and data.angles is None
    folder = tiff_scan / "after"
    assert read_tiff_projections(folder).projections.shape == (1, ROWS, COLS)
    with pytest.raises(ValueError, match="no flat fields were read"):
        data.line_integrals()


def test_flats_after_are_interpolated_at_the_positions_of_the_subset(tiff_scan):
    data = read_tiff_projections(
        tiff_scan / "proj_*.tif",
        flats=tiff_scan / "flat_0.tif",
        flats_after=tiff_scan / "after",
        darks=tiff_scan / "dark_*.tiff",
        indices=slice(0, None, 11),
    )
    weights = np.array([0.0, 1.0])[:, None, None]  # projections 0 and 11: start and end
    expected = -np.log((data.projections - 100) / ((1 - weights) * 4900 + weights * 5900))
    np.testing.assert_allclose(data.line_integrals(), expected, rtol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        pytest.param({"angles": np.arange(N)}, ValueError, "angle_unit='deg'", id="no-unit"),
        pytest.param({"angle_unit": "deg"}, ValueError, "without angles", id="unit-only"),
        pytest.param(
            {"angles": np.arange(5), "angle_unit": "deg"}, ValueError, "5 entries", id="n-angles"
        ),
        pytest.param(
            {"angles": np.arange(0, 180, 15), "angle_unit": "rad"},
            ValueError,
            "look like degrees",
            id="degrees-as-radians",
        ),
        pytest.param({"indices": [3, 2]}, ValueError, "strictly increasing", id="order"),
        pytest.param({"indices": [0, N]}, ValueError, r"in \[0, 12\)", id="range"),
        pytest.param({"indices": slice(20, None)}, ValueError, "select no projection", id="empty"),
        pytest.param({"rows": (3, 9)}, ValueError, "stop <= 5", id="rows"),
        pytest.param({"rows": slice(0, 4, 2)}, ValueError, "contiguous", id="rows-step"),
    ],
)
def test_tiff_bad_arguments(tiff_scan, kwargs, error, match):
    with pytest.raises(error, match=match):
        read_tiff_projections(tiff_scan / "proj_*.tif", **kwargs)


def test_tiff_missing_empty_and_mixed_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="no .tif or .tiff files in the folder"):
        read_tiff_projections(tmp_path)
    with pytest.raises(FileNotFoundError, match="no files match"):
        read_tiff_projections(tmp_path / "proj_*.tif")
    with pytest.raises(FileNotFoundError, match="no folder"):
        read_tiff_projections(tmp_path / "missing" / "proj_*.tif")
    tifffile.imwrite(tmp_path / "a1.tif", np.zeros((4, 4), np.uint16))
    tifffile.imwrite(tmp_path / "a2.tif", np.zeros((4, 5), np.uint16))
    with pytest.raises(ValueError, match=r"a2.tif has shape \(4, 5\)"):
        read_tiff_projections(tmp_path)
    (tmp_path / "b").mkdir()
    tifffile.imwrite(tmp_path / "b" / "p.tif", np.zeros((4, 4), np.uint16))
    tifffile.imwrite(tmp_path / "b" / "f.tiff", np.zeros((3, 4), np.uint16))
    with pytest.raises(ValueError, match=r"flats images have shape \(3, 4\)"):
        read_tiff_projections(tmp_path / "b" / "*.tif", flats=tmp_path / "b" / "*.tiff")


def write_dxchange(path, *, theta_units=None, with_fields=True):
    data = np.stack([projection(i) for i in range(N)])
    with h5py.File(path, "w") as f:
        f[DXCHANGE["data"]] = data
        f[DXCHANGE["data"]].attrs["description"] = b"counts"
        if with_fields:
            f[DXCHANGE["flats"]] = np.full((4, ROWS, COLS), 5100, np.uint16)
            f[DXCHANGE["darks"]] = np.full((2, ROWS, COLS), 100, np.uint16)
        f[DXCHANGE["angles"]] = np.linspace(0.0, 180.0, N, endpoint=False)
        if theta_units is not None:
            f[DXCHANGE["angles"]].attrs["units"] = theta_units
    return data


def test_hdf5_dxchange_with_stride_and_rows(tmp_path):
    path = tmp_path / "scan.h5"
    full = write_dxchange(path)
    data = read_hdf5_projections(path, indices=slice(0, None, 4), rows=slice(2, 5))
    assert data.projections.dtype == np.uint16  # the file's dtype: no copy in float
    np.testing.assert_array_equal(data.projections, full[::4, 2:5])
    assert data.flats.shape == (4, 3, COLS) and data.darks.shape == (2, 3, COLS)
    np.testing.assert_allclose(data.angles, np.deg2rad([0.0, 60.0, 120.0]))  # degrees → radians
    assert data.metadata["angle_unit"] == "deg" and data.metadata["shape"] == (N, ROWS, COLS)
    assert data.metadata["datasets"]["flats"] == "/exchange/data_white"
    assert data.metadata["attrs"] == {"description": "counts"}
    p = data.line_integrals()
    np.testing.assert_allclose(p, -np.log((full[::4, 2:5] - 100.0) / 5000.0), rtol=1e-5)


def test_hdf5_irregular_indices_and_units_attribute(tmp_path):
    path = tmp_path / "scan.h5"
    full = write_dxchange(path, theta_units="degrees")
    data = read_hdf5_projections(path, indices=[0, 1, 5, 11])
    np.testing.assert_array_equal(data.projections, full[[0, 1, 5, 11]])
    np.testing.assert_allclose(data.angles, np.deg2rad([0, 15, 75, 165]))
    with pytest.raises(ValueError, match="contradicts the file's units attribute 'degrees'"):
        read_hdf5_projections(path, angle_unit="rad")
    with h5py.File(path, "a") as f:
        f[DXCHANGE["angles"]][...] = np.linspace(0, math.pi, N, endpoint=False)
        f[DXCHANGE["angles"]].attrs["units"] = "rad"
    data = read_hdf5_projections(path, indices=[3])
    assert data.angles.tolist() == pytest.approx([math.pi / 4])
    assert data.metadata["angle_unit"] == "rad"


def test_hdf5_sinogram_custom_paths_single_frames_and_flats_after(tmp_path):
    path = tmp_path / "sino.h5"
    p = np.linspace(0.0, 2.0, 6 * 9).reshape(6, 9)
    with h5py.File(path, "w") as f:
        f["sino"] = 100 + 4000 * np.exp(-p) * np.linspace(1.0, 1.5, 6)[:, None]
        f["white/before"] = np.full(9, 4100.0)  # one frame
        f["white/after"] = np.full((2, 9), 6100.0)
        f["dark"] = np.full(9, 100.0)
        f["theta"] = np.linspace(0.0, 3.0, 6)
    data = read_hdf5_projections(
        path,
        data="sino",
        flats="white/before",
        flats_after="/white/after",
        darks="dark",
        angles="theta",
        angle_unit="rad",
    )
    assert data.flats.shape == (1, 9) and data.flats_after.shape == (2, 9)
    np.testing.assert_allclose(data.angles, np.linspace(0.0, 3.0, 6))
    np.testing.assert_allclose(data.line_integrals(dtype="float64"), p, atol=1e-12)
    assert data.metadata["datasets"]["flats_after"] == "/white/after"
    with pytest.raises(ValueError, match="no rows to select"):
        read_hdf5_projections(path, data="sino", angles=None, rows=(0, 1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param(
            {"data": "/exchange/missing"},
            r"no dataset '/exchange/missing' for the data; pass its path as data=.*"
            r"Datasets present: /exchange/data",
            id="data",
        ),
        pytest.param({"flats": "/flats"}, "no dataset '/flats' for the flats", id="flats"),
        pytest.param({"angles": "/exchange"}, "no dataset '/exchange' for the angles", id="group"),
        pytest.param({"angle_unit": "grad"}, "unknown angle unit", id="unit"),
        pytest.param({"indices": [4, 4]}, "strictly increasing", id="indices"),
    ],
)
def test_hdf5_missing_datasets_and_bad_arguments(tmp_path, kwargs, match):
    path = tmp_path / "scan.h5"
    write_dxchange(path)
    with pytest.raises(ValueError, match=match):
        read_hdf5_projections(path, **kwargs)


def test_hdf5_optional_defaults_absent_and_broken_files(tmp_path):
    path = tmp_path / "scan.h5"
    write_dxchange(path, with_fields=False)
    data = read_hdf5_projections(path)
    assert data.flats is None and data.darks is None and data.angles is not None
    assert data.metadata["datasets"]["darks"] is None
    with h5py.File(path, "a") as f:
        del f[DXCHANGE["angles"]]
        f[DXCHANGE["angles"]] = np.zeros(5)
    with pytest.raises(ValueError, match="one angle each"):
        read_hdf5_projections(path)
    with pytest.raises(FileNotFoundError, match="HDF5 file not found"):
        read_hdf5_projections(tmp_path / "nope.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        read_hdf5_projections(tmp_path / "text.h5")


def test_projection_data_checks_and_angle_units():
    with pytest.raises(ValueError, match="angles has 2 entries for 3 projections"):
        ProjectionData(np.zeros((3, 4)), angles=np.zeros(2))
    assert angles_to_radians([math.pi], "radians").tolist() == [math.pi]
    with pytest.raises(ValueError, match="angle_unit='deg' or angle_unit='rad'"):
        angles_to_radians([0.0], None)
    with pytest.raises(ValueError, match="NaN"):
        angles_to_radians([np.nan], "deg")
