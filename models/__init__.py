"""Neural networks: plain nn.Modules with no physics inside (knows no operators).

Rooms:

- ``checks``: the argument checks the networks share;
- ``blocks``: convolution, normalisation and activation blocks, ``ConvNet``, ``ResidualBlock``;
- ``unet``: the U-Net, optionally residual (FBPConvNet);
- ``dncnn``: DnCNN, a residual denoising CNN, optionally Lipschitz-constrained;
- ``drunet``: DRUNet, the residual U-Net denoiser with a noise-level input of DPIR;
- ``gsdenoiser``: the gradient-step denoiser, an explicit gradient of a potential;
- ``denoising``: the noise-level map and spectral normalisation of convolutions;
- ``icnn``: input-convex networks and the convex quadratics of mirror descent;
- ``autoencoder``: convolutional encoder/decoder, autoencoder, VAE and its ELBO;
- ``gan``: WGAN-GP generator, critic and gradient penalty;
- ``dilated``: a residual CNN of dilated convolutions, the correction network of learned
  operators.

Example
-------
>>> import torch
>>> from models import UNet
>>> UNet(channels=8, depth=2)(torch.zeros(1, 1, 32, 32)).shape
torch.Size([1, 1, 32, 32])
"""

from models.autoencoder import (
    OUTPUT_ACTIVATIONS,
    Autoencoder,
    ConvDecoder,
    ConvEncoder,
    VAEOutput,
    VariationalAutoencoder,
    gaussian_elbo,
    gaussian_log_likelihood,
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
from models.dilated import CircularPad, DilatedCNN
from models.dip_unet import DIPUNet
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
    "DIPUNet",
    "ACTIVATIONS",
    "ICNN",
    "ICNN_ACTIVATIONS",
    "NORMS",
    "OUTPUT_ACTIVATIONS",
    "UPSAMPLING",
    "Autoencoder",
    "CircularPad",
    "ConvBlock",
    "ConvDecoder",
    "ConvEncoder",
    "ConvNet",
    "Critic",
    "DRUNet",
    "DilatedCNN",
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
    "gaussian_log_likelihood",
    "gradient_penalty",
    "input_gradient",
    "kl_standard_normal",
    "make_activation",
    "make_norm",
    "noise_level_map",
]
