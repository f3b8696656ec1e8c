"""Tests of data_tools.datasets: seeding, HDF5 caches under concurrency, LoDoPaB and image folders.

Phantom and noise are small stand-ins written here (the real ones live in phantoms.py/noise.py);
the operator is the real 2D ray transform (matrix backend) or a dense MatrixOperator.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import pickle
import threading
import time

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data_tools.datasets import (
    HDF5Dataset,
    ImageFolderDataset,
    LoDoPaBDataset,
    SyntheticDataset,
    cache_to_hdf5,
    sample_generator,
)
from operators import MatrixOperator, Parallel2D, RayTransform

# ------------------------------------------------------------------------------ stand-ins
SHAPE = (32, 32)
N_ANGLES = 10


@pytest.fixture(scope="module")
def ray() -> RayTransform:
    return RayTransform(Parallel2D(image_shape=SHAPE, n_angles=N_ANGLES), backend="matrix")


def disc_phantom(shape: tuple[int, int], *, generator: torch.Generator) -> torch.Tensor:
    """A disc of random centre, radius and value in [0, 1] (stand-in for random_ellipses)."""
    cy, cx, r, value = torch.rand(4, generator=generator).tolist()
    rows = torch.linspace(-1, 1, shape[0])[:, None]
    cols = torch.linspace(-1, 1, shape[1])[None, :]
    inside = (rows - (cy - 0.5)) ** 2 + (cols - (cx - 0.5)) ** 2 < (0.2 + 0.5 * r) ** 2
    return inside.to(torch.float32) * (0.5 + 0.5 * value)


def gaussian_noise(y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Additive noise of 5 % of the mean |y| (stand-in for noise.py)."""
    return y + 0.05 * y.abs().mean() * torch.randn(y.shape, generator=generator, dtype=y.dtype)


class CountingDataset(torch.utils.data.Dataset):
    """Wraps a dataset and counts __getitem__ calls (to prove a cache is reused)."""

    def __init__(self, inner: torch.utils.data.Dataset) -> None:
        self.inner = inner
        self.calls = 0

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int):
        self.calls += 1
        return self.inner[index]


def small_dataset(size: int = 6, seed: int = 0) -> SyntheticDataset:
    """A tiny picklable dataset (torch.rand phantom, dense 20×64 operator) for spawned writers."""
    generator = torch.Generator().manual_seed(1234)
    op = MatrixOperator(torch.randn(20, 64, generator=generator), domain_shape=(8, 8))
    return SyntheticDataset(
        phantom=functools.partial(torch.rand), operator=op, size=size, seed=seed
    )


# ------------------------------------------------------------------------------ SyntheticDataset
def test_synthetic_shapes_dtype_and_measurement(ray):
    data = SyntheticDataset(phantom=disc_phantom, operator=ray, size=5, seed=3)
    assert len(data) == 5
    x, y = data[2]
    assert x.shape == (1, *SHAPE) and y.shape == (1, N_ANGLES, ray.range_shape[1])
    assert x.dtype == torch.float32 and y.dtype == torch.float32
    # noiseless: y is exactly the operator applied to x, and x is the phantom of generator (3, 2)
    torch.testing.assert_close(y, ray(x), rtol=0, atol=0)
    torch.testing.assert_close(x[0], disc_phantom(SHAPE, generator=sample_generator(3, 2)))
    assert x.max().item() > 0.5 and x.min().item() == 0.0


