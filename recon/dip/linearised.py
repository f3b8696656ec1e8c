r"""A network linearised around its trained weights: :math:`Jv` and :math:`J^Tu` without :math:`J`.

The linearised deep image prior (Antorán et al. 2022) replaces the network output by its first
order Taylor expansion around the trained weights :math:`\theta^*`,

.. math:: f(\theta) \approx f(\theta^*) + J\,(\theta - \theta^*),\qquad
          J = \partial f / \partial\theta\,\big|_{\theta^*},

where :math:`f(\theta) = \text{network}_\theta(z)` for the fixed network input :math:`z`. At
scale :math:`J` (pixels × weights) is never formed: :meth:`Linearisation.jvp` gives :math:`J v`
by forward-mode differentiation (:func:`torch.func.jvp`) and :meth:`Linearisation.vjp` gives
:math:`J^T u` by reverse mode (:func:`torch.func.vjp`), both through
:func:`torch.func.functional_call` and batched with :func:`torch.func.vmap`. For small problems
:meth:`Linearisation.dense` assembles :math:`J` (used to test the matrix-free path).

Only the parameters named in ``names`` (usually those under the weight prior, the convolution
weights) are linearised; every other parameter and buffer stays at its value in ``params``.

Example
-------
>>> import torch
>>> from models import UNet
>>> net = UNet(channels=2, depth=1, norm=None, residual=False).double()
>>> lin = Linearisation(net, torch.ones(1, 1, 8, 8, dtype=torch.float64))
>>> v = torch.randn(3, lin.n_params, dtype=torch.float64)
>>> u = torch.randn(3, *lin.out_shape, dtype=torch.float64)
>>> lhs = (lin.jvp(v) * u).sum()  # <J v, u> = <v, Jᵀ u>: the dot test
>>> bool(torch.isclose(lhs, (v * lin.vjp(u)).sum()))
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call, jvp, vjp, vmap

__all__ = ["Linearisation", "check_eval_mode"]

#: Modules whose output depends on the batch or on chance in training mode.
_STOCHASTIC = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
)


def check_eval_mode(network: nn.Module) -> None:
    """Raise ``ValueError`` if a batch-norm or dropout layer of ``network`` is in training mode.

    In training mode those layers make :math:`f(\\theta)` depend on the batch (batch statistics)
    or on chance (dropout), so the network is no function of its weights to linearise.

    Example
    -------
    >>> check_eval_mode(nn.Sequential(nn.Conv2d(1, 1, 3), nn.BatchNorm2d(1)).eval())
    >>> check_eval_mode(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Dropout()))
    Traceback (most recent call last):
    ...
    ValueError: layer '1' (Dropout) is in training mode; call network.eval() before linearising
    """
    for name, module in network.named_modules():
        if isinstance(module, _STOCHASTIC) and module.training:
            raise ValueError(
                f"layer {name!r} ({type(module).__name__}) is in training mode; call "
                "network.eval() before linearising"
            )


class Linearisation:
    r"""The Jacobian :math:`J` of ``network(z)`` in the weights ``names`` at ``params``.

    Parameter vectors are flat, of length :attr:`n_params`: the parameters ``names`` flattened
    and concatenated in that order (:meth:`flatten`, :meth:`unflatten`). Images have the shape
    :attr:`out_shape` of one network output (``network(z)[0]``, e.g. ``(1, H, W)``).

    Parameters
    ----------
    network : torch.nn.Module
        The network; it is called as ``functional_call(network, params, (z,))`` and never
        modified. Batch-norm and dropout layers must be in eval mode (:func:`check_eval_mode`).
    z : torch.Tensor
        The fixed network input, ``(1, C, *spatial)`` (one image).
    params : mapping of str to torch.Tensor, optional
        The trained weights :math:`\theta^*` by parameter name (default: the network's own
        parameters, detached). Names missing here keep the network's value.
    names : sequence of str, optional
        The parameters to linearise, in the order of the flat vector (default: all of
        ``params``); e.g. :attr:`recon.dip.weight_prior.WeightPrior.names`.
    chunk_size : int, optional
        Batch elements evaluated at once by :func:`torch.func.vmap` (default: all); lower it
        to save memory.

    Attributes
    ----------
    theta : torch.Tensor
        :math:`\theta^*` as a flat vector ``(n_params,)``.
    image : torch.Tensor
        :math:`f(\theta^*)`, shape :attr:`out_shape`.

    Raises
    ------
    TypeError
        If ``network`` is not an ``nn.Module`` or ``z`` not a floating-point tensor.
    ValueError
        For a batch of inputs, unknown or repeated names, misshapen parameters, or layers in
        training mode.
    """

    def __init__(
        self,
        network: nn.Module,
        z: torch.Tensor,
        *,
        params: Mapping[str, torch.Tensor] | None = None,
        names: Sequence[str] | None = None,
        chunk_size: int | None = None,
    ) -> None:
        if not isinstance(network, nn.Module):
            raise TypeError(f"network must be a torch.nn.Module, got {type(network).__name__}")
        if not isinstance(z, torch.Tensor) or not z.is_floating_point():
            raise TypeError(f"z must be a floating-point tensor, got {type(z).__name__}")
        if z.ndim < 2 or z.shape[0] != 1:
            raise ValueError(
                f"z must be one network input of shape (1, C, *spatial), got {tuple(z.shape)}; "
                "linearise each image of a batch separately"
            )
        if chunk_size is not None and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        ):
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
        check_eval_mode(network)
        own = dict(network.named_parameters())
        if params is None:
            params = {name: p.detach() for name, p in own.items()}
        unknown = sorted(set(params) - set(own))
        if unknown:
            raise ValueError(f"params holds names the network does not have: {unknown}")
        for name, value in params.items():
            if not isinstance(value, torch.Tensor) or value.shape != own[name].shape:
                got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value)
                raise ValueError(
                    f"params[{name!r}] must have the shape {tuple(own[name].shape)}, got {got}"
                )
        names = list(params) if names is None else list(names)
        if not names:
            raise ValueError("names must name at least one parameter to linearise")
        if len(set(names)) != len(names):
            raise ValueError(f"names must not repeat a parameter, got {names}")
        missing = [name for name in names if name not in own]
        if missing:
            raise ValueError(
                f"names holds parameters the network does not have: {missing}; known: "
                f"{', '.join(own)}"
            )
        values = {name: params.get(name, own[name]).detach() for name in own}
        self.network = network
        self.z = z.detach()
        self.names: tuple[str, ...] = tuple(names)
        self.shapes: tuple[torch.Size, ...] = tuple(values[n].shape for n in names)
        self.numels: tuple[int, ...] = tuple(math.prod(s) for s in self.shapes)
        self.n_params = sum(self.numels)
        self.chunk_size = chunk_size
        self.theta = torch.cat([values[n].reshape(-1) for n in names])
        self._fixed = {n: v for n, v in values.items() if n not in self.names}
        self._vjp_fn: Callable | None = None
        with torch.no_grad():
            self.image = self._f(self.theta)
        self.out_shape: tuple[int, ...] = tuple(self.image.shape)
        self.n_pixels = self.image.numel()

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of :math:`\\theta^*`."""
        return self.theta.dtype

    @property
    def device(self) -> torch.device:
        """The device of :math:`\\theta^*`."""
        return self.theta.device

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """The flat vector ``theta`` ``(n_params,)`` as parameters by name (views)."""
        parts = torch.split(theta, self.numels)
        return {n: p.view(s) for n, p, s in zip(self.names, parts, self.shapes, strict=True)}

    def flatten(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Parameters by name (all of :attr:`names`) as one flat vector ``(n_params,)``."""
        missing = [n for n in self.names if n not in tensors]
        if missing:
            raise ValueError(f"flatten needs every linearised parameter; missing {missing}")
        return torch.cat([tensors[n].reshape(-1) for n in self.names])

    def _f(self, theta: torch.Tensor) -> torch.Tensor:
        out = functional_call(self.network, {**self._fixed, **self.unflatten(theta)}, (self.z,))
        return out[0]

    def _check(self, name: str, v: torch.Tensor, trailing: tuple[int, ...]) -> bool:
        """Check ``v`` ends in ``trailing`` (batched or not); return whether it is batched."""
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{name} must be a tensor, got {type(v).__name__}")
        if v.dtype != self.dtype or v.device != self.device:
            raise TypeError(
                f"{name} must have the dtype and device of theta ({self.dtype}, {self.device}), "
                f"got ({v.dtype}, {v.device})"
            )
        n = len(trailing)
        if tuple(v.shape[v.ndim - n :]) != trailing or v.ndim not in (n, n + 1):
            raise ValueError(
                f"{name} must have shape {trailing} or (batch, {', '.join(map(str, trailing))}), "
                f"got {tuple(v.shape)}"
            )
        return v.ndim == n + 1

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        r"""The network output :math:`f(\theta)` (not linearised) at the flat weights ``theta``."""
        self._check("theta", theta, (self.n_params,))
        if theta.ndim == 2:
            return torch.stack([self._f(t) for t in theta])
        return self._f(theta)

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        r""":math:`J v` for ``v`` of shape ``(n_params,)`` or ``(B, n_params)``.

        Returns images of shape :attr:`out_shape` (or ``(B, *out_shape)``), detached.
        """
        batched = self._check("v", v, (self.n_params,))
        theta = self.theta

        def one(tangent: torch.Tensor) -> torch.Tensor:
            return jvp(self._f, (theta,), (tangent,))[1]

        with torch.no_grad():
            if not batched:
                return one(v)
            return vmap(one, chunk_size=self.chunk_size)(v)

    def vjp(self, u: torch.Tensor) -> torch.Tensor:
        r""":math:`J^T u` for images ``u`` of shape :attr:`out_shape` or ``(B, *out_shape)``.

        Returns ``(n_params,)`` or ``(B, n_params)``, detached.
        """
        batched = self._check("u", u, self.out_shape)
        if self._vjp_fn is None:
            self._vjp_fn = vjp(self._f, self.theta)[1]
        fn = self._vjp_fn

        def one(cotangent: torch.Tensor) -> torch.Tensor:
            return fn(cotangent)[0]

        with torch.no_grad():
            if not batched:
                return one(u)
            return vmap(one, chunk_size=self.chunk_size)(u)

    def linear(self, theta: torch.Tensor) -> torch.Tensor:
        r"""The linearised network :math:`f(\theta^*) + J(\theta - \theta^*)` at flat ``theta``."""
        return self.image + self.jvp(theta - self.theta)

    def dense(self, *, batch_size: int = 256) -> torch.Tensor:
        """The Jacobian as a dense matrix ``(n_pixels, n_params)`` (small problems only).

        Rows come from :meth:`vjp` of unit images, ``batch_size`` at a time.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        rows = []
        eye = torch.eye(self.n_pixels, dtype=self.dtype, device=self.device)
        for start in range(0, self.n_pixels, batch_size):
            units = eye[start : start + batch_size].reshape(-1, *self.out_shape)
            rows.append(self.vjp(units))
        return torch.cat(rows)

    def __repr__(self) -> str:
        return (
            f"Linearisation({type(self.network).__name__}, n_params={self.n_params}, "
            f"out_shape={self.out_shape})"
        )
