"""Detector/rotation offsets and per-view vector geometries: conventions checked against exact
line integrals of a disc, agreement of the circular and vector forms, dot tests, backends."""

from __future__ import annotations

import json
import math

import astra
import numpy as np
import pytest
import torch

from operators import FanBeam2D, FanVec2D, Parallel2D, ParallelVec2D, RayTransform
from operators.ct.astra_backend import astra_geometries_3d, vectors_3d
from operators.ct.geometry import fan_shadow
from operators.testing import check_adjoint, check_autograd


# --------------------------------------------------------------------------- helpers
def disc_image(shape, pixel_size, centre, radius, sub=4) -> torch.Tensor:
    """A unit disc on the documented image grid (x right, y up), pixels averaged over sub²."""
    H, W = shape
    x = (np.arange(W * sub) - (W * sub - 1) / 2) * pixel_size / sub
    y = ((H * sub - 1) / 2 - np.arange(H * sub)) * pixel_size / sub
    inside = (x[None, :] - centre[0]) ** 2 + (y[:, None] - centre[1]) ** 2 <= radius**2
    return torch.from_numpy(inside.reshape(H, sub, W, sub).mean(axis=(1, 3)))


def chords(points, directions, centre, radius) -> np.ndarray:
    """Chord length of the disc on the lines through ``points`` along ``directions``."""
    d = directions / np.linalg.norm(directions, axis=-1, keepdims=True)
    rel = np.asarray(centre) - points
    dist = np.abs(rel[..., 0] * d[..., 1] - rel[..., 1] * d[..., 0])
    return 2 * np.sqrt(np.clip(radius**2 - dist**2, 0, None))


