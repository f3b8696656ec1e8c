r"""Using a trained learned operator correction: load it from its ``recon-train`` run, frozen, and
measure its errors against the accurate model.

Example
-------
>>> import torch
>>> from operators import IdentityOperator
>>> op = IdentityOperator((2, 2))
>>> errors = operator_errors(op, op, 2 * op, torch.ones(1, 2, 2), torch.zeros(1, 2, 2))
>>> {name: float(value) for name, value in sorted(errors.items())}
{'adjoint_approx': 0.5, 'adjoint_model': 0.5, 'forward_approx': 0.5, 'forward_model': 0.5}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from recon.checkpoints import load_run
from recon.solvers.common import sq_norm

__all__ = ["load_correction", "operator_errors"]


def load_correction(
    run_dir: str | Path, checkpoint: str = "best.pt", adjoint: str | None = None
) -> nn.Module:
    """The trained, frozen learned operator of a ``recon-train`` correction run.

    Use it as the ``operator`` of another run (its parameters stay fixed there)::

        operator: {_target_: recon.correction.load_correction, run_dir: outputs/pat_correction}

    ``adjoint="linearised"`` switches a run trained with learned adjoint networks to its
    linearised adjoint (the networks stay loaded, unused): then ``gradient(x, y)`` is the
    exact gradient of ``½‖A_q x − y‖²``, which TV with the 64² PAT ``A_q`` prefers (18.34
    against 18.12 dB). ``None`` keeps the run's mode. The model is rebuilt and loaded by
    :func:`recon.checkpoints.load_run`.

    Raises ``FileNotFoundError`` naming what is missing, and ``ValueError`` for an unknown
    ``adjoint`` or a model without adjoint modes.
    """
    from operators.learned import ADJOINTS

    if adjoint is not None and adjoint not in ADJOINTS:
        raise ValueError(f"adjoint must be one of {ADJOINTS} or None, got {adjoint!r}")
    model = load_run(run_dir, checkpoint)
    if adjoint is not None:
        if getattr(model, "adjoint_mode", None) is None:
            raise ValueError(
                f"adjoint={adjoint!r} needs a LearnedOperator, {run_dir} holds a "
                f"{type(model).__name__}"
            )
        if adjoint == "learned" and model.adjoint_mode != "learned":
            raise ValueError(f"{run_dir} was trained without learned adjoint networks")
        model.adjoint_mode = adjoint
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval()


def operator_errors(
    model: Any, approx: Any, accurate: Any, x: torch.Tensor, y: torch.Tensor
) -> dict[str, torch.Tensor]:
    r"""Per-sample relative errors against the accurate model on images ``x`` with data ``y``.

    - ``forward_model`` :math:`\|A_q x - Ax\|/\|Ax\|` and ``forward_approx``
      :math:`\|\tilde A x - Ax\|/\|Ax\|`;
    - ``adjoint_model`` :math:`\|A_q^*(r) - A^T r\|/\|A^T r\|` and ``adjoint_approx``
      :math:`\|\tilde A^T r - A^T r\|/\|A^T r\|`, with :math:`r = A_q x - y` (the residual the
      adjoint loss is trained on; linearised adjoints at ``x``).
    """
    n_range = len(tuple(accurate.range_shape))
    n_domain = len(tuple(accurate.domain_shape))

    def rel(a: torch.Tensor, b: torch.Tensor, n: int) -> torch.Tensor:
        return (sq_norm(a - b, n) / sq_norm(b, n)).sqrt()

    with torch.no_grad():
        ax = accurate(x)
        forward_model = model(x)
        r = forward_model - y
        atr = accurate.T(r)
        out = {
            "forward_model": rel(forward_model, ax, n_range),
            "forward_approx": rel(approx(x), ax, n_range),
            "adjoint_approx": rel(approx.T(r), atr, n_domain),
        }
    if getattr(model, "adjoint_mode", "learned") == "linearised":
        adjoint = model.adjoint(r, at=x).detach()
    else:
        with torch.no_grad():
            adjoint = model.adjoint(r)
    out["adjoint_model"] = rel(adjoint, atr, n_domain)
    return out
