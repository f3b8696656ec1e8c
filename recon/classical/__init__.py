"""Classical reconstruction: analytic inversion and the classical solvers as reconstructors.

Rooms:

- :mod:`~recon.classical.analytic`: FBP (parallel, fan beam) and FDK (cone beam) in torch.
- :mod:`~recon.classical.reconstructors`: ``FBP``, ``FDK``, ``Landweber``, ``SIRT``, ``CGLS``,
  ``TV``: the solvers of :mod:`recon.solvers` behind the ``forward(y, op)`` contract.
- :mod:`~recon.classical.pat`: photoacoustic back-projection and exact Fourier inversion.

Example
-------
>>> import torch
>>> from operators import Parallel2D, RayTransform
>>> op = RayTransform(Parallel2D((32, 32), n_angles=20), backend="matrix")
>>> FBP(filter="hann")(op(torch.ones(32, 32)), op).shape
torch.Size([32, 32])
"""

from recon.classical.analytic import FILTERS, fbp, fdk
from recon.classical.pat import (
    BackProjection,
    FourierLineInversion,
    back_projection,
    fourier_line_inversion,
)
from recon.classical.reconstructors import CGLS, FBP, FDK, SIRT, TV, Landweber
from recon.solvers import cgls, landweber, sirt, tv_pdhg

__all__ = [
    "CGLS",
    "FBP",
    "FDK",
    "FILTERS",
    "SIRT",
    "TV",
    "BackProjection",
    "FourierLineInversion",
    "Landweber",
    "back_projection",
    "cgls",
    "fbp",
    "fdk",
    "fourier_line_inversion",
    "landweber",
    "sirt",
    "tv_pdhg",
]