def rel(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def documented_rays(g, sign: float = 1.0):
    """Per (view, element): a point on the ray and its direction, from the conventions written in
    operators/ct/geometry.py (independent of ``to_vectors``); ``sign=-1`` flips the offsets."""
    th = g.angles_array[:, None]
    axis = np.stack(np.broadcast_arrays(np.cos(th), np.sin(th)), axis=-1)
    normal = np.stack(np.broadcast_arrays(-np.sin(th), np.cos(th)), axis=-1)
    k = np.arange(g.n_detectors)[None, :, None]
    u = (k - (g.n_detectors - 1) / 2) * g.detector_spacing + sign * g.detector_offset
    if isinstance(g, Parallel2D):
        return u * axis, np.broadcast_to(-normal, (g.n_angles, g.n_detectors, 2))
    c = sign * g.rotation_offset
    source = -g.source_distance * normal - c * axis
    element = g.detector_distance * normal + (u - c) * axis
    return element, element - source


PAR = dict(n_detectors=64, pixel_size=1.0, detector_spacing=1.0)
FAN = dict(n_detectors=128, source_distance=90.0, detector_distance=60.0)


# --------------------------------------------------------------------------- offsets
@pytest.mark.parametrize(
    "g",
    [
        pytest.param(Parallel2D((40, 40), 12, detector_offset=3.5, **PAR), id="parallel"),
        pytest.param(Parallel2D((40, 40), 12, detector_offset=-2.25, **PAR), id="parallel-neg"),
        pytest.param(FanBeam2D((40, 40), 12, detector_offset=3.5, **FAN), id="fan-det"),
        pytest.param(FanBeam2D((40, 40), 12, rotation_offset=2.5, **FAN), id="fan-cor"),
        pytest.param(
            FanBeam2D((40, 40), 12, detector_offset=-4.0, rotation_offset=1.5, **FAN),
            id="fan-both",
        ),
    ],
)
def test_offsets_follow_the_documented_convention(g):
    """An off-centre disc projects to its exact chords along the documented rays.

    The error left is the pixel grid's (2.1–3.7 % here, as without offsets: it depends on where
    the rays fall between pixel centres); the opposite sign of the offsets gives 70–90 %."""
    centre, radius = (4.0, -3.0), 9.0
    sino = RayTransform(g, backend="astra")(disc_image(g.image_shape, 1.0, centre, radius))
    points, directions = documented_rays(g)
    assert rel(sino, chords(points, directions, centre, radius)) < 0.05
    assert rel(sino, chords(*documented_rays(g, sign=-1.0), centre, radius)) > 0.3
    # the same rays, from to_vectors
    v = g.to_vectors()
    k = np.arange(g.n_detectors)[None, :, None] - (g.n_detectors - 1) / 2
    elements = v[:, None, 2:4] + k * v[:, None, 4:6]
    np.testing.assert_allclose(elements, points, atol=1e-9)


def test_parallel_offset_shifts_the_sinogram_by_offset_over_spacing():
    x = disc_image((32, 32), 1.0, (3.0, 2.0), 6.0)
    g0 = Parallel2D((32, 32), 10, n_detectors=60)
    y0 = RayTransform(g0, backend="astra")(x).numpy()
    # whole elements: the sinogram moves 3 elements lower (element k sees u_k + offset), equal up
    # to float32 rounding (ASTRA computes the vector form by other formulas)
    y3 = RayTransform(Parallel2D((32, 32), 10, n_detectors=60, detector_offset=3.0))(x).numpy()
    np.testing.assert_allclose(y3[:, :-3], y0[:, 3:], rtol=1e-4, atol=2e-4)
    assert np.abs(y3[:, :-3] - y0[:, :-3]).max() > 1.0
    # a fractional offset: the unshifted sinogram interpolated at k + d/spacing
    d, ds = 1.3, 0.5
    fine = Parallel2D((32, 32), 10, n_detectors=400, detector_spacing=ds / 4)  # dense reference
    yf = RayTransform(fine, backend="astra")(x).numpy()
    uf = (np.arange(400) - 399 / 2) * ds / 4
    gd = Parallel2D((32, 32), 10, n_detectors=100, detector_spacing=ds, detector_offset=d)
    yd = RayTransform(gd, backend="matrix")(x).numpy()
    ud = (np.arange(100) - 99 / 2) * ds + d

    def unshifted_at(u):
        return np.stack([np.interp(u, uf, row) for row in yf])

    assert rel(yd, unshifted_at(ud)) < 0.01
    assert rel(yd, unshifted_at(ud - 2 * d)) > 0.1  # the opposite sign would be far off


@pytest.mark.parametrize(
    "g, axis_index",
    [
        pytest.param(
            Parallel2D((24, 24), 8, detector_offset=3.5, n_detectors=48), 23.5 - 3.5, id="parallel"
        ),
        pytest.param(
            FanBeam2D((24, 24), 8, detector_offset=2.0, rotation_offset=1.5, **FAN),
            63.5 + (1.5 * 150 / 90 - 2.0),
            id="fan",
        ),
    ],
)
def test_the_rotation_axis_lands_where_the_docstring_says(g, axis_index):
    """A small centred disc: every projection's centroid sits at the documented element."""
    y = RayTransform(g, backend="astra")(disc_image(g.image_shape, 1.0, (0.0, 0.0), 2.0)).numpy()
    centroid = (y * np.arange(g.n_detectors)).sum(1) / y.sum(1)
    np.testing.assert_allclose(centroid, axis_index, atol=0.05)


def test_fan_shadow_is_the_extent_of_the_projected_disc():
    R, D, r, o, c = 90.0, 60.0, 20.0, 2.0, -3.0
    lo, hi = fan_shadow(r, R, D, o, c)
    # brute force: project points of the circle through the documented source at θ = 0
    t = np.linspace(0, 2 * np.pi, 200001)
    px, py = r * np.cos(t), r * np.sin(t)
    sx, sy = -c, -R
    u = sx + (px - sx) * (D - sy) / (py - sy) - (o - c)
    assert lo == pytest.approx(u.min(), abs=1e-6) and hi == pytest.approx(u.max(), abs=1e-6)
    g = FanBeam2D(
        28, 6, source_distance=R, detector_distance=D, detector_offset=o, rotation_offset=c
    )
    radius = math.hypot(28, 28) / 2
    lo, hi = fan_shadow(radius, R, D, o, c)
    assert g.n_detectors == math.ceil(2 * max(-lo, hi) - 1e-9)
    with pytest.raises(ValueError, match="does not see the whole image"):
        FanBeam2D(
            28,
            6,
            n_detectors=g.n_detectors - 1,
            source_distance=R,
            detector_distance=D,
            detector_offset=o,
            rotation_offset=c,
        )


def test_offset_validation_and_defaults():
    g = Parallel2D(64, 10, detector_offset=2.0)
    assert g.n_detectors == math.ceil(math.hypot(64, 64) + 4.0)
    with pytest.raises(ValueError, match="smaller detector_offset"):
        Parallel2D(64, 10, n_detectors=91, detector_offset=2.0)
    with pytest.raises(ValueError, match="detector_offset must be a finite"):
        Parallel2D(64, 10, detector_offset=float("nan"))
    with pytest.raises(ValueError, match="rotation_offset must be a finite"):
        FanBeam2D(64, 10, source_distance=300.0, rotation_offset=float("inf"))
    base = FanBeam2D(32, 10, source_distance=100.0, n_detectors=200)
    prints = {
        base.fingerprint(),
        FanBeam2D(
            32, 10, source_distance=100.0, n_detectors=200, detector_offset=0.5
        ).fingerprint(),
        FanBeam2D(
            32, 10, source_distance=100.0, n_detectors=200, rotation_offset=0.5
        ).fingerprint(),
    }
    assert len(prints) == 3


@pytest.mark.parametrize("backend", ["astra", "matrix", "odl"])
def test_fan_offsets_dot_test_and_backends_agree(backend):
    g = FanBeam2D((24, 24), 14, detector_offset=1.7, rotation_offset=-2.2, **FAN)
    A = RayTransform(g, backend=backend)
    assert check_adjoint(A) <= 1e-5
    assert check_autograd(A) <= 1e-6
    x = torch.rand(2, 24, 24, generator=torch.Generator().manual_seed(0))
    assert rel(A(x), RayTransform(g, backend="astra")(x)) <= 1e-5


@pytest.mark.parametrize("backend", ["astra", "matrix"])
def test_parallel_offset_dot_test(backend):
    A = RayTransform(Parallel2D((24, 30), 11, detector_offset=-2.6, **PAR), backend=backend)
    assert check_adjoint(A) <= 1e-5
    assert check_adjoint(A, dtype=torch.float32) <= 1e-5
    assert check_autograd(A) <= 1e-6


def test_odl_refuses_what_it_cannot_model():
    with pytest.raises(NotImplementedError, match="detector_offset.*'astra' or 'matrix'"):
        RayTransform(Parallel2D(16, 4, detector_offset=1.0), backend="odl")
    v = ParallelVec2D.from_geometry(Parallel2D(16, 4))
    with pytest.raises(NotImplementedError, match="ParallelVec2D.*'astra' or 'matrix'"):
        RayTransform(v, backend="odl")
    assert isinstance(RayTransform(Parallel2D(16, 4), backend="odl"), RayTransform)


# --------------------------------------------------------------------------- vector geometries
CIRCULAR = [
    pytest.param(Parallel2D((24, 28), 13, pixel_size=0.8, detector_spacing=0.7), id="parallel"),
    pytest.param(Parallel2D((24, 24), 9, detector_offset=1.25, n_detectors=40), id="parallel-off"),
    pytest.param(FanBeam2D((24, 24), 16, **FAN), id="fan"),
    pytest.param(
        FanBeam2D((24, 24), 10, detector_offset=-1.0, rotation_offset=2.0, **FAN), id="fan-off"
    ),
]


def vector_form(g):
    return (ParallelVec2D if isinstance(g, Parallel2D) else FanVec2D).from_geometry(g)


@pytest.mark.parametrize("g", CIRCULAR)
def test_to_vectors_agrees_with_astra_geom_2vec(g):
    """With the offsets removed, our vectors equal ASTRA's own conversion of the angle-based
    geometry (the offsets themselves are checked against the documented rays above)."""
    drop = ("type", "detector_offset", "rotation_offset")
    centred = type(g)(**{k: v for k, v in g.to_dict().items() if k not in drop})
    if isinstance(g, Parallel2D):
        proj = astra.create_proj_geom("parallel", g.detector_spacing, g.n_detectors, g.angles_array)
    else:
        proj = astra.create_proj_geom(
            "fanflat",
            g.detector_spacing,
            g.n_detectors,
            g.angles_array,
            g.source_distance,
            g.detector_distance,
        )
    np.testing.assert_allclose(centred.to_vectors(), astra.geom_2vec(proj)["Vectors"], atol=1e-12)


@pytest.mark.parametrize("backend", ["astra", "matrix"])
@pytest.mark.parametrize("g", CIRCULAR)
def test_vector_form_gives_the_same_sinogram_and_passes_the_dot_test(g, backend):
    v = vector_form(g)
    assert v.range_shape == g.range_shape and v.domain_shape == g.domain_shape
    A, B = RayTransform(g, backend=backend), RayTransform(v, backend=backend)
    x = torch.rand(2, *g.image_shape, generator=torch.Generator().manual_seed(0))
    y = torch.rand(2, *g.range_shape, generator=torch.Generator().manual_seed(1))
    assert rel(B(x), A(x)) <= 1e-5
    assert rel(B.T(y), A.T(y)) <= 1e-5
    assert check_adjoint(B) <= 1e-5
    assert check_autograd(B) <= 1e-6


def test_vector_form_gives_the_same_system_matrix():
    from operators.ct.astra_backend import AstraCPU2D

    for g in (Parallel2D((20, 20), 8), FanBeam2D((20, 20), 8, **FAN)):
        W = AstraCPU2D(g, threads=1).system_matrix()
        V = AstraCPU2D(vector_form(g), threads=1).system_matrix()
        assert W.shape == V.shape
        # ASTRA computes the two forms in float32 by different formulas: they differ in rounding
        # (relative Frobenius difference 1.3e-5 at 32² measured) and where rays graze pixel edges
        assert rel(V.toarray(), W.toarray()) < 3e-5


def _random_poses(kind: str, n: int, seed: int = 0) -> np.ndarray:
    """Poses no circular geometry has: wobbling source, drifting and tilted detector."""
    rng = np.random.default_rng(seed)
    th = np.sort(rng.uniform(0, 2 * np.pi, n))
    axis = np.stack([np.cos(th), np.sin(th)], 1)
    normal = np.stack([-np.sin(th), np.cos(th)], 1)
    tilt = rng.uniform(-0.2, 0.2, n)[:, None]
    u = 0.9 * (np.cos(tilt) * axis + np.sin(tilt) * normal)
    centre = rng.uniform(-3, 3, (n, 1)) * axis + 40.0 * normal
    if kind == "parallel":
        first = -normal + rng.uniform(-0.1, 0.1, (n, 1)) * axis
    else:
        first = -80.0 * normal + rng.uniform(-4, 4, (n, 1)) * axis
    return np.concatenate([first, centre, u], axis=1)


@pytest.mark.parametrize("cls", [ParallelVec2D, FanVec2D], ids=["parallel", "fan"])
def test_free_poses_project_a_disc_exactly(cls):
    kind = "parallel" if cls is ParallelVec2D else "fan"
    vectors = _random_poses(kind, 12)
    g = cls((80, 80), vectors=vectors, n_detectors=110, pixel_size=0.5)
    centre, radius = (-3.0, 5.0), 9.0
    sino = RayTransform(g, backend="astra")(disc_image((80, 80), 0.5, centre, radius)).numpy()
    k = np.arange(110)[None, :, None] - 109 / 2
    points = vectors[:, None, 2:4] + k * vectors[:, None, 4:6]
    directions = vectors[:, None, 0:2] if kind == "parallel" else points - vectors[:, None, 0:2]
    directions = np.broadcast_to(directions, points.shape)
    # the pixel grid's error at 0.5 mm pixels is 1-2.5 % (as for the circular geometries)
    assert rel(sino, chords(points, directions, centre, radius)) < 0.025
    # elements half an element off (ASTRA's element k at d + (k - n/2) u) would be far worse
    half = points - 0.5 * vectors[:, None, 4:6]
    wrong = half - vectors[:, None, 0:2] if kind == "fan" else directions
    assert rel(sino, chords(half, wrong, centre, radius)) > 0.045  # measured 6-9 %
    A = RayTransform(g, backend="matrix")
    assert check_adjoint(A) <= 1e-5
    x = torch.rand(80, 80, generator=torch.Generator().manual_seed(0))
    assert rel(A(x), RayTransform(g, backend="astra")(x)) <= 1e-5


def test_vector_geometry_validation():
    good = _random_poses("parallel", 3)
    with pytest.raises(ValueError, match=r"shape \(n_views, 6\).*parallel_vec.*\(3, 5\)"):
        ParallelVec2D(16, vectors=good[:, :5], n_detectors=30)
    with pytest.raises(ValueError, match=r"shape \(n_views, 6\)"):
        FanVec2D(16, vectors=np.zeros((0, 6)), n_detectors=30)
    bad = good.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="finite; row 1"):
        ParallelVec2D(16, vectors=bad, n_detectors=30)
    bad = good.copy()
    bad[2, 4:6] = 0
    with pytest.raises(ValueError, match="detector vector u .* zero in row 2"):
        ParallelVec2D(16, vectors=bad, n_detectors=30)
    bad = good.copy()
    bad[0, 0:2] = bad[0, 4:6]
    with pytest.raises(ValueError, match="ray direction .* parallel to the detector in row 0"):
        ParallelVec2D(16, vectors=bad, n_detectors=30)
    fan = _random_poses("fan", 3)
    fan[1, 0:2] = fan[1, 2:4] + 5 * fan[1, 4:6]
    with pytest.raises(ValueError, match="source .* detector line in row 1"):
        FanVec2D(16, vectors=fan, n_detectors=30)
    with pytest.raises(ValueError, match="n_detectors"):
        ParallelVec2D(16, vectors=good, n_detectors=0)
    with pytest.raises(ValueError, match="pixel_size"):
        ParallelVec2D(16, vectors=good, n_detectors=30, pixel_size=-1)
    with pytest.raises(ValueError, match="numeric"):
        ParallelVec2D(16, vectors=[["a"] * 6], n_detectors=30)
    with pytest.raises(TypeError, match="needs a FanBeam2D"):
        FanVec2D.from_geometry(Parallel2D(16, 4))
    with pytest.raises(TypeError):
        ParallelVec2D(16, good, 30)  # keyword-only after image_shape


