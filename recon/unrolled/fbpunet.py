r"""Post-processing reconstruction: FBP followed by a residual U-Net (FBPConvNet).

.. math:: \hat x = \mathrm{FBP}(y) + N_\theta(\mathrm{FBP}(y)),

where :math:`N_\theta` is a U-Net trained to remove the artefacts of the filtered backprojection
(streaks from sparse angles, noise). Reference: K. H. Jin, M. T. McCann, E. Froustey, M. Unser,
"Deep convolutional neural network for inverse problems in imaging", IEEE TIP 26(9), 2017.

Example
-------
>>> import torch
>>> from operators import Parallel2D, RayTransform
>>> op = RayTransform(Parallel2D((32, 32), n_angles=10), backend="matrix")
>>> recon = FBPUNet(channels=8, depth=2)
>>> recon(torch.zeros(2, 1, *op.range_shape), op).shape
torch.Size([2, 1, 32, 32])
"""

from __future__ import annotations

import torch
from torch import nn

from models import UNet
from operators import OperatorLike
from recon.base import Reconstructor, check_measurements, weight_dtype
from recon.checks import check_bool
from recon.classical.analytic import check_filter, fbp

__all__ = ["FBPUNet"]

_DEFAULT_CHANNELS = 32
_DEFAULT_DEPTH = 4
_DEFAULT_NORM = "batch"


class FBPUNet(Reconstructor):
    r"""FBP (:func:`recon.classical.fbp`) followed by a residual U-Net (Jin et al. 2017).

    ``forward(y, op)`` computes :math:`x_0 = \mathrm{FBP}(y)` with ``op``'s geometry (a 2D
    parallel or fan-beam :class:`~operators.RayTransform`) and returns ``unet(x_0)``; with the
    default residual U-Net that is :math:`x_0 + N_\theta(x_0)`. Every batch element is an
    independent image: ``y`` of shape ``(*batch, *op.range_shape)`` (typically
    ``(B, 1, n_angles, n_detectors)``) gives ``(*batch, *op.domain_shape)``.

    Parameters
    ----------
    unet : models.UNet, optional
        The post-processing network, mapping ``(N, 1, H, W)`` to ``(N, 1, H, W)``. By default
        ``UNet(in_channels=1, out_channels=1, channels=channels, depth=depth, residual=True)``.
    filter : {"ram-lak", "shepp-logan", "cosine", "hann"}
        FBP filter window.
    frequency_scaling : float
        FBP cut-off as a fraction of the Nyquist frequency, in (0, 1].
    channels, depth : int, optional
        Size of the default U-Net (32 and 4 when not given).
    norm : {"batch", "instance", "none"}, optional
        Normalisation of the default U-Net ("batch", as FBPConvNet, when not given).
        ``channels``, ``depth`` and ``norm`` size the default U-Net: passing any of them together
        with ``unet`` raises ``ValueError``, since they would be ignored.
    zero_init : bool
        Zero the U-Net's last convolution (:attr:`models.UNet.out_conv`), so that the untrained
        residual network is the identity and the reconstructor starts as plain FBP. Needs a
        :class:`models.UNet`.
    channels_last : bool
        Store the U-Net's weights channels-last (NHWC), the layout oneDNN convolutions run fastest
        in on CPU, notably in bfloat16 mixed precision (the trainer's ``amp``); the results are
        unchanged.

    Raises
    ------
    ValueError
        For an invalid filter or norm, a ``unet`` that is not a module or does not map one
        channel to one channel, ``channels``/``depth``/``norm`` given together with ``unet``,
        ``zero_init`` with a ``unet`` that is not a :class:`models.UNet`, or a flag that is not a
        bool.

    Example
    -------
    >>> from models import UNet
    >>> FBPUNet(unet=UNet(channels=16, depth=3, norm="instance"), filter="hann").filter
    'hann'
    >>> FBPUNet(zero_init=True, channels_last=True).unet.out_conv.weight.abs().max().item()
    0.0
    """

    def __init__(
        self,
        *,
        unet: UNet | None = None,
        filter: str = "hann",
        frequency_scaling: float = 1.0,
        channels: int | None = None,
        depth: int | None = None,
        norm: str | None = None,
        zero_init: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.filter, self.frequency_scaling = check_filter(filter, frequency_scaling)
        if unet is None:
            unet = UNet(
                in_channels=1,
                out_channels=1,
                channels=_DEFAULT_CHANNELS if channels is None else channels,
                depth=_DEFAULT_DEPTH if depth is None else depth,
                residual=True,
                norm=_DEFAULT_NORM if norm is None else norm,
            )
        else:
            if channels is not None or depth is not None or norm is not None:
                raise ValueError(
                    "channels, depth and norm size the default U-Net; with an explicit unet they "
                    "would be ignored: set them on the UNet instead"
                )
            if not isinstance(unet, nn.Module):
                raise ValueError(f"unet must be a torch.nn.Module, got {type(unet).__name__}")
            if isinstance(unet, UNet) and (unet.in_channels, unet.out_channels) != (1, 1):
                raise ValueError(
                    "the U-Net post-processes one-channel FBP images: it needs in_channels=1 "
                    f"and out_channels=1, got {unet.in_channels} and {unet.out_channels}"
                )
        self.unet = unet
        self.zero_init = check_bool("zero_init", zero_init)
        if self.zero_init:
            if not isinstance(unet, UNet):
                raise ValueError(
                    f"zero_init zeroes a models.UNet's out_conv; got a {type(unet).__name__}"
                )
            nn.init.zeros_(unet.out_conv.weight)
            if unet.out_conv.bias is not None:
                nn.init.zeros_(unet.out_conv.bias)
        self.channels_last = check_bool("channels_last", channels_last)
        if self.channels_last:
            self.unet.to(memory_format=torch.channels_last)

    def forward(self, y: torch.Tensor, op: OperatorLike) -> torch.Tensor:
        """Map ``y`` ``(*batch, *op.range_shape)`` to ``(*batch, *op.domain_shape)``."""
        batch_shape = check_measurements(y, op, dtype=weight_dtype(self))
        x0 = fbp(y, op, filter=self.filter, frequency_scaling=self.frequency_scaling)
        domain_shape = tuple(op.domain_shape)
        x = self.unet(x0.reshape(-1, 1, *domain_shape))
        return x.reshape(*batch_shape, *domain_shape)

    def extra_repr(self) -> str:
        return (
            f"filter={self.filter!r}, frequency_scaling={self.frequency_scaling}, "
            f"zero_init={self.zero_init}, channels_last={self.channels_last}"
        )
