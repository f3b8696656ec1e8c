"""data_tools.phantoms.registry: phantom families by name, extensible without edits to recon/."""

from __future__ import annotations

import pytest
import torch

from data_tools.phantoms import (
    PHANTOMS,
    ellipse_family,
    ellipses_image,
    phantom_family,
    register_phantom,
    shepp_logan,
)


@pytest.fixture
def disc_family():
    """A family registered for one test and removed after it."""

    def disc(generator: torch.Generator):
        r = 0.2 + 0.5 * float(torch.rand(1, generator=generator))
        return lambda shape: ellipses_image([[1.0, r, r, 0.0, 0.0, 0.0]], shape)

    register_phantom("test_disc", disc)
    yield disc
    PHANTOMS.pop("test_disc", None)


def test_built_in_families_are_registered():
    assert {
        "random_ellipses",
        "few_ellipses",
        "smooth_ellipses",
        "shepp_logan",
        "vessels",
        "balls",
    } <= set(PHANTOMS)
    render = phantom_family("shepp_logan")(torch.Generator().manual_seed(0))
    assert torch.equal(render((32, 32)), shepp_logan((32, 32)))


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(
        ValueError, match=r"unknown phantom 'elipses'; known: random_ellipses, .*balls"
    ):
        phantom_family("elipses")


def test_a_registered_family_is_found_by_name(disc_family):
    assert phantom_family("test_disc") is disc_family
    image = phantom_family("test_disc")(torch.Generator().manual_seed(1))((16, 16))
    assert image.shape == (16, 16) and float(image.max()) == 1.0


def test_registering_refuses_a_taken_name_unless_replacing(disc_family):
    with pytest.raises(ValueError, match="'test_disc' is already registered; pass replace=True"):
        register_phantom("test_disc", disc_family)
    other = ellipse_family(mean_ellipses=2.0, max_ellipses=3)
    assert register_phantom("test_disc", other, replace=True) is other
    assert phantom_family("test_disc") is other


@pytest.mark.parametrize(
    ("name", "draw", "message"),
    [
        pytest.param("", print, "non-empty string", id="empty-name"),
        pytest.param(3, print, "non-empty string", id="int-name"),
        pytest.param("x", "not callable", "draw must be callable", id="not-callable"),
    ],
)
def test_registering_rejects_bad_arguments(name, draw, message):
    with pytest.raises(ValueError, match=message):
        register_phantom(name, draw)
    assert "x" not in PHANTOMS


def test_ellipse_family_renders_one_draw_at_any_resolution():
    render = ellipse_family()(torch.Generator().manual_seed(0))
    coarse, fine = render((32, 32)), render((64, 64))
    assert coarse.shape == (32, 32) and fine.shape == (64, 64)
    # the same ellipses: the fine image averaged onto the coarse grid is close to the coarse one
    pooled = torch.nn.functional.avg_pool2d(fine[None, None], 2)[0, 0]
    assert float((pooled - coarse).abs().mean()) < 0.05