def test_vector_geometry_value_semantics():
    vectors = _random_poses("fan", 5)
    g = FanVec2D((16, 20), vectors=vectors, n_detectors=50, pixel_size=0.5)
    assert g.n_angles == 5 and g.range_shape == (5, 50) and g.domain_shape == (16, 20)
    assert FanVec2D((16, 20), vectors=vectors.tolist(), n_detectors=50, pixel_size=0.5) == g
    assert hash(g) == hash(FanVec2D((16, 20), vectors=vectors, n_detectors=50, pixel_size=0.5))
    d = json.loads(json.dumps(g.to_dict()))
    assert d["type"] == "FanVec2D" and np.array_equal(np.array(d["vectors"]), vectors)
    moved = vectors.copy()
    moved[4, 2] += 1e-6
    assert FanVec2D((16, 20), vectors=moved, n_detectors=50, pixel_size=0.5).fingerprint() != (
        g.fingerprint()
    )
    assert (
        repr(g)
        == "FanVec2D(image_shape=(16, 20), vectors=<5 poses>, n_detectors=50, pixel_size=0.5)"
    )
    out = g.to_vectors()
    out[0, 0] = 1e9  # a copy: the geometry stays frozen
    assert g.vectors[0][0] == vectors[0, 0]
    one = ParallelVec2D(16, vectors=[0.0, -1.0, 0.0, 0.0, 1.0, 0.0], n_detectors=30)
    assert one.range_shape == (1, 30)


