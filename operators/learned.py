r"""Learned approximate models :math:`A_q = F_q \circ \tilde A \circ H_f` and their training losses.

A fast but inaccurate linear model :math:`\tilde A` (the Fourier-regridding photoacoustic model,
a coarse ray transform, ...) is corrected by an image-space network :math:`H_f` before it and a
data-space network :math:`F_q` after it (Lunz, Hauptmann, Tarvainen, Schönlieb & Arridge 2021,
"On learned operator correction in inverse problems"). :math:`A_q` is non-linear, so it has no
adjoint in the linear sense; the chain :math:`H_f^* \tilde A^* F_q^*` is available two ways:

- **linearised**: :math:`J(x)^\top r`, the vector-Jacobian product of :math:`A_q` at a point
  :math:`x` (:meth:`LearnedOperator.adjoint` with ``at=x``). Exact for the model as trained; the
  gradient of :math:`\tfrac12\|A_q x - y\|^2` is :math:`J(x)^\top (A_q x - y)`.
- **learned**: :math:`A_q^* = G_f \circ \tilde A^\top \circ G_q` with separate networks
  :math:`G_q` (data space) and :math:`G_f` (image space) trained for forward-adjoint consistency
  (:func:`adjoint_loss`). It does not depend on a point, so ``A_q.T(r)`` works and unrolled
  reconstructors that compute ``op.T(op(x) - y)`` run unchanged on :math:`A_q`.

The networks act on one-channel tensors ``(N, 1, *space)``: ``image_net`` and
``adjoint_image_net`` on images (``space = approx.domain_shape``), ``data_net`` and
``adjoint_data_net`` on data (``space = approx.range_shape``). Any shape-preserving
:class:`torch.nn.Module` works; configs use :class:`models.unet.UNet` with ``residual=True`` and
``norm=None`` (no batch statistics, so training and evaluation modes compute the same map), and
``zero_init=True`` so that the untrained :math:`A_q` is exactly :math:`\tilde A`.

Training losses (batch means of per-sample relative squared errors, as in Lunz et al.):

- :func:`forward_loss`: :math:`\frac1B\sum_i \|A_q x_i - A x_i\|^2 / \|A x_i\|^2`.
- :func:`adjoint_loss`: :math:`\frac1B\sum_i \|A_q^* r_i - A^\top r_i\|^2 / \|A^\top r_i\|^2`.
- :func:`relative_error`: per-sample :math:`\|e_i - r_i\| / \|r_i\|`, for reports.

Example
-------
>>> import torch
>>> from operators import LearnedOperator, MatrixOperator
>>> from models.unet import UNet
>>> approx = MatrixOperator(torch.randn(48, 64), domain_shape=(8, 8), range_shape=(6, 8))
>>> def net():
...     return UNet(channels=4, depth=1, residual=True, norm=None)
>>> A_q = LearnedOperator(approx, image_net=net(), data_net=net(), zero_init=True)
>>> x = torch.randn(2, 8, 8)
>>> torch.equal(A_q(x), approx(x))  # zero-initialised residual nets: exactly Ã
True
>>> A_q.adjoint(A_q(x), at=x).shape  # linearised adjoint J(x)ᵀ r
torch.Size([2, 8, 8])
>>> forward_loss(A_q, x, 2.0 * approx(x)).item()  # ‖Ãx − 2Ãx‖² / ‖2Ãx‖²
0.25
"""

from __future__ import annotations

import math

import torch
from torch import nn

from operators.base import LinearOperator, Shape

__all__ = [
    "ADJOINTS",
    "LearnedAdjoint",
    "LearnedOperator",
    "adjoint_loss",
    "forward_loss",
    "relative_error",
]

#: Adjoint modes of :class:`LearnedOperator`.
ADJOINTS: tuple[str, ...] = ("linearised", "learned")

_CONVS = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)