def test_synthetic_same_index_same_sample_any_order(ray):
    a = SyntheticDataset(phantom=disc_phantom, operator=ray, noise=gaussian_noise, size=6, seed=7)
    b = SyntheticDataset(phantom=disc_phantom, operator=ray, noise=gaussian_noise, size=6, seed=7)
    forward = [a[i] for i in range(6)]
    backward = [b[i] for i in reversed(range(6))][::-1]
    for (xa, ya), (xb, yb) in zip(forward, backward, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(a[-1][1], forward[5][1])
    # different indices and different seeds give different samples
    assert not torch.equal(forward[0][0], forward[1][0])
    other_seed = SyntheticDataset(phantom=disc_phantom, operator=ray, size=6, seed=8)
    assert not torch.equal(other_seed[0][0], forward[0][0])


def test_synthetic_noise_is_seeded_per_index(ray):
    data = SyntheticDataset(phantom=disc_phantom, operator=ray, noise=gaussian_noise, size=3)
    x, y = data[1]
    residual = y - ray(x)
    relative = (residual.std() / ray(x).abs().mean()).item()
    assert 0.03 < relative < 0.07  # 5 % of mean |y|
    assert torch.equal(data[1][1], y)


def test_synthetic_dataloader_workers_match_main_process(ray):
    data = SyntheticDataset(phantom=disc_phantom, operator=ray, noise=gaussian_noise, size=8)
    main = list(DataLoader(data, batch_size=3, num_workers=0))
    workers = list(DataLoader(data, batch_size=3, num_workers=2))
    assert len(main) == len(workers) == 3
    assert main[0][0].shape == (3, 1, *SHAPE)
    for (xm, ym), (xw, yw) in zip(main, workers, strict=True):
        assert torch.equal(xm, xw) and torch.equal(ym, yw)


def test_synthetic_simulator_replaces_phantom_and_operator():
    def simulator(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.rand(4, 4, generator=generator)
        return x, x.sum(dim=0, keepdim=True) * 2.0  # a (1, 4) "sinogram"

    data = SyntheticDataset(simulator=simulator, size=3, seed=2)
    x, y = data[1]
    assert x.shape == (1, 4, 4) and y.shape == (1, 1, 4)
    torch.testing.assert_close(x[0], torch.rand(4, 4, generator=sample_generator(2, 1)))
    torch.testing.assert_close(y[0], 2.0 * x[0].sum(dim=0, keepdim=True))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param({"size": 3}, "needs phantom and operator, or simulator", id="nothing"),
        pytest.param({"phantom": disc_phantom, "size": 3}, "operator=None", id="no-operator"),
        pytest.param(
            {"phantom": disc_phantom, "operator": "op", "simulator": print, "size": 3},
            "not both",
            id="both",
        ),
        pytest.param({"simulator": print, "size": 0}, "size must be an int >= 1", id="size-0"),
        pytest.param({"simulator": print, "size": 2.0}, "size must be an int", id="size-float"),
        pytest.param({"simulator": print, "size": 2, "seed": -1}, "seed must be", id="seed<0"),
    ],
)
def test_synthetic_rejects_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        SyntheticDataset(**arguments)


def test_synthetic_index_out_of_range(ray):
    data = SyntheticDataset(phantom=disc_phantom, operator=ray, size=3)
    with pytest.raises(IndexError, match="index 3 out of range for a dataset of 3"):
        data[3]
    with pytest.raises(IndexError, match="index -4"):
        data[-4]


def test_sample_generator_streams_are_distinct():
    draws = {
        (s, i): torch.rand(4, generator=sample_generator(s, i)) for s in (0, 1) for i in (0, 1)
    }
    values = list(draws.values())
    assert all(not torch.equal(a, b) for k, a in enumerate(values) for b in values[k + 1 :])
    assert torch.equal(draws[(1, 0)], torch.rand(4, generator=sample_generator(1, 0)))


# ------------------------------------------------------------------------------ HDF5 cache
def test_cache_round_trip_equals_source(tmp_path, ray):
    data = SyntheticDataset(phantom=disc_phantom, operator=ray, noise=gaussian_noise, size=5)
    path = cache_to_hdf5(
        data, tmp_path / "c.h5", meta={"seed": 0, "angles": N_ANGLES}, chunk=2, progress=False
    )
    assert path == tmp_path / "c.h5"
    with h5py.File(path, "r") as f:
        assert bool(f.attrs["complete"]) and int(f.attrs["size"]) == 5
        assert tuple(f.attrs["x_shape"]) == (1, *SHAPE)
        assert tuple(f.attrs["y_shape"]) == (1, N_ANGLES, ray.range_shape[1])
        assert json.loads(f.attrs["meta"]) == {"angles": N_ANGLES, "seed": 0}
        assert f["x"].dtype == np.float32 and f["y"].shape == (5, 1, N_ANGLES, ray.range_shape[1])
    cached = HDF5Dataset(path)
    assert len(cached) == 5 and cached.meta == {"angles": N_ANGLES, "seed": 0}
    for i in range(5):
        (xs, ys), (xc, yc) = data[i], cached[i]
        assert torch.equal(xs, xc) and torch.equal(ys, yc)
        assert xc.dtype == torch.float32
    assert {p.name for p in tmp_path.iterdir()} <= {"c.h5", "c.h5.lock"}


