"""Phantoms: analytic and random test images on the square [-1, 1]², and a registry of families.

Rooms:

- ``common``: the image grid (row 0 at the top, pixel centres) and the argument checks shared
  by the phantoms;
- ``ellipses``: ellipse tables rasterised (:func:`ellipses_image`) and dival's random ellipses
  (:func:`random_ellipses`, :data:`FEW_ELLIPSES`, :data:`SMOOTH_ELLIPSES`);
- ``head``: the Shepp–Logan head phantom (:func:`shepp_logan`);
- ``photoacoustic``: random vessels and balls, drawn in pixel units (:func:`vessels`,
  :func:`balls`);
- ``registry``: phantom families by name, what data configs name (:data:`PHANTOMS`,
  :func:`register_phantom`, :func:`phantom_family`).

Every random phantom takes either a ``torch.Generator`` or an integer ``seed`` (not both); with
neither it uses torch's global generator. The same generator state gives the same images.

Example
-------
>>> import torch
>>> from data_tools.phantoms import phantom_family, random_ellipses, shepp_logan
>>> shepp_logan(64).shape, random_ellipses(64, n=2, seed=0).shape
(torch.Size([64, 64]), torch.Size([2, 64, 64]))
>>> phantom_family("few_ellipses")(torch.Generator().manual_seed(0))((32, 32)).shape
torch.Size([32, 32])
"""

from __future__ import annotations

from data_tools.phantoms.ellipses import (
    FEW_ELLIPSES,
    PROFILES,
    SMOOTH_ELLIPSES,
    ellipses_image,
    random_ellipse_params,
    random_ellipses,
    render_random_ellipses,
)
from data_tools.phantoms.head import SHEPP_LOGAN_ELLIPSES, shepp_logan
from data_tools.phantoms.photoacoustic import balls, vessel_tree, vessels
from data_tools.phantoms.rectangles import (
    random_rectangles,
    rectangle_params,
    rectangles_family,
    rectangles_image,
)
from data_tools.phantoms.registry import (
    PHANTOMS,
    Draw,
    ellipse_family,
    phantom_family,
    register_phantom,
)

__all__ = [
    "random_rectangles",
    "rectangle_params",
    "rectangles_family",
    "rectangles_image",
    "FEW_ELLIPSES",
    "PHANTOMS",
    "PROFILES",
    "SHEPP_LOGAN_ELLIPSES",
    "SMOOTH_ELLIPSES",
    "Draw",
    "balls",
    "ellipse_family",
    "ellipses_image",
    "phantom_family",
    "random_ellipse_params",
    "random_ellipses",
    "register_phantom",
    "render_random_ellipses",
    "shepp_logan",
    "vessel_tree",
    "vessels",
]
