"""The installed wheel, not the checkout: build tomolearn's wheel, install it into a fresh venv and
run recon-train, recon-eval (one run and a two-job submitit sweep) and recon-collect from an empty
directory outside the repository, with the configs found inside the package (recon/conf)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

# In the default suite (about 25 s on 2 cores): CI runs only `make test`, and a wheel that
# cannot run its own CLIs is the first thing a user meets.

REPO = Path(__file__).resolve().parents[1]
SMALL_GEOMETRY = [
    "operator.geometry.image_shape=[32,32]",
    "operator.geometry.n_detectors=46",
    "threads=1",
]
TINY_TRAIN = [
    "experiment=quickstart/lpd",
    *SMALL_GEOMETRY,
    "trainer.max_steps=3",
    "trainer.val_every=3",
    "trainer.ckpt_every=3",
    "trainer.warmup_steps=0",
    "trainer.progress=false",
    "trainer.batch_size=2",
    "model.n_iter=2",
    "model.channels=4",
    "data.splits.train.size=4",
    "data.splits.validation.size=2",
]
TINY_EVAL = [
    "protocol=ellipses/classical",
    *SMALL_GEOMETRY,
    "data.splits.test.size=2",
    "methods.tv.n_iter=5",
]
#: Top-level packages of the wheel ([tool.hatch.build.targets.wheel] packages).
PACKAGES = ("recon", "operators", "models", "data_tools", "hydra_plugins")
SCRIPTS = ("recon-train", "recon-eval", "recon-collect", "recon-demo", "recon-quickstart")


@dataclass(frozen=True)
class Install:
    wheel: Path
    venv: Path
    site_packages: Path
    workdir: Path  # empty, outside the repository: the cwd of every command
    root: Path  # where the runs are written
    env: dict[str, str]

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def tail(proc: subprocess.CompletedProcess) -> str:
    return (
        f"exit {proc.returncode}: {proc.args}\n--- stdout\n{(proc.stdout or '')[-3000:]}"
        f"\n--- stderr\n{(proc.stderr or '')[-3000:]}"
    )


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 300):
    proc = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, tail(proc)
    return proc


def clean_env() -> dict[str, str]:
    """The current environment without anything that could put the checkout on sys.path."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
    }
    env.update(OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="1", PYTHONNOUSERSITE="1")
    return env


def build_wheel(out: Path, env: dict[str, str]) -> Path:
    """``pip wheel`` of the checkout; without build isolation when hatchling is importable here,
    else with it (pip then fetches hatchling from the configured index or find-links)."""
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("hatchling") else []
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", str(out)]
    proc = subprocess.run(
        [*command, str(REPO)], cwd=out, env=env, capture_output=True, text=True, timeout=300
    )
    if proc.returncode != 0 and not isolation and "hatchling" in proc.stderr.lower():
        if "no matching distribution" in proc.stderr.lower():
            pytest.skip("cannot build the wheel: hatchling is neither installed nor reachable")
    assert proc.returncode == 0, tail(proc)
    (wheel,) = out.glob("tomolearn-*.whl")
    return wheel


def dependency_paths() -> list[str]:
    """The site-packages of the interpreter running the tests (torch, hydra, ...), as bare
    directories: a path line in a .pth file is appended to sys.path without processing the
    .pth files inside it, so the editable install of tomolearn there (a .pth pointing at the
    checkout, or an ``__editable__`` finder) never runs in the new venv."""
    paths = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    return sorted(p for p in paths if Path(p).is_dir() and Path(p).resolve() != REPO)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Install:
    """The wheel, installed with ``pip install --no-deps`` into a venv of its own."""
    root = tmp_path_factory.mktemp("wheel")
    env = clean_env()
    wheel = build_wheel(root, env)

    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root, env=env, timeout=120)
    python = str(venv / "bin" / "python")
    install = [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps"]
    run([*install, "--no-index", str(wheel)], cwd=root, env=env, timeout=300)
    site_packages = Path(
        run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            cwd=root,
            env=env,
        ).stdout.strip()
    )
    # Only now the dependencies: pip above saw no tomolearn other than the wheel's.
    (site_packages / "zz_tomolearn_test_dependencies.pth").write_text(
        "".join(f"{p}\n" for p in dependency_paths())
    )
    workdir = root / "empty"
    workdir.mkdir()
    return Install(wheel, venv, site_packages, workdir, root, env)


