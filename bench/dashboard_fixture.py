"""Shared set-up for the dashboard benchmarks: a headless app following one run's log."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

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
