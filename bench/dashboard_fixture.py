"""Shared set-up for the dashboard benchmarks: a headless app following one run's log."""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from textual import events

from app.settings import load_settings
from app.store import Run
from app.tui import RunctlApp


def app_following_a_log(
    tmp: str, extra_settings: dict | None = None, app_class: type[RunctlApp] = RunctlApp
) -> tuple[RunctlApp, Path]:
    """An app whose selected run's output.log is at the returned path (empty, growing)."""
    os.environ["RUNCTL_HOME"] = os.path.join(tmp, "home")
    project = Path(tmp) / "proj"
    (project / ".git").mkdir(parents=True, exist_ok=True)
    settings = load_settings(project, **(extra_settings or {}))
    app = app_class(settings, project)
    local = app.service.local.list_instances()[0]
    run_dir = settings.runs_root / "20260101-000000-bench0"
    (run_dir / "checkpoints").mkdir(parents=True)
    log = run_dir / "output.log"
    log.write_bytes(b"")
    (run_dir / "exit_code").write_text("0\n")  # a finished run: no process to manage
    app.store.add_run(
        Run(
            id=run_dir.name,
            host=local.id,
            provider="local",
            instance_id=local.id,
            project_root=str(project),
            script="train.py",
            args=[],
            started_at=time.time(),
            status="finished",
            exit_code=0,
            run_dir=str(run_dir),
            checkpoint_dir=str(run_dir / "checkpoints"),
        )
    )
    return app, log


def temp_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="runctl-bench-")


KEY_GAP_S = 0.020


class KeySender(threading.Thread):
    """Presses `z` every KEY_GAP_S until stopped, from a thread of its own: the way a
    terminal's keys arrive (the drivers read stdin in a thread and hand each key to the app's
    loop). `Pilot.press` runs on the app's own loop, so it could not send a key while the loop
    is busy, and would not see the stalls a latency figure is about."""

    def __init__(self, app: RunctlApp) -> None:
        super().__init__(daemon=True)
        self.app = app
        self.sent: list[float] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.sent.append(time.perf_counter())
            self.app._driver.send_message(events.Key("z", "z"))
            self.stopped.wait(KEY_GAP_S)


async def keys_during(
    app: RunctlApp, handled: list[float], until_done: Callable[[], Awaitable[object]]
) -> list[float]:
    """Latencies of the keys sent while `until_done()` runs; `handled` is where the app's
    `z` binding appends the time it ran."""
    sender = KeySender(app)
    first = len(handled)
    sender.start()
    try:
        await until_done()
    finally:
        sender.stopped.set()
        sender.join()
    deadline = time.perf_counter() + 10
    while len(handled) - first < len(sender.sent):
        if time.perf_counter() > deadline:
            raise RuntimeError("a key press was not handled within 10 s")
        await asyncio.sleep(0.005)
    return [done - sent for sent, done in zip(sender.sent, handled[first:], strict=True)]
