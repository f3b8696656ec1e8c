"""The trainer: learning, determinism, resume (in process and after SIGKILL), checkpoints, NaN
stop, TensorBoard, validation metrics, schedule, clipping, distributed training, argument checks."""

from __future__ import annotations

import inspect
import io
import math
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from data_tools.metrics import ssim
from recon.training import (
    Trainer,
    cpu_has_native_bfloat16,
    image_grid,
    reconstruction_predict,
    supervised_objective,
)
from recon.training.sampler import SeededBatchSampler

REPO = Path(__file__).resolve().parents[3]


class Pairs(torch.utils.data.Dataset):
    """Seeded 8 x 8 images x with y = x / 2 + 0.1: sample i is always the same."""

    def __init__(self, size, offset=0):
        self.size, self.offset = size, offset

    def __len__(self):
        return self.size

    def __getitem__(self, i):
        if not 0 <= i < self.size:
            raise IndexError(i)
        g = torch.Generator().manual_seed(1000 + self.offset + i)
        x = torch.rand(1, 8, 8, generator=g)
        return x, x / 2 + 0.1


class Net(nn.Module):
    """A two-layer conv reconstructor: forward(y, op) -> x (op unused)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1)
        )

    def forward(self, y, op):
        return self.net(y)


# The same problem for the scripts run in subprocesses.
PROBLEM = "import torch\nfrom torch import nn\n\n\n" + "\n\n".join(
    inspect.getsource(c) for c in (Pairs, Net)
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread is fastest, and 3-4x faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Recorder:
    """An objective that records its losses and can fail or interrupt at a given step."""

    def __init__(self, *, start=0, nan_at=None, interrupt_at=None, trainer=None):
        self.objective = supervised_objective(None)
        self.losses, self.lrs = [], []
        self.start, self.nan_at, self.interrupt_at = start, nan_at, interrupt_at
        self.trainer = trainer

    def __call__(self, model, batch):
        step = self.start + len(self.losses) + 1
        if step == self.interrupt_at:
            raise Interrupted(step)
        loss = self.objective(model, batch)
        if step == self.nan_at:
            loss = loss * math.nan
        self.losses.append(loss.item())
        if self.trainer is not None:
            self.lrs.append(self.trainer.optimizer.param_groups[0]["lr"])
        return loss


class Interrupted(Exception):
    pass


def make_trainer(out_dir, *, objective=None, model_seed=1234, **settings) -> Trainer:
    """A small trainer on the toy problem; ``settings`` override the defaults below."""
    torch.manual_seed(model_seed)
    arguments = dict(
        train_data=Pairs(12),
        val_data=Pairs(4, offset=100),
        objective=objective if objective is not None else Recorder(),
        predict=reconstruction_predict(None),
        out_dir=out_dir,
        max_steps=20,
        batch_size=4,
        optimizer=partial(torch.optim.AdamW, lr=1e-2),
        ckpt_every=5,
        val_every=5,
        progress=False,
    )
    arguments.update(settings)
    return Trainer(Net(), **arguments)


def scalars(tb_dir: Path, tag: str) -> list[tuple[int, float]]:
    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# --------------------------------------------------------------------------- objectives
def test_supervised_objective_and_predict_pass_op_and_compute_mse():
    seen = []

    class Double(nn.Module):
        def forward(self, y, op):
            seen.append(op)
            return 2 * y

    x, y = torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.5)
    x[0] = 3.0  # errors: 2 on half of the pixels, 1 on the other half -> MSE 2.5
    assert float(supervised_objective("op")(Double(), (x, y))) == pytest.approx(2.5)
    estimate, truth = reconstruction_predict("op")(Double(), (x, y))
    assert torch.equal(estimate, 2 * y) and truth is x
    assert seen == ["op", "op"]
    with pytest.raises(ValueError, match="batches \\(x, y\\)"):
        supervised_objective(None)(Double(), (x,))


def test_an_objective_with_a_step_parameter_gets_the_step_also_after_resume(tmp_path):
    steps = []

    def objective(model, batch, step):
        steps.append(step)
        return supervised_objective(None)(model, batch)

    make_trainer(tmp_path, objective=objective, max_steps=10).fit()
    assert steps == list(range(1, 11))
    make_trainer(tmp_path, objective=objective, max_steps=15).fit(resume=True)
    assert steps[10:] == list(range(11, 16))


# --------------------------------------------------------------------------- learning, seeds
def test_loss_decreases_on_a_learnable_problem(tmp_path):
    recorder = Recorder()
    result = make_trainer(
        tmp_path, objective=recorder, max_steps=60, val_every=60, scheduler="constant",
        optimizer=partial(torch.optim.AdamW, lr=0.1),
    ).fit()  # fmt: skip
    first, last = recorder.losses[0], np.mean(recorder.losses[-5:])
    assert last < 0.01 * first, (first, last)  # about 0.43 -> 0.001
    assert result["step"] == 60 and result["last_loss"] == recorder.losses[-1]
    assert result["last_val"]["psnr"] > 25.0  # x = 2 (y - 0.1) is learnt
    assert result["best_psnr"] >= result["last_val"]["psnr"] - 1e-9
    assert result["wall_time"] > 0


def test_same_seed_gives_identical_losses_and_another_seed_another_order(tmp_path):
    runs = {}
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        recorder = Recorder()
        make_trainer(tmp_path / name, objective=recorder, seed=seed).fit()
        runs[name] = recorder.losses
    assert runs["a"] == runs["b"]
    assert runs["a"][0] != runs["c"][0]  # the first batch differs with the data order


def test_worker_processes_load_the_same_batches(tmp_path):
    runs = []
    for workers in (0, 2):
        recorder = Recorder()
        make_trainer(
            tmp_path / str(workers), objective=recorder, max_steps=5, num_workers=workers
        ).fit()
        runs.append(recorder.losses)
    assert runs[0] == runs[1]


def test_each_epoch_is_a_permutation_and_ranks_split_it():
    sampler = SeededBatchSampler(10, batch_size=4, seed=3, rank=0, world_size=1)
    epochs = []
    for _ in range(3):
        sampler.new_epoch()
        batches = list(sampler)
        assert list(sampler) == batches  # iter() again gives the same epoch
        assert [len(b) for b in batches] == [4, 4, 2] and len(sampler) == 3
        epochs.append([i for batch in batches for i in batch])
    assert all(sorted(e) == list(range(10)) for e in epochs)
    assert epochs[0] != epochs[1]
    sampler.generator.set_state(sampler.epoch_state)  # as a resume does
    sampler.new_epoch(start=1)
    assert [i for batch in sampler for i in batch] == epochs[2][4:] and len(sampler) == 2
    # two ranks: each gets ceil(11 / 2) = 6 indices of the same permutation, padded by wrapping
    ranks = [SeededBatchSampler(11, batch_size=4, seed=3, rank=r, world_size=2) for r in (0, 1)]
    order = torch.randperm(11, generator=torch.Generator().manual_seed(3)).tolist()
    shares = []
    for sampler in ranks:
        sampler.new_epoch()
        shares.append([i for batch in sampler for i in batch])
        assert len(sampler) == 2
    padded = order + order[:1]
    assert shares == [padded[0::2], padded[1::2]]


# --------------------------------------------------------------------------- resume
def test_resume_in_process_matches_the_uninterrupted_run(tmp_path):
    settings = dict(max_steps=20, ckpt_every=10, warmup_steps=3, scheduler="cosine")
    full = Recorder()
    reference = make_trainer(tmp_path / "full", objective=full, **settings)
    reference.fit()

    first = Recorder(interrupt_at=13)  # 3 batches per epoch: step 10 is in the middle of one
    with pytest.raises(Interrupted):
        make_trainer(tmp_path / "cut", objective=first, **settings).fit()
    assert first.losses == full.losses[:12]
    assert load(tmp_path / "cut/checkpoints/last.pt")["position"] == 1

    second = Recorder(start=10)
    resumed = make_trainer(tmp_path / "cut", objective=second, model_seed=99, **settings)
    result = resumed.fit(resume=True)
    assert second.losses == full.losses[10:]  # exactly equal
    assert result["step"] == 20
    for name, value in reference.module.state_dict().items():
        assert torch.equal(value, resumed.module.state_dict()[name]), name
    assert resumed.optimizer.param_groups[0]["lr"] == reference.optimizer.param_groups[0]["lr"]
    # TensorBoard: steps 11 and 12 of the interrupted run were purged, each step appears once
    assert [s for s, _ in scalars(tmp_path / "cut/tb", "train/loss")] == list(range(1, 21))


def test_resume_warns_only_when_the_configuration_changed(tmp_path, caplog):
    make_trainer(tmp_path, max_steps=4, ckpt_every=2).fit()
    with caplog.at_level("WARNING"):
        make_trainer(tmp_path, max_steps=4, ckpt_every=2).fit(resume=True)
    assert "resuming" not in caplog.text  # the same configuration: nothing to report
    with caplog.at_level("WARNING"):
        make_trainer(tmp_path, max_steps=6, ckpt_every=2).fit(resume=True)
    assert "with a different configuration (max_steps: 4 -> 6)" in caplog.text


def test_resume_skips_unreadable_checkpoints(tmp_path, caplog):
    full = Recorder()
    make_trainer(tmp_path / "full", objective=full).fit()
    with pytest.raises(Interrupted):
        make_trainer(tmp_path / "cut", objective=Recorder(interrupt_at=12)).fit()
    ckpt = tmp_path / "cut/checkpoints"
    assert files(ckpt) == {"step_00000005.pt", "step_00000010.pt", "best.pt", "last.pt"}
    # last.pt is a link to step 10: replace both by broken files, not in place
    for name in ("last.pt", "step_00000010.pt"):
        data = (ckpt / name).read_bytes()
        (ckpt / name).unlink()
        (ckpt / name).write_bytes(data[: len(data) // 2])
    second = Recorder(start=5)
    make_trainer(tmp_path / "cut", objective=second).fit(resume=True)
    assert second.losses == full.losses[5:]
    assert "resuming from step_00000005.pt" in caplog.text

    for path in ckpt.glob("*.pt"):
        path.unlink()
        path.write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="no readable checkpoint"):
        make_trainer(tmp_path / "cut").fit(resume=True)


def test_resume_without_checkpoint_starts_afresh_and_a_finished_run_stays(tmp_path, caplog):
    fresh, resumed = Recorder(), Recorder()
    make_trainer(tmp_path / "a", objective=fresh, max_steps=6).fit()
    result = make_trainer(tmp_path / "b", objective=resumed, max_steps=6).fit(resume=True)
    assert "holds no checkpoint: starting afresh" in caplog.text
    assert resumed.losses == fresh.losses and result["step"] == 6

    again = Recorder()
    result = make_trainer(tmp_path / "b", objective=again, max_steps=6).fit(resume=True)
    assert again.losses == [] and result["step"] == 6
    assert result["last_val"]["step"] == 6


SIGKILL_SCRIPT = (
    PROBLEM
    + """
