"""Raw projections to line integrals: readers, flat/dark correction, −log, outliers and rings.

Rooms:

- ``normalise``: :func:`flat_dark_correct`, :func:`minus_log` and :func:`to_line_integrals`;
- ``artefacts``: :func:`remove_outliers` (dead and hot pixels) and :func:`remove_rings` (stripes);
- ``files``: :func:`read_tiff_projections` and :func:`read_hdf5_projections` (DXchange layout),
  returning a :class:`ProjectionData`;
- ``common``: numpy/torch handling and the local median shared by the others.
"""

from __future__ import annotations

from data_tools.projections.artefacts import remove_outliers, remove_rings
from data_tools.projections.files import (
    DXCHANGE,
    ProjectionData,
    angles_to_radians,
    read_hdf5_projections,
    read_tiff_projections,
)
from data_tools.projections.normalise import (
    DEFAULT_MIN_TRANSMISSION,
    flat_dark_correct,
    minus_log,
    to_line_integrals,
)

__all__ = [
    "DEFAULT_MIN_TRANSMISSION",
    "DXCHANGE",
    "ProjectionData",
    "angles_to_radians",
    "flat_dark_correct",
    "minus_log",
    "read_hdf5_projections",
    "read_tiff_projections",
    "remove_outliers",
    "remove_rings",
    "to_line_integrals",
]
