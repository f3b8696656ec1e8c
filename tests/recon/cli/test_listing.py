"""recon-train / recon-eval --list and --help: the CLI says what exists ([own-data] item 12)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from data_tools.phantoms import PHANTOMS
from recon.cli import evaluate as evaluate_cli
from recon.cli import train as train_cli
from recon.cli.config import CONF_DIR
from recon.cli.listing import KINDS, command_groups, describe, entries, intercept


def run_main(module, monkeypatch, *args: str) -> int:
    """``module.main()`` with ``args`` on the command line; its exit status."""
    monkeypatch.setattr(sys, "argv", [module.__name__, *args])
    with pytest.raises(SystemExit) as exit_:
        module.main()
    return exit_.value.code


def test_list_phantoms(monkeypatch, capsys):
    assert run_main(train_cli, monkeypatch, "--list", "phantoms") == 0
    out = capsys.readouterr().out
    listed = [line.strip() for line in out.splitlines()[1:]]
    assert listed == list(PHANTOMS)
    assert {"random_ellipses", "shepp_logan", "vessels"} <= set(listed)


def test_an_unknown_kind_exits_non_zero_naming_the_kinds(monkeypatch, capsys):
    assert run_main(evaluate_cli, monkeypatch, "--list", "phantom") == 2
    captured = capsys.readouterr()
    assert "unknown list kind 'phantom'" in captured.err and captured.out == ""
    assert all(kind in captured.err for kind in [*KINDS, "all"])


def test_every_experiment_and_protocol_is_listed_with_a_description(monkeypatch, capsys):
    assert run_main(train_cli, monkeypatch, "--list=experiments") == 0
    out = capsys.readouterr().out
    for path in sorted((CONF_DIR / "experiment").rglob("*.yaml")):
        name = path.relative_to(CONF_DIR / "experiment").with_suffix("").as_posix()
        line = next(line for line in out.splitlines() if line.split()[:1] == [name])
        assert len(line.split(maxsplit=1)) == 2, f"{path} has no description comment"
    assert "quickstart/lpd" in out and "The quickstart (make run)" in out
    for name, text in entries("protocols"):
        assert text and not text.startswith("@package"), name


def test_list_all_names_every_kind(monkeypatch, capsys):
    assert run_main(train_cli, monkeypatch, "--list", "all") == 0
    out = capsys.readouterr().out
    for kind in KINDS:
        assert f"\n{kind} (" in f"\n{out}", kind
    assert "parallel128_30" in out and "recon.classical.FBP" in out and "lpd" in out


def test_descriptions():
    assert describe(CONF_DIR / "model" / "lpd.yaml").startswith("Learned primal-dual")
    # the first sentence, not the comment's first line cut mid-sentence, and not after "et al."
    assert describe(CONF_DIR / "model" / "dncnn.yaml").endswith("batch normalisation.")
    assert describe(CONF_DIR / "recon" / "sirt.yaml") == "recon.classical.SIRT"  # no comment
    assert all(len(text) <= 110 for kind in KINDS for _, text in entries(kind))


def test_help_names_the_command_and_only_its_groups(monkeypatch, capsys):
    assert run_main(train_cli, monkeypatch, "--help") == 0
    train_help = capsys.readouterr().out
    assert train_help.startswith("recon-train: train")
    assert run_main(evaluate_cli, monkeypatch, "-h", "protocol=ellipses/classical") == 0
    eval_help = capsys.readouterr().out
    assert eval_help.startswith("recon-eval: run reconstructors")

    def groups(text: str) -> set[str]:
        return {line.split(":")[0] for line in text.splitlines() if ": " in line}

    trained, evaluated = groups(train_help), groups(eval_help)
    assert {"experiment", "trainer", "optim", "model", "objective", "operator", "data"} <= trained
    assert "protocol" not in trained and "recon" not in trained
    assert {"protocol", "recon", "operator", "data"} <= evaluated
    assert "experiment" not in evaluated and "trainer" not in evaluated
    assert "--list KIND" in train_help and "--hydra-help" in eval_help
    assert "quickstart/lpd" in train_help  # the options of each group


@pytest.mark.parametrize("config_name", ["config", "eval"])
def test_the_groups_cover_what_hydra_composes(config_name):
    """Every group Hydra chooses an option of (root defaults, an experiment's /objective) is in
    --help."""
    overrides = {
        "config": ["experiment=correction_pat64/forward"],
        "eval": ["protocol=pat/vessels"],
    }
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name, overrides[config_name], return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    chosen = {
        key.split("@")[0]
        for key in cfg.hydra.runtime.choices
        if not key.startswith("hydra/") and key.split("@")[0] != "hydra"
    }
    assert chosen and chosen <= set(command_groups(config_name))


def test_without_list_or_help_hydra_runs():
    assert intercept(["experiment=quickstart/lpd", "-m"], command="x", config_name="config") is None
    # a value named "--list" elsewhere in an override is not the flag
    assert intercept(["+note=--list"], command="x", config_name="config") is None


def test_the_console_script_lists_before_hydra_parses():
    script = Path(sys.executable).parent / "recon-train"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "recon.cli.train"]
    proc = subprocess.run(
        [*command, "--list", "phantoms"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "shepp_logan" in proc.stdout and "vessels" in proc.stdout
    proc = subprocess.run([*command, "--list", "nope"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "kinds: experiments" in proc.stderr
