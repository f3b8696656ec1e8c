"""Phantoms, noise, simulation, datasets, file formats and metrics (knows no networks)."""

from data_tools.phantoms import shepp_logan

__all__ = ["shepp_logan"]
