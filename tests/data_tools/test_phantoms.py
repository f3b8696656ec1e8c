"""Tests of data_tools.phantoms: Shepp–Logan against values worked out by hand from the ellipse
table, random ellipses against dival's distribution, and the photoacoustic phantoms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from data_tools import shepp_logan as reexported
from data_tools.phantoms import (
    SHEPP_LOGAN_ELLIPSES,
    SMOOTH_ELLIPSES,
    balls,
    ellipses_image,
    random_ellipse_params,
    random_ellipses,
    render_random_ellipses,
    shepp_logan,
    vessels,
)


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


def test_smooth_profile_is_the_bump_one_minus_rho_squared_squared():
    # A disc of radius 0.5 at the origin: at pixel centre (x, y), ρ² = 4 (x² + y²).
    n = 64
    disc = [[2.0, 0.5, 0.5, 0.0, 0.0, 0.0]]
    bump = ellipses_image(disc, n, profile="smooth", dtype=torch.float64)
    flat = ellipses_image(disc, n, dtype=torch.float64)
    centres = (torch.arange(n, dtype=torch.float64) * 2 + 1 - n) / n
    rho2 = 4 * (centres[None, :] ** 2 + centres.flip(0)[:, None] ** 2)
    expected = 2.0 * (1 - rho2).clamp_min(0) ** 2
    torch.testing.assert_close(bump, expected, rtol=0, atol=1e-12)
    assert torch.equal(bump > 0, (flat > 0) & (rho2 < 1))  # same support, zero on the edge
    # its integral: value · π a b / 3, against value · π a b for the flat ellipse
    pixel_area = (2 / n) ** 2
    assert float(bump.sum()) * pixel_area == pytest.approx(2 * math.pi * 0.25 / 3, rel=2e-3)
    assert float(flat.sum()) * pixel_area == pytest.approx(2 * math.pi * 0.25, rel=2e-2)


def test_smooth_ellipses_are_the_few_ellipses_as_bumps():
    flat = random_ellipses(48, n=20, seed=4, **{**SMOOTH_ELLIPSES, "profile": "flat"})
    smooth = random_ellipses(48, n=20, seed=4, **SMOOTH_ELLIPSES)
    assert torch.equal(smooth > 0, flat > 0)  # the same ellipses (up to edge pixels: ρ² < 1)
    assert torch.equal(smooth.amax(dim=(-2, -1)), torch.ones(20))  # normalised like dival
    # no flat regions: neighbouring foreground pixels almost never share a value
    same = (smooth[..., 1:] == smooth[..., :-1]) & (smooth[..., 1:] > 0)
    assert float(same.float().sum() / (smooth[..., 1:] > 0).sum()) < 0.01

    # and less total variation than the flat ellipses, image by image
    def tv(x):
        return (x[..., 1:] - x[..., :-1]).abs().sum((-2, -1))

    assert bool((tv(smooth) < 0.95 * tv(flat)).all())


@pytest.mark.parametrize("call", ["image", "random"])
def test_unknown_profile_raises(call):
    with pytest.raises(ValueError, match="profile"):
        if call == "image":
            ellipses_image([[1.0, 0.5, 0.5, 0.0, 0.0, 0.0]], 8, profile="gaussian")
        else:
            random_ellipses(8, seed=0, profile="gaussian")


# ---------------------------------------------------------------------------------------------
# Random ellipses (dival's "ellipses" distribution)
# ---------------------------------------------------------------------------------------------


def test_random_ellipses_shapes_and_range():
    single = random_ellipses(64, seed=0)
    assert single.shape == (64, 64)
    assert single.dtype == torch.float32
    batch = random_ellipses((48, 64), n=5, seed=0, dtype=torch.float64)
    assert batch.shape == (5, 48, 64)
    assert batch.dtype == torch.float64
    assert random_ellipses(32, n=1, seed=0).shape == (1, 32, 32)
    # dival's normalisation: min 0, max exactly 1, per image.
    assert batch.min().item() == 0.0
    assert torch.equal(batch.amax(dim=(-2, -1)), torch.ones(5, dtype=torch.float64))
    assert (batch >= 0).all()


def test_random_ellipses_are_seeded():
    a = random_ellipses(64, n=3, seed=7)
    assert torch.equal(a, random_ellipses(64, n=3, seed=7))
    assert torch.equal(a, random_ellipses(64, n=3, generator=torch.Generator().manual_seed(7)))
    b = random_ellipses(64, n=3, seed=8)
    assert (a - b).abs().mean().item() > 0.05
    assert (a[0] - a[1]).abs().mean().item() > 0.05  # images within a batch differ too
    # A generator advances: two calls give two different draws.
    g = torch.Generator().manual_seed(7)
    assert not torch.equal(random_ellipses(64, generator=g), random_ellipses(64, generator=g))


def test_random_ellipses_rejects_both_seed_and_generator():
    with pytest.raises(ValueError, match="generator or seed"):
        random_ellipses(32, seed=1, generator=torch.Generator())


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"n": 0}, id="n-zero"),
        pytest.param({"n": 2.0}, id="n-float"),
        pytest.param({"seed": 1.5}, id="seed-float"),
        pytest.param({"mean_ellipses": 0.0}, id="mean-zero"),
        pytest.param({"mean_ellipses": float("inf")}, id="mean-inf"),
        pytest.param({"min_axis": -0.1}, id="min-axis-negative"),
        pytest.param({"min_axis": 1.0}, id="min-axis-one"),
        pytest.param({"value_range": (1.0, 0.5)}, id="value-range-reversed"),
    ],
)
def test_random_ellipses_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        random_ellipses(16, **kwargs)


def test_random_ellipse_params_follow_dival_distribution():
    n_images = 4000
    params = random_ellipse_params(n_images, generator=torch.Generator().manual_seed(0))
    assert params.shape == (n_images, 70, 6)
    assert params.dtype == torch.float64
    value, a, b, x0, y0, phi = params.unbind(-1)
    active = value != 0
    count = active.sum(dim=-1).double()
    # Poisson(40), capped at 70, at least 1: mean 40, variance 40.
    assert count.mean().item() == pytest.approx(40.0, abs=0.3)
    assert count.var().item() == pytest.approx(40.0, rel=0.1)
    assert count.min().item() >= 1 and count.max().item() <= 70
    # Active ellipses come first.
    assert torch.equal(active, torch.arange(70)[None, :] < count[:, None])
    v = value[active]
    assert v.min().item() >= -0.4 and v.max().item() < 1.0
    assert v.mean().item() == pytest.approx(0.3, abs=0.01)  # U(-0.4, 1) has mean 0.3
    # Semi-axes 0.2 · Exp(1): mean 0.2 and median 0.2 · ln 2.
    assert a.mean().item() == pytest.approx(0.2, rel=0.01)
    assert b.median().item() == pytest.approx(0.2 * math.log(2), rel=0.02)
    assert (a > 0).all() and (b > 0).all()
    for centre in (x0, y0):
        assert centre.min().item() >= -0.9 and centre.max().item() <= 0.9
        assert centre.std().item() == pytest.approx(1.8 / math.sqrt(12), rel=0.01)
    assert phi.min().item() >= 0.0 and phi.max().item() < 360.0
    assert phi.mean().item() == pytest.approx(180.0, rel=0.01)


def test_random_ellipse_params_with_a_small_mean_still_draw_one_ellipse():
    params = random_ellipse_params(
        500, generator=torch.Generator().manual_seed(0), mean_ellipses=0.1
    )
    count = (params[..., 0] != 0).sum(dim=-1)
    assert count.min().item() == 1
    # P(Poisson(0.1) >= 2) ≈ 0.0047: almost every image has exactly one ellipse.
    assert (count == 1).float().mean().item() > 0.98


def test_render_random_ellipses_normalises_like_dival():
    # A disc of 1 with a hole of -0.5: raw values 1, 0.5 (hole) and 0 (background). The minimum is
    # 0, so nothing shifts; the max is 1.
    table = torch.tensor([[1.0, 0.5, 0.5, 0.0, 0.0, 0.0], [-0.5, 0.2, 0.2, 0.0, 0.0, 0.0]])
    image = render_random_ellipses(table, 64, dtype=torch.float64)
    assert image[32, 32].item() == 0.5
    assert image[32, 20].item() == 1.0  # x = -0.36: in the disc, outside the hole
    assert image[0, 0].item() == 0.0
    # A disc of 0.5 with a hole of -1: raw 0.5, -0.5 and 0. dival shifts the foreground (non-zero
    # pixels) by the minimum -0.5, giving 1, 0 and 0, then divides by the max 1.
    table = torch.tensor([[0.5, 0.5, 0.5, 0.0, 0.0, 0.0], [-1.0, 0.2, 0.2, 0.0, 0.0, 0.0]])
    image = render_random_ellipses(table, 64, dtype=torch.float64)
    assert image[32, 32].item() == 0.0
    assert image[32, 20].item() == 1.0
    assert image[0, 0].item() == 0.0
    # A lone negative ellipse cannot be normalised (the shift sends it to 0): all zeros, no NaN.
    lone = render_random_ellipses(torch.tensor([[-0.3, 0.5, 0.5, 0.0, 0.0, 0.0]]), 16)
    assert torch.equal(lone, torch.zeros(16, 16))


def test_render_random_ellipses_ignores_zero_rows():
    table = random_ellipse_params(3, generator=torch.Generator().manual_seed(1))
    image = render_random_ellipses(table, 32, dtype=torch.float64)
    counts = (table[..., 0] != 0).sum(dim=-1)
    for i in range(3):
        alone = render_random_ellipses(table[i, : counts[i]], 32, dtype=torch.float64)
        assert torch.equal(image[i], alone)


def test_random_ellipses_render_the_same_picture_at_two_resolutions():
    params = random_ellipse_params(16, generator=torch.Generator().manual_seed(0))
    coarse = render_random_ellipses(params, 64, dtype=torch.float64)
    fine = render_random_ellipses(params, 128, dtype=torch.float64)
    pooled = fine.reshape(16, 64, 2, 64, 2).mean(dim=(2, 4))
    difference = (pooled - coarse).abs().mean(dim=(-2, -1))
    # Only ellipse edges (point-sampled) and, rarely, the normalisation constants differ: a
    # mean absolute difference of ~0.02, less than a one-pixel shift of the coarse image (~0.04)
    # and far below the difference between unrelated images (~0.2).
    assert difference.mean().item() < 0.03
    shifted = (coarse - coarse.roll(1, dims=-1)).abs().mean().item()
    unrelated = (coarse - coarse.roll(1, dims=0)).abs().mean().item()
    assert difference.mean().item() < shifted < unrelated / 3
    # random_ellipses uses exactly these parameters.
    assert torch.equal(random_ellipses(64, n=16, seed=0, dtype=torch.float64), coarse)


# ---------------------------------------------------------------------------------------------
# Photoacoustic phantoms: vessels and balls
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("phantom", [vessels, balls], ids=["vessels", "balls"])
def test_pat_phantoms_range_margin_and_shape(phantom):
    images = phantom((96, 128), n=6, seed=0)
    assert images.shape == (6, 96, 128)
    assert images.dtype == torch.float32
    assert images.min().item() >= 0.0 and images.max().item() <= 1.0
    assert images[:, :4].abs().max().item() == 0.0  # the sensor row 0 and its margin
    assert (images[:, 4:].amax(dim=(-2, -1)) > 0.25).all()  # something is drawn in every image
    single = phantom(64, seed=0, margin=2, dtype=torch.float64)
    assert single.shape == (64, 64) and single.dtype == torch.float64
    assert single[:2].abs().max().item() == 0.0


@pytest.mark.parametrize("phantom", [vessels, balls], ids=["vessels", "balls"])
def test_pat_phantoms_are_seeded(phantom):
    a = phantom(64, n=2, seed=3)
    assert torch.equal(a, phantom(64, n=2, seed=3))
    assert torch.equal(a, phantom(64, n=2, generator=torch.Generator().manual_seed(3)))
    assert not torch.equal(a, phantom(64, n=2, seed=4))
    assert not torch.equal(a[0], a[1])
    with pytest.raises(ValueError, match="generator or seed"):
        phantom(32, seed=1, generator=torch.Generator())


def test_vessels_are_thin_branching_tubes():
    images = vessels(128, n=8, seed=1, n_trees=(1, 1), amplitude=(1.0, 1.0))
    covered = (images > 0.5).float().mean(dim=(-2, -1))
    # Tubes of radius <= 3 px: a sparse image, yet much more than a single straight vessel.
    assert (covered < 0.4).all()
    assert covered.mean().item() > 0.03
    # Amplitude 1: the inside of a tube is exactly 1.
    assert (images.amax(dim=(-2, -1)) == 1.0).all()


def test_vessel_radii_follow_murrays_law():
    from data_tools.phantoms import vessel_tree

    g = torch.Generator().manual_seed(0)
    branches = vessel_tree(
        128, 128, root_radius=3.0, min_radius=0.5, branch_probability=0.05, margin=4, generator=g
    )
    assert 4 < len(branches) <= 32  # at most 32 branches per tree
    radii = torch.cat([r for _, r in branches])
    assert radii.min().item() >= 0.5 and radii.max().item() <= 3.0
    # Wherever a parent narrows, a child starts at that point with r_child³ = r_before³ - r_after³.
    root = tuple(branches[0][0][0].tolist())  # the root runs both ways from its first point
    starts = {tuple(p[0].tolist()): r[0].item() for p, r in branches}
    del starts[root]
    checked = 0
    for points, r in branches:
        for k in torch.nonzero(r[1:] < r[:-1]).flatten().tolist():
            child = starts.get(tuple(points[k + 1].tolist()))
            assert child is not None
            assert child**3 == pytest.approx(r[k].item() ** 3 - r[k + 1].item() ** 3, rel=1e-9)
            checked += 1
    assert checked > 2


def test_balls_discs_and_gaussians():
    disc = balls(64, seed=0, n_balls=(1, 1), radius=(6.0, 6.0), amplitude=(0.7, 0.7), kind="disc")
    assert disc.max().item() == pytest.approx(0.7)
    # A disc of radius 6 px with a 1-px soft edge covers about π·6² pixels at full height.
    assert (disc > 0.35).sum().item() == pytest.approx(math.pi * 36, rel=0.15)
    gauss = balls(
        64, seed=0, n_balls=(1, 1), radius=(6.0, 6.0), amplitude=(0.7, 0.7), kind="gaussian"
    )
    # σ = 3 px: the mass of a Gaussian blob is amplitude · 2π σ².
    assert gauss.sum().item() == pytest.approx(0.7 * 2 * math.pi * 9, rel=0.02)
    assert torch.equal(balls(32, seed=0, n_balls=(0, 0)), torch.zeros(32, 32))


@pytest.mark.parametrize(
    ("phantom", "kwargs"),
    [
        pytest.param(vessels, {"radius": (0.0, 1.0)}, id="vessels-zero-radius"),
        pytest.param(vessels, {"branch_probability": (0.1, 1.5)}, id="vessels-probability"),
        pytest.param(vessels, {"n_trees": (3, 1)}, id="vessels-trees-reversed"),
        pytest.param(vessels, {"margin": 64}, id="vessels-margin"),
        pytest.param(balls, {"kind": "cube"}, id="balls-kind"),
        pytest.param(balls, {"amplitude": (0.5,)}, id="balls-amplitude-not-a-pair"),
        pytest.param(balls, {"n": -1}, id="balls-n"),
    ],
)
def test_pat_phantoms_invalid_arguments_raise(phantom, kwargs):
    with pytest.raises(ValueError):
        phantom(64, seed=0, **kwargs)
