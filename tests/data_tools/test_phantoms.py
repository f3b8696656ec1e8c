"""Tests of data_tools.phantoms against values worked out by hand from the ellipse table."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from data_tools import shepp_logan as reexported
from data_tools.phantoms import SHEPP_LOGAN_ELLIPSES, ellipses_image, shepp_logan


def pixel_at(x: float, y: float, n: int) -> tuple[int, int]:
    """Row and column of the pixel of an n×n image that contains the point (x, y)."""
    return math.floor((1.0 - y) / 2.0 * n), math.floor((x + 1.0) / 2.0 * n)


def test_reexported_from_package():
    assert reexported is shepp_logan


def test_shape_dtype_device_defaults():
    image = shepp_logan(64)
    assert image.shape == (64, 64)
    assert image.dtype == torch.float32
    assert image.device.type == "cpu"
    assert shepp_logan((32, 48), dtype=torch.float64).shape == (32, 48)
    assert shepp_logan((32, 48), dtype=torch.float64).dtype == torch.float64


def test_modified_range_is_zero_to_one():
    image = shepp_logan(256)
    assert image.max().item() == 1.0
    assert image.min().item() == 0.0


def test_modified_takes_exactly_the_values_of_the_table():
    # skull 1, brain 1 - 0.8 = 0.2, ventricles 0.2 - 0.2 = 0, small ellipses 0.2 + 0.1 = 0.3,
    # ellipse 6 overlapping ellipse 5: 0.2 + 0.1 + 0.1 = 0.4.
    values = torch.unique(shepp_logan(256, dtype=torch.float64))
    torch.testing.assert_close(
        values, torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4, 1.0], dtype=torch.float64)
    )


def test_original_takes_exactly_the_values_of_the_table():
    values = torch.unique(shepp_logan(256, modified=False, dtype=torch.float64))
    expected = torch.tensor([0.0, 1.0, 1.01, 1.02, 1.03, 1.04, 2.0], dtype=torch.float64)
    torch.testing.assert_close(values, expected)


@pytest.mark.parametrize(
    ("x", "y", "modified_value", "original_value"),
    [
        pytest.param(0.0, 0.0, 0.2, 1.02, id="centre-brain"),
        pytest.param(0.0, 0.9, 1.0, 2.0, id="skull-top"),  # in ellipse 1, outside ellipse 2
        pytest.param(0.0, 0.35, 0.3, 1.03, id="ellipse-5"),
        pytest.param(0.22, 0.0, 0.0, 1.0, id="right-ventricle"),
        pytest.param(-0.22, 0.0, 0.0, 1.0, id="left-ventricle"),
        pytest.param(0.0, -0.1, 0.3, 1.03, id="ellipse-7"),
        pytest.param(0.95, 0.95, 0.0, 0.0, id="outside"),
    ],
)
def test_values_at_points(x, y, modified_value, original_value):
    n = 256
    row, col = pixel_at(x, y, n)
    assert shepp_logan(n, dtype=torch.float64)[row, col].item() == pytest.approx(modified_value)
    original = shepp_logan(n, modified=False, dtype=torch.float64)
    assert original[row, col].item() == pytest.approx(original_value)


def test_orientation_row_zero_is_top_and_the_three_small_ellipses_are_at_the_bottom():
    # Ellipses 8-10 sit at y = -0.605, i.e. in the bottom half; the larger ventricle (ellipse 4,
    # semi-axes 0.16 × 0.41) is at x = -0.22, i.e. in the left half.
    n = 256
    image = shepp_logan(n, dtype=torch.float64)
    row, col = pixel_at(0.0, -0.606, n)
    assert image[row, col].item() == pytest.approx(0.3)
    assert image[n - 1 - row, col].item() == pytest.approx(0.2)
    # Inside the skull only the ventricles are darker than the brain (0.0, or 0.1 where ellipse 4
    # overlaps ellipse 5).
    inside_skull = ellipses_image([[1.0, 0.69, 0.92, 0.0, 0.0, 0.0]], n) > 0
    dark = (image < 0.15) & inside_skull
    left, right = dark[:, : n // 2].sum().item(), dark[:, n // 2 :].sum().item()
    # Areas π·0.16·0.41 and π·0.11·0.31 in a square of area 4, times n².
    assert left == pytest.approx(math.pi * 0.16 * 0.41 / 4 * n * n, rel=0.02)
    assert right == pytest.approx(math.pi * 0.11 * 0.31 / 4 * n * n, rel=0.02)


def test_centred_ellipses_are_symmetric_about_the_vertical_axis():
    # Table columns: original value, modified value, a, b, x0, y0, phi.
    centred = [
        (row[1], *row[2:]) for row in SHEPP_LOGAN_ELLIPSES if row[4] == 0.0 and row[6] == 0.0
    ]
    assert len(centred) == 6  # ellipses 1, 2, 5, 6, 7, 9
    image = ellipses_image(centred, (96, 128), dtype=torch.float64)
    assert torch.equal(image, image.flip(-1))
    # The whole phantom is not: ellipses 3 and 4 differ in size and angle.
    full = shepp_logan(128, dtype=torch.float64)
    assert not torch.equal(full, full.flip(-1))


def test_first_ellipse_covers_its_area_fraction():
    n = 256
    skull = ellipses_image([[1.0, 0.69, 0.92, 0.0, 0.0, 0.0]], n)
    expected = math.pi * 0.69 * 0.92 / 4.0  # ellipse area over the area of [-1, 1]²
    assert skull.mean().item() == pytest.approx(expected, rel=0.02)


def test_rotated_ellipse_follows_the_angle():
    # A thin ellipse along the x axis (a = 0.8, b = 0.1) turned by 90° lies along the y axis: it is
    # the transpose of the unturned one, and spans many rows in the centre column but few columns.
    standing = ellipses_image([[1.0, 0.8, 0.1, 0.0, 0.0, 90.0]], 64, dtype=torch.float64)
    lying = ellipses_image([[1.0, 0.8, 0.1, 0.0, 0.0, 0.0]], 64, dtype=torch.float64)
    assert torch.equal(standing, lying.T)
    assert standing[:, 32].sum().item() == pytest.approx(0.8 * 64, abs=2)
    assert standing[32, :].sum().item() == pytest.approx(0.1 * 64, abs=2)
    # Turned by 45° counter-clockwise it runs from bottom-left to top-right.
    diagonal = ellipses_image([[1.0, 0.8, 0.1, 0.0, 0.0, 45.0]], 64, dtype=torch.float64)
    top_right, top_left = pixel_at(0.4, 0.4, 64), pixel_at(-0.4, 0.4, 64)
    assert diagonal[top_right].item() == 1.0
    assert diagonal[top_left].item() == 0.0


def test_batched_ellipses_give_a_batch_of_images():
    table = torch.tensor(
        [
            [[1.0, 0.5, 0.3, 0.1, -0.2, 30.0], [0.5, 0.2, 0.2, -0.4, 0.4, 0.0]],
            [[2.0, 0.3, 0.6, 0.0, 0.0, -45.0], [-1.0, 0.1, 0.1, 0.0, 0.0, 0.0]],
        ],
        dtype=torch.float64,
    )
    images = ellipses_image(table, (40, 50), dtype=torch.float64)
    assert images.shape == (2, 40, 50)
    for i in range(2):
        assert torch.equal(images[i], ellipses_image(table[i], (40, 50), dtype=torch.float64))


def test_matches_scikit_image_phantom():
    # scikit-image ships the modified phantom at 400×400 as an 8-bit PNG.
    reference = shepp_logan_phantom()
    ours = shepp_logan(400, dtype=torch.float64).numpy()
    assert (np.abs(ours - reference) > 0.05).mean() < 0.01
    assert (np.abs(ours[:, ::-1] - reference) > 0.05).mean() > 0.03  # the orientation matters

    small = resize(reference, (128, 128), anti_aliasing=True)
    ours_small = shepp_logan(128, dtype=torch.float64).numpy()
    assert np.corrcoef(ours_small.ravel(), small.ravel())[0, 1] > 0.95


@pytest.mark.parametrize(
    "shape",
    [0, -3, (0, 4), (4,), (4, 4, 4), (4.0, 4), (True, 4), "64", None],
    ids=repr,
)
def test_invalid_shape_raises(shape):
    with pytest.raises(ValueError, match="shape"):
        shepp_logan(shape)


@pytest.mark.parametrize(
    ("ellipses", "match"),
    [
        pytest.param([1.0, 0.5, 0.5, 0.0, 0.0, 0.0], "shape", id="not-2d"),
        pytest.param([[1.0, 0.5, 0.5, 0.0, 0.0]], "shape", id="five-columns"),
        pytest.param([[1.0, 0.0, 0.5, 0.0, 0.0, 0.0]], "semi-axes", id="zero-axis"),
        pytest.param([[1.0, 0.5, -0.5, 0.0, 0.0, 0.0]], "semi-axes", id="negative-axis"),
        pytest.param([[float("nan"), 0.5, 0.5, 0.0, 0.0, 0.0]], "finite", id="nan"),
    ],
)
def test_invalid_ellipses_raise(ellipses, match):
    with pytest.raises(ValueError, match=match):
        ellipses_image(ellipses, 8)
