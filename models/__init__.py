"""Neural networks: plain nn.Modules with no physics inside.

Example
-------
>>> import torch
>>> from models import UNet
>>> UNet(channels=8, depth=2)(torch.zeros(1, 1, 32, 32)).shape
torch.Size([1, 1, 32, 32])
"""

from models.blocks import (
    ACTIVATIONS,
    NORMS,
    ConvBlock,
    ConvNet,
    ResidualBlock,
    conv_layer,
    make_activation,
    make_norm,
)
from models.unet import UPSAMPLING, UNet

__all__ = [
    "ACTIVATIONS",
    "NORMS",
    "UPSAMPLING",
    "ConvBlock",
    "ConvNet",
    "ResidualBlock",
    "UNet",
    "conv_layer",
    "make_activation",
    "make_norm",
]
