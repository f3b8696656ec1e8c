"""Tests of recon.training.tasks.MirrorTask: the unsupervised loss of learned mirror descent,
short trainings by hand and by the Trainer, and the ellipses/mirror experiment."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate

from models import ICNN, InverseSpectralQuadratic
from operators import Parallel2D, RayTransform
from recon.mirror import LearnedMirrorDescent
from recon.solvers import SmoothedTV
from recon.training import Trainer
from recon.training.tasks import MirrorTask


@pytest.fixture(scope="module")
def ray():
    return RayTransform(Parallel2D((16, 16), n_angles=8), backend="matrix")


def _icnn(seed=0, **kwargs) -> ICNN:
    torch.manual_seed(seed)
    options = {"channels": 4, "n_layers": 2, "quadratic": 0.9, "output_scale": 0.05}
    return ICNN(**(options | kwargs))


def _lmd(**kwargs) -> LearnedMirrorDescent:
    options = {
        "mirror_map": _icnn(0),
        "inverse_map": _icnn(1),
        "objective": SmoothedTV(lam=0.3, eps=0.05),
        "n_iter": 3,
    }
    return LearnedMirrorDescent(**(options | kwargs))


def _batches(ray, n_batches, size=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    c = torch.linspace(-1, 1, 16)
    rows, cols = torch.meshgrid(c, c, indexing="ij")
    out = []
    for _ in range(n_batches):
        x = torch.zeros(size, 1, 16, 16)
        for i in range(size):
            cy, cx, r = torch.rand(3, generator=gen).tolist()
            x[i, 0] = (rows - cy + 0.5) ** 2 + (cols - cx + 0.5) ** 2 <= 0.1 + 0.4 * r
        y = ray(x)
        out.append((x, y + 0.02 * y.abs().mean() * torch.randn(y.shape, generator=gen)))
    return out


def test_short_training_lowers_the_objective(ray):
    torch.manual_seed(0)
    lmd = _lmd(step_range=(0.0, 10.0))
    task = MirrorTask(op=ray, consistency_weight=1.0)
    batches = _batches(ray, 2)
    _, y_test = _batches(ray, 1, seed=9)[0]

    def final_objective():
        with torch.no_grad():
            return lmd(y_test, ray, trace=True).objective[-1].mean().item()

    before, losses = final_objective(), []
    opt = torch.optim.Adam(lmd.parameters(), lr=2e-3)
    for step in range(12):
        loss = task.loss(lmd, batches[step % 2], step=step + 1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert final_objective() < 0.95 * before
    assert sum(losses[-2:]) < sum(losses[:2])


def test_trainer_runs_the_unsupervised_objective(ray, tmp_path):
    torch.manual_seed(0)
    batches = _batches(ray, 2)
    data = torch.utils.data.TensorDataset(torch.cat([x for x, _ in batches]),
                                          torch.cat([y for _, y in batches]))  # fmt: skip
    trainer = Trainer(_lmd(), train_data=data, val_data=data,
                      task=MirrorTask(op=ray),
                      out_dir=tmp_path, max_steps=2, batch_size=4, progress=False,
                      val_indices=[0, 1])  # fmt: skip
    result = trainer.fit()
    assert result["step"] == 2 and math.isfinite(result["last_loss"])
    assert math.isfinite(result["last_val"]["psnr"])


def test_batches_and_validation(ray):
    task = MirrorTask(op=ray, consistency_weight=0.0)
    lmd = _lmd()
    ((x, y),) = _batches(ray, 1, size=2)
    with torch.no_grad():
        assert torch.equal(task.loss(lmd, y, step=1), task.loss(lmd, (y,), step=1))
        assert torch.equal(task.loss(lmd, (y,), step=1), task.loss(lmd, (x, y), step=1))
        estimate, truth = task.predict(lmd, (x, y))
    assert estimate.shape == truth.shape == (2, 1, 16, 16) and truth is x and task.validates
    with pytest.raises(ValueError, match=r"MirrorTask needs batches \(x, y\) or \(y,\)"):
        task.loss(lmd, (x, y, y), step=1)
    with pytest.raises(ValueError, match="consistency_weight"):
        MirrorTask(op=ray, consistency_weight=-1.0)


SMALL = [
    "operator.geometry.image_shape=[16,16]",
    "operator.geometry.n_detectors=24",
    "operator.geometry.n_angles=8",
]


def test_experiment_config_builds_the_model_and_its_loss(compose_cfg):
    cfg = compose_cfg("experiment=ellipses/mirror", *SMALL, "model.mirror_map.channels=4")
    op = instantiate(cfg.operator)
    model = instantiate(cfg.model)
    assert isinstance(model, LearnedMirrorDescent) and model.n_iter == 10
    assert model.mirror_map.channels == 4 and model.inverse_map.channels == 16
    assert model.objective.lam == 2.0 and cfg.trainer.max_steps > 0
    assert model.scheme == "nesterov" and model.nonneg and model.two_metric
    assert model.tie_spectral and model.momenta() is not None
    for net in (model.mirror_map, model.inverse_map):  # a global preconditioner on the grid
        assert net.spectral_layer.shape == (16, 16) and net.quadratic_layer is None
    tied = model.inverse_map.spectral_layer
    assert isinstance(tied, InverseSpectralQuadratic)
    assert tied.quadratic is model.mirror_map.spectral_layer
    task = instantiate(cfg.objective, op=op)  # as recon-train calls it
    assert isinstance(task, MirrorTask) and task.consistency_weight == 10.0
    y = op(torch.rand(2, 1, 16, 16))
    loss = task.loss(model, (None, y), step=1)
    loss.backward()
    assert loss.ndim == 0 and math.isfinite(loss.item())
    estimate, truth = task.predict(model.eval(), (torch.zeros(2, 1, 16, 16), y))
    assert estimate.shape == truth.shape == (2, 1, 16, 16)


def test_recon_train_runs_the_experiment(compose_cfg, tmp_path):
    from recon.cli.train import train

    tiny = ["model.n_iter=2", "model.mirror_map.channels=4", "model.inverse_map.channels=4",
            "data.splits.train.size=4", "data.splits.validation.size=2", "trainer.max_steps=2",
            "trainer.batch_size=2", "trainer.warmup_steps=0", "trainer.val_every=2",
            "trainer.ckpt_every=2", "trainer.progress=false"]  # fmt: skip
    cfg = compose_cfg("experiment=ellipses/mirror", *SMALL, *tiny)
    result = train(cfg, output_dir=tmp_path)
    assert result["step"] == 2 and math.isfinite(result["last_loss"])
    assert math.isfinite(result["last_val"]["psnr"])
