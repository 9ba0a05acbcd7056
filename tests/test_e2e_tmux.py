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

from tests.conftest import wait_until

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

    def _tmux(self, *args: str, check: bool = False) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30
        )
        if check and done.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.name, *keys, check=True)

    def type(self, text: str) -> None:
        # `--`: text such as "--epochs 50" is typed, not read by tmux as its own flag.
        self._tmux("send-keys", "-t", self.name, "-l", "--", text, check=True)

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

    def start_training(self, args: str) -> None:
        """t, then the arguments (the script is prefilled from runctl.toml, so the dialog opens
        on the arguments), then enter."""
        self.keys("t")
        self.wait_for("Start training")
        self.type(args)
        self.keys("Enter")

    def pid(self) -> int:
        """The process in the pane: runctl-tui itself (`env` execs it)."""
        return int(self._tmux("display-message", "-p", "-t", self.name, "#{pane_pid}"))

    def kill(self) -> None:
        self._tmux("kill-server")


@pytest.fixture
def tmux_app(project: Path, isolated_home: Path):
    assert shutil.which("tmux"), "tmux is required (the README test command installs it)"
    assert BIN.exists(), f"{BIN} missing: install the package (pip install -e '.[test]')"
    (project / "runctl.toml").write_text(
        '[train]\nstop_grace_s = 10\ndefault_script = "training/train.py"\n'
    )
    session = TmuxSession(project, dashboard_env(isolated_home))
    yield session
    session.kill()


def dashboard_env(isolated_home: Path) -> dict[str, str]:
    """What the dashboard in tmux gets: this test's state dir and config dir, a real TERM."""
    return {
        "RUNCTL_HOME": str(isolated_home),
        "XDG_CONFIG_HOME": os.environ["XDG_CONFIG_HOME"],
        "TERM": "xterm-256color",
        "PATH": os.environ.get("PATH", ""),
    }


def _last_logged_step(screen: str) -> int | None:
    """The step of the example training's last log line on screen (the log pane follows the
    tail, so its first lines have scrolled away on a slow machine)."""
    steps = re.findall(r"Epoch \d+/50 step (\d+)/\d+ loss=0\.\d{4}", screen)
    return int(steps[-1]) if steps else None


def test_train_see_loss_stop_and_quit_in_a_real_terminal(tmux_app: TmuxSession) -> None:
    tmux_app.wait_for("Instances")
    tmux_app.wait_for("this machine")
    tmux_app.start_training("--step-delay 0.03 --epochs 50")
    # Its log lines say /50: the typed arguments reached the training.
    screen = tmux_app.wait_for(lambda s: _last_logged_step(s) is not None)
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
    wait_until(lambda: not tmux_app.alive(), timeout=15)  # runctl-tui quits on q


def test_killed_dashboard_loses_nothing_and_reopens_on_the_running_run(
    tmux_app: TmuxSession, project: Path, isolated_home: Path
) -> None:
    tmux_app.wait_for("this machine")
    tmux_app.start_training("--step-delay 0.05 --epochs 50")
    tmux_app.wait_for(lambda s: re.search(r"loss=0\.\d{4}", s) is not None)
    os.kill(
        tmux_app.pid(), signal.SIGKILL
    )  # the dashboard dies mid-run, with no chance to clean up

    reopened = TmuxSession(project, dashboard_env(isolated_home))
    try:
        screen = reopened.wait_for(lambda s: _last_logged_step(s) is not None)
        assert "running" in screen
        # The reopened log pane follows the same run live: a later step arrives.
        first_step = _last_logged_step(screen)
        reopened.wait_for(lambda s: (_last_logged_step(s) or 0) > first_step)
        reopened.keys("s")
        reopened.wait_for("Sends SIGTERM")
        reopened.keys("y")
        reopened.wait_for(lambda s: "stopped 0" in s, timeout=30)
    finally:
        reopened.kill()
