"""End to end, as a person uses it: the real `runctl-tui` command in tmux, keys typed with
send-keys, the screen read with capture-pane."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "runctl-tui"


class TmuxSession:
    def __init__(self, cwd: Path, env: dict[str, str], width: int = 120, height: int = 36) -> None:
        self.socket = f"runctl-e2e-{uuid.uuid4().hex[:8]}"
        self.name = "e2e"
        env_args = [f"{k}={v}" for k, v in env.items()]
        self._tmux(
            "new-session",
            "-d",
            "-s",
            self.name,
            "-x",
            str(width),
            "-y",
            str(height),
            "-c",
            str(cwd),
            "env",
            *env_args,
            str(BIN),
        )

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30
        )
        return done.stdout

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.name, *keys)

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", self.name, "-l", text)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", self.name)

    def alive(self) -> bool:
        return self.name in self._tmux("list-sessions", "-F", "#{session_name}")

    def wait_for(self, what: str | Callable[[str], bool], timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        check = (lambda s: what in s) if isinstance(what, str) else what
        while time.monotonic() < deadline:
            text = self.screen()
            if check(text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"screen never showed {what!r}; last screen:\n{self.screen()}")

    def kill(self) -> None:
        self._tmux("kill-server")


@pytest.fixture
def tmux_app(project: Path, isolated_home: Path):
    assert shutil.which("tmux"), "tmux is required (the README test command installs it)"
    assert BIN.exists(), f"{BIN} missing: install the package (pip install -e '.[test]')"
    (project / "runctl.toml").write_text(
        '[train]\nstop_grace_s = 10\ndefault_script = "training/train.py"\n'
    )
    env = {
        "RUNCTL_HOME": str(isolated_home),
        "XDG_CONFIG_HOME": os.environ["XDG_CONFIG_HOME"],
        "TERM": "xterm-256color",
        "PATH": os.environ.get("PATH", ""),
    }
    session = TmuxSession(project, env)
    yield session
    session.kill()


def test_train_see_loss_stop_and_quit_in_a_real_terminal(tmux_app: TmuxSession) -> None:
    tmux_app.wait_for("Instances")
    tmux_app.wait_for("this machine")
    tmux_app.keys("t")
    tmux_app.wait_for("Start training")
    tmux_app.keys("Tab")  # script is prefilled from runctl.toml; move to the arguments
    tmux_app.type("--step-delay 0.03 --epochs 50")
    tmux_app.keys("Enter")
    screen = tmux_app.wait_for(lambda s: re.search(r"loss=0\.\d{4}", s) is not None)
    assert "running" in screen
    tmux_app.wait_for(lambda s: re.search(r"loss 0\.\d+", s) is not None)  # the metrics strip

    tmux_app.keys("s")
    # The footer always says "Stop run"; the dialog is there when its body names the signal.
    screen = tmux_app.wait_for("Sends SIGTERM")
    assert "Stop run 2" in screen  # the title names the run: "Stop run 20261123-…?"
    tmux_app.keys("y")
    tmux_app.wait_for("Received SIGTERM", timeout=30)
    tmux_app.wait_for(lambda s: "stopped 0" in s, timeout=30)

    tmux_app.keys("q")
    deadline = time.monotonic() + 15
    while tmux_app.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not tmux_app.alive(), "runctl-tui did not quit on q"


def test_killed_dashboard_loses_nothing_and_reopens_on_the_running_run(
    tmux_app: TmuxSession, project: Path, isolated_home: Path
) -> None:
    tmux_app.wait_for("this machine")
    tmux_app.keys("t")
    tmux_app.wait_for("Start training")
    tmux_app.keys("Tab")
    tmux_app.type("--step-delay 0.05 --epochs 50")
    tmux_app.keys("Enter")
    tmux_app.wait_for(lambda s: re.search(r"loss=0\.\d{4}", s) is not None)
    pane_pid = int(tmux_app._tmux("display-message", "-p", "-t", tmux_app.name, "#{pane_pid}"))
    os.kill(pane_pid, signal.SIGKILL)  # the dashboard dies mid-run, with no chance to clean up

    env = {
        "RUNCTL_HOME": str(isolated_home),
        "XDG_CONFIG_HOME": os.environ["XDG_CONFIG_HOME"],
        "TERM": "xterm-256color",
        "PATH": os.environ.get("PATH", ""),
    }
    reopened = TmuxSession(project, env)
    try:
        screen = reopened.wait_for(lambda s: re.search(r"loss=0\.\d{4}", s) is not None)
        assert "running" in screen
        assert "Training logistic regression" in screen or "Epoch 1/50" in screen
        reopened.keys("s")
        reopened.wait_for("Sends SIGTERM")
        reopened.keys("y")
        reopened.wait_for(lambda s: "stopped 0" in s, timeout=30)
    finally:
        reopened.kill()
