r"""Gradient-step denoiser (Hurault et al. 2022): the denoiser is an explicit gradient step.

A network :math:`N_\theta(x, \sigma)` defines the scalar potential

.. math:: g_\sigma(x) = \tfrac12 \|x - N_\theta(x, \sigma)\|^2,

and the denoiser is one gradient step on it, computed by automatic differentiation:

.. math:: D_\sigma(x) = x - \nabla g_\sigma(x)
          = x - \big(I - J_{N_\theta}(x)\big)^T \big(x - N_\theta(x, \sigma)\big).

Why: if :math:`\nabla g_\sigma` is :math:`L`-Lipschitz with :math:`L < 1`, :math:`D_\sigma` is the
proximal operator of a (weakly convex) function :math:`\phi_\sigma`, with

.. math:: \phi_\sigma\big(D_\sigma(z)\big) = g_\sigma(z) - \tfrac12\|z - D_\sigma(z)\|^2,

so PnP proximal gradient :math:`x_{k+1} = D_\sigma(x_k - \tau \nabla f(x_k))` is the proximal
gradient method on :math:`\tau f + \phi_\sigma`, whose value decreases monotonically for
:math:`\tau L_f \le 1` and whose iterates converge to a critical point (Hurault, Leclaire,
Papadakis 2022b). :meth:`GSDenoiser.hessian_norm` estimates :math:`L` locally (the spectral norm
of :math:`\nabla^2 g_\sigma`), which the training objective can penalise
(``jacobian_weight`` of ``recon.training.tasks.DenoisingTask``).

In training (gradients enabled) the gradient step is computed with ``create_graph=True`` so the
loss can be differentiated with respect to :math:`\theta`; under :func:`torch.no_grad` (evaluation)
the denoiser still differentiates internally and returns a detached result. :math:`N_\theta` must
be twice differentiable: by default a :class:`models.DRUNet` with ELU activations.

References: S. Hurault, A. Leclaire, N. Papadakis, "Gradient step denoiser for convergent
plug-and-play", ICLR 2022; "Proximal denoiser for convergent plug-and-play optimization with
nonconvex regularization", ICML 2022.

Example
-------
>>> import torch
>>> gs = GSDenoiser(channels=8, depth=2, n_blocks=1)
>>> with torch.no_grad():
...     out = gs(torch.rand(2, 1, 16, 16), 0.1)
>>> out.shape, out.requires_grad
(torch.Size([2, 1, 16, 16]), False)
"""

from __future__ import annotations

import torch
from torch import nn

from models.checks import check_positive_int
from models.drunet import DRUNet

__all__ = ["GSDenoiser"]


def _batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).flatten(1).sum(1)


