"""Sweeps: the job wrapper (result.json, statuses, the number a sweeper gets), the launcher and
search configs, a real submitit_local sweep with a failing point collected by recon-collect, and
an Optuna search of TV λ against a grid search."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import submitit
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from hydra_plugins.tomolearn_launcher.launcher import (
    ResumingLocalLauncher,
    ResumingSlurmLauncher,
    with_resume,
)
from recon.cli.config import CONF_DIR
from recon.data import build_split
from recon.runs import sweep as sweep_module
from recon.runs.evaluation import stack_split
from recon.runs.search import grid_search
from recon.runs.sweep import objective_value, read_result, run_job

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
SMALL = [
    "protocol=ellipses/classical",
    "operator.geometry.image_shape=[32,32]",
    "operator.geometry.n_detectors=46",
    "data.splits.validation.size=4",
    "data.splits.test.size=2",
    "methods.tv.n_iter=50",
    "batch_size=4",
    "threads=1",
]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny problems: one intra-op thread, restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def compose_cfg():
    def _compose(name: str, *overrides: str, hydra: bool = False):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(name, overrides=list(overrides), return_hydra_config=hydra)

    yield _compose
    GlobalHydra.instance().clear()


def run(command, cwd, timeout):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


# --------------------------------------------------------------------------- run_job
def out_cfg(tmp_path):
    return OmegaConf.create({"paths": {"output_dir": str(tmp_path)}})


def test_a_completed_job_records_objective_metrics_and_wall_time(tmp_path):
    result = {"tv": {"psnr_mean": 27.5, "psnr_per_image": [27.0, 28.0]}, "step": 4}
    value = run_job(out_cfg(tmp_path), lambda cfg: result, objective=lambda r: r["tv"]["psnr_mean"])
    assert value == 27.5
    record = json.loads((tmp_path / "result.json").read_text())  # strict JSON
    assert record["status"] == "completed" and record["objective"] == 27.5
    assert record["metrics"] == {"tv/psnr_mean": 27.5, "step": 4}  # lists are left out
    assert record["wall_time_s"] >= 0 and record["attempt"] == 1
    run_job(out_cfg(tmp_path), lambda cfg: result, objective=lambda r: 1.0)
    assert read_result(tmp_path)["attempt"] == 2  # a requeued or repeated job counts its starts


@pytest.mark.parametrize(
    "task, status",
    [
        pytest.param(lambda cfg: {"best_psnr": math.nan}, "diverged", id="nan-objective"),
        pytest.param(lambda cfg: {"best_psnr": None}, "completed", id="no-validation"),
        pytest.param(
            lambda cfg: _raise(FloatingPointError("loss is nan at step 3")),
            "diverged",
            id="nan-loss",
        ),  # fmt: skip
    ],
)
def test_diverged_or_empty_results_give_minus_infinity_never_nan_or_none(tmp_path, task, status):
    value = run_job(out_cfg(tmp_path), task, objective=lambda r: r["best_psnr"])
    assert value == -math.inf
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["status"] == status and record["objective"] is None


def _raise(error):
    raise error


def test_a_failure_raises_in_a_single_run_and_is_recorded(tmp_path):
    with pytest.raises(KeyError, match="boom"):
        run_job(out_cfg(tmp_path), lambda cfg: _raise(KeyError("boom")), objective=float)
    record = read_result(tmp_path)
    assert record["status"] == "failed" and record["error"] == "KeyError: 'boom'"
    assert "Traceback" in record["traceback"]


def _wrapped(cfg):
    try:
        raise ValueError("lam < 0")
    except ValueError as error:
        raise RuntimeError("Error in call to target 'TV'") from error


def test_a_failure_in_a_multirun_does_not_stop_the_sweep(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_module, "_multirun", lambda: True)
    value = run_job(out_cfg(tmp_path), _wrapped, objective=float)
    assert value == -math.inf
    record = read_result(tmp_path)
    assert record["error"] == "ValueError: lam < 0"  # the root cause first
    assert record["context"] == "RuntimeError: Error in call to target 'TV'"


def test_ranks_above_zero_write_no_result(tmp_path, monkeypatch):
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29500"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    assert run_job(out_cfg(tmp_path), lambda cfg: {}, objective=lambda r: 3) == 3.0
    assert not (tmp_path / "result.json").exists()


def test_objective_value():
    assert objective_value(np.float32(2.5)) == 2.5
    assert objective_value(None) == objective_value(math.nan) == -math.inf


# --------------------------------------------------------------------------- launchers
def test_requeued_training_jobs_resume_and_evaluation_jobs_rerun():
    launcher = ResumingLocalLauncher(submitit_folder="x", timeout_min=1)
    launcher.config = OmegaConf.create({"resume": False, "seed": 0})
    args = (["seed=1", "+resume=false"], "hydra.sweep.dir", 3, "id", {})
    delayed = launcher.checkpoint(*args)  # what submitit calls on the time-limit signal
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert delayed.function is launcher
    assert delayed.args == (["seed=1", "resume=true"], "hydra.sweep.dir", 3, "id", {})
    launcher.config = OmegaConf.create({"methods": {}})  # neither resume nor overwrite
    assert launcher.checkpoint(*args).args[0] == ["seed=1", "+resume=false"]
    launcher.config = OmegaConf.create({"methods": {}, "overwrite": False})  # recon-eval
    assert launcher.checkpoint(["seed=1"], *args[1:]).args[0] == ["seed=1", "overwrite=true"]
    assert with_resume(["~resume", "resume_from=x"]) == ["resume_from=x", "resume=true"]


def test_local_launcher_config(compose_cfg):
    cfg = compose_cfg("eval", "hydra/launcher=local", "hydra.launcher.timeout_min=5", hydra=True)
    assert cfg.hydra.launcher._target_.endswith("ResumingLocalLauncher")
    assert cfg.hydra.launcher.timeout_min == 5 and cfg.hydra.launcher.gpus_per_node == 0


class _Stop(Exception):
    pass


def test_slurm_launcher_keys_reach_the_sbatch_script(compose_cfg, tmp_path, monkeypatch):
    """From the config to the sbatch script that submitit would submit (no SLURM here)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit only checks that srun exists
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    keys = {"partition": "gpu", "account": "proj7", "timeout_min": 30, "gpus_per_node": 2,
            "cpus_per_task": 4, "mem_gb": 64}  # fmt: skip
    cfg = compose_cfg(
        "config", "hydra/launcher=slurm", *(f"hydra.launcher.{k}={v}" for k, v in keys.items()),
        f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.job.name=train", hydra=True,
    )  # fmt: skip
    launcher = instantiate(cfg.hydra.launcher)
    # Hydra's plugin discovery may import the module anew: compare classes by name
    assert type(launcher).__qualname__ == ResumingSlurmLauncher.__qualname__
    assert "SlurmLauncher" in [c.__name__ for c in type(launcher).__mro__[1:]]
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    captured = {}

    def map_array(executor, function, *arguments):
        captured.update(executor=executor, function=function, arguments=arguments)
        raise _Stop

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", map_array)
    with pytest.raises(_Stop):
        launcher.launch([["optim.lr=0.001"], ["optim.lr=0.003"]], initial_job_idx=0)
    slurm = captured["executor"]._executor
    script = slurm._make_submission_file_text("python -m submitit.core._submit x", "uid")
    for line in ("--partition=gpu", "--account=proj7", "--time=30", "--gpus-per-node=2",
                 "--cpus-per-task=4", "--mem=64GB", "--signal=USR2@120"):  # fmt: skip
        assert f"#SBATCH {line}\n" in script, line
    assert slurm.max_num_timeout == 5  # requeues after a time limit
    assert captured["function"] is launcher and captured["arguments"][0][1] == ["optim.lr=0.003"]