def assert_workdir_untouched(installed: Install) -> None:
    assert not any(installed.workdir.iterdir()), sorted(installed.workdir.iterdir())


def test_the_wheel_ships_the_configs_and_nothing_of_the_checkout(installed):
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert "recon/conf/config.yaml" in names
    assert "recon/conf/eval.yaml" in names
    assert "hydra_plugins/tomolearn_launcher/launcher.py" in names
    tops = {name.split("/")[0] for name in names}
    assert {"benchmarks", "tests", "conf"}.isdisjoint(tops), sorted(tops)
    assert set(PACKAGES) <= tops, sorted(tops)
    assert not [n for n in names if "__pycache__" in n]


def test_the_clis_import_tomolearn_from_the_wheel_not_the_checkout(installed):
    for script in SCRIPTS:
        shebang = Path(installed.bin(script)).read_text().splitlines()[0]
        assert shebang == f"#!{installed.venv / 'bin' / 'python'}", (script, shebang)
    code = (
        "import json, sys, importlib, importlib.metadata as md\n"
        "mods = [importlib.import_module(m) for m in sys.argv[1:]]\n"
        "import hydra_plugins.tomolearn_launcher as launcher\n"
        "from recon.cli.config import CONF_DIR\n"
        "print(json.dumps({'files': [m.__file__ for m in mods[:-1]],\n"
        "                  'launcher': launcher.__file__, 'conf': str(CONF_DIR),\n"
        "                  'dist': str(md.distribution('tomolearn').locate_file('')),\n"
        "                  'path': sys.path}))\n"
    )
    proc = run(
        [installed.bin("python"), "-c", code, *PACKAGES], cwd=installed.workdir, env=installed.env
    )
    found = json.loads(proc.stdout)
    site = str(installed.site_packages.resolve())
    for file in [*found["files"], found["launcher"], found["conf"], found["dist"]]:
        assert str(Path(file).resolve()).startswith(site), (file, site)
        assert not Path(file).resolve().is_relative_to(REPO), file
    assert Path(found["conf"]) == installed.site_packages / "recon" / "conf"
    assert not [p for p in found["path"] if p and Path(p).resolve() == REPO], found["path"]
    assert_workdir_untouched(installed)


def test_recon_train_runs_from_any_directory(installed):
    run_dir = installed.root / "train"
    command = [installed.bin("recon-train"), *TINY_TRAIN, f"hydra.run.dir={run_dir}"]
    run(command, cwd=installed.workdir, env=installed.env)
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert json.loads((run_dir / "result.json").read_text())["status"] == "completed"
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["packages"]["tomolearn"] == "0.1.0"
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    # An installed wheel is no checkout: the run must not claim the repository's commit.
    assert not head or provenance["git"].get("commit") != head, provenance["git"]
    assert_workdir_untouched(installed)


def test_recon_eval_runs_from_any_directory(installed):
    run_dir = installed.root / "eval"
    command = [installed.bin("recon-eval"), *TINY_EVAL, f"hydra.run.dir={run_dir}"]
    run(command, cwd=installed.workdir, env=installed.env)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for method in ("fbp", "tv"):
        assert math.isfinite(metrics[method]["psnr_mean"]), metrics[method]
    assert_workdir_untouched(installed)


def test_a_local_sweep_and_recon_collect_run_from_any_directory(installed):
    sweep = installed.root / "sweep"
    command = [
        installed.bin("recon-eval"),
        "-m",
        "hydra/launcher=local",  # our submitit launcher: hydra_plugins/ from the wheel
        *TINY_EVAL,
        "methods.tv.lam=0.01,0.1",
        f"hydra.sweep.dir={sweep}",
    ]
    run(command, cwd=installed.workdir, env=installed.env)
    results = sorted(sweep.glob("*/result.json"))
    assert len(results) == 2, sorted(p.relative_to(sweep) for p in sweep.rglob("*"))
    for result in results:
        assert json.loads(result.read_text())["status"] == "completed", result.read_text()

    collect = [installed.bin("recon-collect"), str(sweep)]
    proc = run(collect, cwd=installed.workdir, env=installed.env)
    rows = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    # Header, separator, one row per job.
    assert len(rows) == 4, proc.stdout
    assert sum("completed" in row for row in rows[2:]) == 2, proc.stdout
    assert (sweep / "sweep_results.csv").is_file()
    assert_workdir_untouched(installed)
