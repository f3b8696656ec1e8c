"""Tests of recon.dip.warm_start: the pretrained U-Net comes out of an FBP + U-Net checkpoint as
data only, and the warm-started DIP begins exactly at the pretrained FBP + U-Net's output."""

from __future__ import annotations

import logging

import pytest
import torch

from data_tools.phantoms import random_ellipses
from models.dip_unet import DIPUNet
from operators import Parallel2D, RayTransform
from recon.checkpoints import UnsafeCheckpointError, atomic_save
from recon.dip import DeepImagePrior, initial_weights, load_pretrained_unet, submodule_state
from recon.unrolled import FBPUNet


@pytest.fixture(autouse=True)
def _one_thread():
    """Small convolutions run fastest on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _unet(**kwargs) -> DIPUNet:
    return DIPUNet(**{"channels": 4, "scales": 3, "output": "sigmoid", **kwargs})


@pytest.fixture
def pretrained(tmp_path):
    """An FBP + DIP U-Net "trained" (seeded weights) and saved as the Trainer saves."""
    model = FBPUNet(unet=_unet(), filter="hann", frequency_scaling=0.7)
    initial_weights(model, seed=5)
    path = tmp_path / "best.pt"
    atomic_save({"model": model.state_dict(), "step": 3}, path)
    return model.eval(), path


def test_the_warm_start_begins_at_the_pretrained_fbp_unet(pretrained):
    model, path = pretrained
    network = load_pretrained_unet(network=_unet(), checkpoint=path)
    assert not network.training
    for (name, p), q in zip(network.named_parameters(), model.unet.parameters(), strict=True):
        assert torch.equal(p, q), name
    op = RayTransform(Parallel2D((16, 16), n_angles=8, n_detectors=24), backend="matrix")
    y = op(random_ellipses((16, 16), n=2, seed=0)).unsqueeze(1)
    dip = DeepImagePrior(network=network, init="network", n_iter=4, lr=1e-3,
                         fbp_filter="hann", fbp_frequency_scaling=0.7, progress=False)  # fmt: skip
    first = {}
    result = dip.solve(y, op, callback=lambda k, x: first.setdefault(k, x.clone()))
    with torch.no_grad():
        expected = model(y, op)[:, 0]
    torch.testing.assert_close(first[0], expected)  # iterate 0 is the pretrained prediction
    assert result.x.shape == (2, 1, 16, 16)
    assert (result.losses[:, -1] < result.losses[:, 0]).all()  # and fine-tuning lowers the loss


def test_a_network_of_other_sizes_does_not_load(pretrained):
    _, path = pretrained
    with pytest.raises(RuntimeError, match="does not fit DIPUNet"):
        load_pretrained_unet(network=_unet(channels=8), checkpoint=path)
    with pytest.raises(RuntimeError, match="not in the network"):
        load_pretrained_unet(network=_unet(scales=2), checkpoint=path)


def test_the_prefix_selects_the_submodule(pretrained, tmp_path):
    model, path = pretrained
    with pytest.raises(ValueError, match=r"no submodule 'net' \(it has \['unet'\]\)"):
        load_pretrained_unet(network=_unet(), checkpoint=path, prefix="net")
    bare = tmp_path / "bare.pt"  # a checkpoint whose model is the network itself
    atomic_save({"model": model.unet.state_dict()}, bare)
    loaded = load_pretrained_unet(network=_unet(), checkpoint=bare, prefix="")
    assert torch.equal(loaded.out_conv.weight, model.unet.out_conv.weight)
    assert submodule_state({"a.b": 1, "a.c": 2, "d": 3}, "a") == {"b": 1, "c": 2}


class _Payload:
    """Anything only full unpickling can rebuild."""


def test_files_are_loaded_as_data_only(tmp_path):
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"model": {}, "extra": _Payload()}, unsafe)
    with pytest.raises(UnsafeCheckpointError, match="full unpickling"):
        load_pretrained_unet(network=_unet(), checkpoint=unsafe)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_pretrained_unet(network=_unet(), checkpoint=tmp_path / "missing.pt")
    not_trainer = tmp_path / "weights.pt"
    torch.save(_unet().state_dict(), not_trainer)
    with pytest.raises(ValueError, match="not a tomolearn trainer checkpoint"):
        load_pretrained_unet(network=_unet(), checkpoint=not_trainer)
    with pytest.raises(ValueError, match="network must be a torch.nn.Module"):
        load_pretrained_unet(network="unet", checkpoint=not_trainer)


def test_no_checkpoint_keeps_the_weights_and_warns(caplog):
    net = _unet()
    before = net.out_conv.weight.clone()
    with caplog.at_level(logging.WARNING, logger="recon.dip.warm_start"):
        assert load_pretrained_unet(network=net, checkpoint=None) is net
    assert torch.equal(net.out_conv.weight, before)
    assert "untrained" in caplog.text and "experiment=dip/pretrain" in caplog.text
