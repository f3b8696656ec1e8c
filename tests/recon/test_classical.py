"""Tests of recon.classical against dense-matrix operators and numpy's least squares."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from recon.classical import cgls


class MatrixOperator:
    """A dense matrix as a linear operator on the trailing dimensions (test double).

    ``domain_shape`` and ``range_shape`` may have several dimensions: the matrix acts on the
    flattened trailing block, so the solver's handling of multi-dimensional shapes is exercised.
    """

    def __init__(
        self,
        matrix: torch.Tensor,
        *,
        domain_shape: tuple[int, ...] | None = None,
        range_shape: tuple[int, ...] | None = None,
        adjoint_of: MatrixOperator | None = None,
    ):
        self.matrix = matrix
        self.domain_shape = domain_shape or (matrix.shape[1],)
        self.range_shape = range_shape or (matrix.shape[0],)
        assert math.prod(self.domain_shape) == matrix.shape[1]
        assert math.prod(self.range_shape) == matrix.shape[0]
        self._adjoint = adjoint_of
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        batch = x.shape[: x.ndim - len(self.domain_shape)]
        flat = x.reshape(*batch, -1)
        return (flat @ self.matrix.T).reshape(*batch, *self.range_shape)

    @property
    def T(self) -> MatrixOperator:
        if self._adjoint is None:
            self._adjoint = MatrixOperator(
                self.matrix.T,
                domain_shape=self.range_shape,
                range_shape=self.domain_shape,
                adjoint_of=self,
            )
        return self._adjoint


def well_conditioned(m: int, n: int, *, seed: int, cond: float = 3.0) -> np.ndarray:
    """A random m×n matrix with singular values spread evenly in [1, cond]."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((m, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return u @ np.diag(np.linspace(1.0, cond, n)) @ v.T


@pytest.fixture
def problem():
    a = well_conditioned(30, 20, seed=0)
    y = np.random.default_rng(1).standard_normal(30)  # not in the range: nonzero residual
    return a, y


def test_matches_numpy_lstsq(problem):
    a, y = problem
    op = MatrixOperator(torch.from_numpy(a))
    x = cgls(torch.from_numpy(y), op, n_iter=20)
    expected, *_ = np.linalg.lstsq(a, y, rcond=None)
    assert x.dtype == torch.float64
    assert x.shape == (20,)
    np.testing.assert_allclose(x.numpy(), expected, rtol=0, atol=1e-6)
    # one forward per iteration plus none at the start (x0 = 0 skips A x0)
    assert op.calls == 20


def test_multidimensional_shapes_match_numpy_lstsq(problem):
    a, y = problem
    op = MatrixOperator(torch.from_numpy(a), domain_shape=(4, 5), range_shape=(2, 3, 5))
    x = cgls(torch.from_numpy(y).reshape(2, 3, 5), op, n_iter=20)
    expected, *_ = np.linalg.lstsq(a, y, rcond=None)
    assert x.shape == (4, 5)
    np.testing.assert_allclose(x.reshape(-1).numpy(), expected, rtol=0, atol=1e-6)


def test_batched_equals_per_sample(problem):
    a, _ = problem
    op = MatrixOperator(torch.from_numpy(a), domain_shape=(4, 5), range_shape=(30,))
    rng = np.random.default_rng(2)
    # Very different scales per element, so shared step sizes would give different iterates.
    scales = np.array([[1.0, 1e-3, 50.0], [0.0, 2.0, 1e2]])[..., None]
    y = torch.from_numpy(scales * rng.standard_normal((2, 3, 30)))
    x0 = torch.from_numpy(rng.standard_normal((2, 3, 4, 5)))

    batched = cgls(y, op, n_iter=7, x0=x0)
    assert batched.shape == (2, 3, 4, 5)
    for i in range(2):
        for j in range(3):
            single = cgls(y[i, j], op, n_iter=7, x0=x0[i, j])
            torch.testing.assert_close(batched[i, j], single, rtol=1e-12, atol=1e-12)


