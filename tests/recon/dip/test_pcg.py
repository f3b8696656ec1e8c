"""recon.dip.pcg: batched preconditioned CG and the Nyström preconditioner on dense matrices."""

from __future__ import annotations

import pytest
import torch

from recon.dip.pcg import NystromPreconditioner, pcg

F64 = torch.float64


def spd(n=60, decay=0.6, shift=1e-3, seed=0):
    """A covariance-like SPD matrix: fast eigenvalue decay plus a small shift."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(n, n, dtype=F64, generator=gen)).Q
    psd = q @ torch.diag(decay ** torch.arange(n, dtype=F64) * 100) @ q.T
    return 0.5 * (psd + psd.T), shift


def test_pcg_solves_each_system_to_tolerance():
    psd, mu = spd()
    k = psd + mu * torch.eye(60, dtype=F64)
    b = torch.randn(5, 60, dtype=F64, generator=torch.Generator().manual_seed(1))
    b[2] = 0  # a zero right-hand side stays zero, without NaN
    x, info = pcg(lambda v: v @ k, b, tol=1e-10, max_iter=1000)
    assert torch.allclose(x, torch.linalg.solve(k, b.T).T, rtol=1e-7, atol=1e-9)
    assert bool((info.residual <= 1e-10).all()) and torch.equal(x[2], torch.zeros(60, dtype=F64))
    x0 = torch.linalg.solve(k, b.T).T
    _, warm = pcg(lambda v: v @ k, b, x0=x0, tol=1e-8)
    assert warm.n_iter == 0
    none, info0 = pcg(lambda v: v @ k, b, max_iter=0)
    assert torch.equal(none, torch.zeros_like(b)) and info0.n_iter == 0


def test_nystrom_preconditioner_captures_the_top_of_the_spectrum():
    psd, mu = spd()
    k = psd + mu * torch.eye(60, dtype=F64)
    shift = torch.tensor(mu, dtype=F64)
    pre = NystromPreconditioner.build(
        lambda v: v @ psd,
        60,
        30,
        shift=lambda: shift,
        dtype=F64,
        generator=torch.Generator().manual_seed(2),
    )
    top = torch.linalg.eigvalsh(psd).flip(0)[:10]
    assert torch.allclose(pre.lam.sort(descending=True).values[:10], top, rtol=1e-3)
    b = torch.randn(3, 60, dtype=F64, generator=torch.Generator().manual_seed(3))
    _, plain = pcg(lambda v: v @ k, b, tol=1e-8, max_iter=1000)
    _, fast = pcg(lambda v: v @ k, b, precond=pre.inverse, tol=1e-8, max_iter=1000)
    assert fast.n_iter < plain.n_iter / 2
    # P⁻¹ is the inverse of P = U Λ Uᵀ + μ I
    p = pre.u @ torch.diag(pre.lam) @ pre.u.T + mu * torch.eye(60, dtype=F64)
    assert torch.allclose(pre.inverse(b @ p), b, rtol=1e-8, atol=1e-8)
    draws = pre.sample(40000, generator=torch.Generator().manual_seed(4))
    assert float((draws.T @ draws / 40000 - p).abs().max()) < 0.05 * float(p.abs().max())


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match=r"b must be \(B, m\)"):
        pcg(lambda v: v, torch.zeros(3))
    with pytest.raises(ValueError, match="tol must be"):
        pcg(lambda v: v, torch.zeros(1, 3), tol=-1.0)
    with pytest.raises(ValueError, match="rank must be an int >= 1"):
        NystromPreconditioner.build(lambda v: v, 3, 0, shift=lambda: 1.0, dtype=F64)
    with pytest.raises(ValueError, match="is psd_mv PSD"):
        NystromPreconditioner.build(lambda v: -v, 3, 2, shift=lambda: 1.0, dtype=F64)
