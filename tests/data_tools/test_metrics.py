"""Tests of data_tools.metrics against hand computations and scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from data_tools.metrics import psnr, relative_error, ssim
from data_tools.phantoms import random_ellipses, shepp_logan


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def noisy_pairs(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, ref) batches (5, 1, 64, 64): random images, Shepp–Logan and ellipses, with noise."""
    g = seeded(0)
    refs = torch.stack(
        [
            torch.rand((64, 64), generator=g, dtype=torch.float64),
            3.0 * torch.rand((64, 64), generator=g, dtype=torch.float64) - 1.0,
            shepp_logan(64, dtype=torch.float64),
            random_ellipses(64, seed=1, dtype=torch.float64),
            random_ellipses(64, seed=2, dtype=torch.float64) * 255.0,
        ]
    )[:, None]
    scale = refs.flatten(1).amax(dim=1) - refs.flatten(1).amin(dim=1)
    noise = torch.randn(refs.shape, generator=g, dtype=torch.float64) * 0.1
    x = refs + noise * scale[:, None, None, None]
    return x.to(dtype), refs.to(dtype)


def skimage_range(ref: np.ndarray, data_range: float | None) -> float:
    return float(ref.max() - ref.min()) if data_range is None else data_range


def test_psnr_by_hand():
    ref = torch.zeros(8, 8, dtype=torch.float64)
    ref[2:6, 2:6] = 1.0  # data range 1
    x = ref.clone()
    x[0, 0] = 0.2  # one pixel off by 0.2: MSE 0.04 / 64
    expected = 10 * math.log10(1.0 / (0.04 / 64))
    assert psnr(x, ref).item() == pytest.approx(expected, rel=1e-12)
    assert psnr(x, ref, data_range=4.0).item() == pytest.approx(expected + 20 * math.log10(4))
    assert psnr(x, ref).shape == ()
    assert psnr(ref, ref).item() == math.inf


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("data_range", [None, 1.0, 2.5, 255.0])
def test_psnr_matches_skimage_per_image(dtype, data_range):
    x, ref = noisy_pairs(dtype)
    ours = psnr(x, ref, data_range)
    assert ours.shape == (5, 1) and ours.dtype == dtype
    for i in range(5):
        a, r = x[i, 0].numpy(), ref[i, 0].numpy()
        expected = peak_signal_noise_ratio(r, a, data_range=skimage_range(r, data_range))
        assert ours[i, 0].item() == pytest.approx(expected, abs=1e-4)


def test_psnr_default_range_is_per_image():
    x, ref = noisy_pairs(torch.float64)
    batch = psnr(x, ref)
    singles = torch.stack([psnr(x[i, 0], ref[i, 0]) for i in range(5)])
    torch.testing.assert_close(batch[:, 0], singles)
    # A per-image tensor of ranges broadcasts over the batch.
    ranges = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])[:, None]
    for i in range(5):
        assert psnr(x, ref, ranges)[i, 0].item() == pytest.approx(
            psnr(x[i], ref[i], float(ranges[i])).item()
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("data_range", [None, 1.0, 2.5, 255.0])
def test_ssim_matches_skimage(dtype, data_range):
    x, ref = noisy_pairs(dtype)
    ours = ssim(x, ref, data_range)
    assert ours.shape == (5, 1) and ours.dtype == dtype
    for i in range(5):
        a, r = x[i, 0].numpy(), ref[i, 0].numpy()
        expected = structural_similarity(a, r, data_range=skimage_range(r, data_range))
        assert ours[i, 0].item() == pytest.approx(expected, abs=1e-3)
        if dtype == torch.float64:  # both in float64: the same numbers
            assert ours[i, 0].item() == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("win_size", [3, 5, 11])
def test_ssim_window_sizes_and_non_square_images_match_skimage(win_size):
    g = seeded(1)
    ref = torch.rand((40, 56), generator=g, dtype=torch.float64)
    x = ref + 0.2 * torch.randn((40, 56), generator=g, dtype=torch.float64)
    expected = structural_similarity(x.numpy(), ref.numpy(), data_range=1.0, win_size=win_size)
    assert ssim(x, ref, 1.0, win_size=win_size).item() == pytest.approx(expected, abs=1e-10)


def test_ssim_of_volumes_matches_skimage():
    g = seeded(2)
    ref = torch.rand((2, 16, 20, 24), generator=g, dtype=torch.float64)
    x = ref + 0.3 * torch.randn(ref.shape, generator=g, dtype=torch.float64)
    ours = ssim(x, ref, 1.0, ndim=3)
    assert ours.shape == (2,)
    for i in range(2):
        expected = structural_similarity(x[i].numpy(), ref[i].numpy(), data_range=1.0)
        assert ours[i].item() == pytest.approx(expected, abs=1e-10)


def test_ssim_extremes():
    ref = shepp_logan(64, dtype=torch.float64)
    assert ssim(ref, ref).item() == pytest.approx(1.0, abs=1e-12)
    texture = torch.rand((64, 64), generator=seeded(3), dtype=torch.float64)
    assert ssim(1.0 - texture, texture).item() < -0.9  # same means, anti-correlated structure
    blurred = torch.nn.functional.avg_pool2d(ref[None], 3, stride=1, padding=1)[0]
    assert 0.3 < ssim(blurred, ref).item() < 0.99


def test_relative_error_by_hand():
    ref = torch.tensor([[3.0, 4.0]])
    assert relative_error(ref * 1.1, ref).item() == pytest.approx(0.1)
    batch = torch.tensor([[[3.0, 4.0]], [[0.0, 2.0]]])
    x = torch.tensor([[[3.0, 4.0]], [[1.0, 2.0]]])
    torch.testing.assert_close(relative_error(x, batch), torch.tensor([0.0, 0.5]))


@pytest.mark.parametrize("metric", [psnr, ssim, relative_error], ids=lambda f: f.__name__)
def test_shape_mismatch_raises(metric):
    with pytest.raises(ValueError, match="same shape"):
        metric(torch.zeros(2, 16, 16), torch.zeros(16, 16))


@pytest.mark.parametrize("metric", [psnr, ssim], ids=lambda f: f.__name__)
def test_zero_data_range_raises(metric):
    ref = torch.ones(2, 16, 16)
    ref[0, 3, 3] = 2.0  # image 1 is constant
    with pytest.raises(ValueError, match="constant"):
        metric(ref + 0.1, ref)
    assert metric(ref + 0.1, ref, 1.0).shape == (2,)  # an explicit range is fine
    for bad in (0.0, -1.0, float("nan"), torch.tensor([1.0, 0.0])):
        with pytest.raises(ValueError, match="data_range"):
            metric(ref + 0.1, ref, bad)
    with pytest.raises(ValueError, match="broadcast"):
        metric(ref + 0.1, ref, torch.ones(3))


def test_other_invalid_arguments_raise():
    image = torch.rand(16, 16)
    with pytest.raises(ValueError, match="zero"):
        relative_error(image, torch.zeros(16, 16))
    with pytest.raises(ValueError, match="ndim"):
        psnr(image, image, ndim=3)
    with pytest.raises(ValueError, match="odd"):
        ssim(image, image, 1.0, win_size=6)
    with pytest.raises(ValueError, match="exceeds"):
        ssim(image, image, 1.0, win_size=17)
    with pytest.raises(ValueError, match="ndim"):
        ssim(torch.rand(2, 8, 8, 8, 8), torch.rand(2, 8, 8, 8, 8), 1.0, ndim=4)