import sys, time
from pathlib import Path
import torch.nn.functional as F
from recon.training import Trainer, reconstruction_predict

torch.set_num_threads(1)


def train(out, resume, slow_after):
    log = out.with_suffix(".log")
    start = torch.load(out / "checkpoints/last.pt", weights_only=True)["step"] if resume else 0
    calls = 0
    if resume:
        with open(log, "a") as f:
            f.write("resume\\n")

    def objective(model, batch):
        nonlocal calls
        x, y = batch
        loss = F.mse_loss(model(y, None), x)
        calls += 1
        with open(log, "a") as f:
            f.write(f"{start + calls} {loss.item()!r}\\n")
            f.flush()
        if start + calls > slow_after:
            time.sleep(0.5)  # time to be killed
        return loss

    torch.manual_seed(0)
    trainer = Trainer(
        Net(), train_data=Pairs(12), val_data=Pairs(4, offset=100), objective=objective,
        predict=reconstruction_predict(None), out_dir=out, max_steps=40, batch_size=4,
        ckpt_every=10, val_every=10, progress=False,
    )
    trainer.fit(resume=resume)


folder = Path(sys.argv[1])
if sys.argv[2] == "start":  # the uninterrupted run, then the run to kill after step 25
    train(folder / "full", False, 10**6)
    train(folder / "killed", False, 25)
