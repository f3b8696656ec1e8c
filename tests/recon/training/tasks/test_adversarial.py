"""Tests of recon.training.tasks.adversarial: the WGAN-GP trained by the one Trainer with two
optimiser groups. One step equals Gulrajani et al.'s Alg. 1 written out by hand; training writes
checkpoints that load_generator loads, finite losses, the task's scalars and the sample grid; a
run killed mid-way and resumed equals an uninterrupted one bit for bit; errors."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from models import GAN, Critic, Generator, gradient_penalty
from recon.checkpoints import load_trained
from recon.generative import load_generator
from recon.training import Trainer
from recon.training.tasks import AdversarialTask

ADAM = partial(torch.optim.Adam, lr=1e-4, betas=(0.0, 0.9))
OPTIMIZERS = {"critic": ADAM, "generator": ADAM}


def tiny_gan(size: int = 8, latent_dim: int = 3) -> GAN:
    return GAN(
        generator=Generator(image_size=size, latent_dim=latent_dim, channels=4),
        critic=Critic(image_size=size, channels=4),
    )


class Killed(Exception):
    """Stands in for SIGKILL: the run stops in the middle of a step."""


class Images(torch.utils.data.Dataset):
    """Images ``(x,)``; with ``kill_after``, the item after that many reads raises."""

    def __init__(self, x: torch.Tensor, kill_after: int | None = None) -> None:
        self.x, self.kill_after, self.reads = x, kill_after, 0

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor]:
        self.reads += 1
        if self.kill_after is not None and self.reads > self.kill_after:
            raise Killed
        return (self.x[i],)


def gan_trainer(gan, data, out_dir, **settings) -> Trainer:
    options = dict(
        val_data=None, task=AdversarialTask(n_critic=2), optimizer=OPTIMIZERS, max_steps=4,
        batch_size=8, scheduler="constant", grad_clip=None, ckpt_every=2, val_every=2,
        progress=False,
    )  # fmt: skip
    options.update(settings)
    return Trainer(gan, train_data=data, out_dir=out_dir, **options)


def test_one_step_is_algorithm_1_of_wgan_gp(tmp_path):
    """n_critic critic steps, each on its own chunk, then one generator step: as written out."""
    torch.manual_seed(1)
    image = torch.rand(1, 8, 8)
    data = Images(image.expand(8, 1, 8, 8).clone())  # one image: any data order gives the same
    torch.manual_seed(0)
    trained = tiny_gan()
    by_hand = tiny_gan()
    by_hand.load_state_dict(trained.state_dict())
    gan_trainer(trained, data, tmp_path, max_steps=1, seed=5).fit()

    torch.manual_seed(5)  # the trainer seeds the global RNG with its seed
    opt_d = ADAM(by_hand.critic.parameters())
    opt_g = ADAM(by_hand.generator.parameters())
    real = image.expand(4, 1, 8, 8)
    for _ in range(2):  # n_critic
        with torch.no_grad():
            fake = by_hand.generator(torch.randn(4, 3))
        d_real, d_fake = by_hand.critic(real).mean(), by_hand.critic(fake).mean()
        loss_d = d_fake - d_real + 10.0 * gradient_penalty(by_hand.critic, real, fake)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
    loss_g = -by_hand.critic(by_hand.generator(torch.randn(4, 3))).mean()
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    for name, value in by_hand.state_dict().items():
        torch.testing.assert_close(trained.state_dict()[name], value, rtol=0, atol=0, msg=name)


def test_training_steps_write_checkpoints_scalars_samples_and_load(tmp_path):
    torch.manual_seed(0)
    gan = tiny_gan()
    result = gan_trainer(gan, Images(torch.rand(32, 1, 8, 8)), tmp_path).fit()
    assert result["step"] == 4 and result["best_psnr"] is None
    assert math.isfinite(result["last_loss"])
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.pt"))
    assert ckpts == ["last.pt", "step_00000002.pt", "step_00000004.pt"]
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {
        "train/loss_critic",
        "train/loss_generator",
        "train/grad_norm_critic",
        "train/grad_norm_generator",
        "train/gradient_penalty",
        "train/wasserstein",
    } <= scalars
    for tag in scalars & {"train/loss_critic", "train/loss_generator", "train/wasserstein"}:
        assert all(math.isfinite(event.value) for event in acc.Scalars(tag)), tag
    assert [event.step for event in acc.Images("samples")] == [2, 4]
    for loaded in (
        load_trained(tiny_gan(), tmp_path / "checkpoints" / "last.pt"),
        load_generator(model=tiny_gan(), checkpoint=tmp_path / "checkpoints" / "last.pt"),
    ):
        for name, value in gan.state_dict().items():
            torch.testing.assert_close(loaded.state_dict()[name], value)
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert set(state["optimizer"]) == {"critic", "generator"}  # both optimisers, by group


def test_a_run_killed_mid_step_and_resumed_equals_an_uninterrupted_one(tmp_path):
    x = torch.rand(32, 1, 8, 8)
    settings = {"max_steps": 6, "seed": 3}
    torch.manual_seed(0)
    straight = tiny_gan()
    gan_trainer(straight, Images(x), tmp_path / "a", **settings).fit()
    torch.manual_seed(0)
    first = tiny_gan()
    with pytest.raises(Killed):  # during step 5, after the checkpoint of step 4
        gan_trainer(first, Images(x, kill_after=4 * 8 + 3), tmp_path / "b", **settings).fit()
    assert (tmp_path / "b" / "checkpoints" / "step_00000004.pt").is_file()
    torch.manual_seed(123)  # whatever happens in between
    second = tiny_gan()
    result = gan_trainer(second, Images(x), tmp_path / "b", **settings).fit(resume=True)
    assert result["step"] == 6
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(second.state_dict()[name], value, rtol=0, atol=0, msg=name)


def test_an_existing_run_is_not_overwritten_silently(tmp_path):
    data = Images(torch.rand(8, 1, 8, 8))
    gan_trainer(tiny_gan(), data, tmp_path, max_steps=1, batch_size=2).fit()
    with pytest.raises(FileExistsError, match="resume=True"):
        gan_trainer(tiny_gan(), data, tmp_path, max_steps=1, batch_size=2).fit()
    trainer = gan_trainer(tiny_gan(), data, tmp_path, max_steps=1, batch_size=2, overwrite=True)
    assert trainer.fit()["step"] == 1


def test_nan_data_stops_training_with_a_clear_error(tmp_path):
    data = Images(torch.full((8, 1, 8, 8), float("nan")))
    with pytest.raises(FloatingPointError, match=r"loss \(critic\) is nan at step 1"):
        gan_trainer(tiny_gan(), data, tmp_path, max_steps=3, batch_size=2).fit()


def test_invalid_configurations_raise(tmp_path):
    data = Images(torch.zeros(4, 1, 8, 8))
    with pytest.raises(ValueError, match="models.GAN"):
        gan_trainer(Generator(image_size=8, latent_dim=2), data, tmp_path)
    with pytest.raises(ValueError, match="n_critic"):
        AdversarialTask(n_critic=0)
    with pytest.raises(ValueError, match="gp_weight"):
        AdversarialTask(gp_weight=-1.0)
    with pytest.raises(ValueError, match="parameter groups"):
        gan_trainer(tiny_gan(), data, tmp_path, optimizer={"generator": ADAM})
    with pytest.raises(ValueError, match="n_critic=5 critic batches"):
        gan_trainer(tiny_gan(), data, tmp_path, task=AdversarialTask(), batch_size=4).fit()


def test_typos_in_keyword_arguments_raise_type_error():
    with pytest.raises(TypeError, match="n_critics"):
        AdversarialTask(n_critics=3)
