"""Tests of the quickstart's helpers and of its run end to end (without the benchmark)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.io import imread

from recon import quickstart


def test_psnr_by_hand():
    truth = torch.tensor([0.0, 1.0, 0.5, 0.5])
    x = truth + torch.tensor([0.1, -0.1, 0.0, 0.0])
    # mse = 0.02 / 4 = 0.005, data range 1: 10 log10(1 / 0.005) = 23.0103
    assert quickstart.psnr(x, truth) == pytest.approx(10 * math.log10(200.0))
    # The data range is the truth's max - min, not a fixed 1.
    assert quickstart.psnr(2 * x, 2 * truth) == pytest.approx(10 * math.log10(200.0))
    assert quickstart.psnr(truth, truth) == math.inf


@pytest.mark.parametrize(
    ("x", "truth", "match"),
    [
        pytest.param(torch.zeros(3), torch.zeros(4), "shapes", id="shape"),
        pytest.param(torch.zeros(4), torch.ones(4), "constant", id="constant-truth"),
    ],
)
def test_psnr_invalid_input(x, truth, match):
    with pytest.raises(ValueError, match=match):
        quickstart.psnr(x, truth)


def test_comparison_image_layout_and_window():
    truth = torch.tensor([[0.0, 2.0], [1.0, 2.0]])
    x = torch.tensor([[1.0, 3.0], [1.0, 2.0]])  # 3.0 is above the window: clipped to white
    image = quickstart.comparison_image(truth, x, gap=1)
    assert image.dtype == np.uint8
    assert image.shape == (2, 2 + 1 + 2 + 1 + 2)
    np.testing.assert_array_equal(image[:, 0:2], [[0, 255], [128, 255]])  # truth
    np.testing.assert_array_equal(image[:, 2], [255, 255])  # separator
    np.testing.assert_array_equal(image[:, 3:5], [[128, 255], [128, 255]])  # reconstruction
    np.testing.assert_array_equal(image[:, 6:8], [[128, 128], [0, 0]])  # |x - truth| / 2


def test_main_writes_png_and_reports_psnr(tmp_path, capsys):
    quickstart.main(["--out", str(tmp_path / "run"), "--no-bench"])
    printed = capsys.readouterr().out
    png = tmp_path / "run" / "quickstart.png"
    image = imread(png)
    assert image.shape == (128, 3 * 128 + 2 * 2)
    psnr = float(printed.split("PSNR ")[1].split(" dB")[0])
    assert psnr > 20.0  # 20 CGLS iterations at 1 % noise give about 24 dB
    assert "benchmark skipped" in printed
