"""A dashboard with history and a run in progress, the same every time: for the snapshot tests
and for `screenshots/make_screenshots.py`.

The runs are real run directories under RUNCTL_HOME: two finished runs written the way the
launcher leaves them, and one live run started through the real launcher (a process that
sleeps while its log holds a fixed training transcript). Times are pinned to a frozen clock
so ages, durations and run ids never change between runs of the tests.
"""

from __future__ import annotations

import os
import shutil
import textwrap
import time
from pathlib import Path

from app.runs import RunService
from app.settings import load_settings
from app.store import Run
from app.tui import RunctlApp
from providers.runproto import RunSpec
from tests.conftest import write_example_checkpoint

# 2026-11-23 10:40:00 UTC: the dashboard's "now".
FROZEN_NOW = 1795430400.0
RUNNING_ID = "20261123-101500-c0ffee"
SCENE_DIR = Path("/tmp/runctl-scene")
SCENE_HOSTNAME = "workstation"
ONE_SHOT_GROUPS = ("refresh-runs", "checkpoints", "loss-history", "log-index")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "train.py"


def training_transcript(epochs_done: int, total_epochs: int, steps_per_epoch: int) -> str:
    """What examples/train.py prints, with a loss curve that goes down like the real one."""
    lines = [
        f"Training logistic regression: {steps_per_epoch * 32} samples, dim 16, "
        f"{total_epochs} epochs x {steps_per_epoch} steps, checkpoints in checkpoints"
    ]
    total = total_epochs * steps_per_epoch
    step = 0
    for epoch in range(1, epochs_done + 2):
        for _ in range(steps_per_epoch // 10):
            step += 10
            loss = 0.69 * (0.35 + 0.65 / (1 + step / 60)) + 0.01 * ((step * 7) % 5 - 2)
            lines.append(f"Epoch {epoch}/{total_epochs} step {step}/{total} loss={loss:.4f}")
            if epoch > epochs_done and step % steps_per_epoch >= steps_per_epoch // 2:
                return "\n".join(lines) + "\n"
        if epoch <= epochs_done:
            val = 0.69 * (0.33 + 0.6 / (1 + step / 55))
            lines.append(
                f"Epoch {epoch}/{total_epochs} done: loss={loss:.4f} val_loss={val:.4f} "
                f"acc={0.62 + 0.05 * epoch:.4f}"
            )
            lines.append(f"Saved checkpoint checkpoints/epoch-{epoch:04d}.ckpt.json")
    return "\n".join(lines) + "\n"


def build_scene(base: Path = SCENE_DIR) -> tuple[RunctlApp, RunService, Path]:
    """A project under `base` with three runs; returns the app (frozen clock) and the service
    that owns the live run (call `stop_scene` when done)."""
    shutil.rmtree(base, ignore_errors=True)
    project = base / "mnist-project"
    (project / ".git").mkdir(parents=True)
    (project / "training").mkdir()
    (project / "training" / "train.py").write_text(EXAMPLE.read_text())
    (project / "runctl.toml").write_text(
        textwrap.dedent(
            """
            [train]
            python = "python3"
            default_script = "training/train.py"
            stop_grace_s = 30
            """
        )
    )
    os.environ["RUNCTL_HOME"] = str(base / "home")
    settings = load_settings(project)
    app = RunctlApp(settings, project, clock=lambda: FROZEN_NOW)
    service = app.service
    local = service.local.list_instances()[0]

    def finished_run(run_id: str, started: float, took: float, status: str, code: int) -> None:
        run_dir = settings.runs_root / run_id
        (run_dir / "checkpoints").mkdir(parents=True)
        (run_dir / "output.log").write_text(training_transcript(2, 2, 100))
        (run_dir / "exit_code").write_text(f"{code}\n")
        service.store.add_run(
            Run(
                id=run_id,
                host=local.id,
                provider="local",
                instance_id=local.id,
                project_root=str(project),
                script="training/train.py",
                args=["--epochs", "2"],
                started_at=started,
                ended_at=started + took,
                status=status,
                exit_code=code,
                run_dir=str(run_dir),
                checkpoint_dir=str(run_dir / "checkpoints"),
                last_epoch=2,
                total_epochs=2,
                last_loss=0.3712 if code == 0 else None,
            )
        )

    finished_run("20261123-083000-1a2b3c", FROZEN_NOW - 7800, 95, "finished", 0)
    finished_run("20261123-091200-4d5e6f", FROZEN_NOW - 5200, 1.2, "failed", 1)

    # The live run: a real process group started by the launcher, with a fixed transcript.
    run_dir = settings.runs_root / RUNNING_ID
    checkpoint_dir = run_dir / "checkpoints"
    run_dir.mkdir(parents=True)
    (run_dir / "output.log").write_text(training_transcript(3, 10, 100))
    for epoch, loss in ((1, 0.5521), (2, 0.4307), (3, 0.3894)):
        mtime = FROZEN_NOW - 900 + epoch * 240
        write_example_checkpoint(checkpoint_dir, epoch, loss, mtime, val_loss=loss * 1.05)
    started = FROZEN_NOW - 1500
    spec = RunSpec(
        run_id=RUNNING_ID,
        run_dir=str(run_dir),
        workdir=str(project),
        checkpoint_dir=str(checkpoint_dir),
        argv=["python3", "-c", "import time; time.sleep(900)"],
        meta={
            "run_id": RUNNING_ID,
            "script": "training/train.py",
            "args": ["--epochs", "10"],
            "started_at": started,
            "host": local.id,
            "provider": "local",
            "project_root": str(project),
        },
    )
    service.protocol_for(local).start(spec)
    service.store.add_run(
        Run(
            id=RUNNING_ID,
            host=local.id,
            provider="local",
            instance_id=local.id,
            project_root=str(project),
            script="training/train.py",
            args=["--epochs", "10"],
            started_at=started,
            status="running",
            run_dir=str(run_dir),
            checkpoint_dir=str(checkpoint_dir),
        )
    )
    return app, service, project


def stop_scene(service: RunService) -> None:
    """Stop the live run through the protocol: the app closed its store when it exited."""
    local = service.local.list_instances()[0]
    run_dir = service.settings.runs_root / RUNNING_ID
    service.protocol_for(local).stop(str(run_dir), grace_s=5)


async def wait_until_painted(pilot) -> None:
    """The live run is selected, its log and metrics are shown and its checkpoints listed."""
    app: RunctlApp = pilot.app
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (
            app.selected_run_id == RUNNING_ID
            and app.log_view.line_count > 10
            and "loss" in str(app.query_one("#metrics-text").render())
            and app.checkpoints_table.row_count == 3
        ):
            break
        await pilot.pause(0.05)
    else:
        raise AssertionError("the dashboard scene never finished painting")
    # Await the one-shot workers that fill the panes (the followers and watchers never end).
    one_shot = [w for w in app.workers if w.group in ONE_SHOT_GROUPS]
    if one_shot:  # an empty list means "every worker" to wait_for_complete
        await app.workers.wait_for_complete(one_shot)
    await pilot.pause(0.2)


def stop_cursor_blink(app: RunctlApp) -> None:
    """A blinking cursor would be drawn or not depending on the moment of the picture."""
    from textual.widgets import Input

    for field in app.screen.query(Input):
        field.cursor_blink = False


async def show_stop_dialog(pilot) -> None:
    """The scene, then `s` on the running run: the confirmation."""
    await wait_until_painted(pilot)
    await pilot.press("s")
    await pilot.pause(0.2)


async def show_launch_dry_run(pilot) -> None:
    """The scene, then `t`, arguments, and the dry run's output in the dialog."""
    await wait_until_painted(pilot)
    await pilot.press("t")
    await pilot.pause(0.2)
    stop_cursor_blink(pilot.app)
    pilot.app.screen.query_one("#args").value = "--epochs 10 --lr 0.05"
    await pilot.press("ctrl+t")
    result = pilot.app.screen.query_one("#launch-result")
    for _ in range(200):
        if "argv" in str(result.render()):
            break
        await pilot.pause(0.05)
    # The script completion list loads in a worker too; its suggestion is drawn when ready.
    dialog_work = [w for w in pilot.app.workers if w.group.startswith("launch-")]
    if dialog_work:
        await pilot.app.workers.wait_for_complete(dialog_work)
    await pilot.pause(0.1)
