"""The best linear correction around an approximate model: exact fits, bounds, errors."""

import pytest
import torch
from torch.nn import functional

from operators import MatrixOperator
from operators.learned import relative_error
from recon.correction import FilteredOperator, fit_linear_correction

BLUR = torch.tensor([[0.05, 0.1, 0.05], [0.1, 0.4, 0.1], [0.05, 0.1, 0.05]], dtype=torch.float64)


def _blur(v: torch.Tensor) -> torch.Tensor:
    return functional.conv2d(v[:, None], BLUR.view(1, 1, 3, 3), padding=1)[:, 0]


def _random_op(seed: int = 0) -> MatrixOperator:
    g = torch.Generator().manual_seed(seed)
    matrix = torch.randn(5 * 7, 6 * 6, generator=g, dtype=torch.float64)
    return MatrixOperator(matrix, domain_shape=(6, 6), range_shape=(5, 7))


def test_a_data_space_blur_after_the_operator_is_fitted_exactly():
    approx = _random_op()
    g = torch.Generator().manual_seed(1)
    x_train, x_test = (torch.randn(n, 6, 6, generator=g, dtype=torch.float64) for n in (12, 5))
    fit = fit_linear_correction(approx, x_train, _blur(approx(x_train)), in_kernel=3, out_kernel=3)
    assert fit.initial_error > 0.4  # Ã alone: the blur changes the data by ~60 %
    assert fit.train_error < 1e-5
    assert relative_error(fit.correction(x_test), _blur(approx(x_test))).max() < 1e-5
    assert not any(p.requires_grad for p in fit.correction.parameters())


def test_the_adjoint_form_fits_a_data_space_filter_before_the_transpose():
    # A = B Ã with B a blur: Aᵀ r = Ãᵀ Bᵀ r, and Bᵀ is the same symmetric blur on the data
    approx = _random_op(2)
    r = torch.randn(10, 5, 7, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    fit = fit_linear_correction(approx.T, r, approx.T(_blur(r)), in_kernel=3, out_kernel=1)
    assert fit.initial_error > 0.4 and fit.train_error < 1e-5


def test_a_mismatch_no_filter_can_express_stays_and_the_fit_never_worsens_the_start():
    approx = MatrixOperator(torch.eye(64, dtype=torch.float64), domain_shape=(8, 8),
                            range_shape=(8, 8))  # fmt: skip
    x = torch.randn(16, 8, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    target = x.transpose(1, 2)  # a transpose is no convolution of x
    fit = fit_linear_correction(approx, x, target, in_kernel=3, out_kernel=3)
    assert fit.train_error <= fit.initial_error
    assert fit.train_error > 0.9  # on white noise the best filter barely helps


def test_bad_inputs_raise_clear_errors():
    approx = _random_op()
    x = torch.randn(4, 6, 6, dtype=torch.float64)
    y = approx(x)
    with pytest.raises(ValueError, match="in_kernel"):
        fit_linear_correction(approx, x, y, in_kernel=2)
    with pytest.raises(ValueError, match="same N"):
        fit_linear_correction(approx, x, y[:3])
    with pytest.raises(TypeError, match="float32"):
        fit_linear_correction(approx, x, y.float())
    bad = x.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="inputs contain NaN"):
        fit_linear_correction(approx, bad, y)
    with pytest.raises(ValueError, match="max_iter"):
        fit_linear_correction(approx, x, y, max_iter=0)
    net = FilteredOperator(approx, (6, 6), (5, 7), in_kernel=3, out_kernel=3)
    with pytest.raises(ValueError, match=r"expects input of shape \(B, \(6, 6\)\)"):
        net(torch.zeros(2, 5, 7, dtype=torch.float64))
    with pytest.raises(ValueError, match="2 or 3 dimensions"):
        FilteredOperator(approx, (36,), (5, 7), in_kernel=3, out_kernel=3)
