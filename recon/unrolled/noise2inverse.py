r"""Noise2Inverse (Hendriksen, Pelt and Batenburg 2020): a denoiser of FBP images learnt from
the measurements alone.

The projection angles are split into ``K`` interleaved subsets :math:`J_1, …, J_K`
(:func:`angle_subsets`), and each subset is reconstructed by FBP: :math:`x_j = \mathrm{FBP}_{J_j}
(y_{J_j})`. The noise of different subsets is independent, so a network trained to map the mean
of ``K − 1`` of them to the remaining one (the "X:1" strategy),

.. math:: \min_\theta \sum_j \big\| N_\theta\big(\tfrac{1}{K-1}\textstyle\sum_{i \ne j} x_i\big)
          - x_j \big\|^2,

learns, in expectation, to predict the clean image (:class:`~recon.training.tasks.
Noise2InverseTask`). At test time the reconstruction averages over the splits:
:math:`\hat x = \tfrac1K \sum_j N_\theta(\tfrac{1}{K-1}\sum_{i \ne j} x_i)`.

Each sub-reconstruction uses a ``K``-th of the angles, so it suits CT with many angles and
noise as the main degradation (low dose), less so sparse angles.

Example
-------
>>> import torch
>>> from operators import Parallel2D, RayTransform
>>> op = RayTransform(Parallel2D((32, 32), n_angles=16), backend="matrix")
>>> model = Noise2Inverse(n_splits=4, channels=4, depth=2)
>>> model(torch.zeros(2, 1, *op.range_shape), op).shape
torch.Size([2, 1, 32, 32])
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from models import UNet
from operators import OperatorLike, RayTransform
from recon.base import Reconstructor, check_measurements, weight_dtype
from recon.checks import check_int
from recon.classical.analytic import check_filter, fbp

__all__ = ["Noise2Inverse", "angle_subsets", "subset_operator"]


def angle_subsets(n_angles: int, n_splits: int) -> list[list[int]]:
    """The ``n_splits`` interleaved subsets of ``range(n_angles)``: ``[j, j + K, j + 2K, …]``.

    Example
    -------
    >>> angle_subsets(7, 3)
    [[0, 3, 6], [1, 4], [2, 5]]
    """
    n_splits = check_int("n_splits", n_splits, minimum=2)
    if n_angles < n_splits:
        raise ValueError(f"cannot split {n_angles} angles into {n_splits} subsets")
    return [list(range(j, n_angles, n_splits)) for j in range(n_splits)]


def subset_operator(op: RayTransform, indices: list[int]) -> RayTransform:
    """The ray transform of ``op``'s geometry restricted to the angles ``indices``.

    Example
    -------
    >>> from operators import Parallel2D
    >>> sub = subset_operator(RayTransform(Parallel2D((8, 8), n_angles=6)), [0, 2, 4])
    >>> sub.range_shape
    (3, 12)
    """
    geometry = getattr(op, "geometry", None)
    if geometry is None or not hasattr(geometry, "angles"):
        raise ValueError(
            "Noise2Inverse splits the projection angles: it needs a ray transform with a "
            f"geometry (operators.RayTransform), got {type(op).__name__}"
        )
    angles = [geometry.angles[i] for i in indices]
    sub = dataclasses.replace(geometry, n_angles=len(angles), angles=tuple(angles))
    return RayTransform(sub, backend=getattr(op, "backend", "auto"))


class Noise2Inverse(Reconstructor):
    r"""FBP of ``n_splits`` angle subsets, denoised by a U-Net and averaged over the splits.

    Parameters
    ----------
    n_splits : int
        Number of interleaved angle subsets ``K`` (≥ 2; the paper uses 4).
    unet : torch.nn.Module, optional
        Maps ``(N, 1, H, W)`` to ``(N, 1, H, W)``; by default a residual
        ``UNet(channels=channels, depth=depth, norm=None)``.
    channels, depth : int
        Size of the default U-Net.
    filter, frequency_scaling
        The FBP's filter (:func:`recon.classical.fbp`).

    ``forward`` returns :math:`\tfrac1K\sum_j N(\bar x_{-j})`; :meth:`split_inputs` gives the
    pairs ``(\bar x_{-j}, x_j)`` the training task needs.
    """

    def __init__(
        self,
        *,
        n_splits: int = 4,
        unet: nn.Module | None = None,
        channels: int = 32,
        depth: int = 4,
        filter: str = "hann",
        frequency_scaling: float = 1.0,
    ) -> None:
        super().__init__()
        self.n_splits = check_int("n_splits", n_splits, minimum=2)
        self.filter, self.frequency_scaling = check_filter(filter, frequency_scaling)
        if unet is None:
            unet = UNet(
                in_channels=1, out_channels=1, channels=channels, depth=depth, residual=True,
                norm=None,
            )  # fmt: skip
        if not isinstance(unet, nn.Module):
            raise ValueError(f"unet must be a torch.nn.Module, got {type(unet).__name__}")
        self.unet = unet
        self._operators: dict[tuple[int, int], list[RayTransform]] = {}

    def split_operators(self, op: RayTransform) -> list[RayTransform]:
        """The ``n_splits`` sub-operators of ``op`` (built once per operator)."""
        key = (id(op), self.n_splits)
        if key not in self._operators:
            subsets = angle_subsets(op.range_shape[0], self.n_splits)
            self._operators[key] = [subset_operator(op, s) for s in subsets]
        return self._operators[key]

    def split_reconstructions(self, y: torch.Tensor, op: RayTransform) -> torch.Tensor:
        """FBP of each angle subset: ``(N, K, H, W)`` for ``y`` ``(*batch, *op.range_shape)``."""
        check_measurements(y, op, dtype=weight_dtype(self))
        flat = y.reshape(-1, *op.range_shape)
        subsets = angle_subsets(op.range_shape[0], self.n_splits)
        recs = [
            fbp(flat[:, s], sub, filter=self.filter, frequency_scaling=self.frequency_scaling)
            for s, sub in zip(subsets, self.split_operators(op), strict=True)
        ]
        return torch.stack(recs, dim=1)

    def split_inputs(self, y: torch.Tensor, op: RayTransform) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)``, each ``(N, K, H, W)``: the mean of the other ``K − 1`` split
        reconstructions, and each split's own reconstruction."""
        recs = self.split_reconstructions(y, op)
        others = (recs.sum(1, keepdim=True) - recs) / (self.n_splits - 1)
        return others, recs

    def denoise(self, images: torch.Tensor) -> torch.Tensor:
        """The U-Net on images ``(N, K, H, W)``, each channel as its own image."""
        n, k, h, w = images.shape
        return self.unet(images.reshape(n * k, 1, h, w)).reshape(n, k, h, w)

    def forward(
        self, y: torch.Tensor, op: OperatorLike, *, training_pairs: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Map ``y`` ``(*batch, *op.range_shape)`` to ``(*batch, *op.domain_shape)``.

        With ``training_pairs=True``, return ``(denoised, targets)``, each ``(N, K, H, W)``:
        the network's output for every split and that split's own FBP (what
        :class:`~recon.training.tasks.Noise2InverseTask` compares; through ``forward`` so that
        a DDP wrapper synchronises the gradients).
        """
        batch_shape = check_measurements(y, op, dtype=weight_dtype(self))
        inputs, targets = self.split_inputs(y, op)
        denoised = self.denoise(inputs)
        if training_pairs:
            return denoised, targets
        return denoised.mean(1).reshape(*batch_shape, *op.domain_shape)

    def extra_repr(self) -> str:
        return (
            f"n_splits={self.n_splits}, filter={self.filter!r}, "
            f"frequency_scaling={self.frequency_scaling}"
        )
