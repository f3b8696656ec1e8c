"""recon-collect: statuses, swept parameters, markdown/CSV/PNG outputs and errors, on sweep
directories laid out as Hydra and recon.runs.sweep.run_job write them (no jobs are run here)."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from recon.cli.collect import main
from recon.runs.collect import collect, plot_sweep, to_markdown, write_csv


def make_job(sweep, num, overrides, result=None):
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if result is not None:
        (job / "result.json").write_text(json.dumps({"job": {"num": num}, **result}))
    return job


def completed(value, wall=2.0):
    metrics = {"tv/psnr_mean": value, "tv/psnr_std": 0.5, "tv/params/lam": 1.0, "step": 3}
    return {"status": "completed", "objective": value, "wall_time_s": wall, "attempt": 1,
            "metrics": metrics}  # fmt: skip


@pytest.fixture
def sweep(tmp_path):
    """Five λ values: completed ×2, no result, failed, incomplete (killed), one never started."""
    sweep = tmp_path / "multirun"
    sweep.mkdir()
    task = ["protocol=ellipses/classical", "methods.tv.lam=0.1,1,10,100,1000", "split=validation"]
    multirun = {"hydra": {"sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper."
                                      "BasicSweeper", "params": None},
                          "overrides": {"task": task}}}  # fmt: skip
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(multirun))
    fixed = ["protocol=ellipses/classical", "split=validation"]
    make_job(sweep, 0, [*fixed, "methods.tv.lam=0.1"], completed(24.5))
    make_job(sweep, 1, [*fixed, "methods.tv.lam=1"], completed(27.25, wall=3.5))
    make_job(sweep, 2, [*fixed, "methods.tv.lam=10"])  # Hydra started it, nothing recorded
    make_job(sweep, 3, [*fixed, "methods.tv.lam=100"],
             {"status": "failed", "error": "ValueError: lam | too big", "wall_time_s": 0.5,
              "attempt": 1})  # fmt: skip
    make_job(sweep, 10, [*fixed, "methods.tv.lam=1000"], {"status": "started", "attempt": 2})
    (sweep / "10").rename(sweep / "lam_1000")  # a job folder that is not named by its number
    return sweep


def test_collect_marks_every_status_and_finds_the_swept_parameter(sweep):
    table = collect(sweep)
    assert table.expected == 5
    assert table.swept == ["methods.tv.lam"]  # split and experiment do not vary
    status = {row["job"]: row["status"] for row in table.rows}
    assert status == {0: "completed", 1: "completed", 2: "no result", 3: "failed",
                      4: "missing", 10: "incomplete"}  # fmt: skip
    by_job = {row["job"]: row for row in table.rows}
    assert by_job[1]["methods.tv.lam"] == 1 and by_job[1]["tv/psnr_mean"] == 27.25
    assert by_job[1]["wall_time_s"] == 3.5
    assert by_job[3]["error"].startswith("ValueError") and by_job[10]["attempts"] == 2
    assert table.counts() == {"completed": 2, "failed": 1, "incomplete": 1, "no result": 1,
                              "missing": 1}  # fmt: skip


def test_markdown_and_csv_hold_overrides_status_metrics_and_wall_time(sweep, tmp_path):
    table = collect(sweep)
    md = to_markdown(table).splitlines()
    assert md[0] == ("| job | methods.tv.lam | status | objective | tv/psnr_mean | wall_time_s "
                     "| attempts | error |")  # fmt: skip
    assert "| 1 | 1 | completed | 27.25 | 27.25 | 3.5 | 1 |  |" in md
    assert any("| failed |" in line and "ValueError: lam \\| too big" in line for line in md)
    assert any(line.startswith("| 4 |") and "| missing |" in line for line in md)
    rows = list(csv.DictReader(open(write_csv(table, tmp_path / "t.csv"))))
    assert [r["status"] for r in rows][:2] == ["completed", "completed"]
    assert rows[0]["tv/psnr_std"] == "0.5" and rows[0]["tv/params/lam"] == "1.0"  # all metrics
    assert rows[3]["objective"] == "" and rows[3]["error"].startswith("ValueError")


def test_plot_is_a_png_with_one_panel_per_swept_parameter(sweep, tmp_path):
    from skimage.io import imread

    table = collect(sweep)
    path = plot_sweep(table, tmp_path / "plot.png")
    image = imread(path)
    assert image.ndim == 3 and image.shape[1] > image.shape[0] > 100
    with pytest.raises(ValueError, match="unknown metric 'psnr'"):
        plot_sweep(table, tmp_path / "x.png", metric="psnr")


def test_console_script_writes_table_csv_and_plot(sweep, capsys):
    assert main([str(sweep), "--metric", "tv/psnr_mean"]) == 0
    out = capsys.readouterr().out
    assert (
        "6 jobs of 5 expected: 2 completed, 1 failed, 1 incomplete, 1 no result, 1 missing" in out
    )
    for name in ("sweep_results.md", "sweep_results.csv", "sweep_tv_psnr_mean.png"):
        assert (sweep / name).is_file(), name


@pytest.mark.parametrize(
    "arguments, message",
    [
        pytest.param(["{tmp}/nowhere"], "does not exist", id="missing-dir"),
        pytest.param(["{tmp}"], "no Hydra jobs in", id="not-a-sweep"),
        pytest.param(["{sweep}", "--metric", "loss"], "unknown --metric 'loss'", id="bad-metric"),
    ],
)
def test_console_script_errors_are_clear(sweep, tmp_path, capsys, arguments, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    arguments = [a.format(tmp=empty, sweep=sweep) for a in arguments]
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_an_optuna_sweep_without_multirun_yaml_takes_its_settings_from_a_job(tmp_path):
    sweep = tmp_path / "optuna"
    for num, lam in enumerate([0.3, 2.0]):
        job = make_job(sweep, num, [f"methods.tv.lam={lam}"], completed(25.0 + num))
        hydra = {
            "hydra": {
                "sweeper": {
                    "_target_": "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper",
                    "n_trials": 3,
                    "params": {"methods.tv.lam": "interval(0.01, 100)"},
                }
            }
        }
        (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))  # fmt: skip
    (sweep / "optimization_results.yaml").write_text(
        yaml.safe_dump({"best_params": {"methods.tv.lam": 2.0}, "best_value": 26.0})
    )
    table = collect(sweep)
    assert table.expected == 3 and table.swept == ["methods.tv.lam"]
    assert [row["status"] for row in table.rows] == ["completed", "completed", "missing"]
    assert table.best["best_value"] == 26.0


@pytest.mark.parametrize(
    "breakage, message",
    [
        pytest.param(
            ("result.json", b'{"status": "compl\xe9ted"}'), "not UTF-8", id="latin1-result"
        ),
        pytest.param(
            (".hydra/overrides.yaml", b"- lam=\xff\n"), "not UTF-8", id="binary-overrides"
        ),
        pytest.param(("result.json", b'{"status": 3}'), "'status' should be a string", id="status"),
        pytest.param(
            ("result.json", b'{"status": "completed", "objective": "high"}'),
            "'objective' should be a number",
            id="objective",
        ),  # fmt: skip
        pytest.param(
            ("result.json", b'{"status": "completed", "metrics": [1, 2]}'),
            "'metrics' should be an object",
            id="metrics",
        ),  # fmt: skip
        pytest.param(
            ("result.json", b'{"status": "completed", "job": [0]}'),
            "'job' should be an object",
            id="job",
        ),  # fmt: skip
        pytest.param(
            (".hydra/overrides.yaml", b"lam: 1\n"),
            "a list of override strings",
            id="overrides-mapping",
        ),  # fmt: skip
        pytest.param(("result.json", b"[1, 2]"), "expected a JSON object", id="json-list"),
    ],
)
def test_one_broken_job_is_marked_unreadable_naming_its_file(tmp_path, breakage, message, caplog):
    sweep_dir = tmp_path / "sweep"
    for num, lam in enumerate([0.1, 1.0]):
        make_job(sweep_dir, num, [f"lam={lam}"], completed(20.0 + num))
    name, data = breakage
    (sweep_dir / "1" / name).write_bytes(data)
    table = collect(sweep_dir)
    rows = {row["job"]: row for row in table.rows}
    assert rows[0]["status"] == "completed" and rows[0]["objective"] == 20.0
    assert rows[1]["status"] == "unreadable"
    assert str(sweep_dir / "1" / name) in rows[1]["error"] and message in rows[1]["error"]
    assert message in caplog.text
    assert "| unreadable |" in to_markdown(table).replace("  ", " ")
