"""Shared fixtures. Every test gets its own RUNCTL_HOME and XDG dirs, so no test ever reads or
writes the real user's settings or state."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "train.py"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "runctl-home"
    monkeypatch.setenv("RUNCTL_HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    for name in list(os.environ):
        if name.startswith("RUNCTL_") and name != "RUNCTL_HOME":
            monkeypatch.delenv(name)
    # No test reaches a real cloud: no credentials, no profile files, and botocore never asks
    # the instance metadata address (the moto fixture sets its own endpoint and fake keys).
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws" / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws" / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return home


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A small project with a .git dir, the example training in a subfolder, and a
    runctl.toml that keeps stops short."""
    root = tmp_path / "proj"
    (root / ".git").mkdir(parents=True)
    (root / "training").mkdir()
    (root / "training" / "train.py").write_text(EXAMPLE.read_text())
    (root / "runctl.toml").write_text("[train]\nstop_grace_s = 5\n")
    return root


def wait_until(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy; fail with a clear message."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


PYTHON = sys.executable


def log_lines(app) -> list[str]:
    """The lines the dashboard's log view holds for the selected run (what scrolling shows)."""
    index = app.log_view.index
    if index is None:
        return []
    return [line for line in index.read_lines(0, index.line_count) if line]


def write_example_checkpoint(
    directory: Path, epoch: int, loss: float, mtime: float, **extra: float
) -> Path:
    """A checkpoint as examples/train.py writes it after `epoch` (100 steps per epoch, of 10),
    modified at `mtime`; `extra` adds keys (val_loss, total_steps)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"epoch-{epoch:04d}.ckpt.json"
    state = {
        "format": "runctl-example-v1",
        "epoch": epoch,
        "epoch_complete": True,
        "total_epochs": 10,
        "step": epoch * 100,
        "loss": loss,
        "weights": [0.0] * 16,
        "bias": 0.0,
        **extra,
    }
    path.write_text(json.dumps(state))
    os.utime(path, (mtime, mtime))
    return path
