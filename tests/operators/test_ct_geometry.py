"""Geometry value objects: defaults, validation, hashing."""

from __future__ import annotations

import dataclasses
import math

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
