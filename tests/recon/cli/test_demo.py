"""Tests of the demo's helpers and of its run end to end (without the benchmark)."""

from __future__ import annotations

import numpy as np
import torch
from skimage.io import imread

from recon.cli import demo


def test_comparison_image_layout_and_window():
    truth = torch.tensor([[0.0, 2.0], [1.0, 2.0]])
    x = torch.tensor([[1.0, 3.0], [1.0, 2.0]])  # 3.0 is above the window: clipped to white
    image = demo.comparison_image(truth, x, gap=1)
    assert image.dtype == np.uint8
    assert image.shape == (2, 2 + 1 + 2 + 1 + 2)
    np.testing.assert_array_equal(image[:, 0:2], [[0, 255], [128, 255]])  # truth
    np.testing.assert_array_equal(image[:, 2], [255, 255])  # separator
    np.testing.assert_array_equal(image[:, 3:5], [[128, 255], [128, 255]])  # reconstruction
    np.testing.assert_array_equal(image[:, 6:8], [[128, 128], [0, 0]])  # |x - truth| / 2


def test_main_writes_png_and_reports_psnr(tmp_path, capsys):
    demo.main(["--out", str(tmp_path / "run"), "--no-bench"])
    printed = capsys.readouterr().out
    png = tmp_path / "run" / "demo.png"
    image = imread(png)
    assert image.shape == (128, 3 * 128 + 2 * 2)
    psnr = float(printed.split("PSNR ")[1].split(" dB")[0])
    assert psnr > 20.0  # 20 CGLS iterations at 1 % noise give about 24 dB
    assert "benchmark skipped" in printed
