"""Photoacoustic tomography (PAT) forward models: initial pressure ``p0`` → sensor time series.

- :class:`KSpaceWave`: the accurate k-space pseudospectral time stepper (2D/3D, PML,
  heterogeneous media, mask or point sensors) with a hand-written adjoint;
- :class:`LineSensor`: the exact Fourier model of a line (2D) or planar (3D) sensor;
- :class:`LineSensorRegridding`: the fast approximate model ``Ã`` (Fourier regridding);
- :class:`KSpaceSmoothing`: k-space Blackman smoothing of ``p0``;
- value objects :class:`PATGrid`, :class:`Medium`, :class:`TimeGrid`, :class:`SensorMask`,
  :class:`SensorPoints` (``SensorPoints.circle``: ring and arc arrays, as k-Wave's
  ``makeCartCircle``).

Example
-------
>>> import torch
>>> from operators.pat import KSpaceWave, LineSensorRegridding, PATGrid, TimeGrid
>>> grid = PATGrid((32, 32), spacing=0.1)
>>> time = TimeGrid.from_cfl(grid, cfl=0.5, n_t=64)
>>> A, A_fast = KSpaceWave(grid, time=time), LineSensorRegridding(grid, time=time)
>>> A(torch.rand(32, 32)).shape == A_fast(torch.rand(32, 32)).shape == (32, 64)
True
"""

from operators.pat.grid import Medium, PATGrid, SensorMask, SensorPoints, TimeGrid
from operators.pat.kspace import KSpaceSmoothing, KSpaceWave
from operators.pat.line import LineSensor, LineSensorRegridding

__all__ = [
    "KSpaceSmoothing",
    "KSpaceWave",
    "LineSensor",
    "LineSensorRegridding",
    "Medium",
    "PATGrid",
    "SensorMask",
    "SensorPoints",
    "TimeGrid",
]
