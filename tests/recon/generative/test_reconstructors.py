"""Tests of recon.generative.reconstructors: the reconstructors under no_grad leave the generator
alone and count their operator applications; the recon configs instantiate; load_generator loads
trainer checkpoints as data only."""

from __future__ import annotations

import logging

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from models import Autoencoder
from operators import CountingOperator, Parallel2D, RayTransform
from recon.base import Reconstructor
from recon.checkpoints import UnsafeCheckpointError
from recon.cli.config import config_dir
from recon.generative import (
    HardGenerative,
    SoftGenerative,
    SparseDeviationGenerative,
    load_generator,
)


def test_reconstructors_work_under_no_grad_and_leave_the_generator_alone():
    torch.manual_seed(0)
    op = CountingOperator(RayTransform(Parallel2D((16, 16), n_angles=8), backend="matrix"))
    ae = Autoencoder(image_size=16, latent_dim=4, channels=2).train()
    before = {k: v.clone() for k, v in ae.state_dict().items()}
    y = op(torch.rand(2, 3, 1, 16, 16))  # batch shape (2, 3, 1)
    for cls, weights in [
        (HardGenerative, {"alpha": 1.0}),
        (SoftGenerative, {"lam": 10.0, "mu": 0.1}),
        (SparseDeviationGenerative, {"lam": 1.0, "mu": 0.1}),
    ]:
        op.reset()
        with torch.no_grad():
            x = cls(generator=ae, n_iter=3, n_restarts=2, **weights)(y, op)
        assert isinstance(x, torch.Tensor) and x.shape == (2, 3, 1, 16, 16)
        assert torch.isfinite(x).all() and not x.requires_grad
        if cls is HardGenerative:  # 6 images x 2 restarts; the adjoint is applied explicitly
            assert (op.forward_count, op.adjoint_count) == (12 * (3 + 1), 12 * 3)
    assert ae.training  # its mode is restored ...
    for k, v in ae.state_dict().items():  # ... and eval mode kept batch-norm statistics fixed
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in ae.parameters())


@pytest.mark.parametrize("name", ["hard", "soft", "sparse"])
def test_recon_configs_instantiate_standalone(name):
    method = instantiate(OmegaConf.load(config_dir() / "recon" / f"generative_{name}.yaml"))
    assert isinstance(method, Reconstructor) and not method.generator.training


def test_load_generator_loads_weights_and_refuses_code(tmp_path, caplog):
    trained = Autoencoder(image_size=16, latent_dim=4, channels=2)
    with torch.no_grad():
        trained.decoder.out_conv.bias.fill_(0.25)
    torch.save({"model": trained.state_dict(), "step": 3}, tmp_path / "best.pt")
    model = Autoencoder(image_size=16, latent_dim=4, channels=2)
    generator = load_generator(model=model, checkpoint=tmp_path / "best.pt")
    assert generator is model and not generator.training
    assert generator.decoder.out_conv.bias.item() == 0.25
    with caplog.at_level(logging.WARNING):
        load_generator(model=Autoencoder(image_size=16, latent_dim=4, channels=2))
    assert "untrained" in caplog.text
    torch.save({"model": trained.state_dict(), "payload": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeCheckpointError, match="evil.pt"):
        load_generator(model=model, checkpoint=tmp_path / "evil.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_generator(model=model, checkpoint=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="latent_dim"):
        load_generator(model=torch.nn.Linear(2, 2), checkpoint=tmp_path / "best.pt")


class Payload:
    """An object that only full unpickling could rebuild (a stand-in for a malicious one)."""

    def __reduce__(self):
        return (print, ("this must never run",))