def test_unknown_launcher_keys_fail_clearly(compose_cfg):
    with pytest.raises(ConfigCompositionException, match="partitio"):
        compose_cfg("config", "hydra/launcher=slurm", "hydra.launcher.partitio=gpu", hydra=True)


@pytest.mark.parametrize(
    "name, config, params",
    [
        pytest.param("tv", "eval", {"methods.tv.lam"}, id="tv"),
        pytest.param("lpd", "config", {"optim.lr", "model.n_iter"}, id="lpd"),
    ],
)
def test_search_configs_use_the_optuna_sweeper(compose_cfg, name, config, params):
    cfg = compose_cfg(config, f"hparams_search={name}", "protocol=ellipses/classical"
                      if config == "eval" else "experiment=quickstart/lpd", hydra=True)  # fmt: skip
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert set(sweeper.params) == params
    if name == "tv":
        assert cfg.split == "validation" and cfg.objective_method == "tv" and sweeper.n_trials == 10


@pytest.mark.slow
def test_an_unknown_objective_method_fails_before_evaluating(tmp_path):
    command = [str(BIN / "recon-eval"), *SMALL, "objective_method=tvv", f"hydra.run.dir={tmp_path}"]
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "objective_method names unknown method 'tvv'" in proc.stderr
    assert not (tmp_path / "metrics.json").exists()