_NET_NAMES = ("image_net", "data_net", "adjoint_image_net", "adjoint_data_net")


def _last_conv(net: nn.Module, name: str) -> nn.Module:
    """The net's final convolution: its ``out_conv`` if it has one, else the last conv module."""
    last = getattr(net, "out_conv", None)
    if isinstance(last, _CONVS):
        return last
    convs = [m for m in net.modules() if isinstance(m, _CONVS)]
    if not convs:
        raise ValueError(f"zero_init: {name} ({type(net).__name__}) has no convolution to zero")
    return convs[-1]


def _zero_init(net: nn.Module, name: str, shape: Shape) -> None:
    """Zero the final convolution of ``net`` and check that ``net`` is then the identity."""
    last = _last_conv(net, name)
    with torch.no_grad():
        last.weight.zero_()
        if last.bias is not None:
            last.bias.zero_()
    param = last.weight
    gen = torch.Generator().manual_seed(0)
    probe = torch.randn((1, 1, *shape), generator=gen, dtype=param.dtype).to(param.device)
    was_training = net.training
    net.eval()  # no batch-statistics updates from the probe
    try:
        with torch.no_grad():
            out = net(probe)
    finally:
        net.train(was_training)
    if out.shape != probe.shape or not torch.equal(out, probe):
        raise ValueError(
            f"zero_init: {name} ({type(net).__name__}) is not the identity after zeroing its last "
            f"convolution; zero_init needs residual nets x + N(x) whose N ends in that "
            f"convolution, e.g. models.unet.UNet(residual=True)"
        )


