"""Short scans in FBP/FDK: angular coverage, Parker weights, coverage warnings, numpy in and out."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch

from data_tools.metrics import psnr
from data_tools.phantoms import FEW_ELLIPSES, random_ellipses, shepp_logan
from operators import ConeBeam3D, FanBeam2D, Parallel2D, RayTransform
from recon.classical import FBP, FDK, AngularCoverageWarning, fbp, fdk
from recon.classical.coverage import angular_coverage, coverage_problem, parker_weights

DEG = math.pi / 180


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small problems: one thread avoids OpenMP spin-waits on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fan_op(degrees, *, n: int = 64, source: float = 80.0) -> RayTransform:
    """A fan-beam ray transform (ASTRA on the CPU) with the given angles in degrees."""
    angles = np.asarray(degrees, dtype=np.float64) * DEG
    geometry = FanBeam2D(
        (n, n), n_angles=angles.size, angles=angles, source_distance=source, detector_distance=40.0
    )
    return RayTransform(geometry, backend="astra")


def fan_angle(n: int = 64, source: float = 80.0) -> float:
    """The full fan angle (degrees) under which the source sees the image's circumcircle."""
    return 2 * math.degrees(math.asin(math.hypot(n, n) / 2 / source))


def gaussian_blobs(n: int) -> torch.Tensor:
    """A smooth phantom (Gaussians, off-centre) on which FBP's discretisation error is tiny."""
    c = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
    x, y = c[None, :], -c[:, None]
    image = torch.zeros(n, n, dtype=torch.float64)
    for amp, x0, y0, s in [
        (1.0, 0.1, 0.05, 0.12),
        (0.6, -0.2, 0.15, 0.08),
        (0.8, 0.05, -0.25, 0.06),
    ]:
        image += amp * torch.exp(-((x - x0 * n) ** 2 + (y - y0 * n) ** 2) / (2 * (s * n) ** 2))
    return image


