"""Classical reconstruction: analytic inversion and the classical solvers as reconstructors.

Rooms:

- :mod:`~recon.classical.analytic`: FBP (parallel, fan beam) and FDK (cone beam) in torch.
- :mod:`~recon.classical.coverage`: angular coverage of a scan, Parker weights for short scans
  and the :class:`AngularCoverageWarning` FBP raises for gaps.
- :mod:`~recon.classical.center`: centre-of-rotation estimate (:func:`find_center`) and
  :func:`shift_sinogram` for parallel-beam scans.
- :mod:`~recon.classical.reconstructors`: ``FBP``, ``FDK``, ``Landweber``, ``SIRT``, ``CGLS``,
  ``TV``: the solvers of :mod:`recon.solvers` behind the ``forward(y, op)`` contract.
- :mod:`~recon.classical.pat`: photoacoustic back-projection and exact Fourier inversion.
- :mod:`~recon.classical.pat_points`: universal back-projection and delay-and-sum for point
  sensors (ring and arc arrays).

Example
-------
>>> import torch
>>> from operators import Parallel2D, RayTransform
>>> op = RayTransform(Parallel2D((32, 32), n_angles=20), backend="matrix")
>>> FBP(filter="hann")(op(torch.ones(32, 32)), op).shape
torch.Size([32, 32])
"""

from recon.classical.analytic import FILTERS, fbp, fdk
from recon.classical.center import find_center, shift_sinogram
from recon.classical.coverage import AngularCoverageWarning
from recon.classical.pat import (
    BackProjection,
    FourierLineInversion,
    back_projection,
    fourier_line_inversion,
)
from recon.classical.pat_points import UniversalBackProjection, universal_back_projection
from recon.classical.reconstructors import CGLS, FBP, FDK, SIRT, TV, Landweber
from recon.solvers import cgls, landweber, sirt, tv_pdhg

__all__ = [
    "CGLS",
    "FBP",
    "FDK",
    "FILTERS",
    "SIRT",
    "TV",
    "AngularCoverageWarning",
    "BackProjection",
    "UniversalBackProjection",
    "FourierLineInversion",
    "Landweber",
    "back_projection",
    "cgls",
    "fbp",
    "fdk",
    "find_center",
    "fourier_line_inversion",
    "landweber",
    "shift_sinogram",
    "sirt",
    "tv_pdhg",
    "universal_back_projection",
]
