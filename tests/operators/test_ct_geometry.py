"""Geometry value objects: defaults, validation, hashing."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from operators import ConeBeam3D, FanBeam2D, Parallel2D, Parallel3D


def test_parallel_defaults():
    g = Parallel2D((128, 128), n_angles=30)
    assert g.n_detectors == math.ceil(math.sqrt(2) * 128)
    assert g.range_shape == (30, 182) and g.domain_shape == (128, 128)
    assert g.angles[0] == 0.0 and g.angles[-1] == pytest.approx(math.pi * 29 / 30)


def test_fan_defaults_full_turn_and_cover_the_image():
    g = FanBeam2D((256, 256), n_angles=360, source_distance=500.0, detector_distance=500.0)
    assert g.angles[-1] == pytest.approx(2 * math.pi * 359 / 360)
    radius = math.hypot(256, 256) / 2
    shadow = 2 * 1000.0 * math.tan(math.asin(radius / 500.0))
    assert g.n_detectors == math.ceil(shadow)


def test_int_shape_and_hydra_lists_are_accepted():
    assert Parallel2D(64, n_angles=10).image_shape == (64, 64)
    assert Parallel2D([32, 48], n_angles=10, angles=[0.0] * 10).image_shape == (32, 48)
    assert Parallel3D(16, n_angles=4).volume_shape == (16, 16, 16)


def test_frozen():
    g = Parallel2D(64, n_angles=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.n_angles = 3


@pytest.mark.parametrize(
    "make, match",
    [
        pytest.param(lambda: Parallel2D((0, 64), 10), "positive", id="zero-size"),
        pytest.param(lambda: Parallel2D(64, 10, pixel_size=-1.0), "pixel_size", id="neg-pixel"),
        pytest.param(
            lambda: Parallel2D(64, 10, detector_spacing=0.0), "detector_spacing", id="zero-det"
        ),
        pytest.param(
            lambda: Parallel2D(64, 10, n_detectors=64), "at least 91 detectors", id="too-few-dets"
        ),
        pytest.param(
            lambda: Parallel2D(64, 3, angles=[0.0, 1.0]), "2 angles but n_angles=3", id="angles"
        ),
        pytest.param(lambda: Parallel2D((4, 4, 4), 3), r"\(H, W\)", id="3d-shape"),
        pytest.param(
            lambda: FanBeam2D(64, 10, source_distance=30.0),
            "source would sit inside",
            id="src-inside",
        ),
        pytest.param(
            lambda: FanBeam2D(
                64, 10, n_detectors=50, source_distance=200.0, detector_distance=100.0
            ),
            "does not see the whole image",
            id="fan-too-few",
        ),
        pytest.param(
            lambda: FanBeam2D(64, 10, source_distance=200.0, detector_distance=-1.0),
            "detector_distance",
            id="neg-det-dist",
        ),
        pytest.param(lambda: Parallel3D((8, 8), 3), r"\(D, H, W\)", id="2d-vol"),
        pytest.param(
            lambda: Parallel3D(16, 3, detector_shape=(8, 30)), "volume's height", id="3d-rows"
        ),
        pytest.param(
            lambda: ConeBeam3D(32, 8, detector_shape=(40, 20), source_distance=100.0),
            "does not see the whole volume",
            id="cone-cols",
        ),
    ],
)
def test_invalid_geometries_raise_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_fingerprint_depends_on_every_field():
    base = Parallel2D(64, n_angles=10)
    assert base.fingerprint() == Parallel2D((64, 64), n_angles=10).fingerprint()
    others = [
        Parallel2D(64, n_angles=11),
        Parallel2D(64, n_angles=10, n_detectors=100),
        Parallel2D(64, n_angles=10, pixel_size=0.5),
        Parallel2D(64, n_angles=10, detector_spacing=0.5, n_detectors=200),
        Parallel2D(64, n_angles=10, angles=[0.1 * i for i in range(10)]),
        FanBeam2D(64, n_angles=10, source_distance=500.0),
    ]
    assert len({g.fingerprint() for g in [base, *others]}) == 1 + len(others)


def test_3d_shapes():
    g = ConeBeam3D((32, 64, 64), n_angles=20, source_distance=300.0, detector_distance=200.0)
    assert g.range_shape[0] == 20 and g.domain_shape == (32, 64, 64)
    assert g.detector_spacing == (1.0, 1.0)
    p = Parallel3D((16, 32, 32), n_angles=5, detector_spacing=(2.0, 1.0))
    assert p.range_shape == (5, 8, 46)


# --------------------------------------------------------------------------- angle units
@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda **kw: Parallel2D(64, **kw), id="parallel2d"),
        pytest.param(lambda **kw: FanBeam2D(64, source_distance=200.0, **kw), id="fan2d"),
        pytest.param(lambda **kw: Parallel3D(8, **kw), id="parallel3d"),
        pytest.param(lambda **kw: ConeBeam3D(8, source_distance=50.0, **kw), id="cone3d"),
    ],
)
def test_degrees_are_explicit_and_stored_as_radians(make):
    degrees = np.arange(0, 180, 1.5)
    g = make(angles=degrees, angle_unit="deg")
    assert g.n_angles == 120
    np.testing.assert_allclose(g.angles_array, np.deg2rad(degrees), rtol=0, atol=1e-15)
    assert g == make(angles=np.deg2rad(degrees))  # the unit is not stored: angles are radians
    assert g.to_dict()["angles"][-1] == pytest.approx(math.radians(178.5))
    # the silent mistake of issue 37: degrees taken as radians
    with pytest.raises(ValueError, match=r'178.5 rad, more than a full turn.*angle_unit="deg"'):
        make(angles=degrees)


def test_angle_unit_edge_cases():
    full = np.linspace(0, 2 * np.pi, 9)  # a closed full turn ends at 2π exactly: accepted
    assert FanBeam2D(64, angles=full, source_distance=200.0).n_angles == 9
    assert Parallel2D(64, angles=[-np.pi, np.pi]).n_angles == 2
    with pytest.raises(ValueError, match=r"wrapped into one \(np.mod"):
        Parallel2D(64, angles=full + 0.1)  # more than one turn is refused, with the fix named
    with pytest.raises(ValueError, match=r"720°, more than a full turn"):
        Parallel2D(64, angles=[0.0, 720.0], angle_unit="deg")
    with pytest.raises(ValueError, match="angle_unit must be 'rad' or 'deg'"):
        Parallel2D(64, angles=[0.0, 1.0], angle_unit="degrees")
    with pytest.warns(UserWarning, match="reach only 3.142°; if they are radians"):
        Parallel2D(64, angles=np.linspace(0, np.pi, 10), angle_unit="deg")


def test_n_angles_defaults_to_the_angles_given():
    g = Parallel2D((32, 32), angles=[0.0, 0.3, 1.0])
    assert g.n_angles == 3 and g.range_shape == (3, 46)
    assert Parallel2D((128, 128), 30) == Parallel2D((128, 128), n_angles=30)  # positional
    assert Parallel2D(16, 3, angles=[0.0, 0.1, 0.2]).n_angles == 3  # both, agreeing
    with pytest.raises(ValueError, match="2 angles but n_angles=3; leave n_angles out"):
        Parallel2D(16, 3, angles=[0.0, 1.0])
    with pytest.raises(ValueError, match="give n_angles .* or angles"):
        FanBeam2D(16, source_distance=100.0)
    with pytest.raises(ValueError, match="angles must not be empty"):
        Parallel2D(16, angles=[])
    with pytest.raises(ValueError, match="angles must be finite"):
        Parallel2D(16, angles=[0.0, float("nan")])


def test_replace_keeps_radians_and_offsets():
    """dataclasses.replace (used by fine_geometry and supersampled_geometry) re-validates the
    stored radians with the default unit: degrees are not converted twice."""
    g = FanBeam2D(
        32,
        angles=np.arange(0, 360, 7.5),
        angle_unit="deg",
        source_distance=100.0,
        detector_offset=1.5,
        rotation_offset=-0.5,
    )
    fine = dataclasses.replace(g, image_shape=(64, 64), pixel_size=0.5)
    assert fine.angles == g.angles and fine.n_angles == 48
    assert (fine.detector_offset, fine.rotation_offset) == (1.5, -0.5)


# --------------------------------------------------------------------------- summaries
def test_repr_summarises_angles_and_to_dict_keeps_them():
    g = Parallel2D(128, n_angles=60)
    text = repr(g)
    assert "angles=60 in [0°, 177°], step 3°" in text and len(text) < 200
    assert str(g) == text
    assert len(g.to_dict()["angles"]) == 60
    fan = FanBeam2D(128, angles=[0.0, 0.5, 2.0], source_distance=500.0)
    assert "angles=3 in [0°, 114.6°], non-uniform" in repr(fan)
    assert "angles=1 at 90°" in repr(Parallel2D(16, angles=[math.pi / 2]))
    from operators import RayTransform

    big = RayTransform(FanBeam2D(256, n_angles=720, source_distance=500.0), backend="astra")
    assert "720 in [0°, 359.5°], step 0.5°" in repr(big) and len(repr(big)) < 400
