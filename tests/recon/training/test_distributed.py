"""recon.distributed: environment detection (torchrun, SLURM), the trainer=ddp hook of
recon.cli.train, and `torchrun --nproc-per-node=2 -m recon.cli.train ... trainer=ddp` on CPU (gloo)
against one process with the same global batch. The Trainer's own two-rank test (identical
parameters on both ranks, rank-0-only checkpoints) is in test_training.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from recon.cli.train import train
from recon.training.distributed import (
    DistEnv,
    detect_environment,
    first_host,
    init_distributed,
    setup_training,
)

TINY = [
    "experiment=quickstart/lpd",
    "operator.geometry.image_shape=[32,32]",
    "operator.geometry.n_detectors=46",
    "data.splits.train.size=16",
    "data.splits.validation.size=2",
    "model.n_iter=2",
    "model.channels=4",
    "trainer.max_steps=6",
    "trainer.val_every=3",
    "trainer.ckpt_every=3",
    "trainer.warmup_steps=0",
    "trainer.progress=false",
    "threads=1",
    # float32: the quickstart trains in bfloat16 where the CPU has it, and oneDNN rounds a batch
    # of 2 and one of 4 differently there (a parameter 2.4e-6 apart after 6 steps, measured)
    "trainer.amp=false",
]
_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID",
              "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_JOB_NODELIST", "SLURM_NODELIST")  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_cluster(monkeypatch):
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------- environment
TORCHRUN = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "10.0.0.5",
            "MASTER_PORT": "29400"}  # fmt: skip
SLURM = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1",
         "SLURM_JOB_NODELIST": "gpu[011-014]", "SLURM_JOB_ID": "4242"}  # fmt: skip


@pytest.mark.parametrize(
    "environ, expected",
    [
        pytest.param(TORCHRUN, DistEnv(1, 4, 1, "10.0.0.5", 29400, "torchrun"), id="torchrun"),
        pytest.param(SLURM, DistEnv(5, 8, 1, "gpu011", 15000 + 4242, "slurm"), id="slurm"),
        pytest.param(
            {**SLURM, "MASTER_PORT": "12345"},
            DistEnv(5, 8, 1, "gpu011", 12345, "slurm"),
            id="slurm-port",
        ),  # fmt: skip
        pytest.param(
            {**SLURM, **TORCHRUN},
            DistEnv(1, 4, 1, "10.0.0.5", 29400, "torchrun"),
            id="torchrun-inside-slurm",
        ),  # fmt: skip
        pytest.param(
            {**SLURM, "SLURM_NTASKS": "1"},
            DistEnv(0, 1, 0, None, None, "none"),
            id="one-slurm-task",
        ),  # fmt: skip
        pytest.param({}, DistEnv(0, 1, 0, None, None, "none"), id="none"),
    ],
)
def test_detect_environment(environ, expected):
    assert detect_environment(environ) == expected


@pytest.mark.parametrize(
    "environ, message",
    [
        pytest.param({"RANK": "0", "WORLD_SIZE": "2"}, "MASTER_ADDR is not", id="no-master"),
        pytest.param({**TORCHRUN, "RANK": "one"}, "RANK='one' is not an integer", id="not-int"),
        pytest.param(
            {"SLURM_PROCID": "0", "SLURM_NTASKS": "2"}, "SLURM_JOB_NODELIST", id="no-nodelist"
        ),  # fmt: skip
    ],
)
def test_inconsistent_environments_fail_clearly(environ, message):
    with pytest.raises(ValueError, match=message):
        detect_environment(environ)


@pytest.mark.parametrize(
    "nodelist, host",
    [("node7", "node7"), ("gpu[011-014]", "gpu011"), ("a[3,5-6],b2", "a3"), ("x-1,x-2", "x-1")],
)
def test_first_host(nodelist, host):
    assert first_host(nodelist) == host


def test_init_distributed_choices_and_errors():
    assert init_distributed(environ={}) == (DistEnv(0, 1, 0, None, None, "none"), "cpu")
    with pytest.raises(ValueError, match="unknown distributed backend 'mpi'"):
        init_distributed(backend="mpi", environ={})
    with pytest.raises(ValueError, match="nccl backend needs trainer.device=cuda"):
        init_distributed(backend="nccl", environ={})
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            init_distributed(device="cuda", environ={})


def test_setup_training_without_and_with_ddp(no_cluster, tmp_path):
    kwargs = {"max_steps": 3, "device": "cpu"}
    assert setup_training(kwargs, tmp_path) == (kwargs, tmp_path)
    ddp = {**kwargs, "distributed": {"backend": "auto", "timeout_s": 5}}
    assert setup_training(ddp, tmp_path) == (kwargs, tmp_path)  # no torchrun: one process
    with pytest.raises(ValueError, match=r"unknown keys \['backnd'\] in trainer.distributed"):
        setup_training({**kwargs, "distributed": {"backnd": "gloo"}}, tmp_path)


def test_trainer_ddp_config_trains_in_one_process_without_torchrun(
    no_cluster, compose_cfg, tmp_path
):
    cfg = compose_cfg(*TINY, "trainer=ddp", "trainer.batch_size=2", "trainer.max_steps=2")
    assert cfg.trainer.distributed.backend == "auto" and cfg.trainer.batch_size == 2
    result = train(cfg, output_dir=tmp_path)
    assert result["step"] == 2 and "parameter_spread" not in result


# --------------------------------------------------------------------------- torchrun
def losses(run_dir: Path) -> list[float]:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.value for e in acc.Scalars("train/loss")]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_torchrun_two_gloo_ranks_match_one_process_with_the_same_global_batch(
    no_cluster, compose_cfg, tmp_path
):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               "-m", "recon.cli.train", *TINY, "trainer=ddp", "trainer.batch_size=2",
               "trainer.distributed.timeout_s=300", f"hydra.run.dir={out}"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=1700)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the reference: one process, batch 4 = the two ranks' batches of 2
    reference = train(compose_cfg(*TINY, "trainer.batch_size=4"), output_dir=tmp_path / "single")

    ddp, single = losses(out), losses(tmp_path / "single")
    print(f"losses, 2 ranks x 2: {ddp}\nlosses, 1 process x 4: {single}")
    assert len(ddp) == 6
    np.testing.assert_allclose(ddp, single, rtol=1e-5)
    record = json.loads((out / "result.json").read_text())
    assert record["status"] == "completed"
    assert record["metrics"]["parameter_spread"] == 0.0  # both ranks hold the same parameters
    assert record["objective"] == pytest.approx(reference["best_psnr"], abs=1e-3)
    last = torch.load(out / "checkpoints/last.pt", map_location="cpu", weights_only=True)
    assert last["config"]["world_size"] == 2 and len(last["rng"]) == 2
    single_last = torch.load(tmp_path / "single/checkpoints/last.pt", weights_only=True)
    for name, value in last["model"].items():
        torch.testing.assert_close(value, single_last["model"][name], rtol=1e-4, atol=1e-6)

    # rank 0 alone wrote: one log writer, one TensorBoard writer, the checkpoints
    log = (out / "train.log").read_text()
    assert "rank 0 of 2" in log and "rank 1 of 2" not in log
    assert log.count("training LearnedPrimalDual") == 1
    assert "parameters of the 2 ranks differ by at most 0" in log
    writers = {p.name.split(".")[-2] for p in (out / "tb").glob("events.out.tfevents.*")}
    assert len(writers) == 1  # event files of one process id
    assert {p.name for p in (out / "checkpoints").iterdir()} == {
        "step_00000003.pt", "step_00000006.pt", "best.pt", "last.pt"
    }  # fmt: skip
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["cluster"]["WORLD_SIZE"] == "2" and "earlier_attempts" not in provenance
