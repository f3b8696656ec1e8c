"""A training job of a submitit_local sweep hits its time limit, is requeued by submitit and
resumes from its last checkpoint: the steps of the two attempts join without a gap, and the
losses are those of an uninterrupted run.

The time limit is simulated the way it arrives on a cluster: the job's process gets submitit's
signal (SIGUSR2, what SLURM sends ``signal_delay_s`` before the limit and what submitit's local
controller sends too). With ``timeout_min`` ≤ 10 submitit's handler classifies it as a time-out,
calls the launcher's ``checkpoint()`` (which adds ``resume=true``), writes the resubmission and
exits; the local controller starts the job again, as SLURM would after ``scontrol requeue``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from recon.cli.config import CONF_DIR
from recon.cli.train import train

TINY = [
    "experiment=quickstart/lpd",
    "operator.geometry.image_shape=[32,32]",
    "operator.geometry.n_detectors=46",
    "data.splits.train.size=16",
    "data.splits.validation.size=2",
    "model.n_iter=2",
    "model.channels=4",
    "trainer.max_steps=40",
    "trainer.batch_size=2",
    "trainer.ckpt_every=5",
    "trainer.val_every=10",
    "trainer.warmup_steps=0",
    "trainer.progress=false",
    "threads=1",
]
STEPS = 40


def children(pids: set[int]) -> list[int]:
    """Processes whose parent is one of ``pids`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) in pids:
            found.append(int(stat.parent.name))
    return found


def steps_per_event_file(tb: Path) -> list[list[int]]:
    """The ``train/loss`` steps of each event file (one file per attempt), in step order."""
    runs = []
    for path in tb.glob("events.out.tfevents.*"):
        steps = [
            event.step
            for event in EventFileLoader(str(path)).Load()
            if any(value.tag == "train/loss" for value in event.summary.value)
        ]
        if steps:
            runs.append(steps)
    return sorted(runs)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.timeout(1800)
def test_a_timed_out_training_job_is_requeued_and_resumes_without_lost_steps(tmp_path):
    sweep = tmp_path / "sweep"
    command = [
        str(Path(sys.executable).with_name("recon-train")), "-m", "hydra/launcher=local",
        "hydra.launcher.timeout_min=10", *TINY, "seed=0", f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "multirun.log", "w")
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=log)
    job = sweep / "0"
    deadline = time.monotonic() + 1200
    try:
        while not (job / "checkpoints" / "step_00000010.pt").exists():
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail(
                    "the job did not reach step 10: " + (tmp_path / "multirun.log").read_text()
                )
            time.sleep(0.02)
        time.sleep(0.3)  # let it run past the checkpoint: those steps are lost and redone
        controllers = {int(p.name) for p in (sweep / ".submitit").iterdir() if p.name.isdigit()}
        tasks = children(controllers)
        assert len(tasks) == 1, (controllers, tasks)
        os.kill(tasks[0], signal.SIGUSR2)  # the time-limit signal
        assert process.wait(timeout=1200) == 0, (tmp_path / "multirun.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
        log.close()

    job_log = (job / "train.log").read_text()
    assert "this job is timed-out" in job_log
    assert "requeueing the job with overrides" in job_log and "resume=true" in job_log
    record = json.loads((job / "result.json").read_text())
    assert record["status"] == "completed" and record["attempt"] == 2
    assert "resume=true" in record["overrides"]

    # attempt 1: steps 1..m; attempt 2: from its last checkpoint k (<= m) on, to the end
    first, second = steps_per_event_file(job / "tb")
    resumed_from = second[0] - 1
    print(f"attempt 1: steps {first[0]}..{first[-1]}; attempt 2: steps {second[0]}..{second[-1]}"
          f" (resumed from checkpoint step {resumed_from})")  # fmt: skip
    assert first == list(range(1, first[-1] + 1)) and first[-1] >= 10
    assert resumed_from % 5 == 0 and 10 <= resumed_from <= first[-1]
    assert second == list(range(resumed_from + 1, STEPS + 1))
    assert f"resuming from {job / 'checkpoints' / 'last.pt'} at step {resumed_from}" in job_log
    # TensorBoard drops the events the killed attempt wrote past its checkpoint
    acc = EventAccumulator(str(job / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    logged = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    assert [s for s, _ in logged] == list(range(1, STEPS + 1))

    # an uninterrupted run of the same job: the same losses and weights
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[*TINY, "seed=0"])
    threads = torch.get_num_threads()
    try:
        train(cfg, output_dir=tmp_path / "reference")
    finally:
        torch.set_num_threads(threads)
        GlobalHydra.instance().clear()
    acc = EventAccumulator(str(tmp_path / "reference" / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    np.testing.assert_allclose([v for _, v in logged], [e.value for e in acc.Scalars("train/loss")],
                               rtol=1e-6)  # fmt: skip
    resumed = torch.load(job / "checkpoints" / "last.pt", weights_only=True)
    reference = torch.load(tmp_path / "reference" / "checkpoints" / "last.pt", weights_only=True)
    assert resumed["step"] == reference["step"] == STEPS
    for name, value in resumed["model"].items():
        torch.testing.assert_close(value, reference["model"][name], rtol=1e-5, atol=1e-7)
