"""Tests of models.gan and the WGAN-GP loop of recon.generative: shapes, the gradient penalty on a
linear critic (value and gradient) and against a direct computation, training, resuming, errors."""

from __future__ import annotations

import doctest

import pytest
import torch
from torch import nn

import models.gan
from models import GAN, Critic, Generator, gradient_penalty
from recon.generative import train_gan
from recon.train import load_trained


def tiny_gan(size: int = 8, latent_dim: int = 3) -> GAN:
    return GAN(
        generator=Generator(image_size=size, latent_dim=latent_dim, channels=4),
        critic=Critic(image_size=size, channels=4),
    )


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


def test_training_steps_write_checkpoints_samples_and_load(tmp_path):
    torch.manual_seed(0)
    gan = tiny_gan()
    data = torch.rand(32, 1, 8, 8)
    result = train_gan(
        gan, train_data=data, out_dir=tmp_path, max_steps=4, batch_size=4, n_critic=2,
        ckpt_every=2, log_every=2, progress=False,
    )  # fmt: skip
    assert result["step"] == 4
    assert set(result["last"]) == {
        "critic_loss",
        "generator_loss",
        "gradient_penalty",
        "wasserstein",
    }
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.pt"))
    assert ckpts == ["last.pt", "step_00000002.pt", "step_00000004.pt"]
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    loaded = load_trained(tiny_gan(), tmp_path / "checkpoints" / "last.pt")
    for name, value in gan.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value)


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    data = torch.rand(32, 1, 8, 8)
    settings = dict(train_data=data, batch_size=4, n_critic=2, ckpt_every=2, progress=False)
    torch.manual_seed(0)
    straight = tiny_gan()
    train_gan(straight, out_dir=tmp_path / "a", max_steps=4, **settings)
    torch.manual_seed(0)
    first = tiny_gan()
    train_gan(first, out_dir=tmp_path / "b", max_steps=2, **settings)
    torch.manual_seed(123)  # whatever happens in between
    second = tiny_gan()
    assert (
        train_gan(second, out_dir=tmp_path / "b", max_steps=4, resume=True, **settings)["step"] == 4
    )
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(second.state_dict()[name], value, rtol=0, atol=0)


def test_an_existing_run_is_not_overwritten_silently(tmp_path):
    data = torch.rand(8, 1, 8, 8)
    train_gan(tiny_gan(), train_data=data, out_dir=tmp_path, max_steps=1, batch_size=2,
              n_critic=1, progress=False)  # fmt: skip
    with pytest.raises(FileExistsError, match="resume=True"):
        train_gan(tiny_gan(), train_data=data, out_dir=tmp_path, max_steps=1, batch_size=2,
                  progress=False)  # fmt: skip
    result = train_gan(tiny_gan(), train_data=data, out_dir=tmp_path, max_steps=1, batch_size=2,
                       n_critic=1, progress=False, overwrite=True)  # fmt: skip
    assert result["step"] == 1


def test_nan_data_stops_training_with_a_clear_error(tmp_path):
    data = torch.full((8, 1, 8, 8), float("nan"))
    with pytest.raises(FloatingPointError, match="diverged at step 1"):
        train_gan(tiny_gan(), train_data=data, out_dir=tmp_path, max_steps=3, batch_size=2,
                  n_critic=1, progress=False)  # fmt: skip


def test_invalid_configurations_raise():
    with pytest.raises(ValueError, match="batch normalisation"):
        Critic(image_size=16, norm="batch")
    with pytest.raises(ValueError, match="critic expects 32"):
        GAN(generator=Generator(image_size=16, latent_dim=2), critic=Critic(image_size=32))
    with pytest.raises(ValueError, match="real and fake"):
        gradient_penalty(Critic(image_size=8), torch.zeros(2, 1, 8, 8), torch.zeros(3, 1, 8, 8))
    with pytest.raises(ValueError, match="models.GAN"):
        train_gan(Generator(image_size=8, latent_dim=2), train_data=torch.zeros(2, 1, 8, 8),
                  out_dir="unused", max_steps=1)  # fmt: skip


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [(Generator, {"latent_size": 3}), (Critic, {"chanels": 3}), (GAN, {"gen": None})],
    ids=["generator", "critic", "gan"],
)
def test_typos_in_keyword_arguments_raise_type_error(cls, kwargs):
    with pytest.raises(TypeError, match=next(iter(kwargs))):
        cls(**kwargs)
    with pytest.raises(TypeError, match="n_critics"):
        train_gan(tiny_gan(), train_data=torch.zeros(2, 1, 8, 8), out_dir="unused", max_steps=1,
                  n_critics=3)  # fmt: skip


def test_docstring_examples_run():
    result = doctest.testmod(models.gan)
    assert result.attempted > 0 and result.failed == 0