class GSDenoiser(nn.Module):
    r"""Gradient-step denoiser :math:`D_\sigma = I - \nabla g_\sigma`,
    :math:`g_\sigma(x) = \tfrac12\|x - N_\theta(x, \sigma)\|^2`.

    ``forward(x, sigma)`` takes noisy images ``(B, C, *spatial)`` and the noise level (a number or
    one value per image) and returns :math:`x - \nabla g_\sigma(x)`.

    Parameters
    ----------
    network : torch.nn.Module, optional
        :math:`N_\theta`, called as ``network(x, sigma)`` and returning the shape of ``x``; it
        must be twice differentiable. By default a :class:`models.DRUNet` built from the sizes
        below.
    in_channels, channels, depth, n_blocks : int, optional
        Sizes of the default DRUNet (1, 32, 3, 2 when not given). Giving them together with
        ``network`` raises, since they would be ignored.
    activation : str, optional
        Activation of the default DRUNet (``"elu"``; must be smooth).
    residual : bool, optional
        Residual default DRUNet, :math:`N(x) = x + R(x)` (default ``True``): then
        :math:`g = \tfrac12\|R(x)\|^2` and the untrained denoiser is close to the identity.
    spectral_norm : bool, optional
        Spectral normalisation of the default DRUNet's convolutions.

    Raises
    ------
    ValueError
        For sizes given with ``network``, or a ``network`` that is not a module.

    Example
    -------
    >>> gs = GSDenoiser(channels=8, depth=1, n_blocks=1)
    >>> x = torch.rand(1, 1, 8, 8)
    >>> g = gs.potential(x, 0.1)   # one value per image
    >>> g.shape
    torch.Size([1])
    """

    def __init__(
        self,
        *,
        network: nn.Module | None = None,
        in_channels: int | None = None,
        channels: int | None = None,
        depth: int | None = None,
        n_blocks: int | None = None,
        activation: str | None = None,
        residual: bool | None = None,
        spectral_norm: bool | None = None,
    ) -> None:
        super().__init__()
        sizes = {
            "in_channels": in_channels,
            "channels": channels,
            "depth": depth,
            "n_blocks": n_blocks,
            "activation": activation,
            "residual": residual,
            "spectral_norm": spectral_norm,
        }
        if network is None:
            defaults = {
                "in_channels": 1,
                "channels": 32,
                "depth": 3,
                "n_blocks": 2,
                "activation": "elu",
                "residual": True,
                "spectral_norm": False,
            }
            kwargs = {k: defaults[k] if v is None else v for k, v in sizes.items()}
            network = DRUNet(bias=True, **kwargs)
        else:
            given = sorted(k for k, v in sizes.items() if v is not None)
            if given:
                raise ValueError(
                    f"{', '.join(given)} size the default DRUNet; with an explicit network they "
                    "would be ignored"
                )
            if not isinstance(network, nn.Module):
                raise ValueError(f"network must be a torch.nn.Module, got {type(network).__name__}")
        self.network = network

    def potential(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        r"""The potential :math:`g_\sigma(x) = \tfrac12\|x - N_\theta(x, \sigma)\|^2`, ``(B,)``.

        Example
        -------
        >>> gs = GSDenoiser(channels=4, depth=1, n_blocks=1)
        >>> bool(gs.potential(torch.rand(3, 1, 8, 8), 0.05).min() >= 0)
        True
        """
        return 0.5 * (x - self.network(x, sigma)).square().flatten(1).sum(1)

    def _gradient(
        self, x: torch.Tensor, sigma: float | torch.Tensor, create_graph: bool
    ) -> torch.Tensor:
        with torch.enable_grad():
            leaf = x if x.requires_grad else x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(
                self.potential(leaf, sigma).sum(), leaf, create_graph=create_graph
            )
        return grad

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        r"""Denoise: :math:`x - \nabla g_\sigma(x)` (differentiable when gradients are enabled)."""
        create_graph = torch.is_grad_enabled()
        out = x - self._gradient(x, sigma, create_graph)
        return out if create_graph else out.detach()

    def hessian_norm(
        self,
        x: torch.Tensor,
        sigma: float | torch.Tensor,
        *,
        n_iter: int = 10,
        create_graph: bool = False,
        seed: int = 0,
    ) -> torch.Tensor:
        r"""Spectral norm of :math:`\nabla^2 g_\sigma(x)` per image, by power iteration.

        The local Lipschitz constant of :math:`\nabla g_\sigma` (= that of :math:`I - D_\sigma`);
        :math:`< 1` everywhere is the condition of the convergence results. Each iteration is one
        Hessian-vector product (double back-propagation); with ``create_graph`` the final
        estimate is differentiable in :math:`\theta` (for a training penalty).

        Parameters
        ----------
        x : torch.Tensor
            Images ``(B, C, *spatial)``.
        sigma : float or torch.Tensor
            Noise level.
        n_iter : int
            Power iterations (≥ 1).
        create_graph : bool
            Keep the graph of the final product.
        seed : int
            Seed of the random start.

        Returns
        -------
        torch.Tensor
            ``(B,)`` estimates (from below).

        Example
        -------
        >>> gs = GSDenoiser(channels=4, depth=1, n_blocks=1)
        >>> gs.hessian_norm(torch.rand(2, 1, 8, 8), 0.1, n_iter=3).shape
        torch.Size([2])
        """
        check_positive_int("n_iter", n_iter)
        gen = torch.Generator().manual_seed(seed)
        v = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
        v = v / torch.linalg.vector_norm(v.flatten(1), dim=1).reshape(-1, *[1] * (x.ndim - 1))
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(
                self.potential(leaf, sigma).sum(), leaf, create_graph=True
            )
            for k in range(n_iter):
                last = k == n_iter - 1
                (hv,) = torch.autograd.grad(
                    _batch_dot(grad, v).sum(),
                    leaf,
                    retain_graph=not last or create_graph,
                    create_graph=last and create_graph,
                )
                norm = torch.linalg.vector_norm(hv.flatten(1), dim=1)
                if not last:
                    v = (hv / norm.clamp_min(1e-30).reshape(-1, *[1] * (x.ndim - 1))).detach()
        return norm

    def extra_repr(self) -> str:
        return f"network={type(self.network).__name__}"
