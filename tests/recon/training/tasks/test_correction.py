"""Tests of recon.training.tasks.CorrectionTask: the correction loss (forward/adjoint losses,
recursive schedule), its trainer integration and the correction experiments' configs."""

from __future__ import annotations

import pytest
import torch

from models.unet import UNet
from operators import LinearOperator, Parallel2D, RayTransform
from operators.learned import LearnedOperator
from recon.correction import operator_errors, tv_descent
from recon.training import Trainer
from recon.training.tasks import CorrectionTask


class _ResidualConv(torch.nn.Module):
    """x + conv3x3(x): a linear correction network, exact for the toy mismatches below."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular").double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


def _small_net() -> UNet:
    torch.manual_seed(0)
    return UNet(channels=4, depth=1, residual=True, norm=None).double()


@pytest.fixture(scope="module")
def ct():
    return RayTransform(Parallel2D((16, 16), n_angles=12), backend="matrix")


def test_recursive_schedule_grows_and_is_reproducible(ct):
    objective = CorrectionTask(accurate=ct, recursive_iter=4, grow_every=10, seed=3)
    assert [objective.iterations_at(s) for s in range(10)] == [0] * 10
    draws = [objective.iterations_at(s) for s in range(10, 200)]
    assert max(draws[:10]) <= 1 and max(draws) == 4 and min(draws) == 0
    again = CorrectionTask(accurate=ct, recursive_iter=4, grow_every=10, seed=3)
    assert draws == [again.iterations_at(s) for s in range(10, 200)]
    with pytest.raises(ValueError, match="both 0"):
        CorrectionTask(accurate=ct, forward_weight=0, adjoint_weight=0)
    with pytest.raises(ValueError, match="linear operator"):
        CorrectionTask(accurate=object())


def test_truth_fraction_sets_how_often_the_ground_truth_is_drawn(ct):
    mixed = CorrectionTask(accurate=ct, recursive_iter=5, grow_every=1, truth_fraction=0.5)
    draws = torch.tensor([mixed.iterations_at(s) for s in range(10, 2010)])
    assert abs(float((draws == 0).float().mean()) - 0.5) < 0.04  # binomial sd ≈ 0.011
    recursive = draws[draws > 0]
    assert set(recursive.tolist()) == {1, 2, 3, 4, 5}
    uniform = CorrectionTask(accurate=ct, recursive_iter=5, grow_every=1)
    share = sum(uniform.iterations_at(s) == 0 for s in range(10, 2010)) / 2000
    assert abs(share - 1 / 6) < 0.04
    never = CorrectionTask(accurate=ct, recursive_iter=5, grow_every=1, truth_fraction=0)
    assert all(never.iterations_at(s) > 0 for s in range(1, 200))
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="truth_fraction"):
            CorrectionTask(accurate=ct, recursive_iter=5, truth_fraction=bad)


class _DetectorBlur(LinearOperator):
    """Circular [1/4, 1/2, 1/4] blur along the detector axis: symmetric, so self-adjoint."""

    native_autograd = True

    def _matvec(self, y):
        return 0.25 * y.roll(1, dims=-1) + 0.5 * y + 0.25 * y.roll(-1, dims=-1)

    _rmatvec = _matvec


def _mismatched_pair(ct, *, blur: bool = True):
    """(Ã, A) with A = 1.5 · blur ∘ Ã (or 1.5 · Ã), a structured mismatch a data-space net can
    learn (Ã underestimates the amplitude, as the PAT regridding model does)."""
    if not blur:
        return ct, 1.5 * ct
    kernel = _DetectorBlur(ct.range_shape, ct.range_shape, dtypes=(torch.float64,))
    return ct, 1.5 * (kernel @ ct)


def test_correction_objective_losses_and_predict(ct):
    approx, accurate = _mismatched_pair(ct)
    model = LearnedOperator(approx, data_net=_small_net(), zero_init=True)
    task = CorrectionTask(op=approx, accurate=accurate, adjoint_weight=0.0)
    x = torch.rand(4, 1, 16, 16, dtype=torch.float64)
    y = accurate(x)
    # the untrained (zero-initialised) correction is Ã: the loss is Ã's relative error squared
    expected = operator_errors(model, approx, accurate, x[:, 0], y[:, 0])["forward_approx"]
    assert task.loss(model, (x, y), step=1).item() == pytest.approx(
        expected.pow(2).mean().item(), rel=1e-10
    )
    estimate, truth = task.predict(model, (x, y))
    assert estimate.shape == truth.shape == (4, 1, *ct.range_shape)
    assert torch.allclose(truth[:, 0], accurate(x[:, 0]))


def test_adjoint_only_training_validates_the_adjoint(ct):
    approx, accurate = _mismatched_pair(ct)
    torch.manual_seed(0)
    model = LearnedOperator(
        approx, data_net=_small_net(), adjoint_data_net=_small_net(), adjoint="learned"
    )
    task = CorrectionTask(op=approx, accurate=accurate, forward_weight=0.0)
    x = torch.rand(3, 1, 16, 16, dtype=torch.float64)
    y = accurate(x) + 0.01
    estimate, truth = task.predict(model, (x, y))
    r = model(x[:, 0]) - y[:, 0]
    assert estimate.shape == truth.shape == (3, 1, 16, 16)
    assert torch.allclose(estimate[:, 0], model.adjoint(r))
    assert torch.allclose(truth[:, 0], accurate.T(r))
    assert not torch.allclose(estimate, truth)  # the random adjoint net is not Aᵀ
    task.loss(model, (x, y), step=0).backward()  # only the adjoint networks get gradients
    assert all(p.grad is not None for p in model.adjoint_data_net.parameters())
    assert all(p.grad is None for p in model.data_net.parameters())
    linearised = LearnedOperator(approx, data_net=_small_net(), adjoint="linearised")
    with pytest.raises(ValueError, match="forward_weight=0 trains the adjoint networks alone"):
        task.predict(linearised, (x, y))


@pytest.mark.parametrize("mode", ["learned", "linearised"])
def test_training_the_correction_reduces_model_and_adjoint_errors(ct, mode, tmp_path):
    """Through the shared trainer, a data-space net (and a learned adjoint net) learn
    A = 1.5·blur·Ã; the model and adjoint errors of A_q fall well below those of Ã on held-out
    images. The nets are linear residual convolutions, which can represent the mismatch."""
    approx, accurate = _mismatched_pair(ct)
    torch.manual_seed(0)
    nets = {"data_net": _ResidualConv()}
    if mode == "learned":
        nets["adjoint_data_net"] = _ResidualConv()
    model = LearnedOperator(approx, adjoint=mode, zero_init=True, **nets)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(80, 1, 16, 16, generator=gen, dtype=torch.float64)
    y = accurate(x) + 0.01 * torch.randn(80, 1, *ct.range_shape, generator=gen, dtype=torch.float64)
    train = torch.utils.data.TensorDataset(x[:64], y[:64])
    task = CorrectionTask(op=approx, accurate=accurate)
    trainer = Trainer(
        model, train_data=train, val_data=None, task=task,
        out_dir=tmp_path, max_steps=150, batch_size=8, progress=False,
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-2),
    )  # fmt: skip
    trainer.fit()
    errors = operator_errors(model, approx, accurate, x[64:, 0], y[64:, 0])
    assert errors["forward_approx"].mean() > 0.3
    assert errors["forward_model"].mean() < errors["forward_approx"].mean() / 3
    assert errors["adjoint_model"].mean() < errors["adjoint_approx"].mean() / 3


def test_recursive_inputs_are_tv_iterates_of_the_current_model(ct):
    approx, accurate = _mismatched_pair(ct)
    model = LearnedOperator(approx, data_net=_small_net(), zero_init=True)
    objective = CorrectionTask(accurate=accurate, recursive_iter=3, grow_every=1, lam=0.01, seed=0)
    x = torch.rand(2, 16, 16, dtype=torch.float64)
    y = accurate(x)
    step = next(s for s in range(3, 100) if objective.iterations_at(s) == 2)
    u = objective.inputs(model, x, y, step)
    expected = tv_descent(y, model, lam=0.01, n_iter=2, lipschitz=objective.lipschitz())
    assert torch.allclose(u, expected) and not u.requires_grad
    assert objective.inputs(model, x, y, 0) is x


def test_lam_max_draws_the_tv_weight_log_uniformly_per_step(ct):
    approx, accurate = _mismatched_pair(ct)
    objective = CorrectionTask(
        accurate=accurate, recursive_iter=3, grow_every=1, lam=1e-3, lam_max=1e-1, seed=0
    )
    lams = [objective.lam_at(s) for s in range(400)]
    assert min(lams) >= 1e-3 and max(lams) <= 1e-1
    logs = torch.tensor(lams).log10()
    assert abs(float(logs.mean()) + 2) < 0.1  # log-uniform on [-3, -1]: mean -2
    assert abs(float((logs < -2.5).double().mean()) - 0.25) < 0.07
    assert lams == [objective.lam_at(s) for s in range(400)]  # a resumed run draws the same
    # the draw of λ does not change the draw of k
    plain = CorrectionTask(accurate=accurate, recursive_iter=3, grow_every=1, lam=1e-3)
    assert [objective.iterations_at(s) for s in range(50)] == [
        plain.iterations_at(s) for s in range(50)
    ]
    assert all(plain.lam_at(s) == 1e-3 for s in range(5))
    # and the inputs are the TV iterates at the drawn λ, with its own step size
    model = LearnedOperator(approx, data_net=_small_net(), zero_init=True)
    x = torch.rand(2, 16, 16, dtype=torch.float64)
    y = accurate(x)
    step = next(s for s in range(3, 100) if objective.iterations_at(s) == 2)
    lam = objective.lam_at(step)
    lipschitz = float(accurate.norm()) ** 2 + 8 * lam / objective.eps
    expected = tv_descent(y, model, lam=lam, eps=objective.eps, n_iter=2, lipschitz=lipschitz)
    assert torch.allclose(objective.inputs(model, x, y, step), expected)
    for bad in [{"lam": 0.0, "lam_max": 1e-2}, {"lam": 1e-2, "lam_max": 1e-3},
                {"lam": 1e-3, "lam_max": -1.0}]:  # fmt: skip
        with pytest.raises(ValueError, match="lam"):
            CorrectionTask(accurate=accurate, recursive_iter=3, **bad)


def test_recursive_inputs_build_no_graph_through_the_learned_adjoint(ct):
    # a graph through the trainable nets would keep every iterate's activations alive
    approx, accurate = _mismatched_pair(ct)
    model = LearnedOperator(approx, data_net=_small_net(), adjoint="learned",
                            adjoint_data_net=_small_net(), zero_init=False)  # fmt: skip
    assert all(p.requires_grad for p in model.parameters())
    in_graph = []
    for net in (model.data_net, model.adjoint_data_net):
        net.register_forward_hook(lambda m, i, out: in_graph.append(out.requires_grad))
    objective = CorrectionTask(accurate=accurate, recursive_iter=3, grow_every=1, lam=0.01, seed=0)
    x = torch.rand(2, 16, 16, dtype=torch.float64)
    step = next(s for s in range(3, 100) if objective.iterations_at(s) == 3)
    u = objective.inputs(model, x, accurate(x), step)
    assert len(in_graph) == 6 and not any(in_graph) and not u.requires_grad


@pytest.mark.parametrize(
    "name", ["correction_pat64", "correction_pat128", "correction_ct_parallel"]
)
def test_late_iterate_stage_fine_tunes_the_first_stage_on_200_tv_iterations(compose_cfg, name):
    first = compose_cfg(f"experiment={name}/forward")
    cfg = compose_cfg(f"experiment={name}/late")
    assert cfg.init_from.endswith("/checkpoints/best.pt")
    assert cfg.objective.recursive_iter == 200 and cfg.objective.grow_every == 1
    assert first.objective.recursive_iter == 20
    assert cfg.model == first.model and cfg.data == first.data and cfg.operator == first.operator
    assert cfg.objective.truth_fraction == first.objective.truth_fraction
    assert cfg.objective.lam == first.objective.lam


@pytest.mark.parametrize("name", ["correction_pat64", "correction_pat128"])
def test_lams_stage_fine_tunes_the_late_stage_over_the_tuned_tv_weights(compose_cfg, name):
    from hydra.utils import instantiate

    late = compose_cfg(f"experiment={name}/late")
    cfg = compose_cfg(f"experiment={name}/lams")
    assert cfg.init_from.endswith("_late/checkpoints/best.pt")
    assert cfg.objective.lam == 5e-4 and cfg.objective.lam_max == 4e-3
    assert cfg.objective.recursive_iter == 200 and cfg.optim.lr < late.optim.lr
    assert cfg.model == late.model and cfg.data == late.data and cfg.operator == late.operator
    objective = instantiate(cfg.objective, op=None)
    assert isinstance(objective, CorrectionTask)
    assert objective.lam_max == 4e-3 and len({objective.lam_at(s) for s in range(3)}) == 3


def test_adjoint_stage_trains_wider_periodic_adjoint_networks_alone(compose_cfg):
    late = compose_cfg("experiment=correction_ct_parallel/late")
    cfg = compose_cfg("experiment=correction_ct_parallel/adjoint")
    assert cfg.init_from == "outputs/ct_parallel_late/checkpoints/best.pt"
    assert list(cfg.init_skip) == ["adjoint_image_net", "adjoint_data_net"]
    assert cfg.objective.forward_weight == 0 and cfg.objective.truth_fraction == 1.0
    assert cfg.optim.weight_decay == 0  # with no gradient, the forward nets stay as loaded
    assert cfg.model.image_net == late.model.image_net
    assert cfg.model.data_net == late.model.data_net
    adjoint_data_net = cfg.model.adjoint_data_net
    assert adjoint_data_net.channels > late.model.adjoint_data_net.channels
    assert list(adjoint_data_net.periodic) == [True, False]  # (angle, detector)
    assert cfg.data == late.data and cfg.operator == late.operator


def test_ct_correction_experiment_composes_with_the_accurate_model_as_simulator(compose_cfg):
    from hydra.utils import instantiate

    cfg = compose_cfg("experiment=correction_ct_fan/forward")
    assert cfg.objective.accurate._target_ == "operators.SupersampledRayTransform"
    assert cfg.data.simulation.operator == cfg.objective.accurate
    assert cfg.operator._target_ == "operators.RayTransform"
    model = instantiate(cfg.model)
    assert model.domain_shape == (64, 64) and model.adjoint_mode == "learned"


def test_ct_parallel_correction_experiment_swaps_only_the_approximate_model(compose_cfg):
    from hydra.utils import instantiate

    fan = compose_cfg("experiment=correction_ct_fan/forward")
    cfg = compose_cfg("experiment=correction_ct_parallel/forward")
    assert cfg.objective.accurate == fan.objective.accurate and cfg.data == fan.data
    assert cfg.objective == fan.objective and cfg.trainer == fan.trainer
    assert cfg.operator.geometry._target_ == "operators.Parallel2D"
    model = instantiate(cfg.model)
    assert model.range_shape == (60, 96) and model.adjoint_mode == "learned"
    assert model.data_net.coordinates and model.data_net.channels == 16
    assert model.image_net.coordinates and model.image_net.channels == 8
