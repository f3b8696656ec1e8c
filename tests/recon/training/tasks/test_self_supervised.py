"""Self-supervised losses and tasks: SURE is unbiased, EI vanishes on equivariant maps, no ground
truth reaches a loss, and every mode trains."""

from __future__ import annotations

import math

import pytest
import torch

from data_tools.phantoms import random_ellipses
from operators import IdentityOperator, MatrixOperator, Parallel2D, RayTransform
from recon.training import Trainer
from recon.training.tasks import EquivariantTask, MeasurementConsistencyTask, Noise2InverseTask
from recon.training.tasks.self_supervised_losses import (
    GaussianSURE,
    ImageTransforms,
    PoissonGaussianSURE,
    rotate_images,
)
from recon.unrolled import Noise2Inverse, angle_subsets


class LinearRecon(torch.nn.Module):
    """f(y) = B y for a fixed matrix B (a linear reconstructor)."""

    def __init__(self, matrix: torch.Tensor, shape: tuple[int, int]) -> None:
        super().__init__()
        self.matrix, self.shape = matrix, shape

    def forward(self, y, op):
        flat = y.reshape(y.shape[0], -1) @ self.matrix.T
        return flat.reshape(y.shape[0], 1, *self.shape)


def test_gaussian_sure_is_unbiased_for_a_linear_reconstructor():
    """E[SURE] = E‖A f(y) − A x‖²/m: the mean over 4000 noise draws agrees within 4 SE."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(12, 9, generator=g, dtype=torch.float64)
    op = MatrixOperator(A, domain_shape=(3, 3), range_shape=(12,))
    model = LinearRecon(0.1 * torch.randn(9, 12, generator=g, dtype=torch.float64), (3, 3))
    x = torch.rand(4000, 1, 3, 3, generator=g, dtype=torch.float64)
    clean = op(x)
    sigma = 0.3
    y = clean + sigma * torch.randn(clean.shape, generator=g, dtype=torch.float64)
    sure = GaussianSURE(sigma=sigma, tau=0.01)
    per_sample = torch.stack([sure(model, yi[None], op, generator=g) for yi in y[:4000]])
    true = (op(model(y, op)) - clean).square().flatten(1).mean(1)
    diff = per_sample - true
    assert abs(diff.mean()) < 4 * diff.std() / math.sqrt(len(diff))
    # the plain residual is biased by about σ² − 2σ² tr(AB)/m: SURE corrects it
    residual = (op(model(y, op)) - y).square().flatten(1).mean(1)
    assert abs((residual - true).mean()) > 10 * diff.std() / math.sqrt(len(diff))


def test_poisson_gaussian_sure_is_unbiased_for_a_linear_denoiser():
    g = torch.Generator().manual_seed(1)
    n = 16
    op = IdentityOperator((n,))
    smoother = torch.eye(n, dtype=torch.float64) * 0.5 + 0.25 * (
        torch.diag(torch.ones(n - 1, dtype=torch.float64), 1)
        + torch.diag(torch.ones(n - 1, dtype=torch.float64), -1)
    )
    model = LinearRecon(smoother, (n,))
    model.forward = lambda y, op: (y.reshape(y.shape[0], -1) @ smoother.T).reshape(y.shape)
    gamma, sigma = 0.5, 0.3
    u = 2 + torch.rand(1, 1, n, generator=g, dtype=torch.float64) * 4
    draws = 4000
    z = gamma * torch.poisson((u / gamma).expand(draws, 1, n), generator=g)
    z = z + sigma * torch.randn(z.shape, generator=g, dtype=torch.float64)
    sure = PoissonGaussianSURE(gamma=gamma, sigma=sigma, tau=0.01)
    per_sample = torch.stack([sure(model, zi[None], op, generator=g) for zi in z])
    true = (model(z, op) - u).square().flatten(1).mean(1)
    diff = per_sample - true
    assert abs(diff.mean()) < 4 * diff.std() / math.sqrt(draws)


def test_sure_on_post_log_data_uses_transmissions():
    sure = PoissonGaussianSURE(photons=1e4, mu_max=1.0)
    op = IdentityOperator((4, 4))

    class Keep(torch.nn.Module):
        def forward(self, y, op):
            return y

    value = sure(Keep(), torch.full((1, 1, 4, 4), 0.5), op)
    assert torch.isfinite(value)


@pytest.mark.parametrize("group", ["rotations", "rot90", "reflections", "shifts"])
def test_ei_loss_is_zero_for_an_equivariant_map_and_positive_otherwise(group):
    op = IdentityOperator((8, 8))
    y = torch.rand(3, 1, 8, 8)

    class Keep(torch.nn.Module):
        def forward(self, y, op):
            return y

    class AddPattern(torch.nn.Module):  # not equivariant: adds a fixed off-centre pattern
        def forward(self, y, op):
            pattern = torch.zeros(8, 8)
            pattern[1, 2] = 1.0
            return y + pattern

    task = EquivariantTask(op=op, group=group, alpha=1.0)
    assert float(task.loss(Keep(), (y,), step=1)) == 0.0
    assert float(task.equivariance(AddPattern(), y)) > 1e-3


def test_image_transforms_are_group_actions():
    x = torch.rand(4, 1, 6, 6)
    for group in ("rot90", "reflections"):
        out = ImageTransforms(group)(x, generator=torch.Generator().manual_seed(0))
        # a permutation of each image's pixels, never the identity
        assert torch.equal(out.flatten(1).sort(1).values, x.flatten(1).sort(1).values)
        assert not any(torch.equal(o, xi) for o, xi in zip(out, x, strict=True))
    quarter = rotate_images(x, torch.full((4,), math.pi / 2))
    torch.testing.assert_close(
        quarter[:, :, 1:-1, 1:-1], torch.rot90(x, 1, (-2, -1))[:, :, 1:-1, 1:-1]
    )
    with pytest.raises(ValueError, match="choose from"):
        ImageTransforms("scaling")


def test_no_ground_truth_reaches_the_losses():
    op = RayTransform(Parallel2D((16, 16), n_angles=8), backend="matrix")
    x = random_ellipses((16, 16), n=2, generator=torch.Generator().manual_seed(0))[:, None]
    y = op(x)
    poisoned = torch.full_like(x, float("nan"))
    model = Noise2Inverse(n_splits=2, channels=4, depth=1)
    tasks = [
        MeasurementConsistencyTask(op=op),
        EquivariantTask(op=op, group="rot90"),
        Noise2InverseTask(op=op),
    ]
    for task in tasks:
        torch.manual_seed(0)
        with_truth = task.loss(model, (poisoned, y), step=1)
        torch.manual_seed(0)
        alone = task.loss(model, (y,), step=1)
        assert torch.isfinite(with_truth) and torch.equal(with_truth, alone)


def test_robust_ei_needs_a_noise_model():
    with pytest.raises(ValueError, match="noise"):
        EquivariantTask(op=IdentityOperator((4, 4)), sure=GaussianSURE(sigma=0.1))


def test_noise2inverse_splits_and_averages():
    assert angle_subsets(8, 4) == [[0, 4], [1, 5], [2, 6], [3, 7]]
    op = RayTransform(Parallel2D((16, 16), n_angles=8), backend="matrix")
    model = Noise2Inverse(n_splits=4, channels=4, depth=1)
    y = op(random_ellipses((16, 16), n=2, generator=torch.Generator().manual_seed(0))[:, None])
    inputs, targets = model.split_inputs(y, op)
    assert inputs.shape == targets.shape == (2, 4, 16, 16)
    # the mean of the other splits: K·mean(all) − own, over K − 1
    torch.testing.assert_close(inputs, (targets.sum(1, keepdim=True) - targets) / 3)
    # FBP is linear and each split weighs its angles K times more: the splits average to the
    # full FBP
    from recon.classical.analytic import fbp

    full = fbp(y.reshape(2, *op.range_shape), op, filter="hann")
    torch.testing.assert_close(targets.mean(1), full, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="cannot split"):
        angle_subsets(3, 4)


class Measurements(torch.utils.data.Dataset):
    def __init__(self, op, n, seed):
        x = random_ellipses((16, 16), n=n, generator=torch.Generator().manual_seed(seed))[:, None]
        self.x, self.y = x, op(x) + 0.05 * torch.randn(n, 1, *op.range_shape)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return (self.y[i],)


@pytest.mark.parametrize("mode", ["mc", "ei", "rei", "n2i"])
def test_each_self_supervised_mode_trains(tmp_path, mode):
    from data_tools.noise import GaussianNoise
    from recon.unrolled import FBPUNet

    torch.manual_seed(0)
    op = RayTransform(Parallel2D((16, 16), n_angles=8), backend="matrix")
    if mode == "n2i":
        model, task = Noise2Inverse(n_splits=2, channels=4, depth=1), Noise2InverseTask(op=op)
    else:
        model = FBPUNet(channels=4, depth=1, norm="none")
        sure = GaussianSURE(relative=0.05) if mode == "rei" else None
        noise = GaussianNoise(relative=0.05) if mode == "rei" else None
        task = (
            MeasurementConsistencyTask(op=op)
            if mode == "mc"
            else EquivariantTask(op=op, group="rotations", sure=sure, noise=noise)
        )
    data = Measurements(op, 8, 0)
    first = float(task.loss(model, (data.y[:4],), step=1))
    trainer = Trainer(
        model, train_data=data, val_data=None, task=task, out_dir=tmp_path / mode, max_steps=6,
        batch_size=4,
        ckpt_every=6, progress=False,
    )  # fmt: skip
    result = trainer.fit()
    assert result["step"] == 6
    assert (tmp_path / mode / "checkpoints" / "last.pt").exists()
    assert math.isfinite(first)
