"""The bundled example really trains, checkpoints, stops cleanly and resumes."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.conftest import EXAMPLE, PYTHON

LINE = re.compile(r"^Epoch (\d+)/(\d+) step (\d+)/(\d+) loss=(\d+\.\d+)$", re.M)


def run_example(tmp_path: Path, *args: str) -> str:
    done = subprocess.run(
        [
            PYTHON,
            str(EXAMPLE),
            "--step-delay",
            "0",
            "--checkpoint-dir",
            str(tmp_path / "ck"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def test_loss_goes_down_and_every_epoch_checkpoints(tmp_path: Path) -> None:
    out = run_example(tmp_path, "--epochs", "4")
    losses = [float(m.group(5)) for m in LINE.finditer(out)]
    assert len(losses) == 40
    assert sum(losses[-10:]) / 10 < sum(losses[:3]) / 3 - 0.1  # it learns
    files = sorted(p.name for p in (tmp_path / "ck").glob("*.ckpt.json"))
    assert files == [f"epoch-{i:04d}.ckpt.json" for i in range(1, 5)]
    last = json.loads((tmp_path / "ck" / "epoch-0004.ckpt.json").read_text())
    assert last["format"] == "runctl-example-v1"
    assert last["epoch"] == 4 and last["step"] == 400 and last["epoch_complete"] is True
    assert 0 < last["loss"] < 1 and 0.7 < last["accuracy"] <= 1


def test_resume_continues_from_the_next_epoch(tmp_path: Path) -> None:
    run_example(tmp_path, "--epochs", "2")
    out = run_example(
        tmp_path, "--epochs", "4", "--resume", str(tmp_path / "ck" / "epoch-0002.ckpt.json")
    )
    assert "Resumed from" in out and "at epoch 3/4 step 200" in out
    first = LINE.search(out)
    assert first.group(1) == "3" and first.group(3) == "210"


def test_corrupt_resume_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ckpt.json"
    bad.write_text("{not json")
    done = subprocess.run(
        [PYTHON, str(EXAMPLE), "--resume", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "cannot resume from" in done.stderr and "Traceback" not in done.stderr
