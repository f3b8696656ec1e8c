"""Photoacoustic tomography (PAT) forward models."""

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