def test_cache_is_reused_without_recomputation(tmp_path):
    path = tmp_path / "c.h5"
    cache_to_hdf5(small_dataset(), path, meta={"seed": 0}, progress=False)
    stamp = path.stat().st_mtime_ns
    counting = CountingDataset(small_dataset())
    assert cache_to_hdf5(counting, path, meta={"seed": 0}, progress=False) == path
    assert counting.calls == 0 and path.stat().st_mtime_ns == stamp
    # overwrite=True recomputes every sample exactly once
    assert cache_to_hdf5(counting, path, meta={"seed": 0}, overwrite=True, progress=False)
    assert counting.calls == 6


def test_cache_of_x_only_samples(tmp_path):
    class Images(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int) -> torch.Tensor:
            return torch.full((1, 2, 2), float(i))

    path = cache_to_hdf5(Images(), tmp_path / "x.h5", progress=False)
    with pytest.raises(ValueError, match=r"no dataset 'y'; keys present: \['x'\]"):
        HDF5Dataset(path)
    images = HDF5Dataset(path, y_key=None)
    assert torch.equal(images[2], torch.full((1, 2, 2), 2.0))


def test_cache_refuses_a_different_dataset_at_the_same_path(tmp_path):
    path = cache_to_hdf5(small_dataset(), tmp_path / "c.h5", meta={"seed": 0}, progress=False)
    with pytest.raises(ValueError, match=r'written with meta \{"seed": 0\}, not \{"seed": 1\}'):
        cache_to_hdf5(small_dataset(seed=1), path, meta={"seed": 1}, progress=False)
    with pytest.raises(ValueError, match="holds 6 samples but the dataset has 4"):
        cache_to_hdf5(small_dataset(size=4), path, meta={"seed": 0}, progress=False)
    cache_to_hdf5(small_dataset(size=4), path, meta={"seed": 0}, overwrite=True, progress=False)
    assert len(HDF5Dataset(path)) == 4


def _write_partial(path) -> None:
    """An interrupted cache: all datasets and attributes but 'complete', and zero data."""
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros((6, 1, 8, 8), np.float32))
        f.create_dataset("y", data=np.zeros((6, 1, 20), np.float32))
        f.attrs.update({"size": 6, "keys": '["x", "y"]', "meta": "null", "format_version": 1})


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(_write_partial, id="no-complete-attr"),
        pytest.param(lambda p: p.write_bytes(b"\x89HDF garbage" * 50), id="garbage-bytes"),
        pytest.param(lambda p: p.write_bytes(b""), id="empty"),
    ],
)
def test_cache_rebuilds_partial_or_corrupt_file(tmp_path, corrupt):
    path = tmp_path / "c.h5"
    corrupt(path)
    (tmp_path / ".c.h5.dead.tmp").write_bytes(b"left by a killed writer")
    data = small_dataset()
    cache_to_hdf5(data, path, progress=False)
    cached = HDF5Dataset(path)
    for i in range(len(data)):
        assert torch.equal(cached[i][0], data[i][0]) and torch.equal(cached[i][1], data[i][1])
    assert cached[0][0].abs().sum().item() > 0
    assert not list(tmp_path.glob("*.tmp"))


def test_second_writer_waits_for_the_first_and_reuses_its_file(tmp_path):
    """Two threads: B asks for the cache while A is computing it; B must wait, then reuse."""
    path = tmp_path / "c.h5"
    a_computing, b_started = threading.Event(), threading.Event()

    class Slow(CountingDataset):  # A: holds the lock until B has begun
        def __getitem__(self, index: int):
            if self.calls == 0:
                a_computing.set()
                b_started.wait(timeout=10)
                time.sleep(0.2)  # B reaches the lock (or, without one, computes) meanwhile
            return super().__getitem__(index)

    class Late(CountingDataset):  # B: signals when it enters cache_to_hdf5
        def __len__(self) -> int:
            b_started.set()
            return super().__len__()

    first, second = Slow(small_dataset()), Late(small_dataset())
    a = threading.Thread(target=cache_to_hdf5, args=(first, path), kwargs={"progress": False})
    b = threading.Thread(target=cache_to_hdf5, args=(second, path), kwargs={"progress": False})
    a.start()
    assert a_computing.wait(timeout=10)
    b.start()
    a.join(timeout=20)
    b.join(timeout=20)
    assert first.calls == 6 and second.calls == 0
    assert torch.equal(HDF5Dataset(path)[5][1], small_dataset()[5][1])