def no_warnings(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", AngularCoverageWarning)
        return function(*args, **kwargs)


# =========================================================================== coverage
@pytest.mark.parametrize(
    ("degrees", "period", "full", "start", "span"),
    [
        pytest.param(np.arange(0, 180, 1.5), 180, True, 0, 180, id="parallel-half-turn"),
        pytest.param(np.arange(0, 360, 1.5), 180, True, 0, 180, id="parallel-full-turn"),
        pytest.param(np.arange(0, 180, 1.0) + 57, 180, True, 0, 180, id="parallel-shifted"),
        pytest.param(np.arange(0, 360, 1.0), 360, True, 0, 360, id="fan-full"),
        pytest.param(np.arange(0, 240, 1.0), 360, False, 0, 239, id="fan-short"),
        pytest.param(np.arange(300, 520, 2.0) % 360, 360, False, 300, 218, id="fan-across-zero"),
        pytest.param(np.arange(0, 240, 1.0)[::-1], 360, False, 0, 239, id="fan-reversed"),
        pytest.param(np.arange(0, 90, 1.0), 180, False, 0, 89, id="parallel-limited"),
    ],
)
def test_angular_coverage_finds_the_arc(degrees, period, full, start, span):
    c = angular_coverage(np.asarray(degrees) * DEG, period=period * DEG)
    assert c.full is full
    assert math.degrees(c.start) == pytest.approx(start, abs=1e-9)
    assert math.degrees(c.span) == pytest.approx(span, abs=1e-9)


def test_gaps_are_found_and_irregular_angles_are_not_gaps():
    issue = np.concatenate([np.arange(0, 60, 1.5), np.arange(90, 180, 1.5)]) * DEG
    gaps = angular_coverage(issue, period=math.pi).gaps
    assert [tuple(round(math.degrees(g), 6) for g in gap) for gap in gaps] == [(58.5, 90.0)]
    fan_gaps = angular_coverage(issue, period=2 * math.pi)
    assert not fan_gaps.full and len(fan_gaps.gaps) == 1  # the rest of the turn is not a gap
    # 720 random angles on [0, π) (largest spacing 2.6°, 15× the median) are a full scan.
    random = np.sort(np.random.default_rng(0).uniform(0, np.pi, 720))
    assert angular_coverage(random, period=math.pi).full


def test_coverage_problem_names_what_is_missing():
    issue = np.concatenate([np.arange(0, 60, 1.5), np.arange(90, 180, 1.5)]) * DEG
    text = coverage_problem(angular_coverage(issue, period=math.pi))
    assert "no angle between 58.5° and 90.0°" in text and "150.0° of the 180°" in text
    short = angular_coverage(np.arange(0, 200, 1.0) * DEG, period=2 * math.pi)
    assert "covers 200.0°" in coverage_problem(short, fan_angle=40 * DEG)
    assert coverage_problem(short, fan_angle=15 * DEG) is None
    full = angular_coverage(np.arange(0, 360, 1.0) * DEG, period=2 * math.pi)
    assert coverage_problem(full, fan_angle=60 * DEG) is None


# =========================================================================== Parker weights
@pytest.mark.parametrize("span_deg", [220.0, 260.0, 359.0])
def test_parker_weights_of_the_two_measurements_of_a_line_add_up_to_one(span_deg):
    # In this project's geometry the ray (β, γ) is measured again as (β + π − 2γ, −γ).
    span = span_deg * DEG
    big = (span - math.pi) / 2
    rng = np.random.default_rng(1)
    gamma = rng.uniform(-0.95 * big, 0.95 * big, 400)
    beta = rng.uniform(0, span, 400)
    partner = beta + math.pi - 2 * gamma
    partner = np.where(partner > span, partner - 2 * math.pi, partner)
    both = (partner >= 0) & (partner <= span)
    assert both.sum() > 100
    w = np.array(
        [
            parker_weights([b], [g], start=0.0, span=span)[0, 0]
            for b, g in zip(beta, gamma, strict=True)
        ]
    )
    w2 = np.array(
        [
            parker_weights([b], [-g], start=0.0, span=span)[0, 0]
            for b, g in zip(partner, gamma, strict=True)
        ]
    )
    np.testing.assert_allclose((w + w2)[both], 1.0, atol=1e-12)
    np.testing.assert_allclose(w[~both], 1.0, atol=1e-12)  # measured once: full weight
    edges = parker_weights([0.0, span], gamma, start=0.0, span=span)
    np.testing.assert_allclose(edges, 0.0, atol=1e-12)  # the arc's ends fade out


# =========================================================================== FBP on short scans
@pytest.fixture(scope="module")
def short_and_full():
    """64², source 80 mm from the axis (fan angle 69°), 1° steps: full turn and a short scan."""
    full = fan_op(np.arange(0, 360, 1.0))
    short = fan_op(np.arange(0, 180 + fan_angle() + 1, 1.0) + 25)  # starts at 25°: any start
    return full, short


def test_short_scan_fbp_with_parker_weights_matches_the_full_scan(short_and_full):
    # Measured (FEW_ELLIPSES seeds 0-3, mean PSNR): full turn 36.57 dB (360 views), short scan
    # (250°, 250 views) with Parker weights 34.75 dB, without 21.55 dB. On a smooth phantom the
    # short scan is within 0.4 dB of the full turn (48.13 / 48.48 dB): the gap on sharp edges is
    # the lost averaging of the two measurements of each line, not a weighting error.
    full, short = short_and_full
    truth = torch.stack([random_ellipses(64, seed=s, **FEW_ELLIPSES) for s in range(4)]).double()
    x_full = no_warnings(fbp, full(truth), full)
    x_short = no_warnings(fbp, short(truth), short)
    x_plain = fbp(short(truth), short, short_scan=False)
    p_full, p_short, p_plain = (float(psnr(x, truth).mean()) for x in (x_full, x_short, x_plain))
    assert p_short > p_full - 2.5
    assert p_short > p_plain + 10.0
    # The explicit keyword gives the automatic result.
    torch.testing.assert_close(fbp(short(truth), short, short_scan=True), x_short)
    # On a smooth phantom the short scan is as good as the full turn.
    blobs = gaussian_blobs(64)
    p_full = float(psnr(fbp(full(blobs), full), blobs))
    p_short = float(psnr(fbp(short(blobs), short), blobs))
    assert p_short > p_full - 1.0 and p_short > 45.0


def test_overscan_and_forced_parker_weights_on_a_full_turn(short_and_full):
    full, _ = short_and_full
    blobs = gaussian_blobs(64)
    p_full = float(psnr(fbp(full(blobs), full), blobs))
    # Parker weights on a full turn (Γ = π/2, Wesarg's generalisation) are also exact.
    # Measured: 48.48 dB (uniform weights), 48.08 dB (Parker), 48.16 dB (300° overscan).
    assert float(psnr(fbp(full(blobs), full, short_scan=True), blobs)) > p_full - 1.0
    # 300° in reverse order: an overscan, weighted automatically.
    over = fan_op(np.arange(0, 300, 1.0)[::-1])
    assert float(psnr(no_warnings(fbp, over(blobs), over), blobs)) > p_full - 1.0


def test_gapped_scans_warn_and_full_scans_do_not():
    truth = shepp_logan((64, 64))
    issue = np.concatenate([np.arange(0, 60, 1.5), np.arange(90, 180, 1.5)])
    fan = fan_op(issue)
    with pytest.warns(AngularCoverageWarning, match=r"58\.5° and 90\.0°.*SIRT, CGLS or TV"):
        fbp(fan(truth), fan)
    parallel = RayTransform(
        Parallel2D((64, 64), n_angles=issue.size, angles=issue * DEG), backend="astra"
    )
    with pytest.warns(AngularCoverageWarning, match=r"150\.0° of the 180°.*SIRT"):
        FBP()(parallel(truth), parallel)
    # Less than 180° + the fan angle, without a gap.
    too_short = fan_op(np.arange(0, 200, 1.0))
    with pytest.warns(AngularCoverageWarning, match=r"200\.0°, less than .* 248\.9°"):
        fbp(too_short(truth), too_short)
    # Full scans, a short scan and a parallel half turn: silent.
    for op in (fan_op(np.arange(0, 360, 2.0)), fan_op(np.arange(0, 250, 1.0))):
        no_warnings(fbp, op(truth), op)
    half = RayTransform(Parallel2D((64, 64), n_angles=60), backend="astra")
    no_warnings(fbp, half(truth), half)


def test_short_scan_option_is_validated():
    truth = shepp_logan((32, 32))
    parallel = RayTransform(Parallel2D((32, 32), n_angles=30), backend="astra")
    with pytest.raises(ValueError, match="only fan and cone beams"):
        fbp(parallel(truth), parallel, short_scan=True)
    limited = fan_op(np.arange(0, 120, 2.0), n=32)
    with (
        pytest.raises(ValueError, match="at least 180°"),
        pytest.warns(AngularCoverageWarning),
    ):
        fbp(limited(truth), limited, short_scan=True)
    for bad in ("yes", 1, 0.5):
        with pytest.raises(ValueError, match="short_scan must be None"):
            fbp(parallel(truth), parallel, short_scan=bad)
        with pytest.raises(ValueError, match="short_scan must be None"):
            FBP(short_scan=bad)
    assert repr(FBP(short_scan=True)).endswith("short_scan=True)")


def ball_projections(g: ConeBeam3D, centre, radius: float) -> torch.Tensor:
    """Exact cone-beam line integrals of a unit ball: 2√(r² − d²), d the centre-to-ray distance."""
    R, D = g.source_distance, g.detector_distance
    rows, cols = g.detector_shape
    ds_row, ds_col = g.detector_spacing
    theta = torch.tensor(g.angles, dtype=torch.float64)[:, None, None]
    u = ((torch.arange(cols, dtype=torch.float64) - (cols - 1) / 2) * ds_col)[None, None, :]
    v = ((torch.arange(rows, dtype=torch.float64) - (rows - 1) / 2) * ds_row)[None, :, None]
    sin, cos = torch.sin(theta), torch.cos(theta)
    source = torch.stack(torch.broadcast_tensors(R * sin, -R * cos, torch.zeros_like(theta)), -1)
    pixel = torch.stack(torch.broadcast_tensors(-D * sin + u * cos, D * cos + u * sin, v), -1)
    direction = pixel - source
    direction = direction / torch.linalg.vector_norm(direction, dim=-1, keepdim=True)
    w = torch.tensor(centre, dtype=torch.float64) - source
    dist2 = (w * w).sum(-1) - (w * direction).sum(-1) ** 2
    return 2 * torch.sqrt((radius**2 - dist2).clamp_min(0))


def test_fdk_short_scan_recovers_a_ball():
    # FDK takes the same Parker weights (in the in-plane fan angle, 26° here). Measured: mean
    # |x − 1| inside the ball in its central slice 0.0012 (full turn), 0.0012 (212° short scan),
    # 0.40 without the weights.
    def cone(degrees):
        return ConeBeam3D(
            (32, 32, 32),
            n_angles=len(degrees),
            angles=np.asarray(degrees) * DEG,
            detector_shape=(48, 64),
            source_distance=100.0,
            detector_distance=100.0,
            detector_spacing=1.5,
        )

    centre, radius = (4.0, -3.0, 0.0), 8.0
    c = torch.arange(32, dtype=torch.float64) - 15.5
    disc = (c[None, :] - centre[0]) ** 2 + (-c[:, None] - centre[1]) ** 2 <= (radius - 1.5) ** 2
    errors = {}
    for name, degrees, short_scan in [
        ("full", np.arange(0, 360, 2.0), None),
        ("short", np.arange(0, 212, 2.0), None),
        ("plain", np.arange(0, 212, 2.0), False),
    ]:
        g = cone(degrees)
        x = no_warnings(
            fdk, ball_projections(g, centre, radius), RayTransform(g), short_scan=short_scan
        )
        errors[name] = float((x[16][disc] - 1).abs().mean())
    assert errors["short"] < 2 * errors["full"] + 0.01
    assert errors["plain"] > 5 * errors["short"]


# =========================================================================== numpy in, numpy out
def test_fbp_accepts_numpy_and_array_likes_and_returns_numpy():
    op = RayTransform(Parallel2D((32, 32), n_angles=40), backend="astra")
    y = op(shepp_logan((32, 32)).double())
    expected = fbp(y, op)
    x = fbp(y.numpy(), op)
    assert isinstance(x, np.ndarray) and x.dtype == np.float64 and x.shape == (32, 32)
    np.testing.assert_allclose(x, expected.numpy(), rtol=0, atol=1e-12)
    x32 = fbp(y.numpy().astype(np.float32), op)
    assert x32.dtype == np.float32
    listed = fbp(y.tolist(), op)  # a nested list: an array-like
    assert isinstance(listed, np.ndarray)
    np.testing.assert_allclose(listed, expected.numpy(), rtol=0, atol=1e-12)
    counts = fbp(np.zeros(op.range_shape, dtype=np.int64), op)  # integers become float32
    assert counts.dtype == np.float32 and not counts.any()
    batch = fbp(np.stack([y.numpy(), 2 * y.numpy()]), op)
    assert batch.shape == (2, 32, 32)
    np.testing.assert_allclose(batch[1], 2 * x, rtol=0, atol=1e-10)
    # The reconstructor follows the same rule; tensors stay tensors.
    assert isinstance(FBP()(y.numpy(), op), np.ndarray)
    assert isinstance(FBP()(y, op), torch.Tensor)
    with pytest.raises(ValueError, match="shape"):
        FBP()(y.numpy()[:, :-1], op)
    with pytest.raises(TypeError, match="real numbers"):
        fbp(np.array([["a"]]), op)


def test_fdk_accepts_numpy():
    g = ConeBeam3D((8, 8, 8), n_angles=16, source_distance=60.0)
    op = RayTransform(g)
    y = np.random.default_rng(0).random(g.range_shape)
    x = fdk(y, op)
    assert isinstance(x, np.ndarray) and x.shape == (8, 8, 8)
    np.testing.assert_allclose(x, fdk(torch.from_numpy(y), op).numpy(), rtol=0, atol=1e-12)
    assert isinstance(FDK()(y, op), np.ndarray)


# =========================================================================== detector offset
HAS_OFFSET = "detector_offset" in {f.name for f in dataclasses.fields(Parallel2D)}


@pytest.mark.skipif(not HAS_OFFSET, reason="the geometry has no detector_offset yet")
@pytest.mark.parametrize("kind", ["parallel", "fan"])
def test_fbp_honours_the_detector_offset(kind):
    # Same object, detector moved by 3.5 elements: the same image.
    truth = gaussian_blobs(64)
    images = []
    for offset in (0.0, 3.5):
        if kind == "parallel":
            g = Parallel2D((64, 64), n_angles=180, detector_offset=offset)
        else:
            g = FanBeam2D(
                (64, 64),
                n_angles=360,
                source_distance=150.0,
                detector_distance=50.0,
                detector_offset=offset,
            )
        op = RayTransform(g, backend="astra")
        images.append(fbp(op(truth), op))
    torch.testing.assert_close(images[1], images[0], rtol=0, atol=5e-3)  # measured 2.1e-3 (fan)
    assert float(psnr(images[1], truth)) > 40.0
