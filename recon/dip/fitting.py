r"""Fitting a deep image prior: the input, the loss and the Adam loop over per-image weights.

The deep image prior (Ulyanov et al. 2018) reconstructs an image as the output
:math:`x = f_\theta(z)` of a network fitted to the measurements of that one image. With TV as
in Baguer et al. (2020) and Antorán et al. (2022), Adam minimises, per image,

.. math:: L(\theta) = \frac1m\,\|A f_\theta(z) - y\|_2^2 + \gamma\,\mathrm{TV}(f_\theta(z)),

with :math:`m` the number of measurement values (the mean squared error, so :math:`\gamma` is on
the scale of the papers' values) and the anisotropic TV
:math:`\sum |(\nabla x)_{\text{pixel}}|_1` of :func:`recon.solvers.gradient2d` (forward
differences, Neumann boundary).

- :func:`dip_input` builds the fixed input :math:`z`: the FBP of ``y`` (default), the adjoint
  :math:`A^T y` scaled to fit ``y`` best, or seeded noise.
- :func:`dip_loss` is :math:`L` per image.
- :func:`fit_dip` runs Adam on a batch of images at once: every image has its own copy of the
  network's weights, stacked along a leading axis, and the network is evaluated on all of them
  with ``torch.func.vmap`` over ``torch.func.functional_call`` (or a loop over images). Adam
  and the per-image gradient clipping act elementwise and per image, so a batch gives the
  images' results one by one would give (to float rounding).

Example
-------
>>> import torch
>>> from operators import Parallel2D, RayTransform
>>> from models.dip_unet import DIPUNet
>>> op = RayTransform(Parallel2D((16, 16), n_angles=8), backend="matrix")
>>> y = op(torch.rand(2, 16, 16))
>>> z = dip_input(y, op, kind="fbp")
>>> result = fit_dip(DIPUNet(channels=4, scales=2), z, y, op, gamma=1e-4, n_iter=3, lr=1e-3,
...                  progress=False)
>>> result.x.shape, result.losses.shape
(torch.Size([2, 16, 16]), torch.Size([2, 4]))
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, vmap

from operators import FanBeam2D, OperatorLike, Parallel2D
from recon.base import check_measurements
from recon.checks import check_choice, check_int, check_n_iter, check_positive
from recon.classical.analytic import check_filter, fbp
from recon.solvers import DivergenceError
from recon.solvers.tv import gradient2d

__all__ = [
    "BATCH_MODES",
    "INPUTS",
    "KEEP",
    "DIPResult",
    "dip_input",
    "dip_loss",
    "eval_mode",
    "fit_dip",
    "initial_weights",
    "load_weights",
]

#: Inputs :math:`z` of the network (see :func:`dip_input`).
INPUTS: tuple[str, ...] = ("fbp", "adjoint", "noise")
#: Which iterate :func:`fit_dip` returns: the one of lowest loss, or the last.
KEEP: tuple[str, ...] = ("best", "last")
#: How :func:`fit_dip` evaluates the per-image networks of a batch.
BATCH_MODES: tuple[str, ...] = ("vmap", "loop")

Callback = Callable[[int, torch.Tensor], None]


@dataclass
class DIPResult:
    """What :func:`fit_dip` returns, for a batch of ``N`` images.

    Attributes
    ----------
    x : torch.Tensor
        The reconstructions ``(N, H, W)``: the outputs of the iterate kept.
    loss : torch.Tensor
        ``(N,)``: the loss of that iterate.
    iteration : torch.Tensor
        ``(N,)`` (int64): which iterate was kept, 0 the initial network and ``n_iter`` the one
        after the last Adam step.
    losses : torch.Tensor
        ``(N, n_iter + 1)``: the loss of every iterate.
    params : dict of str to torch.Tensor
        The kept iterate's weights, each of shape ``(N, *shape)`` (image ``i``'s network is
        :func:`load_weights` ``(network, params, i)``).
    net_input : torch.Tensor
        The network's input ``z`` ``(N, 1, H, W)``.
    """

    x: torch.Tensor
    loss: torch.Tensor
    iteration: torch.Tensor
    losses: torch.Tensor
    params: dict[str, torch.Tensor]
    net_input: torch.Tensor


@contextlib.contextmanager
def eval_mode(network: nn.Module) -> Iterator[nn.Module]:
    """Put ``network`` in eval mode for the block and restore its mode after it.

    The deep image prior runs its network in eval mode: dropout is off and batch normalisation
    is a fixed affine map (its running statistics are not updated), so each image is a problem
    of its own.

    Example
    -------
    >>> net = nn.Dropout()
    >>> with eval_mode(net):
    ...     net.training
    False
    >>> net.training
    True
    """
    modes = {module: module.training for module in network.modules()}
    network.eval()
    try:
        yield network
    finally:
        for module, mode in modes.items():
            module.train(mode)


def initial_weights(network: nn.Module, *, seed: int) -> None:
    """Draw ``network``'s weights afresh from ``seed``, in place (``reset_parameters`` of every
    submodule that has it, under a forked RNG: the global random state is left alone).

    Example
    -------
    >>> a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    >>> initial_weights(a, seed=1); initial_weights(b, seed=1)
    >>> torch.equal(a.weight, b.weight)
    True
    """
    seed = check_int("seed", seed, minimum=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in network.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()


def load_weights(network: nn.Module, params: dict[str, torch.Tensor], index: int) -> nn.Module:
    """A copy of ``network`` holding image ``index``'s weights of the stacked ``params`` (as
    :attr:`DIPResult.params`), in eval mode.

    Example
    -------
    >>> net = nn.Linear(2, 1)
    >>> stacked = {k: torch.stack([v, 2 * v]).detach() for k, v in net.named_parameters()}
    >>> torch.equal(load_weights(net, stacked, 1).weight, 2 * net.weight)
    True
    """
    out = copy.deepcopy(network)
    own = dict(out.named_parameters())
    if set(own) != set(params):
        raise ValueError(
            f"params do not fit {type(network).__name__}: they name {sorted(params)[:4]}..., the "
            f"network has {sorted(own)[:4]}..."
        )
    with torch.no_grad():
        for name, p in own.items():
            p.copy_(params[name][index])
    return out.eval()


def _fbp_geometry(op: OperatorLike) -> bool:
    return isinstance(getattr(op, "geometry", None), (Parallel2D, FanBeam2D))


def dip_input(
    y: torch.Tensor,
    op: OperatorLike,
    *,
    kind: str = "fbp",
    noise_std: float = 0.1,
    seed: int = 0,
    fbp_filter: str = "hann",
    fbp_frequency_scaling: float = 1.0,
) -> torch.Tensor:
    r"""The network input :math:`z` of a deep image prior, ``(N, 1, H, W)`` for ``y`` of shape
    ``(N, *op.range_shape)``.

    - ``"fbp"``: the filtered backprojection (:func:`recon.classical.fbp`) of each sinogram
      with ``fbp_filter`` and ``fbp_frequency_scaling``, for a 2D parallel or fan-beam
      :class:`~operators.RayTransform`; any other operator gets ``"adjoint"`` instead.
    - ``"adjoint"``: :math:`s\,A^T y` with :math:`s = \langle AA^Ty, y\rangle / \|AA^Ty\|^2`
      per image, the multiple of the backprojection that fits ``y`` best.
    - ``"noise"``: ``noise_std`` times standard normal noise drawn from ``seed``, the same
      image for every element of the batch (so a batch gives what its images give alone).

    Raises ``ValueError`` for an unknown ``kind``, a domain that is not 2D or bad numbers.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> op = IdentityOperator((4, 4))
    >>> z = dip_input(3 * torch.ones(2, 4, 4), op, kind="adjoint")
    >>> torch.equal(z, 3 * torch.ones(2, 1, 4, 4))
    True
    >>> dip_input(torch.ones(2, 4, 4), op, kind="noise", seed=1).std() > 0
    tensor(True)
    """
    kind = check_choice("input", kind, INPUTS)
    domain_shape = tuple(op.domain_shape)
    if len(domain_shape) != 2:
        raise ValueError(
            f"the deep image prior reconstructs 2D images; op.domain_shape is {domain_shape}"
        )
    check_measurements(y, op)
    y = y.reshape(-1, *op.range_shape)
    n = y.shape[0]
    if kind == "noise":
        noise_std = check_positive("noise_std", noise_std)
        generator = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
        z = noise_std * torch.randn(1, 1, *domain_shape, generator=generator, dtype=y.dtype)
        return z.to(y.device).expand(n, 1, *domain_shape).clone()
    if kind == "fbp" and _fbp_geometry(op):
        fbp_filter, fbp_frequency_scaling = check_filter(fbp_filter, fbp_frequency_scaling)
        z = fbp(y, op, filter=fbp_filter, frequency_scaling=fbp_frequency_scaling)
        return z.reshape(n, 1, *domain_shape)
    back = op.T(y)
    forward = op(back)
    dims = tuple(range(1, forward.ndim))
    num = (forward * y).sum(dim=dims)
    den = forward.square().sum(dim=dims)
    scale = torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), 0.0)
    return (scale.reshape(n, 1, 1) * back).reshape(n, 1, *domain_shape)


def dip_loss(x: torch.Tensor, y: torch.Tensor, op: OperatorLike, *, gamma: float) -> torch.Tensor:
    r"""The loss :math:`\frac1m\|Ax - y\|^2 + \gamma\,\mathrm{TV}(x)` per image: ``x`` of shape
    ``(N, H, W)``, ``y`` of shape ``(N, *op.range_shape)``, the result ``(N,)``.

    The TV is anisotropic, :math:`\sum_{\text{pixels}} |(\nabla x)_1| + |(\nabla x)_2|`, with the
    forward differences of :func:`recon.solvers.gradient2d`.

    Example
    -------
    >>> from operators import IdentityOperator
    >>> x = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])  # two jumps of height 1
    >>> dip_loss(x, torch.zeros(1, 2, 2), IdentityOperator((2, 2)), gamma=0.5)
    tensor([1.5000])
    """
    residual = op(x) - y
    data = residual.square().flatten(1).mean(dim=1)
    if gamma == 0:
        return data
    tv = gradient2d(x).abs().flatten(1).sum(dim=1)
    return data + gamma * tv


def _check_network(network: object) -> nn.Module:
    if not isinstance(network, nn.Module):
        raise ValueError(f"network must be a torch.nn.Module, got {type(network).__name__}")
    if not any(True for _ in network.parameters()):
        raise ValueError(f"network {type(network).__name__} has no parameters to fit")
    return network


def _expand(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``v`` of shape ``(N,)`` viewed to broadcast against ``like`` ``(N, ...)``."""
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def fit_dip(
    network: nn.Module,
    net_input: torch.Tensor,
    y: torch.Tensor,
    op: OperatorLike,
    *,
    gamma: float,
    n_iter: int,
    lr: float,
    clip_norm: float | None = 1.0,
    keep: str = "best",
    batch_mode: str = "vmap",
    callback: Callback | None = None,
    progress: bool = True,
) -> DIPResult:
    r"""Fit a deep image prior to every image of a batch, each with its own weights.

    Every image starts from ``network``'s weights (which are left unchanged) and takes
    ``n_iter`` Adam steps (learning rate ``lr``) on :func:`dip_loss`; before each step the
    gradient of each image's weights is clipped to norm ``clip_norm`` (as
    ``torch.nn.utils.clip_grad_norm_`` would for that image alone). The network runs in eval mode
    (:func:`eval_mode`). The iterates are counted 0 (the initial weights) to ``n_iter``.

    Parameters
    ----------
    network : torch.nn.Module
        Maps ``(B, 1, H, W)`` to ``(B, 1, H, W)``; its weights are the starting point (a fresh
        network for the classical DIP, a pretrained one for the warm start).
    net_input : torch.Tensor
        The input ``z`` ``(N, 1, H, W)`` (:func:`dip_input`).
    y : torch.Tensor
        Measurements ``(N, *op.range_shape)``.
    op : LinearOperator
        The forward operator, 2D domain.
    gamma : float
        TV weight :math:`\gamma \ge 0`.
    n_iter : int
        Adam steps, ``>= 1``.
    lr : float
        Adam's learning rate.
    clip_norm : float or None
        Per-image gradient norm bound; ``None`` does not clip.
    keep : {"best", "last"}
        Return the iterate of lowest loss (per image), or the last one.
    batch_mode : {"vmap", "loop"}
        Evaluate the batch's networks with ``torch.func.vmap`` (one call on stacked weights) or
        one by one; both give the same result.
    callback : callable, optional
        ``callback(k, x)`` with iterate ``k``'s output ``x`` ``(N, H, W)`` (detached), for
        ``k = 0, …, n_iter``.
    progress : bool
        Show a tqdm progress bar with the mean loss.

    Returns
    -------
    DIPResult

    Raises
    ------
    ValueError
        For bad arguments (the message names the one to change).
    recon.solvers.DivergenceError
        If the loss becomes NaN or infinite (lower ``lr``).
    """
    network = _check_network(network)
    gamma = check_positive("gamma", gamma, allow_zero=True)
    n_iter = check_n_iter(n_iter)
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1 (Adam steps per image), got {n_iter}")
    lr = check_positive("lr", lr)
    clip_norm = None if clip_norm is None else check_positive("clip_norm", clip_norm)
    keep = check_choice("keep", keep, KEEP)
    batch_mode = check_choice("batch_mode", batch_mode, BATCH_MODES)
    domain_shape = tuple(op.domain_shape)
    check_measurements(y, op)
    n = y.shape[0]
    if y.ndim != 1 + len(tuple(op.range_shape)) or net_input.shape != (n, 1, *domain_shape):
        raise ValueError(
            f"fit_dip needs y of shape (N, *op.range_shape) and net_input of shape "
            f"(N, 1, *op.domain_shape) = {(n, 1, *domain_shape)}; got {tuple(y.shape)} and "
            f"{tuple(net_input.shape)}"
        )
    from tqdm.auto import tqdm

    net_input = net_input.detach()
    y = y.detach()
    with eval_mode(network), torch.enable_grad():
        buffers = {k: v.detach() for k, v in network.named_buffers()}
        params = {
            k: v.detach().unsqueeze(0).repeat(n, *([1] * v.ndim)).requires_grad_(True)
            for k, v in network.named_parameters()
        }

        def one(weights: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
            return functional_call(network, (weights, buffers), (z.unsqueeze(0),)).squeeze(0)

        batched = vmap(one, in_dims=(0, 0))

        def evaluate(weights: dict[str, torch.Tensor]) -> torch.Tensor:
            if batch_mode == "vmap":
                out = batched(weights, net_input)
            else:
                out = torch.stack(
                    [one({k: v[i] for k, v in weights.items()}, net_input[i]) for i in range(n)]
                )
            if out.shape != (n, 1, *domain_shape):
                raise ValueError(
                    f"network must map (B, 1, H, W) to (B, 1, H, W); it gave {tuple(out.shape)} "
                    f"for input {(1, 1, *domain_shape)}"
                )
            return out[:, 0]

        optimizer = torch.optim.Adam(list(params.values()), lr=lr)
        losses = torch.empty(n, n_iter + 1, dtype=y.dtype, device=y.device)
        best_loss = torch.full((n,), math.inf, dtype=y.dtype, device=y.device)
        best_iteration = torch.zeros(n, dtype=torch.long, device=y.device)
        best_x = torch.zeros(n, *domain_shape, dtype=y.dtype, device=y.device)
        best_params = {k: v.detach().clone() for k, v in params.items()}

        def record(k: int, x: torch.Tensor, loss: torch.Tensor) -> None:
            nonlocal best_loss, best_iteration, best_x
            if not bool(torch.isfinite(loss).all()):
                raise DivergenceError(
                    f"the deep image prior diverged at iterate {k}: the loss is NaN or infinite; "
                    f"lower lr (now {lr:g}) or set clip_norm"
                )
            losses[:, k] = loss
            if keep == "best" or k == n_iter:
                better = loss < best_loss if keep == "best" else torch.ones_like(loss, dtype=bool)
                best_loss = torch.where(better, loss, best_loss)
                best_iteration = torch.where(better, k, best_iteration)
                best_x = torch.where(_expand(better, x), x, best_x)
                for name, value in params.items():
                    best = best_params[name]
                    best_params[name] = torch.where(_expand(better, best), value.detach(), best)
            if callback is not None:
                callback(k, x)

        bar = tqdm(
            total=n_iter, desc=f"DIP ({n} image{'s' * (n > 1)})", disable=not progress, leave=False
        )
        try:
            for k in range(n_iter):
                optimizer.zero_grad(set_to_none=True)
                x = evaluate(params)
                loss = dip_loss(x, y, op, gamma=gamma)
                loss.sum().backward()
                with torch.no_grad():
                    record(k, x.detach(), loss.detach())
                    if clip_norm is not None:
                        _clip_per_image(list(params.values()), clip_norm)
                optimizer.step()
                bar.update()
                if progress and (k % 10 == 0 or k == n_iter - 1):
                    bar.set_postfix(loss=f"{float(loss.detach().mean()):.4g}", refresh=False)
            with torch.no_grad():
                x = evaluate(params)
                record(n_iter, x, dip_loss(x, y, op, gamma=gamma))
        finally:
            bar.close()
    return DIPResult(
        x=best_x,
        loss=best_loss,
        iteration=best_iteration,
        losses=losses,
        params=best_params,
        net_input=net_input,
    )


def _clip_per_image(params: list[torch.Tensor], max_norm: float) -> None:
    """Scale each image's gradients (leading axis) to a norm of at most ``max_norm``."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    norms = torch.sqrt(sum(g.flatten(1).square().sum(dim=1) for g in grads))
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(_expand(scale, g))
