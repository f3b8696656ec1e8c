"""``torch.compile`` of a reconstructor's networks, with a switch and a fallback to eager.

A reconstructor mixes networks and physics: operators, FBP, norms, often numpy or ASTRA inside.
Compiling the whole module would trace the physics too (graph breaks, or failures in numpy
code), so :func:`compile_networks` compiles only the **networks**: the outermost submodules whose
class comes from the :mod:`models` package, which by design know no operators and take and return
tensors. Each is compiled in place (``state_dict`` keys do not change, so checkpoints stay
interchangeable with eager runs). If compiling or running the compiled graph fails on its first
call, that network falls back to eager for good, with one warning naming it.

Compiled kernels are cached by inductor on disk (``TORCHINDUCTOR_CACHE_DIR``; set here to
``inductor`` in the tomolearn cache folder when the variable is not set), so a second run skips
most of the compilation time.

Whether it pays is measured by ``python -m benchmarks.train_throughput --compile``: on CPU the
convolutions, most of a step, are oneDNN calls in eager and compiled code alike (results in
``docs/results/train-throughput.md``).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

#: The package whose modules are plain networks (no physics inside).
NETWORK_PACKAGE = "models"


def network_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The outermost submodules of ``model`` whose class is defined in :mod:`models`.

    Example
    -------
    >>> from recon.unrolled import LearnedPrimalDual
    >>> names = [name for name, _ in network_modules(LearnedPrimalDual(n_iter=2))]
    >>> names
    ['primal_blocks.0', 'primal_blocks.1', 'dual_blocks.0', 'dual_blocks.1']
    """
    found: list[tuple[str, nn.Module]] = []

    def visit(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            path = f"{prefix}.{name}" if prefix else name
            if type(child).__module__.split(".")[0] == NETWORK_PACKAGE:
                found.append((path, child))
            else:
                visit(path, child)

    if type(model).__module__.split(".")[0] == NETWORK_PACKAGE:
        return [("", model)]
    visit("", model)
    return found


def default_inductor_cache() -> Path:
    """``inductor`` in the tomolearn cache folder (``$TOMOLEARN_CACHE_DIR`` or the user cache)."""
    base = os.environ.get("TOMOLEARN_CACHE_DIR")
    if base:
        return Path(base) / "inductor"
    import platformdirs

    return Path(platformdirs.user_cache_dir("tomolearn")) / "inductor"


def _with_fallback(name: str, module: nn.Module, dynamic: bool, backend: str) -> None:
    eager = module.forward
    compiled = torch.compile(eager, dynamic=dynamic, backend=backend)
    state = {"failed": False}

    def forward(*args, **kwargs):
        if state["failed"]:
            return eager(*args, **kwargs)
        try:
            return compiled(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - any compiler failure falls back to eager
            state["failed"] = True
            warnings.warn(
                f"torch.compile failed for network {name or type(module).__name__!r} "
                f"({type(error).__name__}: {error}); it runs eagerly from now on. "
                "Set trainer.compile=false to skip compiling.",
                RuntimeWarning,
                stacklevel=2,
            )
            return eager(*args, **kwargs)

    module.forward = forward


def compile_networks(
    model: nn.Module, *, dynamic: bool = False, backend: str = "inductor"
) -> list[str]:
    """Compile, in place, the networks of ``model`` (see :func:`network_modules`).

    Returns the dotted names of the compiled networks (``[""]`` when ``model`` itself is a
    network). Compilation happens lazily on the first call of each network; a failure there
    falls back to eager with a warning. ``dynamic=False`` specialises on shapes, which suits
    training at a fixed batch and image size. ``backend`` is passed to ``torch.compile``
    (``"eager"`` traces without generating code: a quick check of the wiring).

    Example
    -------
    >>> from models.blocks import ConvNet
    >>> net = ConvNet(in_channels=1, out_channels=1, hidden_channels=4, n_layers=2)
    >>> compile_networks(net, backend="eager")
    ['']
    """
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(default_inductor_cache()))
    networks = network_modules(model)
    if not networks:
        warnings.warn(
            f"compile: {type(model).__name__} holds no network from the models package; "
            "nothing was compiled",
            RuntimeWarning,
            stacklevel=2,
        )
    for name, module in networks:
        _with_fallback(name, module, dynamic, backend)
    log.info("compiled %d network(s) of %s", len(networks), type(model).__name__)
    return [name for name, _ in networks]
