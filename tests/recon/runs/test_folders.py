"""recon.runs.folders: a folder holding a run is refused before the first byte, and a fresh one
is claimed by exactly one job (issue [hardening] item 2)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from recon.runs import folders
from recon.runs.folders import RUN_MARKERS, claim_output_dir, run_markers

CFG = OmegaConf.create({"seed": 0, "model": {"_target_": "recon.unrolled.LearnedPrimalDual"}})


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_fresh_folder_is_claimed_with_the_runs_config(tmp_path):
    claim_output_dir(tmp_path / "new", CFG)
    assert OmegaConf.load(tmp_path / "new" / ".hydra" / "config.yaml") == CFG
    assert OmegaConf.load(tmp_path / "new" / ".hydra" / "overrides.yaml") == []


@pytest.mark.parametrize("marker", RUN_MARKERS)
def test_any_trace_of_a_run_refuses_the_folder_and_changes_nothing(tmp_path, marker):
    (tmp_path / marker).write_text("an earlier run's record")
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError, match=f"already holds a run .*{marker}.*resume=true"):
        claim_output_dir(tmp_path, CFG)
    assert snapshot(tmp_path) == before and run_markers(tmp_path) == [marker]


def test_resume_or_overwrite_uses_the_folder(tmp_path):
    (tmp_path / "result.json").write_text("{}")
    claim_output_dir(tmp_path, CFG, resume=True)
    claim_output_dir(tmp_path, CFG, overwrite=True, continue_flag="overwrite=true")
    assert (tmp_path / ".hydra" / "config.yaml").is_file()


def test_of_two_jobs_racing_for_one_folder_only_the_first_claims_it(tmp_path, monkeypatch):
    """The second job checked before the first created .hydra/: its mkdir still fails."""
    monkeypatch.setattr(folders, "run_markers", lambda folder: [])  # both saw a fresh folder
    claim_output_dir(tmp_path, CFG)
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError, match="already holds a run"):
        claim_output_dir(tmp_path, OmegaConf.create({"seed": 1}))
    assert snapshot(tmp_path) == before


def test_ranks_above_zero_claim_nothing(tmp_path, monkeypatch):
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29500"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    claim_output_dir(tmp_path / "run", CFG)
    assert not (tmp_path / "run").exists()
