"""Neural networks: plain nn.Modules with no physics inside.

Example
-------
>>> import torch
>>> from models import UNet
>>> UNet(channels=8, depth=2)(torch.zeros(1, 1, 32, 32)).shape
torch.Size([1, 1, 32, 32])
"""

from models.autoencoder import (
    Autoencoder,
    ConvDecoder,
    ConvEncoder,
    VAEOutput,
    VariationalAutoencoder,
    gaussian_elbo,
    kl_standard_normal,
)
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
from models.gan import GAN, Critic, Generator, gradient_penalty
from models.icnn import ICNN, ICNN_ACTIVATIONS, NonNegativeConv, Quadratic, input_gradient
from models.unet import UPSAMPLING, UNet

__all__ = [
    "ACTIVATIONS",
    "ICNN",
    "ICNN_ACTIVATIONS",
    "NORMS",
    "UPSAMPLING",
    "Autoencoder",
    "ConvBlock",
    "ConvDecoder",
    "ConvEncoder",
    "ConvNet",
    "Critic",
    "GAN",
    "Generator",
    "NonNegativeConv",
    "Quadratic",
    "ResidualBlock",
    "UNet",
    "VAEOutput",
    "VariationalAutoencoder",
    "conv_layer",
    "gaussian_elbo",
    "gradient_penalty",
    "input_gradient",
    "kl_standard_normal",
    "make_activation",
    "make_norm",
]