else:
    train(folder / "killed", True, 10**6)
"""
)


def _losses(lines: list[str]) -> dict[int, float]:
    return {int(s): float(v) for s, v in (line.split() for line in lines)}


@pytest.mark.timeout(180)
def test_sigkill_and_resume_reproduce_the_uninterrupted_losses(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SIGKILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, str(script), str(tmp_path)]
    process = subprocess.Popen([*command, "start"], env=env, cwd=tmp_path, stderr=subprocess.PIPE)
    log = tmp_path / "killed.log"
    deadline = time.monotonic() + 60
    while not (log.exists() and len(log.read_text().splitlines()) >= 26):
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail(f"the run to kill did not reach step 26: {process.stderr.read().decode()}")
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    resumed = subprocess.run(
        [*command, "resume"], env=env, cwd=tmp_path, capture_output=True, timeout=60
    )
    assert resumed.returncode == 0, resumed.stderr.decode()

    reference = _losses((tmp_path / "full.log").read_text().splitlines())
    before, after = log.read_text().split("resume\n")
    before, after = _losses(before.splitlines()), _losses(after.splitlines())
    assert sorted(reference) == list(range(1, 41))
    assert 26 <= max(before) < 40
    assert sorted(after) == list(range(21, 41))  # from last.pt at step 20
    assert {s: reference[s] for s in before} == before
    assert {s: reference[s] for s in after} == after  # exactly equal
    ckpt = tmp_path / "killed/checkpoints"
    assert not list(ckpt.glob(".*.tmp"))
    assert load(ckpt / "last.pt")["step"] == 40
    assert [s for s, _ in scalars(tmp_path / "killed/tb", "train/loss")] == list(range(1, 41))
    full = load(tmp_path / "full/checkpoints/last.pt")["model"]
    for name, value in load(ckpt / "last.pt")["model"].items():
        assert torch.equal(value, full[name]), name


# --------------------------------------------------------------------------- checkpoints
def test_rotation_keeps_keep_last_plus_best_and_last(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=12, ckpt_every=5, val_every=3, keep_last=2)
    result = trainer.fit()
    ckpt = tmp_path / "checkpoints"
    assert files(ckpt) == {"step_00000010.pt", "step_00000012.pt", "best.pt", "last.pt"}
    assert load(ckpt / "last.pt")["step"] == 12
    history = scalars(tmp_path / "tb", "val/psnr")
    assert [s for s, _ in history] == [3, 6, 9, 12]
    best = load(ckpt / "best.pt")
    assert best["step"] == max(history, key=lambda e: e[1])[0]
    assert best["best_psnr"] == result["best_psnr"]
    assert best["best_psnr"] == pytest.approx(max(v for _, v in history), rel=1e-6)
    # the best weights give the best PSNR again
    model = Net()
    model.load_state_dict(best["model"])
    with torch.no_grad():
        x, y = map(torch.stack, zip(*[Pairs(4, offset=100)[i] for i in range(4)], strict=True))
        estimate = model(y, None)
    mse = (estimate - x).square().mean(dim=(1, 2, 3)).double()
    value_range = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))).double()
    expected = (10 * torch.log10(value_range**2 / mse)).mean()
    assert best["best_psnr"] == pytest.approx(float(expected), rel=1e-6)
    assert set(best["config"]) >= {"seed", "batch_size", "max_steps", "hparams"}
    assert best["sampler_generator"].dtype == torch.uint8 and len(best["rng"]) == 1


def test_failed_write_leaves_the_previous_checkpoint_and_no_temp_files(tmp_path, monkeypatch):
    make_trainer(tmp_path, max_steps=5, val_data=None, predict=None).fit()
    ckpt = tmp_path / "checkpoints"
    before = {name: (ckpt / name).read_bytes() for name in files(ckpt)}
    assert set(before) == {"step_00000005.pt", "last.pt"}

    def refuse(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        make_trainer(tmp_path, max_steps=10, val_data=None, predict=None).fit(resume=True)
    monkeypatch.undo()
    assert {name: (ckpt / name).read_bytes() for name in files(ckpt)} == before
    assert load(ckpt / "last.pt")["step"] == 5


def test_nan_loss_stops_and_names_the_last_good_checkpoint(tmp_path):
    recorder = Recorder(nan_at=17)
    trainer = make_trainer(
        tmp_path, objective=recorder, max_steps=30, ckpt_every=5, val_data=None, predict=None
    )
    with pytest.raises(
        FloatingPointError,
        match=r"loss is nan at step 17; the last good checkpoint is .*step_00000015\.pt",
    ):
        trainer.fit()
    ckpt = tmp_path / "checkpoints"
    assert files(ckpt) == {"step_00000005.pt", "step_00000010.pt", "step_00000015.pt", "last.pt"}
    state = load(ckpt / "step_00000015.pt")
    assert state["step"] == 15
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert load(ckpt / "last.pt")["step"] == 15


def test_nan_gradient_stops_before_the_update(tmp_path):
    def objective(model, batch):
        weight = model.net[0].weight
        return torch.sqrt(weight.abs().sum() * 0.0)  # finite loss, NaN gradient

    trainer = make_trainer(tmp_path, objective=objective, val_data=None, predict=None)
    before = trainer.module.net[0].weight.detach().clone()
    with pytest.raises(FloatingPointError, match="gradient norm is nan at step 1; no checkpoint"):
        trainer.fit()
    assert torch.equal(trainer.module.net[0].weight, before)


@pytest.mark.parametrize("amp", [True, "bfloat16"])
def test_amp_on_cpu_trains_in_bfloat16_without_a_scaler(tmp_path, amp):
    dtypes = []

    def objective(model, batch):
        x, y = batch
        estimate = model(y, None)
        dtypes.append((estimate.dtype, torch.is_autocast_enabled("cpu")))
        return torch.mean((estimate.float() - x) ** 2)

    trainer = make_trainer(
        tmp_path, objective=objective, amp=amp, max_steps=60, val_every=60, scheduler="constant",
        optimizer=partial(torch.optim.AdamW, lr=0.1),
    )  # fmt: skip
    result = trainer.fit()
    assert set(dtypes) == {(torch.bfloat16, True)}  # the convolutions ran in bfloat16
    assert not trainer.scaler.is_enabled()
    assert result["last_val"]["psnr"] > 25.0  # learns as in float32 (bfloat16 keeps ~3 digits)
    weights = load(tmp_path / "checkpoints" / "last.pt")["model"]
    assert weights["net.0.weight"].dtype == torch.float32
    assert '"amp": "bfloat16"' in (tmp_path / "run.json").read_text()
    assert not torch.is_autocast_enabled("cpu")  # the context is left


@pytest.mark.parametrize("native", [True, False])
def test_amp_auto_uses_bfloat16_only_on_a_cpu_that_has_it_natively(tmp_path, monkeypatch, native):
    monkeypatch.setattr("recon.training.precision.cpu_has_native_bfloat16", lambda: native)
    trainer = make_trainer(tmp_path, amp="auto")
    assert trainer.amp is native
    assert trainer.amp_dtype == (torch.bfloat16 if native else None)
    assert isinstance(cpu_has_native_bfloat16(), bool)


def test_amp_is_recorded_as_off_and_the_objective_runs_in_float32_without_it(tmp_path):
    dtypes = []

    def objective(model, batch):
        dtypes.append(model(batch[1], None).dtype)
        return supervised_objective(None)(model, batch)

    make_trainer(tmp_path, objective=objective, max_steps=2).fit()
    assert set(dtypes) == {torch.float32}
    assert '"amp": false' in (tmp_path / "run.json").read_text()


# --------------------------------------------------------------------------- logging, metrics
def test_tensorboard_holds_scalars_images_and_hparams(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=10, log_images=2, hparams={"net": {"width": 4}})
    result = trainer.fit()
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"train/loss", "train/grad_norm", "lr", "val/psnr", "val/ssim"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(1, 11))
    assert [e.step for e in acc.Scalars("val/psnr")] == [5, 10]
    assert acc.Scalars("val/psnr")[-1].value == pytest.approx(result["last_val"]["psnr"], 1e-6)
    assert acc.Scalars("val/ssim")[-1].value == pytest.approx(result["last_val"]["ssim"], 1e-6)
    assert acc.Scalars("hparam/psnr")[-1].value == pytest.approx(result["last_val"]["psnr"], 1e-6)
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert start.hparams["net/width"].number_value == 4
    assert start.hparams["batch_size"].number_value == 4
    images = acc.Images("val/images")
    assert [e.step for e in images] == [5, 10]
    assert (images[0].height, images[0].width) == (2 * 8 + 2, 3 * 8 + 2 * 2)
    from PIL import Image

    png = Image.open(io.BytesIO(images[0].encoded_image_string))
    grid = np.asarray(png).astype(float)[..., 0]  # grey, stored as RGB
    truths = torch.stack([Pairs(4, offset=100)[i][0][0] for i in (0, 1)]).double()
    low, high = float(truths.min()), float(truths.max())
    for row, truth in enumerate(truths):  # the truth column, windowed on the truths' range
        panel = grid[row * 10 : row * 10 + 8, :8]
        expected = ((truth - low) / (high - low) * 255).numpy()
        assert np.abs(panel - expected).max() <= 1.0
    assert (tmp_path / "run.json").is_file()


def test_progress_bar_shows_loss_only_when_asked(tmp_path, capsys):
    make_trainer(tmp_path / "quiet", max_steps=3, val_data=None, predict=None).fit()
    assert capsys.readouterr().err == ""
    make_trainer(tmp_path / "bar", max_steps=3, progress=True, val_every=3).fit()
    err = capsys.readouterr().err
    assert "3/3" in err and "loss=" in err and "val_psnr=" in err


class Offset(nn.Module):
    """Returns y + offset; one parameter that the objective below never moves."""

    def __init__(self, offset):
        super().__init__()
        self.offset = offset
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, y, op):
        return y + self.offset


class Same(torch.utils.data.Dataset):
    """y == x, varied data ranges."""

    def __len__(self):
        return 5

    def __getitem__(self, i):
        x = torch.rand(1, 9, 9, generator=torch.Generator().manual_seed(i)) * (i + 1)
        return x, x.clone()


@pytest.mark.parametrize("offset", [0.0, 0.1], ids=["identity", "offset"])
def test_validation_psnr_and_ssim_on_known_cases(tmp_path, offset):
    def objective(model, batch):
        return model.unused.square()

    trainer = Trainer(
        Offset(offset),
        train_data=Same(),
        val_data=Same(),
        objective=objective,
        predict=reconstruction_predict(None),
        out_dir=tmp_path,
        max_steps=2,
        batch_size=2,
        val_indices=[3, 1, 4],
        progress=False,
    )
    result = trainer.fit()
    if offset == 0:
        assert result["last_val"]["psnr"] == math.inf and result["best_psnr"] == math.inf
        assert result["last_val"]["ssim"] == pytest.approx(1.0, abs=1e-12)
    else:
        # MSE = offset², data range = max − min of each truth
        ranges = [float(Same()[i][0].max() - Same()[i][0].min()) for i in (3, 1, 4)]
        expected = np.mean([10 * np.log10(r**2 / offset**2) for r in ranges])
        assert result["last_val"]["psnr"] == pytest.approx(expected, rel=1e-5)
        x = torch.stack([Same()[i][0] for i in (3, 1, 4)])
        assert result["last_val"]["ssim"] == pytest.approx(float(ssim(x + offset, x).mean()))
        assert result["last_val"]["ssim"] < 1.0


def test_image_grid_windows_on_the_truth_range():
    truth = torch.tensor([[[[0.0, 2.0]]], [[[1.0, 1.0]]]])  # two 1 x 2 images, range [0, 2]
    estimate = truth + torch.tensor([1.0, -1.0]).reshape(2, 1, 1, 1)
    grid = image_grid(truth, estimate, gap=1)
    assert grid.shape == (2 + 1, 3 * 2 + 2)
    np.testing.assert_allclose(grid[0], [0.0, 1.0, 1.0, 0.5, 1.0, 1.0, 0.5, 0.5])
    np.testing.assert_allclose(grid[1], [1.0] * 8)  # separator row
    np.testing.assert_allclose(grid[2], [0.5, 0.5, 1.0, 0.0, 0.0, 1.0, 0.5, 0.5])


# --------------------------------------------------------------------------- schedule, clipping
@pytest.mark.parametrize("kind", ["cosine", "constant"])
def test_learning_rate_schedule_with_warmup(tmp_path, kind):
    recorder = Recorder()
    trainer = make_trainer(
        tmp_path, objective=recorder, max_steps=12, warmup_steps=4, scheduler=kind, val_data=None,
        predict=None,
    )  # fmt: skip
    recorder.trainer = trainer
    trainer.fit()
    expected = []
    for k in range(1, 13):  # update k uses the factor after k - 1 scheduler steps
        if k <= 4:
            factor = k / 4
        elif kind == "constant":
            factor = 1.0
        else:
            factor = 0.5 * (1 + math.cos(math.pi * (k - 1 - 4) / 8))
        expected.append(1e-2 * factor)
    np.testing.assert_allclose(recorder.lrs, expected, rtol=1e-12)
    logged = [v for _, v in scalars(tmp_path / "tb", "lr")]
    np.testing.assert_allclose(logged, expected, rtol=1e-6)


@pytest.mark.parametrize("clip", [1e-3, None])
def test_gradient_clipping_bounds_the_sgd_step(tmp_path, clip):
    trainer = make_trainer(
        tmp_path, max_steps=1, optimizer=partial(torch.optim.SGD, lr=1.0), grad_clip=clip,
        scheduler="constant", val_data=None, predict=None,
    )  # fmt: skip
    before = torch.cat([p.detach().flatten().clone() for p in trainer.module.parameters()])
    trainer.fit()
    after = torch.cat([p.detach().flatten() for p in trainer.module.parameters()])
    step = float((after - before).norm())
    norm = scalars(tmp_path / "tb", "train/grad_norm")[0][1]
    assert norm > 0.01
    assert step == pytest.approx(1e-3 if clip else norm, rel=1e-4)


# --------------------------------------------------------------------------- arguments, out_dir
BAD = [
    pytest.param({"max_steps": 0}, "max_steps must be an int >= 1", id="max_steps"),
    pytest.param({"max_steps": 2.5}, "max_steps must be an int", id="max_steps-float"),
    pytest.param({"batch_size": 0}, "batch_size must be an int >= 1", id="batch_size"),
    pytest.param({"batch_size": True}, "batch_size must be an int", id="batch_size-bool"),
    pytest.param({"train_data": Pairs(0)}, "train_data is empty", id="empty-train"),
    pytest.param({"val_data": Pairs(0)}, "val_data is empty", id="empty-val"),
    pytest.param({"scheduler": "linear"}, "scheduler must be one of", id="scheduler"),
    pytest.param({"warmup_steps": -1}, "warmup_steps must be", id="warmup-negative"),
    pytest.param({"warmup_steps": 20}, "smaller than max_steps", id="warmup-too-long"),
    pytest.param({"grad_clip": 0.0}, "grad_clip must be positive", id="grad_clip"),
    pytest.param({"amp": "float16"}, "float16 needs a CUDA device", id="amp-float16-on-cpu"),
    pytest.param({"amp": "fp8"}, "amp must be a bool, 'auto', 'float16'", id="amp-name"),
    pytest.param({"amp": 1}, "amp must be a bool", id="amp-int"),
    pytest.param({"ckpt_every": 0}, "ckpt_every must be", id="ckpt_every"),
    pytest.param({"val_every": 0}, "val_every must be", id="val_every"),
    pytest.param({"keep_last": 0}, "keep_last must be", id="keep_last"),
    pytest.param({"log_images": -1}, "log_images must be", id="log_images"),
    pytest.param({"seed": -1}, "seed must be", id="seed"),
    pytest.param({"num_workers": -1}, "num_workers must be", id="num_workers"),
    pytest.param({"val_indices": [0, 4]}, "outside \\[0, 4\\)", id="val_indices-range"),
    pytest.param({"val_indices": []}, "val_indices is empty", id="val_indices-empty"),
    pytest.param({"predict": None}, "val_data needs predict", id="val-without-predict"),
    pytest.param({"val_data": None}, "predict is given but val_data is None", id="predict-only"),
    pytest.param({"hparams": [1]}, "hparams must be a dict", id="hparams"),
    pytest.param({"device": "nonsense"}, "is not a torch device", id="device"),
]


@pytest.mark.parametrize(("settings", "message"), BAD)
def test_bad_arguments_raise(tmp_path, settings, message):
    with pytest.raises(ValueError, match=message):
        make_trainer(tmp_path, **settings)


def test_bad_objective_output_and_optimizer_raise(tmp_path):
    with pytest.raises(ValueError, match="scalar tensor, got shape \\(4,\\)"):
        make_trainer(tmp_path / "a", objective=lambda model, batch: torch.ones(4)).fit()
    with pytest.raises(TypeError, match="must return a torch.optim.Optimizer"):
        make_trainer(tmp_path / "b", optimizer=lambda parameters: "sgd")
    with pytest.raises(ValueError, match="no trainable parameters"):
        Trainer(
            nn.ReLU(), train_data=Pairs(4), val_data=None, objective=Recorder(), predict=None,
            out_dir=tmp_path / "c", max_steps=1,
        )  # fmt: skip


def test_an_existing_run_is_refused_unless_resumed_or_overwritten(tmp_path):
    make_trainer(tmp_path, max_steps=5, hparams={"lr": 1}).fit()
    with pytest.raises(
        FileExistsError,
        match="different configuration \\(hparams: \\{'lr': 1\\} -> \\{'lr': 2\\}\\)",
    ):
        make_trainer(tmp_path, max_steps=5, hparams={"lr": 2}).fit()
    with pytest.raises(FileExistsError, match="same configuration; pass resume=True"):
        make_trainer(tmp_path, max_steps=5, hparams={"lr": 1}).fit()
    with pytest.raises(RuntimeError, match="data order .*batch_size: 4 -> 2"):
        make_trainer(tmp_path, max_steps=8, batch_size=2, hparams={"lr": 1}).fit(resume=True)

    recorder = Recorder()
    result = make_trainer(tmp_path, objective=recorder, max_steps=3, overwrite=True).fit()
    assert result["step"] == 3 and len(recorder.losses) == 3
    assert files(tmp_path / "checkpoints") == {"step_00000003.pt", "best.pt", "last.pt"}
    assert [s for s, _ in scalars(tmp_path / "tb", "train/loss")] == [1, 2, 3]


# --------------------------------------------------------------------------- distributed
DDP_SCRIPT = (
    PROBLEM
    + """