def test_concurrent_writers_leave_one_complete_file(tmp_path, capfd):
    """Three writers (two spawned processes and this one) build the same cache at once."""
    path = tmp_path / "shared.h5"
    options = {"meta": {"job": "sweep"}, "chunk": 7, "progress": True}
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(
            target=cache_to_hdf5, args=(small_dataset(size=40), str(path)), kwargs=options
        )
        for _ in range(2)
    ]
    for writer in writers:
        writer.start()
    assert cache_to_hdf5(small_dataset(size=40), path, **options) == path
    for writer in writers:
        writer.join(timeout=300)  # spawned interpreters import torch: slow when loaded
    assert [w.exitcode for w in writers] == [0, 0]
    # Only the writer that computed shows a progress bar (its first frame reads "0/40"): the
    # others found the file complete, possibly after waiting on the lock, and reused it.
    assert capfd.readouterr().err.count(" 0/40 ") == 1
    assert {p.name for p in tmp_path.iterdir()} <= {"shared.h5", "shared.h5.lock"}
    with h5py.File(path, "r") as f:
        assert bool(f.attrs["complete"]) and int(f.attrs["size"]) == 40
    source, cached = small_dataset(size=40), HDF5Dataset(path)
    for i in (0, 17, 39):
        assert torch.equal(cached[i][0], source[i][0]) and torch.equal(cached[i][1], source[i][1])


def test_hdf5_dataset_in_dataloader_workers_and_pickle(tmp_path):
    data = small_dataset(size=7)
    cached = HDF5Dataset(cache_to_hdf5(data, tmp_path / "c.h5", progress=False))
    cached[0]  # opens the handle in this process before the workers fork
    main = list(DataLoader(cached, batch_size=4, num_workers=0))
    workers = list(DataLoader(cached, batch_size=4, num_workers=2))
    for (xm, ym), (xw, yw) in zip(main, workers, strict=True):
        assert torch.equal(xm, xw) and torch.equal(ym, yw)
    clone = pickle.loads(pickle.dumps(cached))
    assert torch.equal(clone[6][1], data[6][1])


def test_hdf5_dataset_errors(tmp_path):
    missing = tmp_path / "nope.h5"
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        HDF5Dataset(missing)
    path = tmp_path / "bad.h5"
    x = np.zeros((4, 1, 3, 3), np.float32)
    x[2, 0, 1, 1] = np.nan
    y = np.ones((4, 1, 5), np.float32)
    y[3, 0, 0] = np.inf
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=x)
        f.create_dataset("y", data=y)
    with pytest.raises(ValueError, match=r"no dataset 'x'; keys present: \['images', 'y'\]"):
        HDF5Dataset(path)
    data = HDF5Dataset(path, x_key="images")
    assert torch.equal(data[1][1], torch.ones(1, 5))
    with pytest.raises(ValueError, match=r"bad\.h5: 'images' sample 2 contains NaN or inf"):
        data[2]
    with pytest.raises(ValueError, match=r"bad\.h5: 'y' sample 3 contains NaN or inf"):
        data[3]
    with pytest.raises(IndexError):
        data[4]


# ------------------------------------------------------------------------------ LoDoPaB
def write_lodopab(root, split: str = "train", counts=(3, 3), obs_counts=None) -> list:
    """Tiny LoDoPaB-CT layout: files of 8×8 images and 5×7 observations; sample k has value k."""
    obs_counts = counts if obs_counts is None else obs_counts
    root.mkdir(exist_ok=True)
    start = 0
    for number, (n_gt, n_obs) in enumerate(zip(counts, obs_counts, strict=True)):
        values = np.arange(start, start + max(n_gt, n_obs), dtype=np.float32)
        with h5py.File(root / f"ground_truth_{split}_{number:03d}.hdf5", "w") as f:
            f.create_dataset(
                "data", data=np.ones((n_gt, 8, 8), np.float32) * values[:n_gt, None, None]
            )
        with h5py.File(root / f"observation_{split}_{number:03d}.hdf5", "w") as f:
            obs = -np.ones((n_obs, 5, 7), np.float32) * values[:n_obs, None, None]
            f.create_dataset("data", data=obs)
        start += n_gt


