"""Learned approximate models A_q = F_q ∘ Ã ∘ H_f: forward, both adjoints, losses, errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from models.unet import UNet
from operators import (
    LearnedAdjoint,
    LearnedOperator,
    LineSensorRegridding,
    MatrixOperator,
    Parallel2D,
    PATGrid,
    RayTransform,
    TimeGrid,
    adjoint_loss,
    available_backends,
    forward_loss,
    relative_error,
)
from operators.testing import check_adjoint

F64 = torch.float64
IMAGE = (16, 16)
DATA = (8, 24)


def matrix_approx(dtype: torch.dtype = F64) -> MatrixOperator:
    """A dense 16² → 8×24 operator with norm of order one."""
    gen = torch.Generator().manual_seed(0)
    matrix = torch.randn(DATA[0] * DATA[1], IMAGE[0] * IMAGE[1], generator=gen, dtype=dtype) / 16
    return MatrixOperator(matrix, domain_shape=IMAGE, range_shape=DATA)


def pat_approx() -> LineSensorRegridding:
    grid = PATGrid(IMAGE, spacing=0.1)
    return LineSensorRegridding(grid, time=TimeGrid.from_cfl(grid, cfl=0.5, n_t=32))


def astra_ray() -> RayTransform:
    if "astra" not in available_backends():
        pytest.skip("ASTRA is not installed")
    # Not torch code: exercises the autograd Function path (first and second derivatives).
    return RayTransform(Parallel2D(IMAGE, n_angles=8), backend="astra")


# (factory, tolerance of float64 dot tests): ASTRA computes in float32.
APPROX = [
    pytest.param(matrix_approx, 1e-10, id="matrix"),
    pytest.param(pat_approx, 1e-10, id="pat-regridding"),
    pytest.param(astra_ray, 1e-6, id="ct-astra"),
]

# (factory, dot-test tolerance, finite-difference step, finite-difference tolerance): the step
# balances truncation (eps²) against rounding (float64, or ASTRA's float32, divided by eps).
LINEARISED = [
    pytest.param(matrix_approx, 1e-10, 1e-5, 1e-7, id="matrix"),
    pytest.param(astra_ray, 1e-6, 3e-3, 1e-3, id="ct-astra"),
]


def unet(*, seed: int, activation: str = "tanh", residual: bool = True) -> UNet:
    """A tiny residual U-Net; tanh keeps it smooth for finite differences."""
    torch.manual_seed(seed)
    return UNet(channels=4, depth=1, residual=residual, norm=None, activation=activation)


def randn(*shape: int, seed: int, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.sum(a * b)


def grads(net: nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in net.parameters()]


def weights_get_gradients(net: nn.Module) -> bool:
    """Every weight (not bias) has a non-zero gradient.

    Biases are left out: the Jacobian does not depend on the bias of a final layer, so through
    a linearised adjoint it gets no gradient.
    """
    weights = [p for p in net.parameters() if p.ndim > 1]
    return all(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in weights)


def corrected(approx, *, adjoint: str = "linearised", seed: int = 1) -> LearnedOperator:
    """A_q with random (non-identity) smooth networks, in float64."""
    extra = {}
    if adjoint == "learned":
        extra = {
            "adjoint_image_net": unet(seed=seed + 2),
            "adjoint_data_net": unet(seed=seed + 3),
        }
    model = LearnedOperator(
        approx,
        image_net=unet(seed=seed),
        data_net=unet(seed=seed + 1),
        adjoint=adjoint,
        **extra,
    )
    return model.double()


# --------------------------------------------------------------------------- no networks
@pytest.mark.parametrize(("make_approx", "tol"), APPROX)
def test_without_networks_it_is_the_approximate_operator(make_approx, tol):
    approx = make_approx()
    for mode in ("linearised", "learned"):
        A_q = LearnedOperator(approx, adjoint=mode)
        assert not A_q.has_nets
        x = randn(2, 3, *approx.domain_shape, seed=0)
        y = randn(2, 3, *approx.range_shape, seed=1)
        assert torch.equal(A_q(x), approx(x))
        assert A_q.T is approx.T
        assert check_adjoint(A_q) < tol
        torch.testing.assert_close(
            A_q.gradient(x, y), approx.T(approx(x) - y), rtol=1e-10, atol=1e-12
        )
    assert (A_q.domain_shape, A_q.range_shape, A_q.dtypes) == (
        approx.domain_shape,
        approx.range_shape,
        approx.dtypes,
    )


def test_norm_delegates_to_the_approximate_operator():
    approx = matrix_approx()
    A_q = corrected(approx)
    assert A_q.norm() == approx.norm()
    assert A_q.norm() == pytest.approx(
        float(torch.linalg.matrix_norm(approx.matrix, ord=2)), rel=1e-4
    )


# --------------------------------------------------------------------------- zero_init
@pytest.mark.parametrize(("make_approx", "tol"), APPROX[:2])
def test_zero_init_makes_the_untrained_model_exactly_the_approximate_one(make_approx, tol):
    approx = make_approx()
    A_q = LearnedOperator(
        approx,
        image_net=unet(seed=0),
        data_net=unet(seed=1),
        adjoint="learned",
        adjoint_image_net=unet(seed=2),
        adjoint_data_net=unet(seed=3),
        zero_init=True,
    ).double()
    x = randn(3, *approx.domain_shape, seed=0)
    r = randn(3, *approx.range_shape, seed=1)
    assert torch.equal(A_q(x), approx(x))
    assert torch.equal(A_q.T(r), approx.T(r))
    # The linearised adjoint of identity-started networks is Ãᵀ too.
    torch.testing.assert_close(A_q.adjoint(r, at=x), approx.T(r), rtol=1e-12, atol=1e-12)
    assert check_adjoint(A_q) < tol


def test_zero_init_finds_the_last_convolution_of_any_residual_net():
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(3, 1, 3, padding=1)
            )

        def forward(self, x):
            return x + self.body(x)

    approx = matrix_approx(torch.float32)
    A_q = LearnedOperator(approx, data_net=Residual(), zero_init=True)
    assert torch.count_nonzero(A_q.data_net.body[2].weight) == 0
    assert torch.count_nonzero(A_q.data_net.body[0].weight) > 0
    x = randn(2, *IMAGE, seed=0, dtype=torch.float32)
    assert torch.equal(A_q(x), approx(x))


@pytest.mark.parametrize(
    ("net", "match"),
    [
        pytest.param(lambda: unet(seed=0, residual=False), "not the identity", id="not-residual"),
        pytest.param(lambda: nn.Sequential(nn.Tanh()), "no convolution", id="no-conv"),
    ],
)
def test_zero_init_rejects_nets_it_cannot_make_the_identity(net, match):
    with pytest.raises(ValueError, match=match):
        LearnedOperator(matrix_approx(torch.float32), image_net=net(), zero_init=True)


# --------------------------------------------------------------------------- linearised adjoint
@pytest.mark.parametrize(("make_approx", "tol", "eps", "fd_tol"), LINEARISED)
def test_linearised_adjoint_passes_the_dot_test_against_the_jvp(make_approx, tol, eps, fd_tol):
    A_q = corrected(make_approx())
    x = randn(2, *A_q.domain_shape, seed=0)
    v = randn(2, *A_q.domain_shape, seed=1)
    w = randn(2, *A_q.range_shape, seed=2)
    jv = A_q.jvp(x, v)
    jtw = A_q.adjoint(w, at=x)
    err = abs(inner(jv, w) - inner(v, jtw)) / (torch.linalg.norm(jv) * torch.linalg.norm(w))
    assert err < tol
    # The JVP is the derivative: central differences (smooth nets) agree to O(eps²).
    with torch.no_grad():
        fd = (A_q(x + eps * v) - A_q(x - eps * v)) / (2 * eps)
    assert relative_error(jv, fd, sample_ndim=jv.ndim) < fd_tol
    # The networks are not the identity: J differs from Ã.
    assert relative_error(jtw, A_q.approx.T(w), sample_ndim=jtw.ndim) > 1e-2


def test_jvp_agrees_with_forward_mode_autodiff():
    A_q = corrected(matrix_approx())
    x = randn(2, *IMAGE, seed=0)
    v = randn(2, *IMAGE, seed=1)
    with torch.no_grad():  # jvp and adjoint enable gradients themselves
        jv = A_q.jvp(x, v)
    _, forward_mode = torch.func.jvp(A_q, (x,), (v,))
    torch.testing.assert_close(jv, forward_mode.detach(), rtol=1e-12, atol=1e-12)
    assert jv.grad_fn is None


def test_linearised_adjoint_trains_through_with_create_graph():
    A_q = corrected(matrix_approx())
    x0 = randn(2, *IMAGE, seed=0).requires_grad_(True)
    at = 2.0 * x0  # a point inside a graph, as in an unrolled network
    r = randn(2, *DATA, seed=1)
    assert A_q.adjoint(r, at=at).grad_fn is None  # detached by default
    g = A_q.adjoint(r, at=at, create_graph=True)
    torch.sum(g**2).backward()
    assert weights_get_gradients(A_q.image_net) and weights_get_gradients(A_q.data_net)
    assert x0.grad is not None and torch.count_nonzero(x0.grad) > 0


def test_gradient_is_autograd_of_the_data_term():
    A_q = corrected(matrix_approx())
    x = randn(3, *IMAGE, seed=0).requires_grad_(True)
    y = randn(3, *DATA, seed=1)
    (expected,) = torch.autograd.grad(0.5 * torch.sum((A_q(x) - y) ** 2), x)
    torch.testing.assert_close(A_q.gradient(x, y), expected, rtol=1e-12, atol=1e-12)
    # Per sample: the batch does not mix.
    torch.testing.assert_close(A_q.gradient(x[1:2], y[1:2]), expected[1:2], rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- learned adjoint
def test_learned_adjoint_is_the_adjoint_chain_of_the_adjoint_networks():
    approx = matrix_approx()
    A_q = corrected(approx, adjoint="learned")
    r = randn(2, 3, *DATA, seed=0).requires_grad_(True)
    out = A_q.T(r)
    assert out.shape == (2, 3, *IMAGE)
    assert torch.equal(out, A_q.adjoint(r))
    with torch.no_grad():
        chain = A_q.adjoint_image_net(
            approx.T(A_q.adjoint_data_net(r.reshape(6, 1, *DATA)).squeeze(1)).unsqueeze(1)
        )
    torch.testing.assert_close(out.detach(), chain.reshape(2, 3, *IMAGE), rtol=0, atol=0)

    adj = A_q.T
    assert isinstance(adj, LearnedAdjoint) and adj.T is A_q
    assert (adj.domain_shape, adj.range_shape, adj.dtypes) == (DATA, IMAGE, A_q.dtypes)
    assert adj.norm() == approx.norm()
    # A random learned adjoint is not consistent with the forward model yet.
    assert check_adjoint(A_q) > 1e-3

    out.sum().backward()
    for net in (A_q.adjoint_image_net, A_q.adjoint_data_net):
        assert all(g is not None and torch.count_nonzero(g) > 0 for g in grads(net))
    for net in (A_q.image_net, A_q.data_net):
        assert all(g is None for g in grads(net))
    assert r.grad is not None and torch.count_nonzero(r.grad) > 0
    # The linearised adjoint stays available at a point.
    x = randn(2, 3, *IMAGE, seed=1)
    assert A_q.adjoint(r, at=x).shape == x.shape


def test_learned_gradient_applies_the_learned_adjoint_to_the_residual():
    A_q = corrected(matrix_approx(), adjoint="learned")
    x = randn(2, *IMAGE, seed=0)
    y = randn(2, *DATA, seed=1)
    torch.testing.assert_close(A_q.gradient(x, y), A_q.T(A_q(x) - y), rtol=0, atol=0)


# --------------------------------------------------------------------------- losses
def test_losses_are_batch_means_of_relative_squared_errors():
    approx = matrix_approx()
    x = randn(4, *IMAGE, seed=0)
    r = randn(4, *DATA, seed=1)
    # A = 2·Ã: every sample has relative squared error ‖Ãx − 2Ãx‖² / ‖2Ãx‖² = 1/4.
    assert float(forward_loss(LearnedOperator(approx), x, 2 * approx(x))) == pytest.approx(0.25)
    learned = LearnedOperator(approx, adjoint="learned")
    assert float(adjoint_loss(learned, r, 2 * approx.T(r))) == pytest.approx(0.25)
    assert float(adjoint_loss(LearnedOperator(approx), r, approx.T(r), at=x)) == pytest.approx(0)
    # Unequal per-sample errors: the mean of the ratios, not the ratio of the sums.
    scale = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64).reshape(4, 1, 1)
    expected = torch.mean((1 - 1 / scale.flatten()) ** 2)
    loss = forward_loss(LearnedOperator(approx), x, scale * approx(x))
    torch.testing.assert_close(loss, expected)


def test_relative_error_is_per_sample():
    ref = torch.tensor([[[3.0, 4.0]], [[0.0, 2.0]]])
    est = torch.tensor([[[3.0, 4.5]], [[0.0, 3.0]]])
    torch.testing.assert_close(relative_error(est, ref), torch.tensor([0.1, 0.5]))
    assert relative_error(est, ref, sample_ndim=1).shape == (2, 1)
    assert relative_error(est, ref, sample_ndim=3).shape == ()
    with pytest.raises(ValueError, match="same shape"):
        relative_error(est, ref[:1])
    with pytest.raises(ValueError, match="zero"):
        relative_error(est, torch.zeros_like(ref))
    with pytest.raises(ValueError, match="sample_ndim"):
        relative_error(est, ref, sample_ndim=4)


def test_training_a_data_net_fits_a_scaled_operator():
    """A = 2·Ã: a (linear) residual data net learns y ↦ 2y; 50 Adam steps cut the loss 10×."""
    approx = matrix_approx(torch.float32)
    A_q = LearnedOperator(approx, data_net=unet(seed=0, activation="none"), zero_init=True)
    x = randn(4, *IMAGE, seed=0, dtype=torch.float32)
    ax = 2.0 * approx(x)
    optimiser = torch.optim.Adam(A_q.parameters(), lr=3e-2)
    losses = []
    for _ in range(50):
        optimiser.zero_grad()
        loss = forward_loss(A_q, x, ax)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(0.25)
    with torch.no_grad():
        final = float(forward_loss(A_q, x, ax))
    assert final < 0.1 * losses[0]


@pytest.mark.parametrize("mode", ["learned", "linearised"])
def test_adjoint_loss_gives_the_trained_networks_gradients(mode):
    approx = matrix_approx()
    A_q = corrected(approx, adjoint=mode)
    x = randn(2, *IMAGE, seed=0)
    r = randn(2, *DATA, seed=1)
    at = x if mode == "linearised" else None
    loss = adjoint_loss(A_q, r, 2.0 * approx.T(r), at=at)
    assert loss.ndim == 0 and loss > 0
    loss.backward()
    trained = (
        (A_q.adjoint_image_net, A_q.adjoint_data_net)
        if mode == "learned"
        else (A_q.image_net, A_q.data_net)
    )
    for net in trained:
        assert weights_get_gradients(net)


# --------------------------------------------------------------------------- module plumbing
def test_state_dict_round_trip_and_freeze(tmp_path):
    approx = matrix_approx()
    A_q = corrected(approx)
    assert dict(A_q.named_modules())["approx"] is approx
    assert {"image_net", "data_net"} <= {k.split(".")[0] for k in A_q.state_dict()}
    torch.save(A_q.state_dict(), tmp_path / "a_q.pt")

    fresh = corrected(approx, seed=10)
    fresh.load_state_dict(torch.load(tmp_path / "a_q.pt"))
    assert fresh.freeze() is fresh
    assert not fresh.training
    assert not any(p.requires_grad for p in fresh.parameters())
    x = randn(2, *IMAGE, seed=0)
    assert torch.equal(fresh(x), A_q(x))
    # Frozen: gradients still reach the input.
    r = randn(2, *DATA, seed=1)
    torch.testing.assert_close(fresh.adjoint(r, at=x), A_q.adjoint(r, at=x), rtol=0, atol=0)
    assert "adjoint='linearised'" in repr(fresh) and "image_net" in repr(fresh)


# --------------------------------------------------------------------------- errors
def test_linearised_mode_needs_a_point():
    A_q = corrected(matrix_approx())
    r = randn(2, *DATA, seed=0)
    with pytest.raises(ValueError, match=r"adjoint\(r, at=x\)"):
        A_q.adjoint(r)
    with pytest.raises(ValueError, match=r"no fixed adjoint.*adjoint\(r, at=x\)"):
        A_q.T  # noqa: B018 - the property raises
    with pytest.raises(ValueError, match=r"at=x"):
        adjoint_loss(A_q, r, randn(2, *IMAGE, seed=1))
    with pytest.raises(ValueError, match="does not match the point"):
        A_q.adjoint(r, at=randn(3, *IMAGE, seed=1))
    with pytest.raises(ValueError, match="v must have the shape of x"):
        A_q.jvp(randn(2, *IMAGE, seed=1), randn(1, *IMAGE, seed=2))


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        pytest.param(
            lambda a: LearnedOperator(a, adjoint="exact"),
            ValueError,
            "unknown adjoint 'exact'; choose one of linearised, learned",
            id="unknown-mode",
        ),
        pytest.param(
            lambda a: LearnedOperator(a, adjoint_data_net=nn.Identity()),
            ValueError,
            "only used with adjoint='learned'",
            id="adjoint-net-linearised",
        ),
        pytest.param(
            lambda a: LearnedOperator(a, image_net=lambda x: x),
            TypeError,
            "image_net must be a torch.nn.Module",
            id="not-a-module",
        ),
        pytest.param(
            lambda a: LearnedOperator(a.matrix),
            TypeError,
            "approx must be an operators.LinearOperator",
            id="not-an-operator",
        ),
        pytest.param(
            lambda a: LearnedOperator(a, zero_init=1),
            ValueError,
            "zero_init must be a bool",
            id="zero-init-not-bool",
        ),
    ],
)
def test_bad_construction_raises(build, error, match):
    with pytest.raises(error, match=match):
        build(matrix_approx())


@pytest.mark.parametrize(
    ("model", "x", "error", "match"),
    [
        pytest.param(
            lambda a: LearnedOperator(a),
            torch.zeros(2, 15, 16, dtype=F64),
            ValueError,
            r"expected x of shape \(\*batch, 16, 16\)",
            id="shape",
        ),
        pytest.param(
            lambda a: LearnedOperator(a),
            torch.zeros(2, 16, 16, dtype=torch.int64),
            TypeError,
            "unsupported dtype torch.int64",
            id="dtype",
        ),
        pytest.param(
            lambda a: LearnedOperator(a, image_net=unet(seed=0)),  # float32 parameters
            torch.zeros(2, 16, 16, dtype=F64),
            TypeError,
            r"float32 parameters but the input is torch.float64",
            id="net-dtype",
        ),
        pytest.param(
            lambda a: LearnedOperator(a, image_net=nn.Conv2d(1, 1, 3).double()),
            torch.zeros(2, 16, 16, dtype=F64),
            ValueError,
            r"image_net must keep the shape \(N, 1, \*space\)",
            id="net-shape",
        ),
    ],
)
def test_bad_input_raises(model, x, error, match):
    with pytest.raises(error, match=match):
        model(matrix_approx())(x)


def test_compute_in_bfloat16_keeps_the_operator_within_rounding_of_float32():
    from models.dilated import DilatedCNN

    torch.manual_seed(0)
    approx = matrix_approx(torch.float32)

    def net() -> DilatedCNN:
        out = DilatedCNN(channels=8, dilations=(1, 2), normalize=True)
        for p in out.parameters():
            p.data.normal_(0, 0.2)
        return out

    nets = {name: net() for name in ("image_net", "data_net", "adjoint_image_net",
                                     "adjoint_data_net")}  # fmt: skip
    model = LearnedOperator(approx, adjoint="learned", zero_init=False, **nets)
    reduced = copy.deepcopy(model).compute_in(torch.bfloat16)
    assert not any(p.requires_grad for p in reduced.parameters())
    x, r = torch.rand(3, *IMAGE), torch.randn(3, *DATA)
    with torch.no_grad():
        for exact, rounded in [(model(x), reduced(x)), (model.T(r), reduced.T(r))]:
            assert rounded.dtype == torch.float32
            assert 0 < (rounded - exact).norm() < 1e-2 * exact.norm()
    # the linearised adjoint differentiates through the rounded networks: their Jacobian
    # is much further from float32's than their values (measured 7.5 %; documented)
    vjp, exact = reduced.adjoint(r, at=x), model.adjoint(r, at=x).detach()
    assert vjp.dtype == torch.float32
    assert 2e-2 * exact.norm() < (vjp - exact).norm() < 0.15 * exact.norm()
    with pytest.raises(TypeError, match="float64"):
        reduced(x.double())
    mixed = LearnedOperator(approx, image_net=net(), data_net=UNet(depth=1, channels=4,
                                                                  residual=True))  # fmt: skip
    with pytest.raises(TypeError, match="data_net .*compute_in"):
        mixed.compute_in(torch.bfloat16)
    assert mixed.image_net.compute_dtype is None  # nothing converted