import sys
from pathlib import Path
import torch.distributed as dist
import torch.nn.functional as F
from recon.training import Trainer, reconstruction_predict

rank, out = int(sys.argv[1]), Path(sys.argv[2])
torch.set_num_threads(1)
dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=2)
try:
    torch.manual_seed(0)
    losses = []

    def objective(model, batch):
        x, y = batch
        loss = F.mse_loss(model(y, None), x)
        losses.append(loss.item())
        return loss

    trainer = Trainer(
        Net(), train_data=Pairs(16), val_data=Pairs(4, offset=100), objective=objective,
        predict=reconstruction_predict(None), out_dir=out / "run", max_steps=8, batch_size=2,
        ckpt_every=4, val_every=4, progress=False,
    )
    result = trainer.fit()
    state = {"model": trainer.module.state_dict(), "losses": losses, "result": result}
    torch.save(state, out / f"rank{rank}.pt")
    dist.barrier()  # leave together: a rank tearing gloo down mid-exchange can abort the other
finally:
    dist.destroy_process_group()
"""
)


@pytest.mark.timeout(180)
def test_two_gloo_ranks_match_one_process_with_the_double_batch(tmp_path):
    """Two ranks (launched as torchrun would, file rendezvous) vs one process in this one."""
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ranks = [
        subprocess.Popen(
            [sys.executable, str(script), str(rank), str(tmp_path)],
            env=env,
            cwd=tmp_path,
            stderr=subprocess.PIPE,
        )
        for rank in (0, 1)
    ]
    # the same training in one process, batch 4 = the two ranks' batches of 2 together
    single = Recorder()
    reference = make_trainer(
        tmp_path / "single", objective=single, model_seed=0, train_data=Pairs(16), max_steps=8,
        ckpt_every=4, val_every=4, optimizer=partial(torch.optim.AdamW, lr=1e-3),
    )  # fmt: skip
    expected = reference.fit()
    for rank, process in enumerate(ranks):
        try:
            code = process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            for p in ranks:
                p.kill()
            pytest.fail(f"rank {rank} timed out")
        assert code == 0, process.stderr.read().decode()

    states = [load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for name, value in states[0]["model"].items():
        assert torch.equal(value, states[1]["model"][name]), name  # DDP keeps ranks in sync
        torch.testing.assert_close(value, reference.module.state_dict()[name], rtol=1e-4, atol=1e-6)
    # each rank sees half of the single process's batch: their mean loss is its loss
    mean = (np.array(states[0]["losses"]) + np.array(states[1]["losses"])) / 2
    np.testing.assert_allclose(mean, single.losses, rtol=1e-5)
    logged = [v for _, v in scalars(tmp_path / "run/tb", "train/loss")]  # rank 0 only
    np.testing.assert_allclose(logged, single.losses, rtol=1e-5)
    assert states[1]["result"]["last_val"] == states[0]["result"]["last_val"]
    assert states[0]["result"]["best_psnr"] == pytest.approx(expected["best_psnr"], rel=1e-4)
    ckpt = tmp_path / "run/checkpoints"
    assert files(ckpt) == {"step_00000004.pt", "step_00000008.pt", "best.pt", "last.pt"}
    assert len(load(ckpt / "last.pt")["rng"]) == 2
