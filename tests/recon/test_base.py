"""recon.base: measurements that a network cannot take are refused with a message naming the
fix (issue [hardening] item 12: float64 data into float32 networks, empty batches)."""

from __future__ import annotations

import pytest
import torch

from operators import Parallel2D, RayTransform
from recon.base import check_measurements, weight_dtype
from recon.classical import FBP, TV
from recon.unrolled import FBPUNet, LearnedGradient, LearnedPrimalDual

NETWORKS = {
    "lpd": lambda: LearnedPrimalDual(n_iter=2, channels=4),
    "lgs": lambda: LearnedGradient(n_iter=2, channels=4),
    "fbpunet": lambda: FBPUNet(),
}


@pytest.fixture(scope="module")
def op():
    return RayTransform(Parallel2D((16, 16), n_angles=6, n_detectors=24), backend="matrix")


@pytest.mark.parametrize("name", NETWORKS)
def test_float64_data_into_a_float32_network_names_the_conversion(op, name):
    net = NETWORKS[name]()
    y = torch.rand(2, 1, 6, 24, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"y is torch.float64.*pass y.to\(torch.float32\)"):
        net(y, op)
    assert net(y.float(), op).dtype == torch.float32  # the named fix works


@pytest.mark.parametrize("name", [*NETWORKS, "fbp", "tv"])
def test_an_empty_batch_is_refused_by_every_reconstructor(op, name):
    method = {"fbp": FBP, "tv": lambda: TV(lam=0.1, n_iter=2)}.get(name) or NETWORKS[name]
    with pytest.raises(ValueError, match="an empty batch; pass at least one measurement"):
        method()(torch.zeros(0, 1, 6, 24), op)


def test_check_measurements_returns_the_batch_shape_and_checks_dtype(op):
    assert check_measurements(torch.zeros(3, 2, 6, 24), op) == (3, 2)
    assert check_measurements(torch.zeros(6, 24), op, dtype=torch.float32) == ()
    assert weight_dtype(torch.nn.Linear(2, 2)) == torch.float32
    assert weight_dtype(torch.nn.ReLU()) is None