def test_lodopab_indexes_across_files(tmp_path):
    root = tmp_path / "lodopab"
    write_lodopab(root, counts=(3, 3))
    write_lodopab(root, split="test", counts=(2,))
    data = LoDoPaBDataset(root, "train")
    assert len(data) == 6 and len(LoDoPaBDataset(root, "test")) == 2
    for k in range(6):
        x, y = data[k]
        assert x.shape == (1, 8, 8) and y.shape == (1, 5, 7) and x.dtype == torch.float32
        assert torch.equal(x, torch.full((1, 8, 8), float(k)))
        assert torch.equal(y, torch.full((1, 5, 7), -float(k)))
    assert len(LoDoPaBDataset(root, "train", max_files=1)) == 3
    with pytest.raises(IndexError):
        LoDoPaBDataset(root, "train", max_files=1)[3]
    batches = list(DataLoader(data, batch_size=6, num_workers=2))
    assert torch.equal(batches[0][0][:, 0, 0, 0], torch.arange(6.0))


def test_lodopab_errors(tmp_path):
    root = tmp_path / "lodopab"
    with pytest.raises(ValueError, match="split must be one of"):
        LoDoPaBDataset(root, "val")
    with pytest.raises(FileNotFoundError, match=r"ground_truth_validation_NNN\.hdf5"):
        LoDoPaBDataset(root, "validation")
    write_lodopab(root, counts=(3, 2), obs_counts=(3, 1))
    with pytest.raises(ValueError, match="ground_truth_train_001.hdf5 holds 2 images but "):
        LoDoPaBDataset(root, "train")
    assert len(LoDoPaBDataset(root, "train", max_files=1)) == 3
    (root / "observation_train_001.hdf5").unlink()
    with pytest.raises(FileNotFoundError, match=r"observation_train_001\.hdf5"):
        LoDoPaBDataset(root, "train")
    with pytest.raises(ValueError, match="max_files"):
        LoDoPaBDataset(root, "train", max_files=0)


def test_lodopab_refuses_an_observation_file_without_its_ground_truth(tmp_path):
    """Issue 31, item 8: an unpaired observation file raised nothing and its samples vanished."""
    root = tmp_path / "lodopab"
    write_lodopab(root, counts=(3, 3, 3))
    (root / "ground_truth_train_002.hdf5").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing: .*ground_truth_train_002\.hdf5"):
        LoDoPaBDataset(root, "train")
    assert len(LoDoPaBDataset(root, "train", max_files=2)) == 6  # the subset is complete
    (root / "ground_truth_train_001.hdf5").unlink()  # a gap in the numbering
    with pytest.raises(FileNotFoundError, match=r"missing: .*ground_truth_train_001\.hdf5"):
        LoDoPaBDataset(root, "train")


@pytest.mark.parametrize(
    ("name", "shape", "message"),
    [
        pytest.param(
            "observation_train_001.hdf5",
            (3, 5, 9),
            r"observation_train_001\.hdf5 holds observations of shape \(5, 9\) but "
            r"observation_train_000\.hdf5 holds observations of shape \(5, 7\)",
            id="observations",
        ),
        pytest.param(
            "ground_truth_train_001.hdf5",
            (3, 8, 6),
            r"ground_truth_train_001\.hdf5 holds images of shape \(8, 6\)",
            id="images",
        ),
        pytest.param(
            "observation_train_000.hdf5", (3, 35), r"expected a stack of 2D slices", id="2d-data"
        ),
    ],
)
def test_lodopab_checks_shapes_across_files(tmp_path, name, shape, message):
    """Issue 31, item 8: files of different sample shapes were accepted."""
    root = tmp_path / "lodopab"
    write_lodopab(root, counts=(3, 3))
    with h5py.File(root / name, "w") as f:
        f.create_dataset("data", data=np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match=message):
        LoDoPaBDataset(root, "train")


