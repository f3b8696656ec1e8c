"""Dead and hot pixels are replaced; a stripe (the cause of a ring) is removed."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch

from data_tools import shepp_logan
from data_tools.projections import remove_outliers, remove_rings, to_line_integrals
from operators import Parallel2D, RayTransform


@pytest.fixture(scope="module")
def sinogram() -> np.ndarray:
    op = RayTransform(Parallel2D((64, 64), n_angles=60), backend="matrix")
    return op(0.1 * shepp_logan(64)).numpy().astype(np.float64)


def smooth_stack(rng: np.random.Generator, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Smooth projections (10, 24, 32) and the same with Gaussian noise."""
    rows, cols = np.meshgrid(np.linspace(-1, 1, 24), np.linspace(-1, 1, 32), indexing="ij")
    angles = np.linspace(0, np.pi, 10)[:, None, None]
    clean = 2.0 + np.cos(rows + angles) * np.sin(1.5 * cols)
    return clean, clean + noise * rng.standard_normal(clean.shape)


def test_dead_and_hot_pixels_are_replaced_in_a_stack():
    rng = np.random.default_rng(0)
    clean, data = smooth_stack(rng, noise=0.01)
    bad = [(0, 3, 4), (2, 10, 0), (5, 23, 31), (7, 12, 12), (9, 0, 20)]
    corrupted = data.copy()
    for k, index in enumerate(bad):
        corrupted[index] = 0.0 if k % 2 else 1e6
    out, replaced = remove_outliers(corrupted, return_mask=True)
    assert out.dtype == np.float64 and out.shape == data.shape
    assert all(replaced[index] for index in bad)
    assert replaced.sum() <= len(bad) + 0.005 * data.size  # few false alarms on plain noise
    for index in bad:
        assert abs(out[index] - clean[index]) < 0.1
    untouched = ~replaced
    np.testing.assert_array_equal(out[untouched], corrupted[untouched])


def test_dead_detector_column_in_a_sinogram_is_replaced():
    # A phantom resolved at the pixel scale: the 64-pixel Shepp–Logan's one-pixel skull gives
    # one-detector spikes in the sinogram, which a median test rightly calls outliers.
    op = RayTransform(Parallel2D((64, 64), n_angles=60), backend="matrix")
    image = scipy.ndimage.gaussian_filter(0.1 * shepp_logan(64).numpy(), 1.0)
    sinogram = op(torch.from_numpy(image)).numpy().astype(np.float64)
    rng = np.random.default_rng(1)
    noisy = sinogram + 0.01 * rng.standard_normal(sinogram.shape)
    corrupted = torch.from_numpy(noisy.copy())
    corrupted[:, 50] = 0.0  # a dead detector element, in every projection
    out, replaced = remove_outliers(corrupted, return_mask=True)
    assert isinstance(out, torch.Tensor) and bool(replaced[:, 50].all())
    assert replaced.sum() <= sinogram.shape[0] + 0.005 * sinogram.size
    # A dead value becomes the mean of its two neighbours (where they are kept), near the truth.
    kept = ~(replaced[:, 49] | replaced[:, 51]).numpy()
    assert kept.sum() > 0.9 * len(kept)
    neighbours = (noisy[:, 49] + noisy[:, 51]) / 2
    np.testing.assert_allclose(out[kept, 50].numpy(), neighbours[kept], atol=1e-12)
    assert np.abs(out[:, 50].numpy() - sinogram[:, 50]).max() < 0.2
    assert sinogram[:, 50].min() > 0.5  # the dead value 0 was far off


def test_mask_and_nan_pixels_are_replaced_from_their_neighbours():
    data = np.full((4, 6, 10), 3.0)
    data[:, :, 1::2] = 5.0  # alternate columns 3, 5, 3, 5, ...
    expected = data.copy()
    mask = np.zeros((6, 10), bool)
    mask[2:4, 4:6] = True  # a 2 × 2 dead cluster, the same in every projection
    data[:, mask] = 1e3
    data[1, 0, 0] = np.nan
    out, replaced = remove_outliers(data, threshold=None, mask=mask, return_mask=True)
    assert replaced.sum() == 4 * 4 + 1
    np.testing.assert_array_equal(replaced[:, mask], True)
    # The median of the unmasked neighbours: 4 (3s and 5s in equal numbers) or 3, 5.
    assert np.all(np.abs(out[replaced] - 4.0) <= 1.0)
    np.testing.assert_array_equal(out[~replaced], expected[~replaced])
    sino = np.array([[1.0, 2.0, np.inf, 4.0, 5.0]])
    np.testing.assert_array_equal(remove_outliers(sino, threshold=None), [[1, 2, 3, 4, 5]])
    with pytest.raises(ValueError, match="pass a larger size"):
        big = np.zeros((6, 10), bool)
        big[1:5, 2:7] = True
        remove_outliers(data, threshold=None, mask=big)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        pytest.param({"size": 4}, ValueError, "odd int >= 3", id="even-size"),
        pytest.param({"threshold": 0}, ValueError, "positive number", id="threshold"),
        pytest.param({"mask": np.zeros(3, bool)}, ValueError, r"mask has shape \(3,\)", id="mask"),
        pytest.param({"mask": np.zeros((5, 8))}, TypeError, "boolean", id="mask-dtype"),
    ],
)
def test_remove_outliers_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        remove_outliers(np.ones((5, 8)), **kwargs)


@pytest.mark.parametrize(("column", "width"), [(30, 1), (40, 1), (55, 2)])
def test_a_stripe_on_detector_columns_is_removed(sinogram, column, width):
    offset = 0.5
    stripe = np.zeros(sinogram.shape[1])
    stripe[column : column + width] = offset
    out = remove_rings(sinogram + stripe)
    error = out - sinogram
    assert np.abs(error[:, column : column + width]).max() < 0.1 * offset
    assert np.sqrt((error**2).mean()) < 0.25 * np.sqrt((stripe**2).mean())
    # The clean sinogram is changed by far less: at most 3 % of its peak (at the sharp skull).
    assert np.abs(remove_rings(sinogram) - sinogram).max() < 0.03 * sinogram.max()


def test_gain_error_on_counts_is_divided_out_row_by_row():
    rng = np.random.default_rng(2)
    clean, _ = smooth_stack(rng, noise=0.0)
    p = 0.5 * clean  # line integrals of a stack (10, 24, 32)
    counts = 1e4 * np.exp(-p)
    gain = np.ones((24, 32))
    gain[:, 7] = 1.2  # a detector column 20 % more sensitive, missed by the flat field
    gain[5, 20] = 0.9
    raw = torch.tensor(counts * gain, dtype=torch.float32)
    fixed = remove_rings(raw, mode="divide")
    assert fixed.dtype == torch.float32
    p_hat = to_line_integrals(fixed, 1e4, 0.0).numpy()
    assert np.abs(to_line_integrals(raw, 1e4, 0.0).numpy() - p).max() > 0.15
    assert np.abs(p_hat - p).max() < 0.02
    with pytest.raises(ValueError, match="mode='subtract'"):
        remove_rings(-p, mode="divide")
    with pytest.raises(ValueError, match="mode must be one of"):
        remove_rings(p, mode="median")
