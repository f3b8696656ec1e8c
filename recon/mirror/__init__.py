"""Learned mirror descent (Tan et al. 2023) and its Euclidean baselines.

Rooms:

- :mod:`~recon.mirror.learned`: ``LearnedMirrorDescent`` (plain, Krichene's or Nesterov's
  scheme, ICNN mirror maps) and ``MirrorTrace``, what it returns with ``trace=True``.
- :mod:`~recon.mirror.baselines`: ``gradient_descent`` and ``nesterov_gradient`` on the same
  objective, thin wrappers over :mod:`recon.solvers.gradient`.
- :mod:`~recon.mirror.objective`: the objective ``f(x, y, op)``: its value and gradient, its
  Lipschitz bound and the default step.

The objective of the protocol is :class:`recon.solvers.SmoothedTV`; training without ground
truth is :class:`recon.training.tasks.MirrorTask`.

Example
-------
>>> import torch
>>> from operators import IdentityOperator
>>> from recon.solvers import SmoothedTV
>>> gradient_descent(torch.ones(2), IdentityOperator(2), objective=SmoothedTV(lam=0.0),
...                  n_iter=1, step=0.5)
tensor([0.5000, 0.5000])
"""

from recon.mirror.baselines import gradient_descent, nesterov_gradient
from recon.mirror.learned import INITS, INVERSES, SCHEMES, LearnedMirrorDescent, MirrorTrace
from recon.mirror.objective import Objective, default_step, objective_lipschitz, value_and_gradient

__all__ = [
    "INITS",
    "INVERSES",
    "SCHEMES",
    "LearnedMirrorDescent",
    "MirrorTrace",
    "Objective",
    "default_step",
    "gradient_descent",
    "nesterov_gradient",
    "objective_lipschitz",
    "value_and_gradient",
]
