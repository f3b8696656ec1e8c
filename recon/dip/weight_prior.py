r"""Gaussian priors over network weights, one per block of convolutions, for the linearised DIP.

The weights :math:`\theta` under the prior (convolution weights; biases and normalisation
parameters stay at their trained values) are split into *blocks* that share hyper-parameters
(Antorán et al. 2022, section 3):

- ``"matern"``: every filter (one input–output channel pair of a :math:`k \times k` kernel) of the
  block is :math:`\mathcal N(0, K_b)` with the Matérn-½ covariance over the filter's pixel
  offsets, :math:`(K_b)_{ij} = \sigma_b^2 \exp(-\lVert\Delta_{ij}\rVert / \ell_b)`, independent
  across filters; for the 3×3 convolutions.
- ``"normal"``: isotropic, :math:`\mathcal N(0, \sigma_b^2 I)`; for 1×1 (and transposed)
  convolutions.
- ``"gprior"``: one block over all weights with the diagonal g-prior
  :math:`\mathcal N(0, \sigma^2 \operatorname{diag}(s)^2)`, where the fixed scale :math:`s`
  equalises the weights' effect on the data (``s_i = (\lVert (AJ)_{:,i}\rVert^2/m)^{-1/2}``,
  :func:`recon.dip.marginal_likelihood.gprior_scale`; ones until set).

Hyper-parameters are stored in log space (:attr:`WeightPrior.log_variance` one per block,
:attr:`WeightPrior.log_lengthscale` one per Matérn block). :class:`WeightPrior` applies
:math:`\Sigma_\theta`, its Cholesky factor and its inverse blockwise to flat weight vectors and
samples :math:`\theta \sim \mathcal N(0, \Sigma_\theta)`.

Example
-------
>>> import torch
>>> from models import UNet
>>> net = UNet(channels=2, depth=1, norm=None, residual=False)
>>> prior = WeightPrior.for_network(net)
>>> [(b.name, b.kind) for b in prior.blocks]  # doctest: +NORMALIZE_WHITESPACE
[('encoder.0', 'matern'), ('encoder.1', 'matern'), ('upsamplers.0', 'normal'),
 ('decoder.0', 'matern'), ('out_conv', 'normal')]
>>> prior.cov_mv(torch.ones(2, prior.n_params)).shape
torch.Size([2, 388])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "PRIOR_KINDS",
    "PriorBlock",
    "WeightPrior",
    "conv_prior_blocks",
    "default_prior_blocks",
    "gprior_blocks",
    "matern_offsets_distance",
]

#: Kinds of prior block: Matérn-½ over filter offsets, isotropic normal, diagonal g-prior.
PRIOR_KINDS: tuple[str, ...] = ("matern", "normal", "gprior")

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d)
_CONVS += (nn.ConvTranspose3d,)


@dataclass(frozen=True)
class PriorBlock:
    """Weights sharing one set of prior hyper-parameters.

    Attributes
    ----------
    name : str
        The block's name (e.g. the module path ``"encoder.0"``).
    kind : {"matern", "normal", "gprior"}
        The covariance (see :mod:`recon.dip.weight_prior`).
    params : tuple of str
        Parameter names (as in ``network.named_parameters()``) under this block.
    """

    name: str
    kind: str
    params: tuple[str, ...]


def _conv_weights(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """``(weight name, conv module)`` for every convolution inside ``module``."""
    found = []
    for name, sub in module.named_modules():
        if isinstance(sub, _CONVS):
            full = f"{prefix}.{name}" if prefix and name else (prefix or name)
            found.append((f"{full}.weight" if full else "weight", sub))
    return found


def _kind(conv: nn.Module) -> str:
    transposed = isinstance(conv, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d))
    return "normal" if transposed or math.prod(conv.kernel_size) == 1 else "matern"


def conv_prior_blocks(network: nn.Module) -> list[PriorBlock]:
    """One block per convolution of ``network``: Matérn-½ for kernels larger than 1×1,
    isotropic normal for 1×1 and transposed convolutions.

    Example
    -------
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 1, 1))
    >>> conv_prior_blocks(net)  # doctest: +NORMALIZE_WHITESPACE
    [PriorBlock(name='0', kind='matern', params=('0.weight',)),
     PriorBlock(name='2', kind='normal', params=('2.weight',))]
    """
    return [
        PriorBlock(name.removesuffix(".weight"), _kind(conv), (name,))
        for name, conv in _conv_weights(network)
    ]


def default_prior_blocks(network: nn.Module) -> list[PriorBlock]:
    """The paper's blocks: one prior per convolution block of the network.

    A block is a top-level child of ``network``, or, for a top-level ``ModuleList`` or
    ``ModuleDict``, each of its entries: ``inc``, ``down.i``, ``skips.i``, ``up_convs.i``,
    ``out_conv`` of :class:`models.dip_unet.DIPUNet`; ``encoder.i``, ``upsamplers.i``,
    ``decoder.i``, ``out_conv`` of :class:`models.UNet`. Its 3×3 convolutions form a Matérn
    block, its 1×1 and transposed ones a normal block (a block holding both is split into
    ``"<name>:matern"`` and ``"<name>:normal"``).

    Raises
    ------
    ValueError
        If the network has no convolution.

    Example
    -------
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 1, 1))
    >>> [(b.name, b.kind) for b in default_prior_blocks(net)]
    [('0', 'matern'), ('2', 'normal')]
    """
    groups: list[tuple[str, nn.Module]] = []
    for name, child in network.named_children():
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
            groups += [(f"{name}.{index}", sub) for index, sub in child.named_children()]
        else:
            groups.append((name, child))
    blocks = []
    for prefix, module in groups:
        convs = _conv_weights(module, prefix)
        kinds = sorted({_kind(conv) for _, conv in convs})
        for kind in kinds:
            block_name = prefix if len(kinds) == 1 else f"{prefix}:{kind}"
            params = tuple(n for n, conv in convs if _kind(conv) == kind)
            blocks.append(PriorBlock(block_name, kind, params))
    if not blocks:
        raise ValueError(f"{type(network).__name__} has no convolution to put a prior on")
    return blocks


def gprior_blocks(network: nn.Module) -> list[PriorBlock]:
    """One ``"gprior"`` block over the weights of every convolution of ``network``.

    Example
    -------
    >>> gprior_blocks(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 1, 1)))[0].params
    ('0.weight', '1.weight')
    """
    names = tuple(name for name, _ in _conv_weights(network))
    if not names:
        raise ValueError(f"{type(network).__name__} has no convolution to put a prior on")
    return [PriorBlock("gprior", "gprior", names)]


def matern_offsets_distance(kernel_size: Sequence[int]) -> torch.Tensor:
    """Euclidean distances between the pixel offsets of a kernel, ``(k, k)`` with
    ``k = prod(kernel_size)``, offsets in the row-major order of a flattened filter.

    Example
    -------
    >>> matern_offsets_distance((1, 3))
    tensor([[0., 1., 2.],
            [1., 0., 1.],
            [2., 1., 0.]], dtype=torch.float64)
    """
    coords = torch.tensor(
        list(itertools.product(*(range(n) for n in kernel_size))), dtype=torch.float64
    )
    return torch.cdist(coords, coords)


class WeightPrior(nn.Module):
    r"""A block-diagonal Gaussian prior :math:`\mathcal N(0, \Sigma_\theta)` on flat weight vectors.

    The flat vector concatenates the parameters of the blocks in order (:attr:`names`), each
    flattened row-major, so a Matérn filter is ``k`` consecutive entries.

    Parameters
    ----------
    blocks : sequence of PriorBlock
        The blocks (kinds in :data:`PRIOR_KINDS`; a parameter in one block only).
    shapes : mapping of str to shape
        The shape of every parameter named by the blocks.
    variance : float
        Initial :math:`\sigma_b^2` of every block.
    lengthscale : float
        Initial :math:`\ell_b` of every Matérn block (in pixels of the kernel).
    jitter : float
        Added to the diagonal of each (unit-variance) Matérn covariance, so its Cholesky factor
        exists at short length-scales.
    dtype, device
        Of the hyper-parameters (those of the network's weights).

    Attributes
    ----------
    log_variance : torch.nn.Parameter
        :math:`\log\sigma_b^2`, one per block.
    log_lengthscale : torch.nn.Parameter
        :math:`\log\ell_b`, one per Matérn block (in block order).
    scale : torch.Tensor
        The g-prior's per-weight scale :math:`s` (a buffer; ones unless set).

    Raises
    ------
    ValueError
        For no block, an unknown kind, a parameter in two blocks or without shape, a Matérn
        block whose kernels differ in size, or non-positive initial values.
    """

    def __init__(
        self,
        blocks: Sequence[PriorBlock],
        shapes: Mapping[str, Sequence[int]],
        *,
        variance: float = 1.0,
        lengthscale: float = 0.1,
        jitter: float = 1e-6,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        blocks = list(blocks)
        if not blocks or not all(isinstance(b, PriorBlock) for b in blocks):
            raise ValueError("blocks must be a non-empty sequence of PriorBlock")
        for name, value in (("variance", variance), ("lengthscale", lengthscale)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or jitter < 0:
            raise ValueError(f"jitter must be a non-negative number, got {jitter!r}")
        names: list[str] = []
        self._slices: list[slice] = []
        self._kernel: list[int] = []  # filter size k of each block (1 for non-Matérn)
        distances: list[torch.Tensor] = []
        start = 0
        for block in blocks:
            if block.kind not in PRIOR_KINDS:
                raise ValueError(
                    f"block {block.name!r}: unknown kind {block.kind!r}; choose one of "
                    f"{', '.join(PRIOR_KINDS)}"
                )
            if not block.params:
                raise ValueError(f"block {block.name!r} names no parameter")
            kernels = set()
            block_start = start
            for param in block.params:
                if param in names:
                    raise ValueError(f"parameter {param!r} is in two blocks")
                if param not in shapes:
                    raise ValueError(f"block {block.name!r}: no shape given for {param!r}")
                names.append(param)
                shape = tuple(shapes[param])
                kernels.add(shape[2:])
                start += math.prod(shape)
            self._slices.append(slice(block_start, start))
            if block.kind == "matern":
                if len(kernels) != 1 or not next(iter(kernels)):
                    raise ValueError(
                        f"Matérn block {block.name!r} needs convolution weights (out, in, *kernel) "
                        f"of one kernel size, got kernels {sorted(kernels)}"
                    )
                kernel = next(iter(kernels))
                self._kernel.append(math.prod(kernel))
                distances.append(matern_offsets_distance(kernel))
            else:
                self._kernel.append(1)
        self.blocks: tuple[PriorBlock, ...] = tuple(blocks)
        self.names: tuple[str, ...] = tuple(names)
        self.n_params = start
        self.jitter = float(jitter)
        kw = {"dtype": dtype or torch.get_default_dtype(), "device": device}
        self._matern = [i for i, b in enumerate(blocks) if b.kind == "matern"]
        self.log_variance = nn.Parameter(torch.full((len(blocks),), math.log(variance), **kw))
        self.log_lengthscale = nn.Parameter(
            torch.full((len(self._matern),), math.log(lengthscale), **kw)
        )
        for j, d in enumerate(distances):
            self.register_buffer(f"distance_{j}", d.to(**kw), persistent=False)
        self.register_buffer("scale", torch.ones(self.n_params, **kw))

    @classmethod
    def for_network(
        cls,
        network: nn.Module,
        *,
        gprior: bool = False,
        variance: float = 1.0,
        lengthscale: float = 0.1,
        jitter: float = 1e-6,
    ) -> WeightPrior:
        """The paper's prior for ``network`` (:func:`default_prior_blocks`), or with
        ``gprior=True`` one g-prior block (:func:`gprior_blocks`), in the weights' dtype."""
        blocks = gprior_blocks(network) if gprior else default_prior_blocks(network)
        params = dict(network.named_parameters())
        first = params[blocks[0].params[0]]
        return cls(
            blocks,
            {name: p.shape for name, p in params.items()},
            variance=variance,
            lengthscale=lengthscale,
            jitter=jitter,
            dtype=first.dtype,
            device=first.device,
        )

    def variances(self) -> dict[str, float]:
        """:math:`\\sigma_b^2` by block name."""
        values = self.log_variance.detach().exp().tolist()
        return {b.name: v for b, v in zip(self.blocks, values, strict=True)}

    def lengthscales(self) -> dict[str, float]:
        """:math:`\\ell_b` by Matérn block name."""
        values = self.log_lengthscale.detach().exp().tolist()
        return {self.blocks[i].name: v for i, v in zip(self._matern, values, strict=True)}

    def set_gprior_scale(self, scale: torch.Tensor) -> None:
        """Set the g-prior scale :math:`s` ``(n_params,)`` (positive; see the module doc)."""
        if not isinstance(scale, torch.Tensor) or scale.shape != (self.n_params,):
            got = tuple(scale.shape) if isinstance(scale, torch.Tensor) else type(scale).__name__
            raise ValueError(f"scale must have shape ({self.n_params},), got {got}")
        if not bool((scale > 0).all()) or not bool(torch.isfinite(scale).all()):
            raise ValueError("scale must be finite and positive")
        self.scale.copy_(scale)

    def block_cov(self, index: int) -> torch.Tensor:
        """The ``(k, k)`` covariance of one filter of Matérn block ``index`` (its position in
        :attr:`blocks`), differentiable in the hyper-parameters."""
        if index not in self._matern:
            raise ValueError(f"block {index} is not a Matérn block")
        j = self._matern.index(index)
        distance = getattr(self, f"distance_{j}")
        unit = torch.exp(-distance / self.log_lengthscale[j].exp())
        unit = unit + self.jitter * torch.eye(len(distance), dtype=unit.dtype, device=unit.device)
        return self.log_variance[index].exp() * unit

    def _check(self, v: torch.Tensor) -> None:
        if not isinstance(v, torch.Tensor) or v.ndim != 2 or v.shape[1] != self.n_params:
            got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"expected weight vectors of shape (B, {self.n_params}), got {got}")

    def _apply(self, v: torch.Tensor, mode: str) -> torch.Tensor:
        """Blockwise ``Σ v`` (mode "cov"), ``L v`` ("sqrt", ``Σ = L Lᵀ``) or ``Σ⁻¹ v`` ("inv")."""
        self._check(v)
        out = []
        for i, (block, sl) in enumerate(zip(self.blocks, self._slices, strict=True)):
            part = v[:, sl]
            if block.kind == "matern":
                cov = self.block_cov(i)
                filters = part.reshape(len(part), -1, self._kernel[i])
                if mode == "cov":
                    filters = filters @ cov
                elif mode == "sqrt":
                    filters = filters @ torch.linalg.cholesky(cov).mT
                else:
                    chol = torch.linalg.cholesky(cov)
                    filters = torch.cholesky_solve(filters.mT, chol).mT
                out.append(filters.reshape(part.shape))
                continue
            variance = self.log_variance[i].exp()
            if block.kind == "gprior":
                variance = variance * self.scale[sl] ** 2
            power = {"cov": 1.0, "sqrt": 0.5, "inv": -1.0}[mode]
            out.append(part * variance**power)
        return torch.cat(out, dim=1)

    def cov_mv(self, v: torch.Tensor) -> torch.Tensor:
        r""":math:`\Sigma_\theta v` for weight vectors ``v`` ``(B, n_params)``, differentiable in
        the hyper-parameters."""
        return self._apply(v, "cov")

    def sqrt_mv(self, v: torch.Tensor) -> torch.Tensor:
        r""":math:`Lv` with :math:`\Sigma_\theta = LL^T` (blockwise Cholesky), ``(B, n_params)``."""
        return self._apply(v, "sqrt")

    def inv_mv(self, v: torch.Tensor) -> torch.Tensor:
        r""":math:`\Sigma_\theta^{-1} v` for ``v`` ``(B, n_params)``."""
        return self._apply(v, "inv")

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        r"""``n`` draws :math:`\theta \sim \mathcal N(0, \Sigma_\theta)`, ``(n, n_params)``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        noise = torch.randn(
            n,
            self.n_params,
            generator=generator,
            dtype=self.log_variance.dtype,
            device=self.log_variance.device,
        )
        return self.sqrt_mv(noise)

    def log_det(self) -> torch.Tensor:
        r""":math:`\log\det\Sigma_\theta`, differentiable in the hyper-parameters."""
        total = self.log_variance.new_zeros(())
        for i, (block, sl) in enumerate(zip(self.blocks, self._slices, strict=True)):
            n = sl.stop - sl.start
            if block.kind == "matern":
                total = total + (n // self._kernel[i]) * torch.logdet(self.block_cov(i))
            else:
                total = total + n * self.log_variance[i]
                if block.kind == "gprior":
                    total = total + 2 * self.scale[sl].log().sum()
        return total

    def dense(self) -> torch.Tensor:
        """:math:`\\Sigma_\\theta` as a dense ``(n_params, n_params)`` matrix (tiny problems)."""
        eye = torch.eye(self.n_params, dtype=self.log_variance.dtype, device=self.scale.device)
        return self.cov_mv(eye)

    def extra_repr(self) -> str:
        kinds = ", ".join(f"{b.name}: {b.kind}" for b in self.blocks)
        return f"n_params={self.n_params}, blocks=[{kinds}]"
