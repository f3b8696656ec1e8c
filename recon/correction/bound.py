r"""The best *linear* correction of an approximate model: how much of a mismatch filters can remove.

Before training a learned operator :math:`A_q = F_q \circ \tilde A \circ H_f`, it helps to know
how much of the mismatch between :math:`\tilde A` and the accurate :math:`A` is a matter of
filtering. :func:`fit_linear_correction` fits a convolution before and one after an operator,

.. math::

    \min_{h, f}\ \frac1N \sum_i \frac{\|f * \tilde A(h * x_i) - A x_i\|^2}{\|A x_i\|^2}
    \qquad\text{(forward; } h \text{ image-space, } f \text{ data-space kernels)},

and, for the adjoint, the same with :math:`\tilde A^T`, residuals :math:`r_i` and targets
:math:`A^T r_i`. Both start at the identity and are solved by L-BFGS. The fitted pair is a
lower bound on what the *linear* part of a correction can reach on those images. Networks that
contain such filters (:class:`models.dilated.DilatedCNN` with ``linear_kernel``) match it with
enough training, and only their nonlinear part can go below it.

Example
-------
>>> import torch
>>> from operators import MatrixOperator
>>> approx = MatrixOperator(torch.eye(16), domain_shape=(4, 4), range_shape=(4, 4))
>>> x = torch.randn(8, 4, 4, dtype=torch.float64)
>>> fit = fit_linear_correction(approx, x, 0.5 * x, in_kernel=3, out_kernel=3)
>>> fit.train_error < 1e-6          # a scaling is a 1×1 filter: fitted exactly
True
>>> fit.correction(x).shape
torch.Size([8, 4, 4])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from operators.learned import relative_error
from recon.checks import check_int

__all__ = ["FilteredOperator", "LinearFit", "fit_linear_correction"]

_NDIMS = (2, 3)


def _check_kernel(name: str, size: object) -> int:
    size = check_int(name, size, minimum=1)
    if size % 2 == 0:
        raise ValueError(f"{name} must be an odd int >= 1, got {size!r}")
    return size


def _identity_kernel(size: int, ndim: int, dtype: torch.dtype) -> torch.Tensor:
    kernel = torch.zeros((size,) * ndim, dtype=dtype)
    kernel[(size // 2,) * ndim] = 1.0
    return kernel


class FilteredOperator(nn.Module):
    r""":math:`v \mapsto k_{\text{out}} * \mathcal{O}(k_{\text{in}} * v)`: an operator between two
    learnable convolutions (one kernel each, zero padding), both starting at the identity.

    Parameters
    ----------
    op : callable
        The operator :math:`\mathcal{O}` (``op(v)`` on ``(B, *in_shape)``), e.g. ``Ã`` or ``Ã.T``.
    in_shape, out_shape : tuple of int
        Its input and output shapes (2 or 3 dimensions each).
    in_kernel, out_kernel : int
        Odd kernel sizes of the two convolutions.
    dtype : torch.dtype
        Dtype of the kernels.
    """

    def __init__(
        self,
        op: Any,
        in_shape: tuple[int, ...],
        out_shape: tuple[int, ...],
        *,
        in_kernel: int,
        out_kernel: int,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        for shape in (in_shape, out_shape):
            if len(shape) not in _NDIMS:
                raise ValueError(f"shapes must have 2 or 3 dimensions, got {tuple(shape)}")
        self.op = op
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        n_in, n_out = len(self.in_shape), len(self.out_shape)
        in_kernel = _check_kernel("in_kernel", in_kernel)
        out_kernel = _check_kernel("out_kernel", out_kernel)
        self.in_kernel = nn.Parameter(_identity_kernel(in_kernel, n_in, dtype))
        self.out_kernel = nn.Parameter(_identity_kernel(out_kernel, n_out, dtype))

    @staticmethod
    def _filter(v: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        # linear convolution with the kernel centred, through zero-padded FFTs: a 1-channel
        # direct convolution is slower on CPU (measured: 9×9 on 256 sinograms, 6.5× in float64)
        ndim, size = kernel.ndim, kernel.shape[-1]
        spatial = v.shape[-ndim:]
        padded = [n + size - 1 for n in spatial]
        dims = tuple(range(-ndim, 0))
        spectrum = torch.fft.rfftn(v, s=padded, dim=dims)
        spectrum = spectrum * torch.fft.rfftn(kernel, s=padded, dim=dims)
        full = torch.fft.irfftn(spectrum, s=padded, dim=dims)
        for dim, n in zip(dims, spatial, strict=True):
            full = full.narrow(dim, size // 2, n)
        return full

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """Apply to ``v`` of shape ``(B, *in_shape)``; returns ``(B, *out_shape)``."""
        if tuple(v.shape[1:]) != self.in_shape:
            raise ValueError(
                f"FilteredOperator expects input of shape (B, {self.in_shape}), got "
                f"{tuple(v.shape)}"
            )
        return self._filter(self.op(self._filter(v, self.in_kernel)), self.out_kernel)


@dataclass
class LinearFit:
    """The result of :func:`fit_linear_correction`: the fitted operator and its errors."""

    correction: FilteredOperator
    train_error: float  #: mean relative error on the training pairs after the fit
    initial_error: float  #: the same for the operator alone (identity kernels)


def fit_linear_correction(
    op: Any,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    in_kernel: int = 7,
    out_kernel: int = 9,
    max_iter: int = 300,
) -> LinearFit:
    r"""Fit :class:`FilteredOperator` ``k_out * op(k_in * v)`` to ``targets`` by L-BFGS.

    Minimises the mean squared relative error over the pairs ``(inputs[i], targets[i])``. The
    forward bound of a model pair is ``fit_linear_correction(Ã, x, A(x))``; the adjoint bound is
    ``fit_linear_correction(Ã.T, r, A.T(r))`` (the kernels then act in data space first).

    Parameters
    ----------
    op : callable
        The operator to correct, e.g. a :class:`~operators.LinearOperator` or its ``.T``.
    inputs, targets : torch.Tensor
        ``(N, *in_shape)`` and ``(N, *out_shape)``, same dtype (``float64`` recommended; the
        operator must accept it).
    in_kernel, out_kernel : int
        Odd kernel sizes.
    max_iter : int
        L-BFGS iterations.

    Returns
    -------
    LinearFit
        The fitted operator (kernels frozen) and the errors before and after.
    """
    if inputs.ndim < 3 or targets.ndim < 3 or inputs.shape[0] != targets.shape[0]:
        raise ValueError(
            "inputs and targets must be batches (N, *shape) with the same N, got "
            f"{tuple(inputs.shape)} and {tuple(targets.shape)}"
        )
    if inputs.dtype != targets.dtype:
        raise TypeError(f"inputs are {inputs.dtype} but targets are {targets.dtype}")
    for name, value in (("inputs", inputs), ("targets", targets)):
        if not torch.isfinite(value).all():
            raise ValueError(f"{name} contain NaN or inf")
    max_iter = check_int("max_iter", max_iter, minimum=1)
    model = FilteredOperator(
        op,
        tuple(inputs.shape[1:]),
        tuple(targets.shape[1:]),
        in_kernel=in_kernel,
        out_kernel=out_kernel,
        dtype=inputs.dtype,
    )
    with torch.no_grad():
        initial = float(relative_error(model(inputs), targets).mean())
    optimizer = torch.optim.LBFGS(
        model.parameters(),
        lr=1.0,
        max_iter=max_iter,
        history_size=50,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = relative_error(model(inputs), targets).pow(2).mean()
        loss.backward()
        return loss

    optimizer.step(closure)
    model.requires_grad_(False)
    with torch.no_grad():
        final = float(relative_error(model(inputs), targets).mean())
    return LinearFit(correction=model, train_error=final, initial_error=initial)