def test_callback_sees_every_iteration_and_residual_decreases(problem):
    a, y = problem
    op = MatrixOperator(torch.from_numpy(a))
    y_t = torch.from_numpy(y)
    seen: list[int] = []
    residuals: list[float] = []

    def callback(k: int, x: torch.Tensor) -> None:
        seen.append(k)
        assert x.shape == (20,)
        residuals.append(torch.linalg.vector_norm(op(x) - y_t).item())

    cgls(y_t, op, n_iter=12, callback=callback)
    assert seen == list(range(12))
    # CGLS minimises the residual over growing Krylov subspaces: it never increases.
    assert all(later <= earlier + 1e-12 for earlier, later in itertools.pairwise(residuals))


def test_zero_measurements_give_zero_without_nan(problem):
    a, _ = problem
    op = MatrixOperator(torch.from_numpy(a))
    x = cgls(torch.zeros(30, dtype=torch.float64), op, n_iter=5)
    assert torch.equal(x, torch.zeros(20, dtype=torch.float64))


def test_converged_element_stays_put_in_a_batch(problem):
    # Element 0 starts at the exact solution (zero residual), element 1 does not.
    a, y = problem
    op = MatrixOperator(torch.from_numpy(a))
    x_true = torch.from_numpy(np.random.default_rng(3).standard_normal(20))
    y_batch = torch.stack([op(x_true), torch.from_numpy(y)])
    x0 = torch.stack([x_true, torch.zeros(20, dtype=torch.float64)])
    x = cgls(y_batch, op, n_iter=25, x0=x0)
    assert torch.isfinite(x).all()
    torch.testing.assert_close(x[0], x_true, rtol=0, atol=1e-12)
    expected, *_ = np.linalg.lstsq(a, y, rcond=None)
    np.testing.assert_allclose(x[1].numpy(), expected, rtol=0, atol=1e-6)


def test_float32_stays_float32(problem):
    a, y = problem
    op = MatrixOperator(torch.from_numpy(a).float())
    x = cgls(torch.from_numpy(y).float(), op, n_iter=20)
    expected, *_ = np.linalg.lstsq(a, y, rcond=None)
    assert x.dtype == torch.float32
    np.testing.assert_allclose(x.numpy(), expected, rtol=0, atol=1e-4)


def test_zero_iterations_return_a_copy_of_x0(problem):
    a, y = problem
    op = MatrixOperator(torch.from_numpy(a))
    x0 = torch.ones(20, dtype=torch.float64)
    x = cgls(torch.from_numpy(y), op, n_iter=0, x0=x0)
    assert torch.equal(x, x0)
    assert x.data_ptr() != x0.data_ptr()
    assert torch.equal(
        cgls(torch.from_numpy(y), op, n_iter=0), torch.zeros(20, dtype=torch.float64)
    )


@pytest.mark.parametrize(
    ("y", "kwargs", "match"),
    [
        pytest.param(torch.zeros(29, dtype=torch.float64), {}, "range_shape", id="short-y"),
        pytest.param(torch.zeros(30, 1, dtype=torch.float64), {}, "range_shape", id="extra-dim"),
        pytest.param(torch.zeros((), dtype=torch.float64), {}, "range_shape", id="scalar-y"),
        pytest.param(torch.zeros(30, dtype=torch.int64), {}, "floating", id="integer-y"),
        pytest.param(np.zeros(30), {}, "torch.Tensor", id="numpy-y"),
        pytest.param(
            torch.tensor([float("nan")] + [0.0] * 29, dtype=torch.float64), {}, "NaN", id="nan"
        ),
        pytest.param(
            torch.tensor([float("inf")] + [0.0] * 29, dtype=torch.float64), {}, "infinite", id="inf"
        ),
        pytest.param(
            torch.zeros(30, dtype=torch.float64),
            {"x0": torch.zeros(19, dtype=torch.float64)},
            "x0",
            id="x0-shape",
        ),
        pytest.param(
            torch.zeros(2, 30, dtype=torch.float64),
            {"x0": torch.zeros(20, dtype=torch.float64)},
            "x0",
            id="x0-missing-batch",
        ),
        pytest.param(torch.zeros(30, dtype=torch.float64), {"n_iter": -1}, "n_iter", id="neg-iter"),
        pytest.param(
            torch.zeros(30, dtype=torch.float64), {"n_iter": 2.0}, "n_iter", id="float-iter"
        ),
    ],
)
def test_invalid_input_raises(problem, y, kwargs, match):
    a, _ = problem
    op = MatrixOperator(torch.from_numpy(a))
    with pytest.raises(ValueError, match=match):
        cgls(y, op, **kwargs)