def test_auto_backend_and_cuda_geometries_for_vectors():
    v = ParallelVec2D.from_geometry(Parallel2D(16, 4, detector_offset=0.5))
    A = RayTransform(v)
    assert A.resolve_backend("cpu") == "matrix"
    assert A.resolve_backend("cuda") == "astra-cuda"
    assert A(np.ones((16, 16), dtype=np.float32)).shape == (4, 24)  # and numpy works
    # on CUDA the 2D geometry is one slice: its 3D vectors embed the 2D ones, and for the
    # angle-based geometries they equal ASTRA's conversion of the (GPU-tested) parallel3d/cone
    for g in (Parallel2D((16, 16), 5, pixel_size=0.5), FanBeam2D((16, 16), 5, **FAN)):
        _, proj = astra_geometries_3d(g)
        np.testing.assert_allclose(vectors_3d(g), astra.geom_2vec(proj)["Vectors"], atol=1e-12)
    for g, kind in (
        (v, "parallel3d_vec"),
        (FanVec2D.from_geometry(FanBeam2D(16, 5, **FAN)), "cone_vec"),
        (FanBeam2D(16, 5, rotation_offset=1.0, **FAN), "cone_vec"),
    ):
        vol, proj = astra_geometries_3d(g)
        assert proj["type"] == kind and vol["GridSliceCount"] == 1
        assert proj["Vectors"].shape == (g.n_angles, 12)
