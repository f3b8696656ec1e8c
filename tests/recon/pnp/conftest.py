"""Shared fixtures of the plug-and-play tests: a small ray transform, a well-conditioned toy
operator, disc phantoms, a noise-level-aware toy denoiser, and config composition."""

from __future__ import annotations

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from torch import nn

from operators import MatrixOperator, Parallel2D, RayTransform
from recon.cli.config import compose_config


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread is fastest on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ray():
    """A small parallel-beam ray transform (32², 8 angles)."""
    return RayTransform(Parallel2D((32, 32), n_angles=8), backend="matrix")


@pytest.fixture(scope="module")
def toy():
    """A well-conditioned random operator from 6×6 images to 80 values, in float64."""
    gen = torch.Generator().manual_seed(0)
    return MatrixOperator(
        torch.randn(80, 36, generator=gen, dtype=torch.float64), domain_shape=(6, 6)
    )


def _discs(n: int, size: int = 32, *, seed: int = 0) -> torch.Tensor:
    """``n`` images ``(n, 1, size, size)``, each the sum of three random discs."""
    gen = torch.Generator().manual_seed(seed)
    c = torch.linspace(-1, 1, size)
    rows, cols = torch.meshgrid(c, c, indexing="ij")
    images = torch.zeros(n, 1, size, size)
    for i in range(n):
        for _ in range(3):
            cy, cx = (torch.rand(2, generator=gen) - 0.5).tolist()
            radius = 0.15 + 0.3 * torch.rand(1, generator=gen).item()
            value = 0.3 + 0.7 * torch.rand(1, generator=gen).item()
            images[i, 0] += value * ((rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2)
    return images


@pytest.fixture
def discs():
    """``discs(n, size=32, *, seed=0)``: ``n`` images ``(n, 1, size, size)``, each the sum of three
    random discs."""
    return _discs


class Smoothing(nn.Module):
    """A noise-level-aware toy denoiser: ``x + w(σ)(Kx - x)``, ``w = σ/(σ + 0.05)``, K a
    trainable 3×3 convolution initialised to the box blur."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1, bias=False, padding_mode="replicate")
        with torch.no_grad():
            self.conv.weight.fill_(1 / 9)

    def forward(self, x, sigma):
        s = torch.as_tensor(sigma).to(x).reshape(-1, 1, 1, 1)
        return x + s / (s + 0.05) * (self.conv(x) - x)


@pytest.fixture
def smoothing():
    """The toy denoiser class: ``smoothing()`` is a fresh :class:`Smoothing`."""
    return Smoothing


@pytest.fixture
def compose_cfg():
    """``compose_cfg(name, *overrides)``: ``conf/<name>.yaml`` composed with ``overrides``."""

    def _compose(name: str, *overrides: str):
        return compose_config(name, overrides)

    yield _compose
    GlobalHydra.instance().clear()
