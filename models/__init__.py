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
from models.denoising import conv_operator_norm, conv_spectral_norm, noise_level_map
from models.dncnn import DnCNN
from models.drunet import DRUNet
from models.gan import GAN, Critic, Generator, gradient_penalty
from models.gsdenoiser import GSDenoiser
from models.icnn import (
    ICNN,
    ICNN_ACTIVATIONS,
    InverseSpectralQuadratic,
    NonNegativeConv,
    Quadratic,
    SpectralQuadratic,
    input_gradient,
)
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
    "DRUNet",
    "DnCNN",
    "GAN",
    "GSDenoiser",
    "Generator",
    "NonNegativeConv",
    "InverseSpectralQuadratic",
    "Quadratic",
    "SpectralQuadratic",
    "ResidualBlock",
    "UNet",
    "VAEOutput",
    "VariationalAutoencoder",
    "conv_layer",
    "conv_operator_norm",
    "conv_spectral_norm",
    "gaussian_elbo",
    "gradient_penalty",
    "input_gradient",
    "kl_standard_normal",
    "make_activation",
    "make_norm",
    "noise_level_map",
]
