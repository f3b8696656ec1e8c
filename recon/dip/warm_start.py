r"""The warm start of the deep image prior (the "educated" DIP): a network pretrained on pairs.

Barbano et al. (2022) start the deep image prior from a U-Net pretrained, on synthetic data,
to map the FBP of a measurement to its image, and then fine-tune it on each image with the DIP
loss: it starts near a good reconstruction and needs far fewer iterations.

Here the pretraining is an ordinary training run: FBP followed by the DIP's network
(:class:`recon.unrolled.FBPUNet` with ``unet`` a :class:`~models.dip_unet.DIPUNet`), trained
supervised on random ellipses by the one :class:`~recon.training.Trainer`::

    recon-train experiment=dip/pretrain hydra.run.dir=outputs/dip_pretrain

:func:`load_pretrained_unet` takes the network out of that run's checkpoint (the weights under
``unet.``), loading it as data only, and :class:`~recon.dip.DeepImagePrior` with
``init="network"`` fine-tunes it (``conf/recon/dip_warm.yaml``). Give the DIP the FBP the network
was pretrained with (``fbp_filter``, ``fbp_frequency_scaling``: the pretraining model's
``filter`` and ``frequency_scaling``). A network held in memory is passed as ``network=`` directly.

Example
-------
>>> import tempfile
>>> from pathlib import Path
>>> import torch
>>> from models.dip_unet import DIPUNet
>>> from recon.checkpoints import atomic_save
>>> trained = DIPUNet(channels=4, scales=2)
>>> path = Path(tempfile.mkdtemp()) / "best.pt"
>>> atomic_save({"model": {f"unet.{k}": v for k, v in trained.state_dict().items()}}, path)
>>> net = load_pretrained_unet(network=DIPUNet(channels=4, scales=2), checkpoint=path)
>>> torch.equal(net.out_conv.weight, trained.out_conv.weight)
True
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from recon.checkpoints import load_weights_file

__all__ = ["load_pretrained_unet", "submodule_state"]

log = logging.getLogger(__name__)


def submodule_state(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of a model's ``state_dict`` under ``prefix.``, with the prefix removed (an
    empty ``prefix`` keeps them all).

    Raises ``ValueError`` naming the submodules there are when none is under ``prefix``.

    Example
    -------
    >>> state = {"unet.conv.weight": 1, "unet.conv.bias": 2, "head.weight": 3}
    >>> submodule_state(state, "unet")
    {'conv.weight': 1, 'conv.bias': 2}
    """
    if not prefix:
        return dict(state)
    lead = f"{prefix}."
    out = {key[len(lead) :]: value for key, value in state.items() if key.startswith(lead)}
    if not out:
        modules = sorted({key.split(".")[0] for key in state})
        raise ValueError(
            f"the checkpoint's model has no submodule {prefix!r} (it has {modules}); "
            "set prefix to the one holding the network"
        )
    return out


def load_pretrained_unet(
    *,
    network: nn.Module,
    checkpoint: str | Path | None = None,
    prefix: str = "unet",
) -> nn.Module:
    """``network`` with the pretrained weights of a trainer checkpoint, for the warm start.

    Parameters
    ----------
    network : torch.nn.Module
        The DIP's network, built as in the pretraining (the same architecture and sizes).
    checkpoint : str or Path, optional
        A checkpoint written by ``recon-train`` (``checkpoints/best.pt``), loaded as data only
        (:func:`recon.checkpoints.load_weights_file`, ``weights_only=True``). ``None`` leaves the
        weights as they are, with a warning (a config's placeholder).
    prefix : str
        The submodule of the checkpoint's model that holds the network: ``"unet"`` for
        :class:`recon.unrolled.FBPUNet`; ``""`` when the checkpoint's model is the network.

    Returns
    -------
    torch.nn.Module
        ``network``, its weights loaded, in eval mode.

    Raises
    ------
    FileNotFoundError
        If the checkpoint does not exist.
    recon.checkpoints.UnsafeCheckpointError
        If the file holds objects that only full unpickling could load.
    ValueError
        If the file is not a trainer checkpoint or has nothing under ``prefix``.
    RuntimeError
        If the weights do not fit ``network`` (the message lists what is missing and extra).
    """
    if not isinstance(network, nn.Module):
        raise ValueError(f"network must be a torch.nn.Module, got {type(network).__name__}")
    if checkpoint is None:
        log.warning(
            "the warm-start network %s has no checkpoint: its weights are untrained "
            "(set checkpoint to a recon-train experiment=dip/pretrain run's checkpoint)",
            type(network).__name__,
        )
        return network
    path = Path(checkpoint).expanduser()
    state = load_weights_file(path)
    if not isinstance(state, dict) or not isinstance(state.get("model"), Mapping):
        raise ValueError(f"{path} is not a tomolearn trainer checkpoint (no 'model' entry)")
    weights = submodule_state(state["model"], prefix)
    own = network.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    resized = [
        f"{key} {tuple(weights[key].shape)} vs {tuple(value.shape)}"
        for key, value in own.items()
        if key in weights and tuple(weights[key].shape) != tuple(value.shape)
    ]
    if missing or unexpected or resized:
        raise RuntimeError(
            f"{path} does not fit {type(network).__name__}: missing from the checkpoint "
            f"{missing[:6]}; not in the network {unexpected[:6]}; other shapes (checkpoint vs "
            f"network) {resized[:3]} (build the network with the pretraining's sizes, or set "
            "prefix)"
        )
    network.load_state_dict(weights)
    return network.eval()
