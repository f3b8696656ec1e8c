"""Phantom families by name: what a ``data`` config's ``phantom:`` key names.

A *family* is a function ``draw(generator) -> render`` that makes the random choices of one image
(an ellipse table, a vessel tree's seed state, ...) and returns a renderer ``render(shape) ->
image``. The choices are made once and rendered at any grid, so a simulation can measure the same
object on a grid finer than the reconstruction's (:func:`data_tools.simulate.simulate`).

Built-in families (:data:`PHANTOMS`): ``random_ellipses`` (dival's distribution), ``few_ellipses``
(:data:`~data_tools.phantoms.ellipses.FEW_ELLIPSES`), ``smooth_ellipses``
(:data:`~data_tools.phantoms.ellipses.SMOOTH_ELLIPSES`), ``shepp_logan``, and the photoacoustic
``vessels`` and ``balls`` (drawn in pixels of the grid they are rendered on, with the sensor side,
row 0, kept at zero), and ``rectangles`` (:mod:`~data_tools.phantoms.rectangles`). A new family
is one call to :func:`register_phantom` in the code that defines it; configs then name it like the
built-in ones.

Example
-------
>>> render = phantom_family("shepp_logan")(torch.Generator().manual_seed(0))
>>> render((32, 32)).shape
torch.Size([32, 32])
>>> phantom_family("ellipse")
Traceback (most recent call last):
...
ValueError: unknown phantom 'ellipse'; known: random_ellipses, few_ellipses, smooth_ellipses, \
shepp_logan, vessels, balls, rectangles
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from data_tools.phantoms.ellipses import (
    FEW_ELLIPSES,
    SMOOTH_ELLIPSES,
    random_ellipse_params,
    render_random_ellipses,
)
from data_tools.phantoms.head import shepp_logan
from data_tools.phantoms.photoacoustic import balls, vessels
from data_tools.phantoms.rectangles import rectangles_family

__all__ = ["PHANTOMS", "Draw", "ellipse_family", "phantom_family", "register_phantom"]

#: A phantom family: ``draw(generator)`` returns a renderer ``render(shape) -> image (H, W)``.
Draw = Callable[[torch.Generator], Callable[[tuple[int, int]], torch.Tensor]]


def ellipse_family(
    *,
    mean_ellipses: float = 40.0,
    max_ellipses: int = 70,
    min_axis: float = 0.0,
    value_range: tuple[float, float] = (-0.4, 1.0),
    profile: str = "flat",
) -> Draw:
    """A random-ellipse family: each draw takes one table from
    :func:`~data_tools.phantoms.ellipses.random_ellipse_params` (with these keywords) and returns
    its renderer with the given intensity ``profile``
    (:func:`~data_tools.phantoms.ellipses.render_random_ellipses`), so a fine simulation grid and
    the coarse truth show the same ellipses.

    Example
    -------
    >>> draw = ellipse_family(**FEW_ELLIPSES)
    >>> render = draw(torch.Generator().manual_seed(0))
    >>> render((16, 16)).shape, render((32, 32)).shape
    (torch.Size([16, 16]), torch.Size([32, 32]))
    """

    def draw(generator: torch.Generator) -> Callable[[tuple[int, int]], torch.Tensor]:
        params = random_ellipse_params(
            1,
            generator=generator,
            mean_ellipses=mean_ellipses,
            max_ellipses=max_ellipses,
            min_axis=min_axis,
            value_range=value_range,
        )
        return lambda shape: render_random_ellipses(params, shape, profile=profile)[0]

    return draw


def _shepp_logan(generator: torch.Generator) -> Callable[[tuple[int, int]], torch.Tensor]:
    return lambda shape: shepp_logan(shape)


def _vessels(generator: torch.Generator) -> Callable[[tuple[int, int]], torch.Tensor]:
    return lambda shape: vessels(shape, generator=generator)


def _balls(generator: torch.Generator) -> Callable[[tuple[int, int]], torch.Tensor]:
    return lambda shape: balls(shape, generator=generator)


#: Phantom family name → ``draw(generator)`` returning a renderer ``shape -> image``. Add to it
#: with :func:`register_phantom`, read it with :func:`phantom_family`.
PHANTOMS: dict[str, Draw] = {
    "random_ellipses": ellipse_family(),
    "few_ellipses": ellipse_family(**FEW_ELLIPSES),
    "smooth_ellipses": ellipse_family(**SMOOTH_ELLIPSES),
    "shepp_logan": _shepp_logan,
    "vessels": _vessels,
    "balls": _balls,
    "rectangles": rectangles_family,
}


def register_phantom(name: str, draw: Draw, *, replace: bool = False) -> Draw:
    """Add the family ``draw`` to :data:`PHANTOMS` under ``name``, so configs can name it.

    ``draw(generator)`` must return a renderer ``render(shape) -> image (H, W)`` and draw all its
    randomness from ``generator`` (sample ``i`` of a dataset is then the same everywhere).

    Parameters
    ----------
    name
        The name configs use (``phantom: <name>``).
    draw
        The family.
    replace
        Replace a family already registered under ``name`` (default: refuse).

    Returns
    -------
    Draw
        ``draw`` itself.

    Raises
    ------
    ValueError
        If ``name`` is not a non-empty string, ``draw`` is not callable, or ``name`` is taken and
        ``replace`` is false.

    Example
    -------
    >>> from data_tools.phantoms import ellipses_image
    >>> def disc(generator):
    ...     r = 0.2 + 0.5 * float(torch.rand(1, generator=generator))
    ...     return lambda shape: ellipses_image([[1.0, r, r, 0.0, 0.0, 0.0]], shape)
    >>> _ = register_phantom("disc", disc)
    >>> phantom_family("disc")(torch.Generator().manual_seed(0))((16, 16)).shape
    torch.Size([16, 16])
    >>> del PHANTOMS["disc"]
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a phantom name must be a non-empty string, got {name!r}")
    if not callable(draw):
        raise ValueError(
            f"phantom {name!r}: draw must be callable as draw(generator) -> render, "
            f"got {type(draw).__name__}"
        )
    if name in PHANTOMS and not replace:
        raise ValueError(f"phantom {name!r} is already registered; pass replace=True to replace it")
    PHANTOMS[name] = draw
    return draw


def phantom_family(name: str) -> Draw:
    """The family registered under ``name`` (see :data:`PHANTOMS`).

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones.

    Example
    -------
    >>> phantom_family("vessels")(torch.Generator().manual_seed(0))((32, 32)).shape
    torch.Size([32, 32])
    """
    if not isinstance(name, str) or name not in PHANTOMS:
        raise ValueError(f"unknown phantom {name!r}; known: {', '.join(PHANTOMS)}")
    return PHANTOMS[name]
