"""compile_networks: which modules it compiles, same results, state_dict unchanged, fallback."""

from __future__ import annotations

import pytest
import torch

from models.blocks import ConvNet
from operators import MatrixOperator
from recon.training import compilation
from recon.training.compilation import compile_networks, network_modules
from recon.unrolled import LearnedPrimalDual


def small_problem():
    torch.manual_seed(0)
    op = MatrixOperator(torch.randn(6 * 7, 8 * 8), domain_shape=(8, 8), range_shape=(6, 7))
    return op, torch.randn(2, 1, 6, 7)


def test_network_modules_are_the_outermost_models_classes():
    lpd = LearnedPrimalDual(n_iter=3)
    names = [name for name, _ in network_modules(lpd)]
    expected = [f"primal_blocks.{k}" for k in range(3)] + [f"dual_blocks.{k}" for k in range(3)]
    assert names == expected
    assert all(isinstance(m, ConvNet) for _, m in network_modules(lpd))


def test_compiled_lpd_matches_eager_and_keeps_state_dict_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("TOMOLEARN_CACHE_DIR", str(tmp_path))
    op, y = small_problem()
    torch.manual_seed(1)
    eager = LearnedPrimalDual(n_iter=2, channels=4)
    compiled = LearnedPrimalDual(n_iter=2, channels=4)
    compiled.load_state_dict(eager.state_dict())
    assert len(compile_networks(compiled, backend="eager")) == 4
    assert list(compiled.state_dict()) == list(eager.state_dict())
    torch.testing.assert_close(compiled(y, op), eager(y, op))
    # gradients flow through the compiled networks
    compiled(y, op).square().sum().backward()
    assert all(p.grad is not None for p in compiled.parameters())


def test_a_failing_compilation_falls_back_to_eager_with_a_warning(monkeypatch, tmp_path):
    monkeypatch.setenv("TOMOLEARN_CACHE_DIR", str(tmp_path))

    def broken_compile(fn, **kwargs):
        def fail(*args, **kw):
            raise RuntimeError("no C++ compiler")

        return fail

    monkeypatch.setattr(compilation.torch, "compile", broken_compile)
    op, y = small_problem()
    torch.manual_seed(1)
    model = LearnedPrimalDual(n_iter=1, channels=4)
    expected = model(y, op)
    compile_networks(model)
    with pytest.warns(RuntimeWarning, match="torch.compile failed.*trainer.compile=false"):
        out = model(y, op)
    torch.testing.assert_close(out, expected)


def test_a_model_without_networks_warns():
    from recon.classical import FBP

    with pytest.warns(RuntimeWarning, match="nothing was compiled"):
        assert compile_networks(FBP(), backend="eager") == []


@pytest.mark.slow
def test_inductor_compiled_convnet_matches_eager(tmp_path, monkeypatch):
    monkeypatch.setenv("TOMOLEARN_CACHE_DIR", str(tmp_path))
    torch.manual_seed(0)
    net = ConvNet(in_channels=1, out_channels=1, hidden_channels=4, n_layers=3)
    x = torch.randn(2, 1, 16, 16)
    expected = net(x)
    compile_networks(net)
    torch.testing.assert_close(net(x), expected, rtol=1e-4, atol=1e-5)


def test_trainer_compile_switch_compiles_the_networks(tmp_path, monkeypatch):
    from recon.training import Trainer, trainer

    compiled = []
    monkeypatch.setattr(trainer, "compile_networks", lambda model: compiled.append(model) or [])
    op, y = small_problem()
    model = LearnedPrimalDual(n_iter=1, channels=4)
    data = [(torch.zeros(1, 8, 8), y[0])] * 2
    Trainer(
        model, train_data=data, val_data=None, objective=lambda m, b: m(b[1], op).square().mean(),
        out_dir=tmp_path / "run", max_steps=1, batch_size=2, progress=False, compile=True,
    )  # fmt: skip
    assert compiled == [model]