# --------------------------------------------------------------------------- real sweeps
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_submitit_local_sweep_of_four_lambdas_with_a_failing_point(tmp_path):
    sweep = tmp_path / "sweep"
    run([str(BIN / "recon-eval"), "-m", "hydra/launcher=local", *SMALL, "split=validation",
         "objective_method=tv", "methods.tv.lam=0.1,0.5,3,-1", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, timeout=1700)  # fmt: skip
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 4  # four submitit jobs
    proc = run([str(BIN / "recon-collect"), str(sweep)], cwd=tmp_path, timeout=300)
    print(proc.stdout)
    assert "4 jobs of 4 expected: 3 completed, 1 failed" in proc.stdout
    lines = (sweep / "sweep_results.md").read_text().splitlines()
    assert lines[0].startswith("| job | methods.tv.lam | status | objective |")
    rows = {line.split("|")[2].strip(): line for line in lines[2:]}
    assert set(rows) == {"0.1", "0.5", "3", "-1"}
    assert "| failed |" in rows["-1"] and "lam must be a finite non-negative number" in rows["-1"]
    assert all("| completed |" in rows[lam] for lam in ("0.1", "0.5", "3"))
    for job in range(3):
        for name in ("result.json", "provenance.json", "metrics.json"):
            assert (sweep / str(job) / name).is_file()
    png = sweep / "sweep_objective.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_optuna_search_of_tv_lambda_is_within_0p2_db_of_a_grid_search(tmp_path, compose_cfg):
    sweep = tmp_path / "optuna"
    run([str(BIN / "recon-eval"), "-m", "hparams_search=tv", *SMALL,
         f"hydra.sweep.dir={sweep}"], cwd=tmp_path, timeout=1700)  # fmt: skip
    optuna = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    trials = [read_result(p) for p in sorted(sweep.glob("[0-9]*"))]
    assert len(trials) == 10 and all(t["status"] == "completed" for t in trials)

    # the same validation images and TV settings, every λ of a fine log grid
    cfg = compose_cfg("eval", *SMALL)
    op = instantiate(cfg.operator)
    x, y = stack_split(build_split(cfg.data, "validation", op.geometry))
    grid = {"lam": [float(v) for v in np.logspace(-2, 2, 41)]}
    best, table = grid_search(lambda p: instantiate(cfg.methods.tv, **p), grid, y, x, op)
    lam, value = optuna["best_params"]["methods.tv.lam"], optuna["best_value"]
    print(f"optuna: λ {lam:.4g}, {value:.3f} dB; grid (41 points): λ {best['lam']:.4g}, "
          f"{table[0]['psnr']:.3f} dB")  # fmt: skip
    assert value >= table[0]["psnr"] - 0.2
    # recon-eval's validation PSNR is the grid search's PSNR at the same λ
    _, same = grid_search(lambda p: instantiate(cfg.methods.tv, **p), {"lam": [lam]}, y, x, op)
    assert same[0]["psnr"] == pytest.approx(value, abs=1e-3)
