"""`runctl-tui metrics LOGFILE [--json]` run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

LOGS = Path(__file__).parent / "fixtures" / "logs"
REPO = Path(__file__).resolve().parent.parent
POINT_KEYS = {"line", "epoch", "total_epochs", "step", "total_steps", "loss", "metrics"}
SUMMARY_KEYS = {
    "epoch",
    "total_epochs",
    "step",
    "total_steps",
    "loss",
    "eta_seconds",
    "rate_steps_per_s",
}


def run_metrics(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "metrics", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(cwd)},
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / ".git").mkdir()  # a project root, so no settings outside the test are read
    return tmp_path


def test_json_output_has_the_documented_shape(workdir):
    result = run_metrics(str(LOGS / "hf_trainer.log"), "--json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"points", "summary"}
    assert data["points"]
    for point in data["points"]:
        assert set(point) == POINT_KEYS
        assert isinstance(point["line"], int)
        assert all(isinstance(v, float) for v in point["metrics"].values())
    summary = data["summary"]
    assert set(summary) == SUMMARY_KEYS
    assert (summary["step"], summary["total_steps"]) == (60, 60)
    assert summary["eta_seconds"] == 0.0
    state = json.loads((LOGS / "hf_trainer.trainer_state.json").read_text())
    truth_losses = [f"{h['loss']:.4g}" for h in state["log_history"] if "loss" in h]
    dict_losses = [f"{p['loss']:.4g}" for p in data["points"] if "grad_norm" in p["metrics"]]
    assert dict_losses == truth_losses


def test_json_points_are_the_parsers_points(workdir):
    from app.logparse import as_json_point, parse_text

    log = LOGS / "keras_verbose1.log"
    result = run_metrics(str(log), "--json", cwd=workdir)
    expected = [as_json_point(p) for p in parse_text(log.read_bytes())]
    assert json.loads(result.stdout)["points"] == expected


def test_table_output_is_readable(workdir):
    result = run_metrics(str(LOGS / "keras_verbose2.log"), cwd=workdir)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.splitlines()[0].split() == ["LINE", "EPOCH", "STEP", "LOSS", "OTHER"]
    assert "0.5556" in out and "val_loss=0.5223" in out
    assert "metric points in" in out
    assert "epoch      5/5" in out


def test_nan_loss_is_kept_and_warned_about(workdir):
    log = workdir / "nan.log"
    log.write_text("Epoch 1/2 step 1/10 loss=0.5\nEpoch 1/2 step 2/10 loss=nan\n")
    data = json.loads(run_metrics(str(log), "--json", cwd=workdir).stdout)
    assert data["points"][1]["loss"] != data["points"][1]["loss"]  # NaN survives the trip
    table = run_metrics(str(log), cwd=workdir).stdout
    assert "1 nan/inf loss values" in table


def test_missing_file_exits_2_with_one_line(workdir):
    result = run_metrics(str(workdir / "nope.log"), "--json", cwd=workdir)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.log" in lines[0] and "No such file" in lines[0]


def test_unreadable_path_exits_2(workdir):
    result = run_metrics(str(workdir), cwd=workdir)  # a directory
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


def test_extra_patterns_from_runctl_toml(workdir):
    (workdir / "runctl.toml").write_text(
        "[logs]\nextra_patterns = ['reward=(?P<reward>[-\\d.]+)']\n"
    )
    log = workdir / "rl.log"
    log.write_text("episode 1 reward=12.5\nepisode 2 reward=-3\n")
    data = json.loads(run_metrics(str(log), "--json", cwd=workdir).stdout)
    assert [p["metrics"]["reward"] for p in data["points"]] == [12.5, -3.0]


def test_large_log_is_streamed(workdir):
    log = workdir / "big.log"
    with log.open("w") as handle:
        for step in range(60_000):
            handle.write(f"Epoch 1/1 Step {step + 1}/60000 loss={1 / (step + 1):.6f}\n")
    result = run_metrics(str(log), "--json", cwd=workdir)
    data = json.loads(result.stdout)
    assert len(data["points"]) == 60_000
    assert data["summary"]["step"] == 60_000
    assert data["points"][-1]["line"] == 60_000


def test_the_parser_and_the_eta_import_no_textual(workdir):
    code = (
        "import sys, app.logparse, app.eta, app.metrics_report; "
        "sys.exit('textual' in sys.modules or 'rich' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=workdir, env={"PYTHONPATH": str(REPO)}, timeout=60
    )
    assert result.returncode == 0


def test_a_bad_extra_pattern_exits_2_naming_the_problem(workdir):
    (workdir / "runctl.toml").write_text("[logs]\nextra_patterns = ['loss=(?P<loss>[']\n")
    log = workdir / "a.log"
    log.write_text("loss=1\n")
    result = run_metrics(str(log), cwd=workdir)
    assert result.returncode == 2
    assert "extra_patterns" in result.stderr or "runctl.toml" in result.stderr