# ------------------------------------------------------------------------------ image folders
def write_dicom(path, pixels: np.ndarray, *, slope: float, intercept: float) -> None:
    """A minimal CT image DICOM file (16-bit signed, uncompressed)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.PixelData = pixels.astype("<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture
def image_folder(tmp_path):
    """b.png (uint8 ramp), c.tif (float32), a.dcm (int16, slope 2, intercept -1024), notes.txt."""
    import tifffile
    from PIL import Image

    folder = tmp_path / "slices"
    folder.mkdir()
    ramp = np.arange(64, dtype=np.uint8).reshape(8, 8) * 2 + 10  # 10 .. 136
    Image.fromarray(ramp).save(folder / "b.png")
    tiff = np.linspace(-1.0, 3.0, 64, dtype=np.float32).reshape(8, 8)
    tifffile.imwrite(folder / "c.TIF", tiff)
    raw = (np.arange(64, dtype=np.int16).reshape(8, 8) - 20) * 5
    write_dicom(folder / "a.dcm", raw, slope=2.0, intercept=-1024.0)
    (folder / "notes.txt").write_text("not an image")
    return folder, {"a.dcm": raw * 2.0 - 1024.0, "b.png": ramp.astype(np.float64), "c.TIF": tiff}


def test_image_folder_reads_png_tiff_dicom(image_folder):
    folder, raw = image_folder
    data = ImageFolderDataset(folder, normalize=False)
    assert [p.name for p in data.files] == ["a.dcm", "b.png", "c.TIF"]
    for i, name in enumerate(["a.dcm", "b.png", "c.TIF"]):
        x = data[i]
        assert x.shape == (1, 8, 8) and x.dtype == torch.float32
        np.testing.assert_allclose(x[0].numpy(), raw[name], rtol=1e-6)
    assert data[0].min().item() == (-20 * 5) * 2 - 1024  # -1224 HU: rescale applied
    normalized = ImageFolderDataset(folder)
    for i, name in enumerate(["a.dcm", "b.png", "c.TIF"]):
        x = normalized[i][0].numpy()
        assert x.min() == 0.0 and x.max() == 1.0
        expected = (raw[name] - raw[name].min()) / (raw[name].max() - raw[name].min())
        np.testing.assert_allclose(x, expected, rtol=1e-6, atol=1e-7)
    only_png = ImageFolderDataset(folder, extensions=(".png",))
    assert len(only_png) == 1 and only_png.files[0].name == "b.png"


def test_image_folder_simulates_measurements(image_folder):
    folder, _ = image_folder
    generator = torch.Generator().manual_seed(0)
    op = MatrixOperator(torch.randn(12, 64, generator=generator), domain_shape=(8, 8))
    data = ImageFolderDataset(folder, operator=op, noise=gaussian_noise, seed=5)
    x, y = data[1]
    assert x.shape == (1, 8, 8) and y.shape == (1, 12)
    noiseless = op(x[0])
    expected = gaussian_noise(noiseless, generator=sample_generator(5, 1))
    torch.testing.assert_close(y[0], expected)
    assert not torch.equal(y[0], noiseless)
    again = ImageFolderDataset(folder, operator=op, noise=gaussian_noise, seed=5)
    assert torch.equal(again[1][1], y)


def test_image_folder_errors(tmp_path, image_folder, ray):
    folder, _ = image_folder
    with pytest.raises(
        ValueError, match=r"a\.dcm: image shape \(8, 8\) .* domain_shape \(32, 32\)"
    ):
        ImageFolderDataset(folder, operator=ray)[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("")
    with pytest.raises(FileNotFoundError, match="no files ending in .png, .tif, .tiff, .dcm"):
        ImageFolderDataset(empty)
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        ImageFolderDataset(tmp_path / "missing")
    with pytest.raises(ValueError, match="noise needs an operator"):
        ImageFolderDataset(folder, noise=gaussian_noise)
    from PIL import Image

    rgb = tmp_path / "rgb"
    rgb.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(rgb / "colour.png")
    with pytest.raises(ValueError, match=r"colour\.png: expected a 2D grayscale slice"):
        ImageFolderDataset(rgb)[0]


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        pytest.param("a.dcm", lambda p: p.write_bytes(b"DICM but not really"), id="dicom-garbage"),
        pytest.param(
            "a.dcm", lambda p: p.write_bytes(p.read_bytes()[:-40]), id="dicom-truncated-pixels"
        ),
        pytest.param("b.png", lambda p: p.write_bytes(p.read_bytes()[:30]), id="png-truncated"),
    ],
)
def test_a_broken_image_file_is_named(image_folder, name, damage):
    """Issue 31, item 12: a broken DICOM raised a pydicom error that did not name the file."""
    folder, _ = image_folder
    damage(folder / name)
    data = ImageFolderDataset(folder)
    index = [p.name for p in data.files].index(name)
    with pytest.raises(ValueError, match=rf"{name.replace('.', chr(92) + '.')} is not a readable"):
        data[index]
