"""Tests of models.gan: shapes, the gradient penalty on a linear critic (value and gradient) and
against a direct computation, errors (its training, the WGAN-GP task:
tests/recon/training/tasks/test_adversarial.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models import GAN, Critic, Generator, gradient_penalty


@pytest.mark.parametrize("size", [16, 64, 128])
def test_generator_and_critic_shapes(size):
    gan = GAN(
        generator=Generator(image_size=size, latent_dim=5, channels=2, max_channels=8),
        critic=Critic(image_size=size, channels=2, max_channels=8),
    )
    fake = gan.generate(torch.randn(3, 5))
    assert fake.shape == (3, 1, size, size)
    assert gan.critic(fake).shape == (3,)
    assert gan.latent_dim == 5 and gan.image_size == size


def linear_critic(w: torch.Tensor) -> nn.Module:
    critic = nn.Sequential(nn.Flatten(), nn.Linear(w.numel(), 1, dtype=w.dtype))
    with torch.no_grad():
        critic[1].weight.copy_(w.reshape(1, -1))
        critic[1].bias.fill_(0.3)
    return critic


@pytest.mark.parametrize("scale", [0.2, 1.0, 3.0])
def test_gradient_penalty_of_a_linear_critic_is_norm_minus_one_squared(scale):
    torch.manual_seed(0)
    w = torch.randn(1, 4, 4, dtype=torch.float64)
    w = scale * w / w.norm()
    critic = linear_critic(w)
    real, fake = (
        torch.rand(5, 1, 4, 4, dtype=torch.float64),
        torch.rand(5, 1, 4, 4, dtype=torch.float64),
    )
    penalty = gradient_penalty(critic, real, fake)
    torch.testing.assert_close(penalty, torch.tensor((scale - 1.0) ** 2, dtype=torch.float64))
    # its gradient in w is d/dw (‖w‖ − 1)² = 2 (‖w‖ − 1) w / ‖w‖
    penalty.backward()
    expected = 2 * (scale - 1.0) * w.reshape(1, -1) / scale
    torch.testing.assert_close(critic[1].weight.grad, expected)


def test_gradient_penalty_matches_a_direct_computation_for_a_nonlinear_critic():
    torch.manual_seed(0)
    critic = Critic(image_size=8, channels=4).double()
    real = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    fake = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    penalty = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(7))
    eps = torch.rand(4, 1, 1, 1, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    expected = 0.0
    for b in range(4):  # one sample at a time: no batch coupling
        point = (eps[b] * real[b] + (1 - eps[b]) * fake[b])[None].requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(point).sum(), point)
        expected += (grad.norm() - 1) ** 2 / 4
    torch.testing.assert_close(penalty, expected)


def test_invalid_configurations_raise():
    with pytest.raises(ValueError, match="batch normalisation"):
        Critic(image_size=16, norm="batch")
    with pytest.raises(ValueError, match="critic expects 32"):
        GAN(generator=Generator(image_size=16, latent_dim=2), critic=Critic(image_size=32))
    with pytest.raises(ValueError, match="real and fake"):
        gradient_penalty(Critic(image_size=8), torch.zeros(2, 1, 8, 8), torch.zeros(3, 1, 8, 8))


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [(Generator, {"latent_size": 3}), (Critic, {"chanels": 3}), (GAN, {"gen": None})],
    ids=["generator", "critic", "gan"],
)
def test_typos_in_keyword_arguments_raise_type_error(cls, kwargs):
    with pytest.raises(TypeError, match=next(iter(kwargs))):
        cls(**kwargs)
