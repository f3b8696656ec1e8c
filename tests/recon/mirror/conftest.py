"""Fixtures of the mirror-descent tests: a 16² parallel-beam operator and a TV problem on it."""

from __future__ import annotations

import pytest
import torch

from operators import Parallel2D, RayTransform
from recon.solvers import SmoothedTV

F64 = torch.float64


@pytest.fixture(scope="module")
def ray():
    return RayTransform(Parallel2D((16, 16), n_angles=8), backend="matrix")


@pytest.fixture(scope="module")
def problem(ray):
    """Three 16² disc images, their noisy sinograms (float64) and the TV objective."""
    c = torch.linspace(-1, 1, 16, dtype=F64)
    rows, cols = torch.meshgrid(c, c, indexing="ij")
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(3, 1, 16, 16, dtype=F64)
    for i in range(3):
        cy, cx = (torch.rand(2, generator=gen, dtype=F64) - 0.5).tolist()
        x[i, 0] = 0.3 + 0.7 * ((rows - cy) ** 2 + (cols - cx) ** 2 <= 0.3)
    y = ray(x)
    y = y + 0.02 * y.abs().mean() * torch.randn(y.shape, generator=gen, dtype=F64)
    return x, y, SmoothedTV(lam=0.3, eps=0.05)
