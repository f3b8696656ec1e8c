r"""Unrolled iterative reconstruction: learned gradient and learned primal-dual.

Both unroll a fixed number of iterations of an optimisation scheme and replace its update rule by
small CNNs, one per iteration, that see the operator's action on the current iterate:

- :class:`LearnedGradient` (Adler & Öktem 2017): ``x ← x + Λ_k(x, Aᵀ(Ax − y), ∇S(x), memory)``.
- :class:`LearnedPrimalDual` (Adler & Öktem 2018): learned updates in the image (primal) and
  the data (dual) space, coupled through ``A`` and ``Aᵀ``.

Both work with any linear operator (``op(x)``, ``op.T(z)``, ``op.norm()``, ``domain_shape`` and
``range_shape`` of ``ndim`` dimensions each), any batch size, on the device and in the dtype of
``y`` (the networks must be on that device and in that dtype too). With
``normalize_operator=True`` (default) they use :math:`A/\|A\|` and :math:`y/\|A\|` so that
``Aᵀ A`` has norm 1 whatever the physical units; the solution of ``Ax = y`` is unchanged.
``checkpointing=True`` recomputes each iteration in the backward pass
(:func:`torch.utils.checkpoint.checkpoint`) instead of storing its activations, so training
memory grows with one iteration instead of ``n_iter``; results and gradients are the same.

References: J. Adler, O. Öktem, "Solving ill-posed inverse problems using iterative deep neural
networks", Inverse Problems 33(12), 124007, 2017. J. Adler, O. Öktem, "Learned primal-dual
reconstruction", IEEE TMI 37(6), 1322–1332, 2018.

Example
-------
>>> import torch
>>> from operators import Parallel2D, RayTransform
>>> op = RayTransform(Parallel2D((32, 32), n_angles=10), backend="matrix")
>>> lpd = LearnedPrimalDual(n_iter=2)
>>> lpd(torch.zeros(3, 1, *op.range_shape), op).shape
torch.Size([3, 1, 32, 32])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from models import ConvNet
from operators import OperatorLike
from recon.base import Reconstructor, flatten_measurements, weight_dtype
from recon.checks import check_bool, check_choice, check_int, check_ndim
from recon.classical.analytic import fbp, fdk
from recon.solvers.common import operator_norm
from recon.solvers.tv import smoothness_gradient

__all__ = ["INITS", "LearnedGradient", "LearnedPrimalDual"]

#: Initial iterates of :class:`LearnedGradient`.
INITS: tuple[str, ...] = ("zero", "fbp")


# --------------------------------------------------------------------------- helpers
def _operator_scale(op: OperatorLike, normalize: bool, device: torch.device) -> float:
    r"""``1/‖A‖`` (cached by the operator, computed on ``device``) when ``normalize``, else 1."""
    if not normalize:
        return 1.0
    hint = "pass normalize_operator=False or scale the operator yourself"
    return 1.0 / operator_norm(op, device=device, hint=hint)


def _cnn_blocks(
    n_iter: int, in_channels: int, out_channels: int, *, channels: int, ndim: int
) -> nn.ModuleList:
    """``n_iter`` separate 3-layer CNNs (3×3, PReLU, ``channels`` hidden): one per iteration."""
    return nn.ModuleList(
        ConvNet(
            in_channels=in_channels,
            out_channels=out_channels,
            hidden_channels=channels,
            n_layers=3,
            activation="prelu",
            ndim=ndim,
        )
        for _ in range(n_iter)
    )


class _Unrolled(Reconstructor):
    """Shared plumbing: optional checkpointing of one iteration, the initial iterate."""

    checkpointing: bool
    init: str
    ndim: int

    def _initial_image(
        self, y_flat: torch.Tensor, g: torch.Tensor, op: OperatorLike, channels: int
    ) -> torch.Tensor:
        """``(N, channels, *domain)``: zeros, or the Hann-filtered FBP (FDK in 3D) per channel."""
        domain_shape = tuple(op.domain_shape)
        if self.init == "fbp":
            analytic = fdk if self.ndim == 3 else fbp
            x = analytic(y_flat, op, filter="hann")
            return x.expand(-1, channels, *domain_shape).contiguous()
        return g.new_zeros((g.shape[0], channels, *domain_shape))

    def _run(self, iteration: Callable[..., Any], *args: Any) -> Any:
        """``iteration(*args)``, recomputed in the backward pass when checkpointing."""
        if self.checkpointing and torch.is_grad_enabled():
            return checkpoint(iteration, *args, use_reentrant=False)
        return iteration(*args)

    def _set_channels_last(self, channels_last: object) -> None:
        self.channels_last = check_bool("channels_last", channels_last)
        if self.channels_last:
            layout = torch.channels_last if self.ndim == 2 else torch.channels_last_3d
            self.to(memory_format=layout)

    def zero_last(self) -> None:
        """Zero the last convolution of every block: each update is then 0 (see ``zero_init``).

        Example
        -------
        >>> lpd = LearnedPrimalDual(n_iter=2)
        >>> lpd.zero_last()
        >>> lpd.primal_blocks[0].last.weight.abs().max().item()
        0.0
        """
        for module in self.modules():
            if isinstance(module, ConvNet):
                module.zero_last()


# --------------------------------------------------------------------------- learned gradient
class LearnedGradient(_Unrolled):
    r"""Learned gradient descent (Adler & Öktem 2017, "partially learned gradient scheme").

    With :math:`A` and :math:`y` scaled by :math:`1/\|A\|` (``normalize_operator``), starting from
    :math:`x_0 = 0` (or FBP) and memory :math:`s_0 = 0`, iteration :math:`k = 0, …, n-1` is

    .. math::

        (\delta x, s_{k+1}) &= \Lambda_{\theta_k}\big(x_k,\ A^T(Ax_k - y),\
            \nabla^T\nabla x_k,\ s_k\big), \\
        x_{k+1} &= x_k + \delta x,

    where :math:`A^T(Ax - y)` is the gradient of the data term :math:`\tfrac12\|Ax - y\|^2`,
    :math:`\nabla^T\nabla x = -\Delta x` that of the smoothness term :math:`\tfrac12\|\nabla x\|^2`
    (:func:`smoothness_gradient`), and :math:`\Lambda_{\theta_k}` a 3-layer CNN (3×3, PReLU,
    ``channels`` hidden channels) of its own per iteration, whose first output channel is the
    update and the others the new memory. Two operator applications per iteration.

    Parameters
    ----------
    n_iter : int
        Number of unrolled iterations (≥ 1).
    memory : int
        Memory channels carried between iterations (≥ 0).
    channels : int
        Hidden channels of each CNN.
    checkpointing : bool
        Recompute each iteration in the backward pass to bound memory (same results).
    normalize_operator : bool
        Use :math:`A/\|A\|` and :math:`y/\|A\|` (needs ``op.norm()``).
    init : {"zero", "fbp"}
        Initial iterate: zeros, or :func:`recon.classical.fbp` with the Hann filter
        (:func:`~recon.classical.fdk` for cone beam; needs a :class:`~operators.RayTransform`).
    zero_init : bool
        Zero the last layer of every CNN, so that the untrained network returns ``x_0``.
    ndim : {2, 3}
        Spatial dimensions of the operator's domain and range (2D or 3D convolutions).
    channels_last : bool
        Keep the convolution weights (hence the activations) channels-last. Same results;
        with bfloat16 autocast on CPU (the trainer's ``amp``) a step runs about 1.4× faster
        than contiguous, in float32 about 1.15× slower (oneDNN's preferred layouts).

    Attributes
    ----------
    blocks : torch.nn.ModuleList
        The ``n_iter`` CNNs, in order.

    Example
    -------
    >>> import torch
    >>> from operators import MatrixOperator
    >>> op = MatrixOperator(torch.randn(6 * 7, 8 * 8), domain_shape=(8, 8), range_shape=(6, 7))
    >>> lg = LearnedGradient(n_iter=3, memory=5)
    >>> lg(torch.randn(4, 1, 6, 7), op).shape
    torch.Size([4, 1, 8, 8])
    """

    def __init__(
        self,
        *,
        n_iter: int = 10,
        memory: int = 5,
        channels: int = 32,
        checkpointing: bool = False,
        normalize_operator: bool = True,
        init: str = "zero",
        zero_init: bool = False,
        ndim: int = 2,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.n_iter = check_int("n_iter", n_iter, minimum=1)
        self.memory = check_int("memory", memory, minimum=0)
        self.channels = check_int("channels", channels, minimum=1)
        self.checkpointing = check_bool("checkpointing", checkpointing)
        self.normalize_operator = check_bool("normalize_operator", normalize_operator)
        self.init = check_choice("init", init, INITS)
        self.ndim = check_ndim(ndim)
        self.blocks = _cnn_blocks(n_iter, 3 + memory, 1 + memory, channels=channels, ndim=ndim)
        if check_bool("zero_init", zero_init):
            self.zero_last()
        self._set_channels_last(channels_last)

    def forward(self, y: torch.Tensor, op: OperatorLike) -> torch.Tensor:
        """Map ``y`` ``(*batch, *op.range_shape)`` to ``(*batch, *op.domain_shape)``."""
        batch_shape, y_flat = flatten_measurements(y, op, self.ndim, dtype=weight_dtype(self))
        domain_shape = tuple(op.domain_shape)
        scale = _operator_scale(op, self.normalize_operator, y.device)
        g = y_flat * scale
        n = g.shape[0]

        x = self._initial_image(y_flat, g, op, 1)
        memory = g.new_zeros((n, self.memory, *domain_shape))

        def iteration(k: int, x: torch.Tensor, memory: torch.Tensor):
            data_gradient = scale * op.T(scale * op(x) - g)
            smooth_gradient = smoothness_gradient(x, ndim=self.ndim)
            out = self.blocks[k](torch.cat([x, data_gradient, smooth_gradient, memory], dim=1))
            return x + out[:, :1], out[:, 1:]

        for k in range(self.n_iter):
            x, memory = self._run(iteration, k, x, memory)
        return x.reshape(*batch_shape, *domain_shape)

    def extra_repr(self) -> str:
        return (
            f"n_iter={self.n_iter}, memory={self.memory}, channels={self.channels}, "
            f"checkpointing={self.checkpointing}, normalize_operator={self.normalize_operator}, "
            f"init={self.init!r}, ndim={self.ndim}, "
            f"channels_last={self.channels_last}"
        )


# --------------------------------------------------------------------------- learned primal-dual
class LearnedPrimalDual(_Unrolled):
    r"""Learned primal-dual reconstruction (Adler & Öktem 2018, Algorithm 3).

    With :math:`A` and :math:`g = y` scaled by :math:`1/\|A\|` (``normalize_operator``), primal
    :math:`h_0 = 0` or FBP (``init``; ``n_primal`` image channels) and dual :math:`f_0 = 0`
    (``n_dual`` data channels), iteration :math:`k = 0, …, n-1` is

    .. math::

        f_{k+1} &= f_k + \Gamma_{\theta_k^d}\big(f_k,\ A h_k^{(1)},\ g\big), \\
        h_{k+1} &= h_k + \Lambda_{\theta_k^p}\big(h_k,\ A^T f_{k+1}^{(0)}\big),

    and the reconstruction is :math:`h_n^{(0)}` (superscripts are channels, counted from 0; the
    forward operator reads channel 1, or channel 0 when ``n_primal == 1``). :math:`\Gamma` and
    :math:`\Lambda` are 3-layer CNNs (3×3, ``channels`` hidden channels, PReLU), separate for
    every iteration. Two operator applications per iteration. With the defaults (10 iterations,
    5 + 5 channels, 32 filters) it has about 2.5·10⁵ parameters.

    Parameters
    ----------
    n_iter : int
        Number of unrolled iterations (≥ 1).
    n_primal, n_dual : int
        Channels of the primal (image) and dual (data) iterates (≥ 1).
    channels : int
        Hidden channels of each CNN.
    checkpointing : bool
        Recompute each iteration in the backward pass to bound memory (same results).
    normalize_operator : bool
        Use :math:`A/\|A\|` and :math:`y/\|A\|` (needs ``op.norm()``).
    init : {"zero", "fbp"}
        Initial primal iterate: zeros (Adler & Öktem), or the Hann-filtered FBP
        (:func:`recon.classical.fbp`; FDK for cone beam; needs a :class:`~operators.RayTransform`)
        in every primal channel. With ``"fbp"`` the network only learns a correction of FBP, and
        learns much faster on a small training budget.
    zero_init : bool
        Zero the last layer of every CNN, so that the untrained network returns the initial
        iterate (0, or FBP).
    ndim : {2, 3}
        Spatial dimensions of the operator's domain and range (2D or 3D convolutions).
    channels_last : bool
        Keep the convolution weights (hence the activations) channels-last. Same results;
        with bfloat16 autocast on CPU (the trainer's ``amp``) a step runs about 1.4× faster
        than contiguous, in float32 about 1.15× slower (oneDNN's preferred layouts).

    Attributes
    ----------
    primal_blocks, dual_blocks : torch.nn.ModuleList
        The ``n_iter`` primal and dual CNNs, in order.

    Example
    -------
    >>> import torch
    >>> from operators import MatrixOperator
    >>> op = MatrixOperator(torch.randn(6 * 7, 8 * 8), domain_shape=(8, 8), range_shape=(6, 7))
    >>> lpd = LearnedPrimalDual(n_iter=2, zero_init=True)
    >>> lpd(torch.randn(4, 1, 6, 7), op).abs().max().item()
    0.0
    """

    def __init__(
        self,
        *,
        n_iter: int = 10,
        n_primal: int = 5,
        n_dual: int = 5,
        channels: int = 32,
        checkpointing: bool = False,
        normalize_operator: bool = True,
        init: str = "zero",
        zero_init: bool = False,
        ndim: int = 2,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.n_iter = check_int("n_iter", n_iter, minimum=1)
        self.init = check_choice("init", init, INITS)
        self.n_primal = check_int("n_primal", n_primal, minimum=1)
        self.n_dual = check_int("n_dual", n_dual, minimum=1)
        self.channels = check_int("channels", channels, minimum=1)
        self.checkpointing = check_bool("checkpointing", checkpointing)
        self.normalize_operator = check_bool("normalize_operator", normalize_operator)
        self.ndim = check_ndim(ndim)
        self.primal_blocks = _cnn_blocks(
            n_iter, n_primal + 1, n_primal, channels=channels, ndim=ndim
        )
        self.dual_blocks = _cnn_blocks(n_iter, n_dual + 2, n_dual, channels=channels, ndim=ndim)
        if check_bool("zero_init", zero_init):
            self.zero_last()
        self._set_channels_last(channels_last)

    def forward(self, y: torch.Tensor, op: OperatorLike) -> torch.Tensor:
        """Map ``y`` ``(*batch, *op.range_shape)`` to ``(*batch, *op.domain_shape)``."""
        batch_shape, y_flat = flatten_measurements(y, op, self.ndim, dtype=weight_dtype(self))
        domain_shape, range_shape = tuple(op.domain_shape), tuple(op.range_shape)
        scale = _operator_scale(op, self.normalize_operator, y.device)
        g = y_flat * scale
        n = g.shape[0]
        primal = self._initial_image(y_flat, g, op, self.n_primal)
        dual = g.new_zeros((n, self.n_dual, *range_shape))
        forward_channel = min(1, self.n_primal - 1)

        def iteration(k: int, primal: torch.Tensor, dual: torch.Tensor):
            evaluated = scale * op(primal[:, forward_channel : forward_channel + 1])
            dual = dual + self.dual_blocks[k](torch.cat([dual, evaluated, g], dim=1))
            backprojected = scale * op.T(dual[:, :1])
            primal = primal + self.primal_blocks[k](torch.cat([primal, backprojected], dim=1))
            return primal, dual

        for k in range(self.n_iter):
            primal, dual = self._run(iteration, k, primal, dual)
        return primal[:, :1].reshape(*batch_shape, *domain_shape)

    def extra_repr(self) -> str:
        return (
            f"n_iter={self.n_iter}, n_primal={self.n_primal}, n_dual={self.n_dual}, "
            f"channels={self.channels}, checkpointing={self.checkpointing}, "
            f"normalize_operator={self.normalize_operator}, init={self.init!r}, ndim={self.ndim}, "
            f"channels_last={self.channels_last}"
        )
