"""Flat/dark correction and −log: Poisson-simulated counts give back the line integrals."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from data_tools import shepp_logan
from data_tools.projections import (
    DEFAULT_MIN_TRANSMISSION,
    flat_dark_correct,
    minus_log,
    to_line_integrals,
)
from operators import Parallel2D, RayTransform

I0 = 1e4
DARK = 100.0


@pytest.fixture(scope="module")
def sinogram() -> np.ndarray:
    """Line integrals of a phantom (60 angles, 91 detectors), up to about 1.7."""
    op = RayTransform(Parallel2D((64, 64), n_angles=60), backend="matrix")
    p = op(0.1 * shepp_logan(64)).numpy().astype(np.float64)
    assert 1.0 < p.max() < 3.0
    return p


def detector_fields(rng: np.random.Generator, n_det) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel gain (flat − dark) and dark level, varying across the detector."""
    gain = I0 * rng.uniform(0.8, 1.2, n_det)
    dark = DARK + rng.uniform(-5.0, 5.0, n_det)
    return gain, dark


def test_poisson_counts_give_back_line_integrals_within_photon_noise(sinogram):
    rng = np.random.default_rng(0)
    n_flats, n_darks = 20, 20
    gain, dark = detector_fields(rng, sinogram.shape[1])
    flats = rng.poisson(dark + gain, (n_flats, sinogram.shape[1]))
    darks = rng.poisson(dark, (n_darks, sinogram.shape[1]))
    signal = gain * np.exp(-sinogram)
    raw = rng.poisson(dark + signal).astype(np.uint16)

    p_hat = to_line_integrals(raw, flats, darks)

    assert isinstance(p_hat, np.ndarray) and p_hat.dtype == np.float32
    # First-order error propagation of p = −log(raw − D̄) + log(F̄ − D̄).
    var = (
        (signal + dark) / signal**2
        + (gain + dark) / (n_flats * gain**2)
        + dark / n_darks * (1 / signal - 1 / gain) ** 2
    )
    sigma = np.sqrt(var)
    assert 0.005 < sigma.mean() < 0.05  # ≈ 1/sqrt(I0 e^{−p})
    error = p_hat - sinogram
    ratio = np.sqrt((error**2).mean() / var.mean())
    assert 0.85 < ratio < 1.15, ratio  # the RMS error is the photon noise, no more
    assert np.abs(error / sigma).max() < 5.5  # no outliers beyond the noise
    assert abs(error.mean()) < 1e-3  # unbiased
    # Without the dark subtraction the same check fails: the test can tell.
    wrong = to_line_integrals(raw, flats, 0.0)
    assert np.sqrt(((wrong - sinogram) ** 2).mean() / var.mean()) > 1.3


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_noiseless_counts_give_back_line_integrals_exactly(sinogram, kind):
    rng = np.random.default_rng(1)
    gain, dark = detector_fields(rng, sinogram.shape[1])
    raw = dark + gain * np.exp(-sinogram)
    flat, dark_in = dark + gain, dark
    if kind == "torch":
        raw, flat, dark_in = (torch.from_numpy(a) for a in (raw, flat, dark_in))
    p32 = to_line_integrals(raw, flat, dark_in)
    p64 = to_line_integrals(raw, flat, dark_in, dtype=torch.float64)
    if kind == "torch":
        assert isinstance(p32, torch.Tensor) and p32.dtype == torch.float32
        p32, p64 = p32.numpy(), p64.numpy()
    assert p32.dtype == np.float32 and p64.dtype == np.float64
    np.testing.assert_allclose(p32, sinogram, rtol=0, atol=1e-6)
    np.testing.assert_allclose(p64, sinogram, rtol=0, atol=1e-12)


def test_stack_of_projections_with_frame_stacks():
    rng = np.random.default_rng(2)
    p = rng.uniform(0.0, 3.0, (7, 4, 5))  # (n_angles, rows, cols)
    gain = I0 * rng.uniform(0.5, 1.5, (4, 5))
    raw = torch.tensor(DARK + gain * np.exp(-p))
    flats = np.stack([DARK + gain] * 3)  # (3, rows, cols): averaged
    p_hat = to_line_integrals(raw, flats, np.full((2, 4, 5), DARK))
    assert p_hat.shape == (7, 4, 5) and p_hat.dtype == torch.float32
    np.testing.assert_allclose(p_hat.numpy(), p, atol=1e-5)
    transmission = flat_dark_correct(raw, flats, DARK, dtype="float64")
    np.testing.assert_allclose(transmission.numpy(), np.exp(-p), rtol=1e-12)


