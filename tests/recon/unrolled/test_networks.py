"""Tests of recon.unrolled: the reconstructor contract on a ray transform and on toy operators,
the wiring of every iteration against the formulas, operator normalisation, gradients,
checkpointing equivalence, zero initialisation, errors, and a small overfit against FBP."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from operators import MatrixOperator, Parallel2D, RayTransform
from recon.base import Reconstructor
from recon.classical import fbp
from recon.solvers import smoothness_gradient
from recon.unrolled import LearnedGradient, LearnedPrimalDual

# --------------------------------------------------------------------------- fixtures, helpers


@pytest.fixture(scope="module")
def ray():
    """A small parallel-beam ray transform (matrix backend: not native torch autograd)."""
    return RayTransform(Parallel2D((32, 32), n_angles=10), backend="matrix")


@pytest.fixture(scope="module")
def toy():
    """A random dense operator from 12×10 images to 7×15 'data' (shapes unlike any sinogram)."""
    gen = torch.Generator().manual_seed(0)
    return MatrixOperator(
        torch.randn(7 * 15, 12 * 10, generator=gen), domain_shape=(12, 10), range_shape=(7, 15)
    )


class DuckOperator:
    """The least an operator needs: shapes, ``__call__`` and ``.T`` (no ``norm``)."""

    def __init__(self, matrix, domain_shape, range_shape, adjoint=None):
        self.matrix, self.domain_shape, self.range_shape = matrix, domain_shape, range_shape
        self._adjoint = adjoint

    def __call__(self, x):
        batch = x.shape[: x.ndim - len(self.domain_shape)]
        out = x.reshape(*batch, -1) @ self.matrix.T.to(x)
        return out.reshape(*batch, *self.range_shape)

    @property
    def T(self):  # noqa: N802
        if self._adjoint is None:
            self._adjoint = DuckOperator(self.matrix.T, self.range_shape, self.domain_shape, self)
        return self._adjoint


def discs(n: int, size: int = 32, *, seed: int = 0) -> torch.Tensor:
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


def _measure(op, batch=2, seed=0):
    x = torch.rand(batch, 1, *op.domain_shape, generator=torch.Generator().manual_seed(seed))
    return x, op(x)


def _make(kind: str, **kwargs) -> Reconstructor:
    torch.manual_seed(0)
    if kind == "lpd":
        return LearnedPrimalDual(**kwargs)
    if kind == "lg-fbp":
        return LearnedGradient(init="fbp", **kwargs)
    if kind == "lpd-fbp":
        return LearnedPrimalDual(init="fbp", **kwargs)
    return LearnedGradient(**kwargs)


KINDS = [pytest.param("lpd", id="lpd"), pytest.param("lg", id="lg")]
KINDS_WITH_FBP = [
    *KINDS,
    pytest.param("lg-fbp", id="lg-fbp"),
    pytest.param("lpd-fbp", id="lpd-fbp"),
]


def _conv_params(c_in: int, c_out: int, k: int = 3) -> int:
    return k * k * c_in * c_out + c_out


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize("kind", KINDS_WITH_FBP)
@pytest.mark.parametrize("batch", [1, 3])
def test_contract_on_ray_transform(kind, batch, ray):
    net = _make(kind, n_iter=2)
    assert isinstance(net, Reconstructor) and isinstance(net, nn.Module)
    _, y = _measure(ray, batch)
    out = net(y, ray)
    assert out.shape == (batch, 1, 32, 32)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("kind", KINDS)
def test_generic_operator_with_other_shapes(kind, toy):
    net = _make(kind, n_iter=2)
    _, y = _measure(toy, 4)
    assert net(y, toy).shape == (4, 1, 12, 10)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("batch_shape", "expected"),
    [((), ()), ((3,), (3,)), ((2, 3), (2, 3))],
    ids=["unbatched", "flat", "nested"],
)
def test_any_batch_shape(kind, batch_shape, expected, toy):
    net = _make(kind, n_iter=2)
    y = torch.randn(*batch_shape, *toy.range_shape)
    assert net(y, toy).shape == (*expected, *toy.domain_shape)


@pytest.mark.parametrize("kind", KINDS)
def test_batch_elements_are_independent(kind, ray):
    net = _make(kind, n_iter=2)
    _, y = _measure(ray, 3)
    joint = net(y, ray)
    single = torch.cat([net(y[i : i + 1], ray) for i in range(3)])
    torch.testing.assert_close(joint, single, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_float64(kind, ray):
    net = _make(kind, n_iter=2).double()
    _, y = _measure(ray)
    assert net(y.double(), ray).dtype == torch.float64


@pytest.mark.parametrize("kind", KINDS)
def test_duck_operator_without_norm(kind, toy):
    duck = DuckOperator(toy.matrix, toy.domain_shape, toy.range_shape)
    y = torch.randn(2, 1, *toy.range_shape)
    out = _make(kind, n_iter=2, normalize_operator=False)(y, duck)
    reference = _make(kind, n_iter=2, normalize_operator=False)(y, toy)
    torch.testing.assert_close(out, reference)
    with pytest.raises(ValueError, match="norm"):
        _make(kind, n_iter=2)(y, duck)


@pytest.mark.parametrize("kind", KINDS)
def test_3d(kind):
    gen = torch.Generator().manual_seed(0)
    op = MatrixOperator(
        torch.randn(3 * 4 * 5, 4 * 5 * 6, generator=gen),
        domain_shape=(4, 5, 6),
        range_shape=(3, 4, 5),
    )
    net = _make(kind, n_iter=2, ndim=3, channels=8)
    assert net(torch.randn(2, 1, 3, 4, 5), op).shape == (2, 1, 4, 5, 6)
    with pytest.raises(ValueError, match="ndim=2"):
        _make(kind, n_iter=2)(torch.randn(2, 1, 3, 4, 5), op)


# --------------------------------------------------------------------------- the maths


def test_smoothness_gradient_is_the_gradient_of_half_squared_gradient_norm():
    x = torch.randn(2, 9, 11, dtype=torch.float64, requires_grad=True)
    from recon.solvers import gradient2d, gradient3d

    (0.5 * gradient2d(x).square().sum()).backward()
    torch.testing.assert_close(smoothness_gradient(x.detach()), x.grad)
    v = torch.randn(2, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    (0.5 * gradient3d(v).square().sum()).backward()
    torch.testing.assert_close(smoothness_gradient(v.detach(), ndim=3), v.grad)


def _record_inputs(blocks: nn.ModuleList) -> tuple[list, list]:
    inputs, outputs = [], []

    def record(module, args, out):
        inputs.append(args[0].detach())
        outputs.append(out.detach())

    for block in blocks:
        block.register_forward_hook(record)
    return inputs, outputs


def test_learned_gradient_sees_the_data_and_smoothness_gradients(ray):
    net = _make("lg-fbp", n_iter=2, memory=3)
    inputs, outputs = _record_inputs(net.blocks)
    _, y = _measure(ray, 2)
    with torch.no_grad():
        result = net(y, ray)
    norm = ray.norm()
    x = fbp(y, ray, filter="hann")
    for k in range(2):
        given = inputs[k]
        assert given.shape == (2, 1 + 1 + 1 + 3, 32, 32)
        torch.testing.assert_close(given[:, :1], x)
        data_gradient = ray.T(ray(x) - y) / norm**2  # Aᵀ(Ax - y) with A, y scaled by 1/‖A‖
        torch.testing.assert_close(given[:, 1:2], data_gradient, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(given[:, 2:3], smoothness_gradient(x), rtol=1e-5, atol=1e-5)
        memory = torch.zeros(2, 3, 32, 32) if k == 0 else outputs[k - 1][:, 1:]
        torch.testing.assert_close(given[:, 3:], memory)
        x = x + outputs[k][:, :1]
    torch.testing.assert_close(result, x)


def test_learned_primal_dual_wiring(ray):
    net = _make("lpd", n_iter=2, n_primal=4, n_dual=3)
    dual_in, dual_out = _record_inputs(net.dual_blocks)
    primal_in, primal_out = _record_inputs(net.primal_blocks)
    _, y = _measure(ray, 2)
    with torch.no_grad():
        result = net(y, ray)
    norm = ray.norm()
    primal = torch.zeros(2, 4, 32, 32)
    dual = torch.zeros(2, 3, *ray.range_shape)
    for k in range(2):
        torch.testing.assert_close(dual_in[k][:, :3], dual)
        torch.testing.assert_close(
            dual_in[k][:, 3:4], ray(primal[:, 1:2]) / norm, atol=1e-5, rtol=1e-4
        )
        torch.testing.assert_close(dual_in[k][:, 4:5], y / norm)
        dual = dual + dual_out[k]
        torch.testing.assert_close(primal_in[k][:, :4], primal)
        torch.testing.assert_close(
            primal_in[k][:, 4:5], ray.T(dual[:, :1]) / norm, atol=1e-5, rtol=1e-4
        )
        primal = primal + primal_out[k]
    torch.testing.assert_close(result, primal[:, :1])


@pytest.mark.parametrize("kind", KINDS)
def test_normalisation_makes_the_result_independent_of_the_operator_scale(kind, ray):
    net = _make(kind, n_iter=2)
    _, y = _measure(ray)
    scaled = 3.0 * ray  # ‖3A‖ = 3‖A‖; (3A)/‖3A‖ = A/‖A‖ and 3y/‖3A‖ = y/‖A‖
    torch.testing.assert_close(net(3.0 * y, scaled), net(y, ray), rtol=1e-4, atol=1e-5)
    raw = _make(kind, n_iter=2, normalize_operator=False)
    assert not torch.allclose(raw(3.0 * y, scaled), raw(y, ray), rtol=1e-3, atol=1e-3)


def test_parameter_counts_match_the_architecture():
    lpd = LearnedPrimalDual()
    per_iteration = (
        _conv_params(5 + 1, 32) + _conv_params(32, 32) + _conv_params(32, 5) + 2 * 32
    ) + (_conv_params(5 + 2, 32) + _conv_params(32, 32) + _conv_params(32, 5) + 2 * 32)
    assert sum(p.numel() for p in lpd.parameters()) == 10 * per_iteration == 253_220
    lg = LearnedGradient()
    per_iteration = _conv_params(3 + 5, 32) + _conv_params(32, 32) + _conv_params(32, 1 + 5) + 64
    assert sum(p.numel() for p in lg.parameters()) == 10 * per_iteration == 133_820
    assert len(lpd.primal_blocks) == len(lpd.dual_blocks) == len(lg.blocks) == 10


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("kind", KINDS_WITH_FBP)
def test_gradient_reaches_every_parameter(kind, ray):
    net = _make(kind, n_iter=3)
    x, y = _measure(ray, 2)
    (net(y, ray) - x).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("operator", ["ray", "toy"])
def test_checkpointing_gives_the_same_result_and_gradients(kind, operator, request):
    op = request.getfixturevalue(operator)
    plain = _make(kind, n_iter=3)
    checkpointed = _make(kind, n_iter=3, checkpointing=True)
    checkpointed.load_state_dict(plain.state_dict())
    x, y = _measure(op, 2)
    results = []
    for net in (plain, checkpointed):
        y_leaf = y.clone().requires_grad_(True)
        out = net(y_leaf, op)
        (out - x).square().mean().backward()
        results.append((out.detach(), y_leaf.grad, {n: p.grad for n, p in net.named_parameters()}))
    (out_a, gy_a, grads_a), (out_b, gy_b, grads_b) = results
    torch.testing.assert_close(out_b, out_a)
    torch.testing.assert_close(gy_b, gy_a)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(checkpointed(y, op), out_a)


@pytest.mark.parametrize("kind", KINDS_WITH_FBP)
def test_channels_last_gives_the_same_result_and_gradients_and_loads_either_way(kind, ray):
    plain = _make(kind, n_iter=2, channels=8)
    last = _make(kind, n_iter=2, channels=8, channels_last=True)
    last.load_state_dict(plain.state_dict())  # a checkpoint of either layout loads into the other
    weights = [p for p in last.parameters() if p.ndim == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    assert "channels_last=True" in repr(last)
    x, y = _measure(ray, 2)
    results = []
    for net in (plain, last):
        out = net(y, ray)
        (out - x).square().mean().backward()
        results.append((out.detach(), {n: p.grad for n, p in net.named_parameters()}))
    (out_a, grads_a), (out_b, grads_b) = results
    torch.testing.assert_close(out_b, out_a)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, msg=name)


@pytest.mark.parametrize("kind", KINDS_WITH_FBP)
def test_bfloat16_autocast_runs_the_networks_in_bfloat16_and_the_operator_in_float32(kind, ray):
    net = _make(kind, n_iter=2, channels=8, channels_last=True)
    x, y = _measure(ray, 2)
    reference = net(y, ray)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(y, ray)
        loss = (out.float() - x).square().mean()
    loss.backward()
    assert out.dtype == torch.float32  # iterates stay float32: x + bfloat16 update
    relative = float((out - reference).norm() / reference.norm())
    assert 1e-5 < relative < 2e-2, relative  # bfloat16 convolutions, ~3 significant digits
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("kind", KINDS)
def test_checkpointing_stores_fewer_activations(kind, ray):
    def saved_bytes(net):
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            net(y, ray)
        return total

    _, y = _measure(ray, 4)
    plain = saved_bytes(_make(kind, n_iter=4))
    checkpointed = saved_bytes(_make(kind, n_iter=4, checkpointing=True))
    assert checkpointed < plain / 5


# --------------------------------------------------------------------------- zero init


def test_zero_initialised_lpd_returns_zero(ray):
    net = _make("lpd", n_iter=3, zero_init=True)
    x, y = _measure(ray, 2)
    out = net(y, ray)
    assert torch.equal(out, torch.zeros_like(out))
    (out - x).square().mean().backward()
    last = net.primal_blocks[-1].last.weight.grad
    assert last is not None and last.abs().sum() > 0  # training can start


def test_zero_initialised_learned_gradient_returns_its_initial_iterate(ray):
    _, y = _measure(ray, 2)
    assert torch.equal(_make("lg", n_iter=2, zero_init=True)(y, ray), torch.zeros(2, 1, 32, 32))
    fbp_init = _make("lg-fbp", n_iter=2, zero_init=True)(y, ray)
    torch.testing.assert_close(fbp_init, fbp(y, ray, filter="hann"), rtol=0, atol=0)


def test_fbp_initialised_lpd_starts_from_fbp_in_every_primal_channel(ray):
    x, y = _measure(ray, 2)
    net = _make("lpd-fbp", n_iter=2, n_primal=3, zero_init=True)
    out = net(y, ray)
    torch.testing.assert_close(out, fbp(y, ray, filter="hann"), rtol=0, atol=0)
    (out - x).square().mean().backward()
    assert net.primal_blocks[-1].last.weight.grad.abs().sum() > 0  # training can start
    # The forward operator reads primal channel 1: with FBP there, the first dual block sees A·FBP.
    seen = []
    net.dual_blocks[0].register_forward_pre_hook(lambda m, inputs: seen.append(inputs[0]) or None)
    net(y, ray)
    scale = 1.0 / ray.norm()
    evaluated = seen[0][:, net.n_dual : net.n_dual + 1]
    torch.testing.assert_close(evaluated, scale * ray(fbp(y, ray, filter="hann")))


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: LearnedPrimalDual(n_iter=0), id="lpd-no-iterations"),
        pytest.param(lambda: LearnedPrimalDual(n_primal=0), id="lpd-no-primal"),
        pytest.param(lambda: LearnedPrimalDual(n_dual=0), id="lpd-no-dual"),
        pytest.param(lambda: LearnedPrimalDual(channels=0), id="lpd-no-channels"),
        pytest.param(lambda: LearnedPrimalDual(n_iter=2.5), id="lpd-float-iterations"),
        pytest.param(lambda: LearnedPrimalDual(checkpointing=1), id="lpd-checkpointing-int"),
        pytest.param(lambda: LearnedPrimalDual(normalize_operator="yes"), id="lpd-normalise-str"),
        pytest.param(lambda: LearnedPrimalDual(ndim=1), id="lpd-ndim-1"),
        pytest.param(lambda: LearnedGradient(memory=-1), id="lg-negative-memory"),
        pytest.param(lambda: LearnedGradient(init="fbq"), id="lg-unknown-init"),
        pytest.param(lambda: LearnedPrimalDual(init="FBP"), id="lpd-unknown-init"),
        pytest.param(lambda: LearnedGradient(n_iter=True), id="lg-bool-iterations"),
        pytest.param(lambda: LearnedGradient(zero_init="no"), id="lg-zero-init-str"),
        pytest.param(lambda: LearnedGradient(channels_last=1), id="lg-channels-last-int"),
    ],
)
def test_bad_arguments_raise_value_error(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: LearnedPrimalDual(n_iters=3), id="lpd-n_iters"),
        pytest.param(lambda: LearnedPrimalDual(n_primals=5), id="lpd-n_primals"),
        pytest.param(lambda: LearnedPrimalDual(10), id="lpd-positional"),
        pytest.param(lambda: LearnedGradient(memmory=5), id="lg-memmory"),
        pytest.param(lambda: LearnedGradient(checkpoint=True), id="lg-checkpoint"),
    ],
)
def test_typos_raise_type_error(make):
    with pytest.raises(TypeError):
        make()


@pytest.mark.parametrize("kind", KINDS)
def test_bad_measurements_raise_value_error(kind, ray, toy):
    net = _make(kind, n_iter=1)
    _, y = _measure(ray, 2)
    with pytest.raises(ValueError, match="range_shape"):
        net(y[..., :-1], ray)
    y[0, 0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        net(y, ray)


@pytest.mark.parametrize("cls", [LearnedGradient, LearnedPrimalDual])
def test_fbp_init_needs_a_ray_transform(cls, toy):
    with pytest.raises(ValueError, match="geometry"):
        cls(n_iter=1, init="fbp")(torch.randn(1, 1, *toy.range_shape), toy)


# --------------------------------------------------------------------------- learning


@pytest.mark.parametrize("kind", KINDS)
def test_overfits_four_images_better_than_fbp(kind, ray):
    """Two iterations trained with Adam on four fixed disc images beat FBP on them."""
    x = discs(4, seed=1)
    y = ray(x)
    fbp_mse = (fbp(y, ray, filter="hann") - x).square().mean().item()
    net = _make(kind, n_iter=2)
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(200):
        optimiser.zero_grad()
        loss = (net(y, ray) - x).square().mean()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = (net(y, ray) - x).square().mean().item()
    assert final < losses[0] / 5
    assert final < fbp_mse


# --------------------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_matches_cpu(kind, ray, toy):
    for op in (ray, toy):
        net = _make(kind, n_iter=2, checkpointing=True)
        x, y = _measure(op, 2)
        cpu = net(y, op)
        net = net.cuda()
        gpu = net(y.cuda(), op)
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu.detach(), rtol=1e-3, atol=1e-4)
        (gpu - x.cuda()).square().mean().backward()
        assert all(p.grad is not None and p.grad.is_cuda for p in net.parameters())


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: LearnedGradient(n_iter=2, memory=0), id="lg-no-memory"),
        pytest.param(lambda: LearnedPrimalDual(n_iter=2, n_primal=1, n_dual=1), id="lpd-1-1"),
    ],
)
def test_smallest_iterates(make, toy):
    net = make()
    x, y = _measure(toy, 2)
    out = net(y, toy)
    assert out.shape == (2, 1, 12, 10)
    (out - x).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
