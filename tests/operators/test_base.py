"""The LinearOperator core: shapes, batching, algebra, adjoints, autograd, norm, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from operators import (
    ComposedOperator,
    IdentityOperator,
    LinearOperator,
    MatrixOperator,
)
from operators.testing import check_adjoint, check_autograd

F64 = torch.float64


def dense(m: int, n: int, seed: int = 0, **shapes) -> MatrixOperator:
    gen = torch.Generator().manual_seed(seed)
    return MatrixOperator(torch.randn(m, n, generator=gen, dtype=F64), **shapes)


class NumpyMatrix(LinearOperator):
    """A non-torch operator (numpy inside): exercises the autograd Function path."""

    def __init__(self, matrix: np.ndarray) -> None:
        super().__init__(matrix.shape[1], matrix.shape[0])
        self.matrix = matrix

    def _matvec(self, x):
        return torch.from_numpy(x.detach().numpy() @ self.matrix.T).to(x.dtype)

    def _rmatvec(self, y):
        return torch.from_numpy(y.detach().numpy() @ self.matrix).to(y.dtype)


@pytest.fixture
def numpy_op() -> NumpyMatrix:
    return NumpyMatrix(np.random.default_rng(1).standard_normal((6, 4)))


def test_matrix_operator_applies_matrix_and_transpose():
    M = torch.arange(6.0, dtype=F64).reshape(2, 3)
    A = MatrixOperator(M)
    assert torch.equal(A(torch.ones(3, dtype=F64)), torch.tensor([3.0, 12.0], dtype=F64))
    assert torch.equal(
        A.T(torch.tensor([1.0, 1.0], dtype=F64)), torch.tensor([3.0, 5.0, 7.0], dtype=F64)
    )


def test_sparse_matrix_operator_matches_dense():
    M = torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, -3.0]], dtype=F64)
    x = torch.randn(5, 3, dtype=F64)
    y = torch.randn(5, 2, dtype=F64)
    for S in (M.to_sparse(), M.to_sparse_csr()):
        A = MatrixOperator(S)
        torch.testing.assert_close(A(x), x @ M.T)
        torch.testing.assert_close(A.T(y), y @ M)


@pytest.mark.parametrize(
    "batch", [(), (3,), (2, 3)], ids=["no-batch", "1-batch-dim", "2-batch-dims"]
)
def test_batch_dims_match_per_sample(batch):
    A = dense(12, 6, domain_shape=(2, 3), range_shape=(4, 3))
    x = torch.randn((*batch, 2, 3), dtype=F64)
    y = A(x)
    assert y.shape == (*batch, 4, 3)
    flat_x = x.reshape(-1, 6)
    expected = (flat_x @ A.matrix.T).reshape((*batch, 4, 3))
    torch.testing.assert_close(y, expected)
    assert A.T(y).shape == x.shape


def test_adjoint_is_cached_and_involutive():
    A = dense(5, 3)
    assert A.T is A.T
    assert A.T.T is A
    assert A.adjoint is A.T
    assert A.T.domain_shape == (5,) and A.T.range_shape == (3,)


def test_composition_shapes_and_adjoint_order():
    A, B = dense(5, 4, seed=1), dense(4, 3, seed=2)
    C = A @ B
    assert isinstance(C, ComposedOperator)
    assert (C.domain_shape, C.range_shape) == ((3,), (5,))
    x = torch.randn(3, dtype=F64)
    torch.testing.assert_close(C(x), A.matrix @ (B.matrix @ x))
    # adjoint reversed: (AB)^T = B^T A^T
    assert isinstance(C.T, ComposedOperator)
    assert C.T.outer is B.T and C.T.inner is A.T
    assert C.T.T is C
    assert check_adjoint(C) < 1e-12


def test_composition_shape_mismatch_raises_at_composition():
    A, B = dense(5, 4), dense(3, 2)
    with pytest.raises(ValueError, match=r"range_shape \(3,\).*domain_shape \(4,\)"):
        A @ B


def test_scaling_sum_difference_negation():
    A, B = dense(4, 3, seed=1), dense(4, 3, seed=2)
    x = torch.randn(2, 3, dtype=F64)
    MA, MB = A.matrix, B.matrix
    torch.testing.assert_close((2.5 * A)(x), 2.5 * x @ MA.T)
    torch.testing.assert_close((A * 2.5)(x), 2.5 * x @ MA.T)
    torch.testing.assert_close((A + B)(x), x @ (MA + MB).T)
    torch.testing.assert_close((A - B)(x), x @ (MA - MB).T)
    torch.testing.assert_close((-A)(x), -(x @ MA.T))
    for op in (2.5 * A, A + B, A - B, -A, A.T @ (A + B)):
        assert check_adjoint(op) < 1e-12
        assert check_autograd(op) < 1e-12


def test_star_between_operators_is_rejected():
    A = dense(3, 3)
    with pytest.raises(TypeError, match="use `A @ B`"):
        A * A


def test_sum_of_mismatched_shapes_raises():
    with pytest.raises(ValueError, match="different shapes"):
        dense(4, 3) + dense(3, 4)


def test_identity():
    Id = IdentityOperator((2, 3))
    x = torch.randn(4, 2, 3)
    assert torch.equal(Id(x), x)
    assert Id.T is Id


def test_norm_matches_largest_singular_value():
    A = dense(20, 10, seed=3)
    expected = torch.linalg.matrix_norm(A.matrix, ord=2).item()
    assert A.norm() == pytest.approx(expected, rel=1e-5)
    assert A.T.norm() == pytest.approx(expected, rel=1e-5)  # shared with the adjoint
    assert (3.0 * A).norm() == pytest.approx(3 * expected, rel=1e-5)


def test_non_torch_operator_autograd_through_function(numpy_op):
    assert check_adjoint(numpy_op) < 1e-14
    assert check_autograd(numpy_op) < 1e-14
    # also inside a composition with a torch operator and inside an nn.Module
    B = dense(4, 4, seed=5)
    assert check_autograd(numpy_op @ B) < 1e-14
    assert check_autograd(numpy_op.T @ numpy_op) < 1e-14

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.op = numpy_op
            self.w = torch.nn.Parameter(torch.tensor(2.0, dtype=F64))

        def forward(self, x):
            return self.op(self.w * x)

    net = Net()
    x = torch.randn(4, dtype=F64)
    y = torch.randn(6, dtype=F64)
    (net(x) * y).sum().backward()
    expected = torch.dot(x, numpy_op.T(y))
    torch.testing.assert_close(net.w.grad, expected)


def test_second_derivative_through_function(numpy_op):
    # d/dx of ||A^T A x||^2/2 uses the adjoint inside the backward of the backward.
    x = torch.randn(4, dtype=F64, requires_grad=True)
    y = numpy_op(x)
    (g,) = torch.autograd.grad(0.5 * (y * y).sum(), x, create_graph=True)
    (g * g).sum().backward()
    M = torch.from_numpy(numpy_op.matrix)
    H = M.T @ M
    torch.testing.assert_close(x.grad, 2 * H @ (H @ x.detach()))


def test_wrong_trailing_shape_raises_naming_shapes():
    A = dense(6, 6, domain_shape=(2, 3), range_shape=(3, 2))
    with pytest.raises(ValueError, match=r"\(\*batch, 2, 3\).*got \(4, 3, 2\)"):
        A(torch.randn(4, 3, 2, dtype=F64))
    with pytest.raises(ValueError, match="got"):
        A(torch.randn(3, dtype=F64))
    with pytest.raises(ValueError, match=r"\(\*batch, 3, 2\)"):
        A.T(torch.randn(2, 3, dtype=F64))


@pytest.mark.parametrize(
    "dtype", [torch.int64, torch.bool, torch.complex64, torch.float16], ids=str
)
def test_unsupported_dtype_raises_type_error(dtype):
    A = dense(3, 3)
    with pytest.raises(TypeError, match=str(dtype)):
        A(torch.zeros(3, dtype=dtype))


def test_operators_run_in_float32_with_autocast_off_under_autocast(numpy_op):
    """Mixed-precision training: the networks run in bfloat16, the physics stays exact."""
    gen = torch.Generator().manual_seed(3)
    A = MatrixOperator(torch.randn(6, 4, generator=gen))  # a dense matmul: autocast would cast it
    x = torch.randn(5, 4, generator=gen)
    y = torch.randn(5, 6, generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.matmul(x, x.T).dtype == torch.bfloat16  # autocast is on
        forward, adjoint = A(x), A.T(y)
        from_half = A(x.bfloat16())  # a bfloat16 input (a network's output) is cast first
        composed = (A.T @ A)(x)
        xg = x.clone().requires_grad_(True)
        loss = (A(xg) * y).sum()
        numpy_out = numpy_op(torch.randn(4).bfloat16())  # a non-torch operator too
        assert torch.is_autocast_enabled("cpu")  # still on after the operators
    loss.backward()  # outside the context, as torch.autocast asks
    for out in (forward, adjoint, from_half, composed, numpy_out):
        assert out.dtype == torch.float32
    assert torch.equal(forward, A(x)) and torch.equal(adjoint, A.T(y))
    assert torch.equal(composed, A.T(A(x)))
    assert torch.equal(from_half, A(x.bfloat16().float()))
    assert torch.equal(xg.grad, A.T(y))
    with pytest.raises(TypeError, match="bfloat16"):  # outside autocast: refused
        A(x.bfloat16())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_in_numpy_out_equals_the_torch_path(numpy_op, dtype):
    """``A(ndarray)`` and ``A.T(ndarray)`` give ndarrays of the input's dtype, equal to the
    torch results, for torch-native, non-torch (autograd Function) and composed operators."""
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(dtype)
    y = np.random.default_rng(1).standard_normal((2, 6)).astype(dtype)
    for op in (dense(6, 4), numpy_op, 2.0 * numpy_op + dense(6, 4, seed=3)):
        out, back = op(x), op.T(y)
        assert isinstance(out, np.ndarray) and out.dtype == dtype and out.shape == (2, 6)
        assert isinstance(back, np.ndarray) and back.dtype == dtype and back.shape == (2, 4)
        np.testing.assert_array_equal(out, op(torch.from_numpy(x)).numpy())
        np.testing.assert_array_equal(back, op.T(torch.from_numpy(y)).numpy())
    assert not isinstance(dense(6, 4)(torch.from_numpy(x)), np.ndarray)  # tensors stay tensors


def test_numpy_input_handles_awkward_arrays_and_lists():
    A = dense(3, 3)
    x = np.arange(6.0)[::-2]  # negative stride, not contiguous
    expected = A(torch.from_numpy(x.copy())).numpy()
    read_only = x.copy()
    read_only.setflags(write=False)
    for variant in (x, read_only, x.astype(">f8")):  # strided, read-only, big-endian
        np.testing.assert_array_equal(A(variant), expected)
    # integers and nested lists are read as float32 (the operators' default dtype)
    assert IdentityOperator(3)([1, 2, 3]).dtype == np.float32
    np.testing.assert_array_equal(IdentityOperator(3)(np.array([1, 2, 3])), [1.0, 2.0, 3.0])


def test_numpy_input_keeps_autograd_out_and_errors_clear():
    A = dense(3, 3)
    x = np.ones(3)
    out = A(x)
    assert isinstance(out, np.ndarray)  # no graph: numpy cannot carry one
    with pytest.raises(TypeError, match="complex"):
        A(np.zeros(3, dtype=np.complex128))
    with pytest.raises(TypeError, match="torch.Tensor or a numpy array"):
        A(object())
    with pytest.raises(TypeError, match="float16"):
        A(np.zeros(3, dtype=np.float16))
    with pytest.raises(ValueError, match=r"\(\*batch, 3\)"):
        A(np.zeros(4))


@pytest.mark.parametrize("bad", [(0, 3), (-1,), (2.5,), "ab"], ids=repr)
def test_bad_shapes_raise(bad):
    with pytest.raises(ValueError):
        IdentityOperator(bad)


def test_check_adjoint_detects_a_wrong_adjoint():
    class Wrong(LinearOperator):
        native_autograd = True

        def __init__(self):
            super().__init__(3, 3)
            self.M = torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(0))

        def _matvec(self, x):
            return x @ self.M.T

        def _rmatvec(self, y):
            return y @ self.M.T  # should be y @ M

    assert check_adjoint(Wrong()) > 1e-2
    assert check_autograd(Wrong()) > 1e-2


def test_counting_operator_counts_images_and_passes_through():
    from operators import CountingOperator, Parallel2D, RayTransform

    A = CountingOperator(dense(5, 3))
    x = torch.randn(4, 2, 3, dtype=F64)
    y = A(x)
    torch.testing.assert_close(y, A.op(x))
    A.T(y)
    A.T(y[0])
    assert (A.forward_count, A.adjoint_count, A.total) == (8, 10, 18)
    assert check_adjoint(A) < 1e-12 and check_autograd(A) < 1e-12
    A.reset()
    assert A.total == 0
    assert A.norm() == pytest.approx(A.op.norm())
    assert A.total == 0  # the norm is not counted
    R = CountingOperator(RayTransform(Parallel2D(16, n_angles=4)))
    assert R.geometry.n_angles == 4
    with pytest.raises(AttributeError, match="geometry"):
        _ = A.geometry