class LearnedOperator(nn.Module):
    r"""The corrected model :math:`A_q = F_q \circ \tilde A \circ H_f` with two kinds of adjoint.

    Acts like a :class:`~operators.base.LinearOperator` on shapes: ``A_q(x)`` takes ``x`` of shape
    ``(*batch, *domain_shape)`` and returns ``(*batch, *range_shape)``; the networks see the flat
    batch with one channel, ``(N, 1, *space)``. An absent network is the identity, so without
    networks :math:`A_q = \tilde A` exactly (and ``A_q.T`` is ``approx.T``).

    Parameters
    ----------
    approx : LinearOperator
        The approximate model :math:`\tilde A` (registered as a submodule: ``.to(device)``
        moves it).
    image_net : torch.nn.Module, optional
        :math:`H_f`, applied to images before ``approx``.
    data_net : torch.nn.Module, optional
        :math:`F_q`, applied to data after ``approx``.
    adjoint : {"linearised", "learned"}
        What ``A_q.T`` and ``A_q.adjoint(r)`` mean. ``"linearised"``: the vector-Jacobian
        product at a point, so ``adjoint`` needs ``at=`` and ``A_q.T`` raises (it has no fixed
        adjoint). ``"learned"``: :math:`G_f \circ \tilde A^\top \circ G_q`, available as ``A_q.T``.
    adjoint_image_net, adjoint_data_net : torch.nn.Module, optional
        :math:`G_f` (image space, applied last) and :math:`G_q` (data space, applied first) of
        the learned adjoint. Only with ``adjoint="learned"``.
    zero_init : bool
        Zero the final convolution of every network (its ``out_conv`` if it has one, else its last
        ``nn.Conv*`` module), so that residual networks start as the identity and the untrained
        :math:`A_q` equals :math:`\tilde A`. Checked: a network that is not then the identity
        raises ``ValueError``.

    Attributes
    ----------
    domain_shape, range_shape, dtypes
        Those of ``approx``.
    adjoint_mode : str
        The ``adjoint`` argument.

    Raises
    ------
    TypeError
        If ``approx`` is not a ``LinearOperator`` or a network is not an ``nn.Module``.
    ValueError
        For an unknown ``adjoint`` mode, adjoint networks with ``adjoint="linearised"``, or
        a network that ``zero_init`` cannot make the identity.

    Notes
    -----
    The networks must treat the samples of a batch independently for :meth:`gradient` and the
    per-sample adjoints to be right: use ``norm=None`` or ``"instance"``, not batch norm in
    training mode. For float64 use, convert the whole model (``A_q.double()``).

    To use a trained model inside a reconstructor, load its ``state_dict`` into an
    identically built ``LearnedOperator`` and call :meth:`freeze`.

    Example
    -------
    >>> import torch
    >>> from operators import MatrixOperator
    >>> from models.unet import UNet
    >>> approx = MatrixOperator(torch.randn(48, 64), domain_shape=(8, 8), range_shape=(6, 8))
    >>> def net():
    ...     return UNet(channels=4, depth=1, residual=True, norm=None)
    >>> A_q = LearnedOperator(approx, data_net=net(), adjoint="learned",
    ...                       adjoint_data_net=net(), zero_init=True)
    >>> y = torch.randn(3, 6, 8)
    >>> torch.equal(A_q.T(y), approx.T(y))
    True
    >>> A_q.T.T is A_q
    True
    """

    def __init__(
        self,
        approx: LinearOperator,
        *,
        image_net: nn.Module | None = None,
        data_net: nn.Module | None = None,
        adjoint: str = "linearised",
        adjoint_image_net: nn.Module | None = None,
        adjoint_data_net: nn.Module | None = None,
        zero_init: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(approx, LinearOperator):
            raise TypeError(
                f"approx must be an operators.LinearOperator, got {type(approx).__name__}"
            )
        if adjoint not in ADJOINTS:
            raise ValueError(f"unknown adjoint {adjoint!r}; choose one of {', '.join(ADJOINTS)}")
        if not isinstance(zero_init, bool):
            raise ValueError(f"zero_init must be a bool, got {zero_init!r}")
        nets = {
            "image_net": image_net,
            "data_net": data_net,
            "adjoint_image_net": adjoint_image_net,
            "adjoint_data_net": adjoint_data_net,
        }
        for name, net in nets.items():
            if net is not None and not isinstance(net, nn.Module):
                raise TypeError(
                    f"{name} must be a torch.nn.Module or None, got {type(net).__name__}"
                )
        if adjoint == "linearised" and (
            adjoint_image_net is not None or adjoint_data_net is not None
        ):
            raise ValueError(
                "adjoint_image_net/adjoint_data_net are only used with adjoint='learned'; "
                "with adjoint='linearised' the adjoint is the vector-Jacobian product of the "
                "forward networks"
            )
        self.approx = approx
        self.domain_shape: Shape = approx.domain_shape
        self.range_shape: Shape = approx.range_shape
        self.dtypes: tuple[torch.dtype, ...] = tuple(approx.dtypes)
        self.adjoint_mode = adjoint
        self.zero_init = zero_init
        spaces = {
            "image_net": self.domain_shape,
            "data_net": self.range_shape,
            "adjoint_image_net": self.domain_shape,
            "adjoint_data_net": self.range_shape,
        }
        for name, net in nets.items():
            self.register_module(name, net)  # None is allowed and keeps the attribute
            if zero_init and net is not None:
                _zero_init(net, name, spaces[name])

    # ----------------------------------------------------------------- helpers
    @property
    def has_nets(self) -> bool:
        """Whether any network is present (without one, ``A_q`` is ``approx`` exactly)."""
        return any(getattr(self, name) is not None for name in _NET_NAMES)

    def _check(self, x: torch.Tensor, shape: Shape, space: str, name: str) -> Shape:
        """Validate ``x`` of shape ``(*batch, *shape)`` and a supported dtype; return ``batch``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"LearnedOperator: {name} must be a torch.Tensor, got {type(x).__name__}"
            )
        if x.dtype not in self.dtypes:
            raise TypeError(
                f"LearnedOperator: {name} has unsupported dtype {x.dtype}; "
                f"supported: {', '.join(str(d) for d in self.dtypes)}"
            )
        n = len(shape)
        if x.ndim < n or tuple(x.shape[x.ndim - n :]) != shape:
            raise ValueError(
                f"LearnedOperator: expected {name} of shape (*batch, {', '.join(map(str, shape))}) "
                f"(trailing {space} shape {shape}), got {tuple(x.shape)}"
            )
        return tuple(x.shape[: x.ndim - n])

    def _check_pair(
        self, point: torch.Tensor, point_name: str, other: torch.Tensor, space: str, name: str
    ) -> Shape:
        """Validate a point of the domain and a tensor of ``space`` with the same batch."""
        batch = self._check(point, self.domain_shape, "domain", point_name)
        shape = self.domain_shape if space == "domain" else self.range_shape
        if self._check(other, shape, space, name) != batch:
            raise ValueError(
                f"LearnedOperator: {name} must have the shape of {point_name}'s batch: {name} of "
                f"shape {tuple(other.shape)} does not match the point {point_name} of shape "
                f"{tuple(point.shape)}; expected {name} of shape {(*batch, *shape)}"
            )
        return batch

    def _net(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """Apply network ``name`` to a flat batch ``(N, *space)`` through one channel."""
        net = getattr(self, name)
        if net is None:
            return t
        param = next(net.parameters(), None)
        expected = getattr(net, "io_dtype", None) or (param.dtype if param is not None else None)
        if expected is not None and expected != t.dtype:
            raise TypeError(
                f"LearnedOperator: {name} has {expected} parameters but the input is "
                f"{t.dtype}; convert the model, e.g. A_q.to({t.dtype})"
            )
        inp = t.unsqueeze(1)
        out = net(inp)
        if out.shape != inp.shape:
            raise ValueError(
                f"LearnedOperator: {name} must keep the shape (N, 1, *space), "
                f"got {tuple(inp.shape)} -> {tuple(out.shape)}"
            )
        return out.squeeze(1)

    @staticmethod
    def _point(x: torch.Tensor) -> torch.Tensor:
        """``x`` itself when it is in a graph, else a detached leaf that requires grad."""
        return x if x.requires_grad else x.detach().requires_grad_(True)

    # ----------------------------------------------------------------- forward model
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``F_q(Ã(H_f(x)))`` for ``x`` of shape ``(*batch, *domain_shape)``."""
        batch = self._check(x, self.domain_shape, "domain", "x")
        h = self._net("image_net", x.reshape((-1, *self.domain_shape)))
        h = self._net("data_net", self.approx(h))
        return h.reshape((*batch, *self.range_shape))

    def jvp(self, x: torch.Tensor, v: torch.Tensor, *, create_graph: bool = False) -> torch.Tensor:
        """Jacobian-vector product :math:`J(x) v` of ``A_q`` at ``x``.

        Computed by the double-vector-Jacobian trick (differentiating :math:`J(x)^\\top u` in
        ``u``), which works with every backend of ``approx``, including those without
        forward-mode autodiff.

        Parameters
        ----------
        x, v : torch.Tensor
            Point and direction, both of shape ``(*batch, *domain_shape)``.
        create_graph : bool
            Keep the result differentiable (w.r.t. parameters, ``x`` and ``v``).

        Returns
        -------
        torch.Tensor
            Shape ``(*batch, *range_shape)``.
        """
        self._check_pair(x, "x", v, "domain", "v")
        with torch.enable_grad():
            point = self._point(x)
            out = self(point)
            u = torch.zeros_like(out, requires_grad=True)
            (jtu,) = torch.autograd.grad(out, point, grad_outputs=u, create_graph=True)
            if not jtu.requires_grad:  # the Jacobian is zero
                return torch.zeros_like(out)
            (jv,) = torch.autograd.grad(
                jtu, u, grad_outputs=v, create_graph=create_graph, allow_unused=True
            )
        return torch.zeros_like(out) if jv is None else jv

    # ----------------------------------------------------------------- adjoints
    def linearised_adjoint(
        self, r: torch.Tensor, *, at: torch.Tensor, create_graph: bool = False
    ) -> torch.Tensor:
        """Vector-Jacobian product :math:`J(x)^\\top r` of ``A_q`` at ``x = at``.

        Parameters
        ----------
        r : torch.Tensor
            Shape ``(*batch, *range_shape)``.
        at : torch.Tensor
            The point ``x``, shape ``(*batch, *domain_shape)`` (same ``batch``).
        create_graph : bool
            Keep the result differentiable w.r.t. the parameters, ``at`` and ``r`` (needed to
            train through it, as :func:`adjoint_loss` does). Otherwise it is detached.

        Returns
        -------
        torch.Tensor
            Shape ``(*batch, *domain_shape)``.
        """
        self._check_pair(at, "at", r, "range", "r")
        with torch.enable_grad():
            point = self._point(at)
            (g,) = torch.autograd.grad(
                self(point), point, grad_outputs=r, create_graph=create_graph
            )
        return g

    def learned_adjoint(self, r: torch.Tensor) -> torch.Tensor:
        """:math:`G_f(\\tilde A^\\top(G_q(r)))` for ``r`` of shape ``(*batch, *range_shape)``.

        Absent adjoint networks are the identity (so with none it is ``approx.T(r)``).
        """
        batch = self._check(r, self.range_shape, "range", "r")
        h = self._net("adjoint_data_net", r.reshape((-1, *self.range_shape)))
        h = self._net("adjoint_image_net", self.approx.T(h))
        return h.reshape((*batch, *self.domain_shape))

    def adjoint(
        self,
        r: torch.Tensor,
        *,
        at: torch.Tensor | None = None,
        create_graph: bool = False,
    ) -> torch.Tensor:
        """The adjoint chain :math:`H_f^* \\tilde A^* F_q^*` applied to ``r``.

        With ``at`` given: the linearised adjoint :meth:`linearised_adjoint` at ``at`` (in either
        mode). Without: the learned adjoint :meth:`learned_adjoint` when ``adjoint="learned"``;
        with ``adjoint="linearised"`` a ``ValueError``, as the adjoint depends on the point.
        ``create_graph`` only concerns the linearised adjoint (the learned one is a plain forward
        pass and stays in the graph when gradients are enabled).

        Example
        -------
        >>> import torch
        >>> from operators import MatrixOperator
        >>> A_q = LearnedOperator(MatrixOperator(torch.eye(3)), adjoint="learned")
        >>> A_q.adjoint(torch.ones(3))
        tensor([1., 1., 1.])
        """
        if at is not None:
            return self.linearised_adjoint(r, at=at, create_graph=create_graph)
        if self.adjoint_mode == "learned":
            return self.learned_adjoint(r)
        raise ValueError(
            "LearnedOperator(adjoint='linearised'): the adjoint J(x)ᵀ depends on the point x; "
            "call adjoint(r, at=x), or build the operator with adjoint='learned'"
        )

    @property
    def T(self) -> LinearOperator | LearnedAdjoint:  # noqa: N802 - the mathematical name
        """The adjoint as an operator-like callable, for code that computes ``op.T(r)``.

        ``approx.T`` when there are no networks; a :class:`LearnedAdjoint` with
        ``adjoint="learned"``. With ``adjoint="linearised"`` and networks there is no fixed
        adjoint: raises ``ValueError`` (use ``adjoint(r, at=x)`` or ``gradient(x, y)``).
        """
        if not self.has_nets:
            return self.approx.T
        if self.adjoint_mode == "learned":
            return LearnedAdjoint(self)
        raise ValueError(
            "LearnedOperator(adjoint='linearised') has no fixed adjoint operator .T: its adjoint "
            "J(x)ᵀ depends on the point x. Use op.adjoint(r, at=x) or op.gradient(x, y), or build "
            "it with adjoint='learned'"
        )

    def gradient(
        self, x: torch.Tensor, y: torch.Tensor, *, create_graph: bool = False
    ) -> torch.Tensor:
        """Gradient in ``x`` of the data term :math:`\\tfrac12\\|A_q x - y\\|^2`, per sample.

        Linearised mode: :math:`J(x)^\\top (A_q x - y)`, the exact gradient (detached unless
        ``create_graph``). Learned mode: :math:`A_q^*(A_q x - y)` with the learned adjoint.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(*batch, *domain_shape)``.
        y : torch.Tensor
            Shape ``(*batch, *range_shape)``.
        create_graph : bool
            Linearised mode: keep the result differentiable (to train through it).
        """
        self._check_pair(x, "x", y, "range", "y")
        if self.adjoint_mode == "learned":
            return self.learned_adjoint(self(x) - y)
        with torch.enable_grad():
            point = self._point(x)
            loss = 0.5 * torch.sum((self(point) - y) ** 2)
            (g,) = torch.autograd.grad(loss, point, create_graph=create_graph)
        return g

    # ----------------------------------------------------------------- utilities
    def norm(
        self,
        *,
        n_iter: int = 100,
        rtol: float = 1e-6,
        seed: int = 0,
        device: torch.device | str | None = None,
        recompute: bool = False,
    ) -> float:
        """``‖Ã‖₂`` of the approximate model (cached there), used to scale step sizes.

        ``A_q`` is non-linear; with near-identity corrections its Lipschitz constant is close to
        this. Arguments as :meth:`operators.base.LinearOperator.norm`.
        """
        return self.approx.norm(
            n_iter=n_iter, rtol=rtol, seed=seed, device=device, recompute=recompute
        )

    def freeze(self) -> LearnedOperator:
        """Stop training the networks: ``requires_grad=False`` on all parameters and ``eval()``.

        Gradients still flow through ``A_q`` to its input (the linearised adjoint works). A
        later ``.train()`` on a parent module switches the mode back (no effect on networks
        without batch norm or dropout); ``requires_grad`` stays off. Returns ``self``.
        """
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def compute_in(self, dtype: torch.dtype) -> LearnedOperator:
        """Run the correction networks' convolutions in ``dtype`` (e.g. ``torch.bfloat16``) for
        inference; inputs, outputs and ``Ã`` keep their dtype. Returns ``self``, frozen.

        Each network must offer ``compute_in`` (:class:`models.dilated.DilatedCNN` does). On
        a CPU with AVX512-BF16 the networks run about 2× faster in bfloat16; the operator changes
        by the rounding of the corrections (relative ~1e-3, far below a trained model error of
        ~0.1); check the reconstruction quality once (``python -m benchmarks.correction
        --bf16``), in particular with the linearised adjoint: it differentiates through the
        rounded networks, whose Jacobian is further from float32's than their values (random
        nets: 0.4 % in the values, 7.5 % in the Jacobian; the trained 64² PAT ``A_q``: 1.7 %
        in the gradient of ``½‖A_q x − y‖²``, and TV's PSNR unchanged to 0.01 dB).

        >>> from operators import IdentityOperator
        >>> from models.dilated import DilatedCNN
        >>> A_q = LearnedOperator(IdentityOperator((8, 8)), image_net=DilatedCNN(channels=4))
        >>> A_q.compute_in(torch.bfloat16)(torch.rand(2, 8, 8)).dtype
        torch.float32
        """
        nets = {name: getattr(self, name, None) for name in _NET_NAMES}
        nets = {name: net for name, net in nets.items() if net is not None}
        for name, net in nets.items():  # check all first: no half-converted operator
            if not callable(getattr(net, "compute_in", None)):
                raise TypeError(
                    f"LearnedOperator.compute_in: {name} ({type(net).__name__}) has no "
                    "compute_in(dtype); only networks that keep their input dtype support it"
                )
        for net in nets.values():
            net.compute_in(dtype)
        return self.freeze()

    def extra_repr(self) -> str:
        return (
            f"adjoint={self.adjoint_mode!r}, domain_shape={self.domain_shape}, "
            f"range_shape={self.range_shape}"
        )


class LearnedAdjoint:
    """The learned adjoint :math:`G_f \\circ \\tilde A^\\top \\circ G_q` of a
    :class:`LearnedOperator`, as ``A_q.T`` returns it.

    A light view (not a module: the parameters stay in ``A_q``), shaped like a
    ``LinearOperator``'s adjoint: ``domain_shape`` is ``A_q.range_shape``, ``range_shape`` is
    ``A_q.domain_shape``, and ``A_q.T.T is A_q``.

    Example
    -------
    >>> import torch
    >>> from operators import MatrixOperator
    >>> A_q = LearnedOperator(MatrixOperator(torch.ones(2, 3)), adjoint="learned",
    ...                       adjoint_data_net=torch.nn.Identity())
    >>> A_q.T.domain_shape, A_q.T.range_shape
    ((2,), (3,))
    """

    def __init__(self, op: LearnedOperator) -> None:
        self.op = op
        self.domain_shape: Shape = op.range_shape
        self.range_shape: Shape = op.domain_shape
        self.dtypes: tuple[torch.dtype, ...] = op.dtypes

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        """``A_q.learned_adjoint(r)``."""
        return self.op.learned_adjoint(r)

    @property
    def T(self) -> LearnedOperator:  # noqa: N802 - the mathematical name
        """The forward model ``A_q``."""
        return self.op

    def norm(
        self,
        *,
        n_iter: int = 100,
        rtol: float = 1e-6,
        seed: int = 0,
        device: torch.device | str | None = None,
        recompute: bool = False,
    ) -> float:
        """``‖Ã‖₂``, as :meth:`LearnedOperator.norm`."""
        return self.op.norm(n_iter=n_iter, rtol=rtol, seed=seed, device=device, recompute=recompute)

    def __repr__(self) -> str:
        return f"LearnedAdjoint(domain_shape={self.domain_shape}, range_shape={self.range_shape})"


# --------------------------------------------------------------------------- losses
def _sample_ndim(tensor: torch.Tensor, sample_ndim: int | None) -> int:
    if sample_ndim is None:
        if tensor.ndim < 1:
            raise ValueError("relative_error needs a batch dimension; got a 0-dimensional tensor")
        return tensor.ndim - 1
    if isinstance(sample_ndim, bool) or not isinstance(sample_ndim, int):
        raise ValueError(f"sample_ndim must be an int or None, got {sample_ndim!r}")
    if not 0 <= sample_ndim <= tensor.ndim:
        raise ValueError(
            f"sample_ndim must be in [0, {tensor.ndim}] for a tensor of shape "
            f"{tuple(tensor.shape)}, got {sample_ndim}"
        )
    return sample_ndim


def _relative_squared(
    estimate: torch.Tensor, reference: torch.Tensor, sample_ndim: int | None
) -> torch.Tensor:
    """Per-sample ``‖e − r‖² / ‖r‖²`` over the trailing ``sample_ndim`` dimensions."""
    if not isinstance(estimate, torch.Tensor) or not isinstance(reference, torch.Tensor):
        raise TypeError("estimate and reference must be torch.Tensors")
    if estimate.shape != reference.shape:
        raise ValueError(
            f"estimate and reference must have the same shape, got {tuple(estimate.shape)} "
            f"and {tuple(reference.shape)}"
        )
    n = _sample_ndim(reference, sample_ndim)
    batch = tuple(reference.shape[: reference.ndim - n])
    size = math.prod(reference.shape[reference.ndim - n :])
    ref = reference.reshape((*batch, size))
    err = torch.sum((estimate.reshape((*batch, size)) - ref) ** 2, dim=-1)
    den = torch.sum(ref**2, dim=-1)
    if bool((den == 0).any()):
        raise ValueError("a reference sample is zero: its relative error is undefined")
    return err / den


def relative_error(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    *,
    sample_ndim: int | None = None,
) -> torch.Tensor:
    """Per-sample relative error :math:`\\|e_i - r_i\\| / \\|r_i\\|`.

    Parameters
    ----------
    estimate, reference : torch.Tensor
        Of equal shape ``(*batch, *sample)``.
    sample_ndim : int, optional
        Number of trailing dimensions forming one sample; default all but the first, so
        ``(B, ...)`` gives ``B`` errors.

    Returns
    -------
    torch.Tensor
        Shape ``batch``.

    Raises
    ------
    ValueError
        For different shapes or a zero reference sample.

    Example
    -------
    >>> import torch
    >>> ref = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    >>> relative_error(ref * 1.5, ref)
    tensor([0.5000, 0.5000])
    """
    return torch.sqrt(_relative_squared(estimate, reference, sample_ndim))


def forward_loss(model: LearnedOperator, x: torch.Tensor, ax: torch.Tensor) -> torch.Tensor:
    r"""Forward-model loss :math:`\frac1B \sum_i \|A_q x_i - A x_i\|^2 / \|A x_i\|^2`.

    Parameters
    ----------
    model : LearnedOperator
        :math:`A_q`.
    x : torch.Tensor
        Images, shape ``(*batch, *model.domain_shape)``.
    ax : torch.Tensor
        The accurate model's data :math:`A x`, shape ``(*batch, *model.range_shape)``.

    Returns
    -------
    torch.Tensor
        A scalar, differentiable w.r.t. the parameters of ``image_net`` and ``data_net``.

    Example
    -------
    >>> import torch
    >>> from operators import MatrixOperator
    >>> A_q = LearnedOperator(MatrixOperator(torch.eye(2)))
    >>> float(forward_loss(A_q, torch.ones(4, 2), torch.full((4, 2), 2.0)))
    0.25
    """
    return _relative_squared(model(x), ax, len(model.range_shape)).mean()


def adjoint_loss(
    model: LearnedOperator,
    r: torch.Tensor,
    atr: torch.Tensor,
    *,
    at: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Adjoint loss :math:`\frac1B \sum_i \|A_q^* r_i - A^\top r_i\|^2 / \|A^\top r_i\|^2`.

    :math:`A_q^*` is the learned adjoint :math:`G_f \tilde A^\top G_q` when ``at`` is ``None``
    (needs ``adjoint="learned"``), else the linearised adjoint :math:`J(x)^\top` at ``x = at``,
    built with ``create_graph=True`` so that the forward networks get gradients (Lunz et al.'s
    single-network variant). In training, ``r`` is typically the residual
    :math:`A_q x - y` held fixed (detached).

    Parameters
    ----------
    model : LearnedOperator
        :math:`A_q`.
    r : torch.Tensor
        Data, shape ``(*batch, *model.range_shape)``.
    atr : torch.Tensor
        The accurate adjoint :math:`A^\top r`, shape ``(*batch, *model.domain_shape)``.
    at : torch.Tensor, optional
        The point of the linearised adjoint, shape ``(*batch, *model.domain_shape)``.

    Returns
    -------
    torch.Tensor
        A scalar.

    Example
    -------
    >>> import torch
    >>> from operators import MatrixOperator
    >>> A_q = LearnedOperator(MatrixOperator(torch.eye(2)), adjoint="learned")
    >>> float(adjoint_loss(A_q, torch.ones(4, 2), torch.full((4, 2), 2.0)))
    0.25
    """
    estimate = model.adjoint(r, at=at, create_graph=True)
    return _relative_squared(estimate, atr, len(model.domain_shape)).mean()
