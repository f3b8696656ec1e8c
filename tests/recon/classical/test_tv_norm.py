"""TV and ‖A‖ (issue 37, item 9): a precomputed norm skips the power iteration, the operator's
cached norm is computed once across calls, slow computations are logged, and the default λ
scale (``tv_default_lam``) follows the noise and the operator."""

from __future__ import annotations

import logging

import pytest
import torch

from data_tools.phantoms import shepp_logan
from operators import LinearOperator, MatrixOperator, Parallel2D, RayTransform
from operators.counting import CountingOperator
from recon.classical import TV
from recon.solvers.tv import data_norm, rms_column_norm, tv_default_lam, tv_pdhg

N_ITER = 20


class PowerCounted(CountingOperator):
    """Counts every application, the power iteration of ``norm()`` included (the plain
    CountingOperator delegates ``norm()`` to the wrapped operator, uncounted)."""

    norm = LinearOperator.norm


@pytest.fixture(scope="module")
def problem():
    op = RayTransform(Parallel2D((16, 16), n_angles=10), backend="matrix")
    gen = torch.Generator().manual_seed(0)
    clean = op(shepp_logan(16).expand(2, 16, 16))
    y = clean + 0.05 * clean.abs().mean() * torch.randn(clean.shape, generator=gen)
    return op, y


def test_a_precomputed_norm_gives_the_same_result_without_power_iteration(problem):
    op, y = problem
    computed = PowerCounted(op)
    x_computed = TV(lam=0.5, n_iter=N_ITER)(y, computed)
    power = computed.forward_count - N_ITER * 2
    assert power >= 5  # the power iteration ran on this operator (one image per iteration)
    given = PowerCounted(op)
    x_given = TV(lam=0.5, n_iter=N_ITER, op_norm=computed.norm())(y, given)
    assert torch.equal(x_given, x_computed)
    assert (given.forward_count, given.adjoint_count) == (N_ITER * 2, N_ITER * 2)


def test_the_norm_is_computed_once_across_calls(problem):
    op, y = problem
    counted = PowerCounted(op)
    tv = TV(lam=0.5, n_iter=N_ITER)
    tv(y, counted)
    first = counted.forward_count
    assert first > N_ITER * 2
    tv(y, counted)
    TV(lam=2.0, n_iter=N_ITER)(y, counted)  # another TV, same operator: the operator's cache
    assert counted.forward_count == first + 2 * N_ITER * 2


def test_tau_and_sigma_check_uses_a_given_norm(problem):
    op, y = problem
    given = PowerCounted(op)
    with pytest.raises(ValueError, match="PDHG may diverge"):
        tv_pdhg(y, given, lam=0.5, n_iter=2, tau=1.0, sigma=1.0, op_norm=10.0)
    assert given.forward_count == 0
    with pytest.raises(ValueError, match="op_norm must be a finite positive number"):
        TV(lam=0.5, op_norm=0.0)


def test_a_slow_norm_is_logged_with_the_value_to_pass(problem, caplog, monkeypatch):
    op, _ = problem
    monkeypatch.setattr("recon.solvers.tv.NORM_NOTICE_SECONDS", -1.0)
    real_norm = LinearOperator.norm

    def slow_norm(self, **kwargs):  # stands in for a large operator's power iteration
        import time

        time.sleep(0.15)
        return real_norm(self, **kwargs)

    monkeypatch.setattr(PowerCounted, "norm", slow_norm)
    with caplog.at_level(logging.INFO, logger="recon.solvers.tv"):
        value = data_norm(PowerCounted(op))
    (record,) = caplog.records
    assert record.levelname == "WARNING"
    assert (
        f"op_norm={value:.6g}" in record.getMessage()
        and "power iteration in" in record.getMessage()
    )
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="recon.solvers.tv"):
        data_norm(op, op_norm=value)  # given: nothing computed, nothing logged
    assert not caplog.records


def test_rms_column_norm_matches_the_system_matrix(problem):
    op, _ = problem
    import math

    from operators.ct.matrix_backend import load_or_build

    W = load_or_build(op.geometry)
    exact = math.sqrt(float((W.data.astype("float64") ** 2).sum()) / W.shape[1])
    assert rms_column_norm(op) == pytest.approx(exact, rel=0.05)  # seeds 0-4: 0.96-1.03
    M = torch.randn(7, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact_dense = float(M.square().sum().sqrt()) / math.sqrt(5)
    assert rms_column_norm(MatrixOperator(M), n_probes=4000) == pytest.approx(exact_dense, rel=0.02)


def test_default_lam_scales_with_noise_and_operator(problem):
    op, _ = problem
    lam = tv_default_lam(op, noise_std=0.1)
    assert tv_default_lam(op, noise_std=0.2) == pytest.approx(2 * lam)
    assert tv_default_lam(2.0 * op, noise_std=0.2) == pytest.approx(4 * lam, rel=1e-5)
    # not with the image size (measured: 64² and 128² within 0.1 %; small images' corners add 7 %
    # at 16² vs 32²)
    small, large = (
        RayTransform(Parallel2D((n, n), n_angles=10), backend="matrix") for n in (32, 64)
    )
    lam_small = tv_default_lam(small, noise_std=0.1)
    assert tv_default_lam(large, noise_std=0.1) == pytest.approx(lam_small, rel=0.15)
    with pytest.raises(ValueError, match="noise_std"):
        tv_default_lam(op, noise_std=-1.0)