def test_flats_before_and_after_interpolated_along_the_scan(sinogram):
    n = sinogram.shape[0]
    gain_before = np.full(sinogram.shape[1], I0)
    gain_after = 1.3 * gain_before  # the beam drifts by 30 % during the scan
    w = np.linspace(0.0, 1.0, n)[:, None]
    raw = DARK + ((1 - w) * gain_before + w * gain_after) * np.exp(-sinogram)
    before, after = DARK + gain_before, DARK + gain_after

    interpolated = to_line_integrals(raw, before, DARK, flat_after=after)
    np.testing.assert_allclose(interpolated, sinogram, atol=1e-5)
    averaged = to_line_integrals(raw, np.stack([before, after]), DARK)  # one stack: averaged
    assert np.abs(averaged - sinogram).max() > 0.1
    # A subset of the scan needs its scan positions.
    subset = to_line_integrals(raw[::7], before, DARK, flat_after=after, scan_position=w[::7, 0])
    np.testing.assert_allclose(subset, sinogram[::7], atol=1e-5)
    assert (
        np.abs(to_line_integrals(raw[::7], before, DARK, flat_after=after) - sinogram[::7]).max()
        > 0.01
    )


def test_zero_and_negative_counts_are_clipped_counted_and_warned():
    raw = np.array([[DARK + I0, DARK, DARK - 7.0, 0.0, DARK + I0 * math.exp(-2)]])
    with pytest.warns(UserWarning, match=r"3 of 5 values .*min_transmission=1e-06") as caught:
        p = to_line_integrals(raw, DARK + I0, DARK)
    assert len(caught) == 1
    np.testing.assert_allclose(p[0], [0.0, 13.8155, 13.8155, 13.8155, 2.0], atol=1e-4)
    assert -math.log(DEFAULT_MIN_TRANSMISSION) == pytest.approx(13.8155, abs=1e-4)
    with pytest.warns(UserWarning, match="3 of 5"):
        p = to_line_integrals(raw, DARK + I0, DARK, min_transmission=1e-3)
    np.testing.assert_allclose(p[0, 1:4], -math.log(1e-3), rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing clipped: no warning
        to_line_integrals(raw[:, [0, 4]], DARK + I0, DARK)


def test_dead_flat_pixels_are_counted_and_set_to_zero_attenuation():
    flat = np.full(6, DARK + I0)
    flat[2] = DARK  # dead in the flat field
    raw = np.full((3, 6), DARK + I0 / 2)
    with pytest.warns(UserWarning, match="1 of 6 detector pixels have flat <= dark"):
        p = to_line_integrals(raw, flat, DARK)
    assert np.all(p[:, 2] == 0.0)
    np.testing.assert_allclose(np.delete(p, 2, axis=1), math.log(2), rtol=1e-6)
    with pytest.raises(ValueError, match="flat must be larger than dark"):
        to_line_integrals(raw, DARK, DARK)


def test_minus_log_keeps_its_input_and_the_noise_above_one():
    t = np.array([1.2, 1.0, 0.5])
    before = t.copy()
    np.testing.assert_allclose(minus_log(t), -np.log(t), rtol=1e-6)
    np.testing.assert_array_equal(t, before)
    tt = torch.tensor([0.0, 0.5])
    with pytest.warns(UserWarning, match="1 of 2 values"):
        out = minus_log(tt, min_transmission=0.1)
    assert tt[0] == 0.0 and out.dtype == torch.float32
    assert out.tolist() == pytest.approx([-math.log(0.1), math.log(2)])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        pytest.param(
            lambda r: to_line_integrals(r, np.ones(7), 0.0),
            ValueError,
            r"flat has shape \(7,\).*\(3, 5\).*detector shape \(5,\)",
            id="flat-shape",
        ),
        pytest.param(
            lambda r: to_line_integrals(r, 2.0, np.ones((2, 4))),
            ValueError,
            r"dark has shape \(2, 4\)",
            id="dark-shape",
        ),
        pytest.param(
            lambda r: to_line_integrals(r[0], 2.0, 0.0),
            ValueError,
            r"sinogram \(n_angles, n_detectors\).*got shape \(5,\)",
            id="1d-raw",
        ),
        pytest.param(
            lambda r: to_line_integrals(r[None, None], 2.0, 0.0),
            ValueError,
            r"got shape \(1, 1, 3, 5\)",
            id="4d-raw",
        ),
        pytest.param(
            lambda r: to_line_integrals(r, 2.0, 0.0, scan_position=np.zeros(3)),
            ValueError,
            "only with flat_after",
            id="position-without-after",
        ),
        pytest.param(
            lambda r: to_line_integrals(r, 2.0, 0.0, flat_after=2.0, scan_position=[0, 1]),
            ValueError,
            r"shape \(3,\), got shape \(2,\)",
            id="position-length",
        ),
        pytest.param(
            lambda r: to_line_integrals(np.where(r > 0, np.nan, r), 2.0, 0.0),
            ValueError,
            "raw contains NaN",
            id="nan",
        ),
        pytest.param(
            lambda r: to_line_integrals(r > 0, 2.0, 0.0), TypeError, "real numbers", id="bool"
        ),
        pytest.param(
            lambda r: to_line_integrals(r, 2.0, 0.0, dtype=np.float16),
            TypeError,
            "float32 or float64",
            id="dtype",
        ),
        pytest.param(
            lambda r: to_line_integrals(r, 2.0, 0.0, min_transmission=0.0),
            ValueError,
            r"in \(0, 1\)",
            id="floor",
        ),
    ],
)
def test_bad_input_names_the_fix(call, error, match):
    with pytest.raises(error, match=match):
        call(np.ones((3, 5)))
