"""`runctl-tui checkpoints PATH [--json]` run as a real subprocess, as a user or a script
would run it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.fixtures.checkpoints.torch_zip import write_sparse_checkpoint

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "checkpoints"
EXPECTED: dict[str, dict] = json.loads((FIXTURES / "expected.json").read_text())
ROW_KEYS = [
    "path",
    "kind",
    "epoch",
    "step",
    "loss",
    "metrics",
    "size_bytes",
    "mtime",
    "status",
    "error",
]


def checkpoints_command(*args: str, cwd: Path, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "checkpoints", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_json_for_a_directory_with_good_unsafe_and_truncated_files(tmp_path: Path) -> None:
    directory = tmp_path / "checkpoints"
    shutil.copytree(FIXTURES / "torch", directory)
    shutil.copy(FIXTURES / "unsafe" / "malicious.pt", directory)
    shutil.copy(FIXTURES / "unsafe" / "whole-module.pt", directory)
    content = (FIXTURES / "lightning" / "epoch=1-step=8.ckpt").read_bytes()
    (directory / "cut.ckpt").write_bytes(content[: len(content) // 2])
    marker = tmp_path / "pwned"

    done = checkpoints_command(
        str(directory), "--json", cwd=tmp_path, env={"CHECKPOINT_TEST_MARKER": str(marker)}
    )

    assert done.returncode == 0, done.stderr
    assert not marker.exists()
    rows = {Path(row["path"]).name: row for row in json.loads(done.stdout)}
    assert all(list(row) == ROW_KEYS for row in rows.values())
    assert rows["malicious.pt"]["status"] == "unsafe"
    assert "refuses GLOBAL posix.system" in rows["malicious.pt"]["error"]
    assert rows["whole-module.pt"]["status"] == "unsafe"
    assert rows["cut.ckpt"]["status"] == "corrupt"
    assert "truncated" in rows["cut.ckpt"]["error"]
    for name in os.listdir(FIXTURES / "torch"):
        want = EXPECTED[f"torch/{name}"]
        row = rows[name]
        assert (row["status"], row["kind"], row["error"]) == ("ok", want["kind"], None)
        assert (row["epoch"], row["step"], row["loss"]) == (
            want.get("epoch"),
            want.get("step"),
            want.get("loss"),
        )
        for metric, value in want.get("metrics", {}).items():
            assert row["metrics"][metric] == value
        assert row["size_bytes"] == (directory / name).stat().st_size


def test_a_hf_checkpoint_directory_is_one_row(tmp_path: Path) -> None:
    done = checkpoints_command(str(FIXTURES / "hf" / "checkpoint-8"), "--json", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    [row] = json.loads(done.stdout)
    want = EXPECTED["hf/checkpoint-8"]
    assert (row["kind"], row["epoch"], row["step"], row["loss"]) == (
        "hf-trainer",
        want["epoch"],
        want["step"],
        want["loss"],
    )
    assert row["metrics"]["eval_loss"] == want["metrics"]["eval_loss"]


def test_the_table_marks_the_best_and_explains_bad_files(tmp_path: Path) -> None:
    directory = tmp_path / "run"
    shutil.copytree(FIXTURES / "lightning", directory)
    shutil.copy(FIXTURES / "unsafe" / "malicious.pt", directory)

    done = checkpoints_command(str(directory), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "EPOCH", "STEP", "LOSS", "SIZE", "AGE", "STATUS"]
    best_row = next(line for line in lines if line.startswith("*"))
    assert "epoch=2-step=12.ckpt" in best_row
    assert "best by val_loss (min)" in done.stdout
    assert f"UNSAFE: {directory / 'malicious.pt'}: refuses GLOBAL posix.system" in done.stdout


def test_a_missing_path_exits_2_with_a_message(tmp_path: Path) -> None:
    done = checkpoints_command(str(tmp_path / "nope"), "--json", cwd=tmp_path)

    assert done.returncode == 2
    assert done.stdout == ""
    assert "no such file or directory" in done.stderr


def test_an_empty_directory_is_an_empty_list(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    done = checkpoints_command(str(tmp_path / "empty"), "--json", cwd=tmp_path)

    assert (done.returncode, json.loads(done.stdout)) == (0, [])
    table = checkpoints_command(str(tmp_path / "empty"), cwd=tmp_path)
    assert table.stdout.startswith("No checkpoints in ")


def test_a_sparse_multi_gb_checkpoint_through_the_command(tmp_path: Path) -> None:
    path = tmp_path / "big.pt"
    size = write_sparse_checkpoint(path, 4 * 2**30, epoch=9, step=90_000, loss=1.25)

    done = checkpoints_command(str(path), "--json", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    [row] = json.loads(done.stdout)
    assert (row["epoch"], row["step"], row["loss"], row["size_bytes"]) == (9.0, 90_000, 1.25, size)
