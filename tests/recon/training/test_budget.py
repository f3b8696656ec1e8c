"""Trainer(max_time=): training ends on time with a final checkpoint, the learning rate anneals
to zero at the deadline, and a resumed run honours the time that is left (issue [speed])."""

from __future__ import annotations

import math
import time
from functools import partial

import pytest
import torch
from torch import nn

from recon.training import Trainer
from recon.training.budget import BudgetClock
from recon.training.optimizers import lr_schedule
from recon.training.tasks import reconstruction_predict, supervised_objective

STEP_SECONDS = 0.02


class Data(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        x = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(i))
        return x, x / 2


class Slow(nn.Module):
    """One conv, and a fixed sleep per call: a known step time."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, y, op):
        time.sleep(STEP_SECONDS)
        return self.conv(y)


class LRRecorder:
    def __init__(self):
        self.objective, self.lrs, self.trainer = supervised_objective(None), [], None

    def __call__(self, model, batch):
        self.lrs.append(self.trainer.optimizer.param_groups[0]["lr"])
        return self.objective(model, batch)


def trainer(out_dir, max_time, max_steps=10_000, objective=None):
    torch.manual_seed(0)
    objective = objective or LRRecorder()
    made = Trainer(
        Slow(), train_data=Data(), val_data=Data(), objective=objective,
        predict=reconstruction_predict(None), out_dir=out_dir, max_steps=max_steps,
        max_time=max_time, batch_size=2, optimizer=partial(torch.optim.SGD, lr=0.1),
        ckpt_every=1000, val_every=1000, progress=False,
    )  # fmt: skip
    objective.trainer = made
    return made, objective


def test_a_time_budget_ends_training_on_time_with_the_rate_annealed(tmp_path):
    budget = 0.01  # minutes: 0.6 s, about 20 steps of 20 ms (+ validation)
    made, recorder = trainer(tmp_path, budget)
    start = time.perf_counter()
    result = made.fit()
    assert result["stopped_by"] == "max_time" and 3 < result["step"] < 10_000
    assert time.perf_counter() - start < 60 * budget + 2.0  # on time, give or take one step
    assert result["train_seconds"] >= 60 * budget
    last = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert last["step"] == result["step"] and last["elapsed_s"] >= 60 * budget
    lrs = recorder.lrs
    assert all(b <= a + 1e-12 for a, b in zip(lrs, lrs[1:], strict=False))  # decays throughout
    assert lrs[0] > 0.09 and lrs[-1] < 0.02  # from the full rate to near zero at the deadline


def test_a_resumed_run_honours_the_time_that_is_left(tmp_path):
    made, _ = trainer(tmp_path, 0.01)
    first = made.fit()
    again, _ = trainer(tmp_path, 0.01)
    assert again.fit(resume=True)["step"] == first["step"]  # the budget is spent: nothing to do
    longer, _ = trainer(tmp_path, 0.02)
    second = longer.fit(resume=True)
    assert second["stopped_by"] == "max_time" and second["step"] > first["step"]
    assert second["wall_time"] < 0.02 * 60  # only the second half of the budget was run


def test_max_steps_first_stops_at_max_steps(tmp_path):
    made, _ = trainer(tmp_path, max_time=100.0, max_steps=6)
    result = made.fit()
    assert result["step"] == 6 and result["stopped_by"] == "max_steps"


def test_the_schedule_follows_the_larger_fraction():
    used = [0.0]
    factor = lr_schedule("cosine", warmup_steps=2, max_steps=102, budget_used=lambda: used[0])
    assert factor(0) == 0.5 and factor(1) == 1.0  # warm-up in steps
    assert factor(52) == pytest.approx(0.5)  # half the steps
    used[0] = 0.75
    assert factor(52) == pytest.approx(0.5 * (1 + math.cos(0.75 * math.pi)))  # time leads
    used[0] = 1.0
    assert factor(3) == pytest.approx(0.0)  # the deadline: zero whatever the step


def test_the_clock_counts_from_the_seconds_already_spent():
    clock = BudgetClock(max_time=1.0)
    clock.start(30.0)
    assert clock.used() == 0.5 and clock.elapsed() >= 30.0
    assert 0.5 <= clock.tick() < 0.6
    with pytest.raises(ValueError, match="max_time"):
        trainer("unused", max_time=-1.0)
