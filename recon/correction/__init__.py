r"""Learned operator corrections (Lunz et al. 2021): reconstructing with them and measuring them.

A learned approximate model :math:`A_q = F_q \circ \tilde A \circ H_f`
(:class:`operators.learned.LearnedOperator`) stands in for a slow accurate model :math:`A`.
Training it is :class:`recon.training.tasks.CorrectionTask` (``recon-train
experiment=correction_pat64/forward``); this family holds what is used around it.

Rooms:

- :mod:`~recon.correction.descent`: ``tv_descent`` / ``TVDescent``, smoothed-TV least squares by
  accelerated projected gradient descent with a linear or a learned operator, and
  ``data_gradient``.
- :mod:`~recon.correction.loading`: ``load_correction``, the frozen operator of a training run,
  and ``operator_errors``, its relative model and adjoint errors.
- :mod:`~recon.correction.bound`: ``fit_linear_correction``, the best *linear* correction
  (``FilteredOperator``, filters before and after :math:`\tilde A`), a bound for the learned one.

``tv_lipschitz`` (the step of ``tv_descent``) is :func:`recon.solvers.tv_lipschitz`.

Example
-------
>>> import torch
>>> from operators import IdentityOperator
>>> TVDescent(lam=0.0, n_iter=3, lipschitz=1.0)(torch.ones(1, 2), IdentityOperator(2))
tensor([[1., 1.]])
"""

from recon.correction.bound import FilteredOperator, LinearFit, fit_linear_correction
from recon.correction.descent import TVDescent, data_gradient, tv_descent
from recon.correction.loading import load_correction, operator_errors
from recon.solvers import tv_lipschitz

__all__ = [
    "FilteredOperator",
    "LinearFit",
    "TVDescent",
    "data_gradient",
    "fit_linear_correction",
    "load_correction",
    "operator_errors",
    "tv_descent",
    "tv_lipschitz",
]
