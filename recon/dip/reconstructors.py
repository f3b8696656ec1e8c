r"""The deep image prior as a reconstructor: ``x = DeepImagePrior(gamma=1e-4)(y, op)``.

:class:`DeepImagePrior` fits a fresh copy of its network to every image (:func:`fit_dip`) and
returns the outputs. The cold start draws the network's weights from ``seed``
(``init="seed"``); the warm start ("educated" DIP, Barbano et al. 2022) keeps the weights it was
given (``init="network"``), typically a U-Net pretrained to map FBPs to images
(:func:`~recon.dip.warm_start.load_pretrained_unet`).

Example
-------
>>> import torch
>>> from operators import Parallel2D, RayTransform
>>> from models.dip_unet import DIPUNet
>>> op = RayTransform(Parallel2D((16, 16), n_angles=8), backend="matrix")
>>> dip = DeepImagePrior(network=DIPUNet(channels=4, scales=2), n_iter=2, progress=False)
>>> dip(op(torch.rand(3, 1, 16, 16)), op).shape
torch.Size([3, 1, 16, 16])
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from models.dip_unet import DIPUNet
from operators import OperatorLike
from recon.base import Reconstructor, check_measurements, weight_dtype
from recon.checks import check_bool, check_choice, check_int, check_n_iter, check_positive
from recon.classical.analytic import check_filter
from recon.dip.fitting import (
    BATCH_MODES,
    INPUTS,
    KEEP,
    Callback,
    DIPResult,
    dip_input,
    fit_dip,
    initial_weights,
    load_weights,
)

__all__ = ["INITS", "DeepImagePrior", "default_dip_network"]

#: Where the fitted weights start: drawn from ``seed`` (cold), or the network's own (warm).
INITS: tuple[str, ...] = ("seed", "network")


def default_dip_network() -> DIPUNet:
    """The network of :class:`DeepImagePrior` when none is given: a small
    :class:`~models.dip_unet.DIPUNet` for the CPU (32 channels, 4 scales, skips of 4 channels,
    group normalisation, linear output). The papers' network is wider (128 channels, 5 or 6
    scales): see ``conf/recon/dip.yaml``.

    Example
    -------
    >>> default_dip_network().channels
    [32, 32, 32, 32]
    """
    return DIPUNet(channels=32, scales=4, skip_channels=4, norm="group", output="linear")


class DeepImagePrior(Reconstructor):
    r"""Deep image prior with TV (Ulyanov et al. 2018; Baguer et al. 2020): per image, Adam on
    :math:`\frac1m\|A f_\theta(z) - y\|^2 + \gamma\,\mathrm{TV}(f_\theta(z))` over the network's
    weights :math:`\theta`, from the input :math:`z` (the FBP by default).

    ``forward(y, op)`` takes ``y`` of shape ``(*batch, *op.range_shape)`` (a 2D domain) and
    returns ``(*batch, *op.domain_shape)``; all images of a call are fitted together, each with
    its own weights (``batch_mode``), and each starts from the same weights, so an image's result
    does not depend on the others. The reconstructor's own network is never changed, so calls
    are repeatable. It works under ``torch.no_grad()`` (as ``recon-eval`` calls it).

    Parameters
    ----------
    network : torch.nn.Module, optional
        Maps ``(B, 1, H, W)`` to ``(B, 1, H, W)``; :func:`default_dip_network` when not given.
        It runs in eval mode (batch normalisation as a fixed affine map); a network with
        per-sample or no normalisation (:class:`~models.dip_unet.DIPUNet`) is the usual DIP.
    gamma : float
        TV weight :math:`\gamma \ge 0` (0: the plain DIP).
    n_iter : int
        Adam steps per image, ``>= 1``.
    lr : float
        Adam's learning rate.
    input : {"fbp", "adjoint", "noise"}
        The input :math:`z` (:func:`~recon.dip.fitting.dip_input`): the FBP (falls back to the
        scaled adjoint for operators without a 2D CT geometry), the scaled adjoint, or fixed
        noise.
    init : {"seed", "network"}
        ``"seed"``: the network's weights are drawn afresh from ``seed`` when the reconstructor
        is built (the cold start, reproducible whatever the global random state);
        ``"network"``: they are kept as given (the warm start from a pretrained network).
    seed : int
        Seed of the weights (``init="seed"``) and of the noise input.
    clip_norm : float or None
        Per-image bound on the gradient norm (``None``: no clipping).
    keep : {"best", "last"}
        Return the iterate of lowest loss, or the last one.
    batch_mode : {"vmap", "loop"}
        Evaluate the images' networks by ``torch.func.vmap`` over stacked weights, or one by one.
    noise_std : float
        Standard deviation of the noise input.
    fbp_filter, fbp_frequency_scaling
        The FBP of the input (:func:`recon.classical.fbp`); for a warm start, those the network
        was pretrained with.
    progress : bool
        Show a progress bar per batch.

    Raises
    ------
    ValueError
        For bad arguments: the message names the one to change.

    Example
    -------
    >>> DeepImagePrior(gamma=3e-4, n_iter=500, input="noise")  # doctest: +ELLIPSIS
    DeepImagePrior(
      gamma=0.0003, n_iter=500, lr=0.001, input='noise', init='seed', seed=0, ...
      (network): DIPUNet(...)
    )
    """

    #: ``recon-eval`` need not compute ``op.norm()`` for it.
    uses_operator_norm = False

    def __init__(
        self,
        *,
        network: nn.Module | None = None,
        gamma: float = 1e-4,
        n_iter: int = 1000,
        lr: float = 1e-3,
        input: str = "fbp",
        init: str = "seed",
        seed: int = 0,
        clip_norm: float | None = 1.0,
        keep: str = "best",
        batch_mode: str = "vmap",
        noise_std: float = 0.1,
        fbp_filter: str = "hann",
        fbp_frequency_scaling: float = 1.0,
        progress: bool = True,
    ) -> None:
        super().__init__()
        if network is None:
            network = default_dip_network()
        if not isinstance(network, nn.Module):
            raise ValueError(f"network must be a torch.nn.Module, got {type(network).__name__}")
        self.gamma = check_positive("gamma", gamma, allow_zero=True)
        self.n_iter = check_n_iter(n_iter)
        if self.n_iter < 1:
            raise ValueError(f"n_iter must be >= 1 (Adam steps per image), got {n_iter}")
        self.lr = check_positive("lr", lr)
        self.input = check_choice("input", input, INPUTS)
        self.init = check_choice("init", init, INITS)
        self.seed = check_int("seed", seed, minimum=0)
        self.clip_norm = None if clip_norm is None else check_positive("clip_norm", clip_norm)
        self.keep = check_choice("keep", keep, KEEP)
        self.batch_mode = check_choice("batch_mode", batch_mode, BATCH_MODES)
        self.noise_std = check_positive("noise_std", noise_std)
        self.fbp_filter, self.fbp_frequency_scaling = check_filter(
            fbp_filter, fbp_frequency_scaling
        )
        self.progress = check_bool("progress", progress)
        if self.init == "seed":
            initial_weights(network, seed=self.seed)
        self.network = network

    def solve(
        self, y: torch.Tensor, op: OperatorLike, *, callback: Callback | None = None
    ) -> DIPResult:
        """The full :class:`~recon.dip.fitting.DIPResult` (``forward`` returns its ``x``), with
        ``x`` of shape ``(*batch, *op.domain_shape)``; ``callback(k, x)`` sees every iterate's
        output ``(N, H, W)``."""
        batch_shape = check_measurements(y, op, dtype=weight_dtype(self.network))
        flat = y.reshape(-1, *op.range_shape)
        z = dip_input(
            flat,
            op,
            kind=self.input,
            noise_std=self.noise_std,
            seed=self.seed,
            fbp_filter=self.fbp_filter,
            fbp_frequency_scaling=self.fbp_frequency_scaling,
        )
        result = fit_dip(
            self.network,
            z,
            flat,
            op,
            gamma=self.gamma,
            n_iter=self.n_iter,
            lr=self.lr,
            clip_norm=self.clip_norm,
            keep=self.keep,
            batch_mode=self.batch_mode,
            callback=callback,
            progress=self.progress,
        )
        return dataclasses.replace(result, x=result.x.reshape(*batch_shape, *op.domain_shape))

    def forward(self, y: torch.Tensor, op: OperatorLike) -> torch.Tensor:
        """Map ``y`` ``(*batch, *op.range_shape)`` to ``(*batch, *op.domain_shape)``."""
        check_measurements(y, op, dtype=weight_dtype(self.network))
        return self.solve(y, op).x

    def trained_network(self, result: DIPResult, index: int) -> nn.Module:
        """A copy of the network with image ``index``'s fitted weights from ``result`` (eval
        mode): the :math:`\\theta^*` a linearisation starts from."""
        return load_weights(self.network, result.params, index)

    def extra_repr(self) -> str:
        return (
            f"gamma={self.gamma}, n_iter={self.n_iter}, lr={self.lr}, input={self.input!r}, "
            f"init={self.init!r}, seed={self.seed}, keep={self.keep!r}, "
            f"batch_mode={self.batch_mode!r}"
        )
