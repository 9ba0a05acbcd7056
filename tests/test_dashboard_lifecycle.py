"""What a person sees across a run's life: the app reopened while a run goes on, the stop
countdown, the operations log and Events view, and the headless run history."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from app.settings import load_settings
from app.tui import RunctlApp
from tests.conftest import log_lines, wait_until
from tests.test_dashboard_pilot import confirmation, until
from tests.test_runproto_local import make_service

SLOW_EXAMPLE = ["--step-delay", "0.03", "--steps-per-epoch", "20", "--epochs", "200"]


def make_app(project: Path, **overrides) -> RunctlApp:
    return RunctlApp(load_settings(project, **overrides), project)


async def test_reopened_app_shows_the_run_still_running_with_its_whole_log(project: Path) -> None:
    first = make_app(project)
    local = first.service.local.list_instances()[0]
    run = first.service.launch(first.service.plan("training/train.py", SLOW_EXAMPLE, local))
    log_path = Path(run.log_path)
    wait_until(lambda: log_path.read_text().count("\n") >= 5)
    async with first.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: first.selected_run_id == run.id)
    # The first app is closed; the training goes on without it.
    wait_until(lambda: log_path.read_text().count("\n") >= 12)

    reopened = make_app(project)
    try:
        async with reopened.run_test(size=(120, 36)) as pilot:
            await until(pilot, lambda: reopened.selected_run_id == run.id)
            status = await until(pilot, lambda: str(reopened.runs_table.get_row(run.id)[2]))
            assert status.startswith("running")
            # The whole log, from its first line, not only what was written since reopening.
            await until(pilot, lambda: len(log_lines(reopened)) >= 12)
            assert log_lines(reopened)[0].startswith("Training logistic regression")
            await until(
                pilot, lambda: "loss 0." in str(reopened.query_one("#metrics-text").render())
            )
    finally:
        make_service(project).stop(run, grace_s=5)  # the apps closed their stores


async def test_stop_shows_a_countdown_then_kills_a_run_that_ignores_sigterm(project: Path) -> None:
    (project / "stubborn.py").write_text(
        textwrap.dedent(
            """
            import signal, time
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print("ignoring SIGTERM", flush=True)
            time.sleep(120)
            """
        )
    )
    app = make_app(project)
    app.settings.train.stop_grace_s = 3
    local = app.service.local.list_instances()[0]
    run = app.service.launch(app.service.plan("stubborn.py", [], local))
    wait_until(lambda: "ignoring" in Path(run.log_path).read_text())
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app.selected_run_id == run.id)
        app.runs_table.focus()
        await pilot.press("s")
        _, body = await confirmation(pilot, app)
        assert "waits up to 3 s" in body
        await pilot.press("y")
        row = await until(
            pilot,
            lambda: (s := str(app.runs_table.get_row(run.id)[2])).startswith("stopping") and s,
        )
        assert row.rstrip().endswith("s")  # "stopping 2s": the seconds left before SIGKILL
        assert "SIGKILL in" in app.sub_title
        await until(pilot, lambda: app.store.get_run(run.id).status == "stopped", timeout=20)
        assert app.store.get_run(run.id).exit_code == 137  # killed: 128 + SIGKILL
        await until(pilot, lambda: str(app.runs_table.get_row(run.id)[2]) == "stopped 137")
        assert "SIGKILL in" not in app.sub_title


async def test_operations_are_logged_and_listed_in_the_events_view(project: Path) -> None:
    app = make_app(project)
    local = app.service.local.list_instances()[0]
    run = app.service.launch(app.service.plan("training/train.py", SLOW_EXAMPLE, local))
    app.service.stop(run, grace_s=5)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("e")
        events = await until(pilot, lambda: app.screen.query("EventsTable").first())
        await until(pilot, lambda: events.row_count >= 2)
        rows = [[str(cell) for cell in events.get_row_at(i)] for i in range(events.row_count)]
        operations = {row[1]: row for row in rows}
        assert operations["launch"][3] == "ok" and operations["stop"][3] == "ok"
        assert run.id in operations["stop"][5]
    entries = [json.loads(line) for line in app.settings.oplog_path.read_text().splitlines()]
    launch = next(e for e in entries if e["op"] == "launch")
    assert launch["result"] == "ok" and launch["target"] == f"local:{local.id}"
    assert launch["duration_s"] >= 0 and launch["started_at"] > 0
    assert "detail" not in launch  # commands and API calls only with --debug


def test_runs_command_prints_history_as_json(project: Path) -> None:
    app = make_app(project)
    local = app.service.local.list_instances()[0]
    (project / "fails.py").write_text("import sys\nsys.exit(3)\n")
    failed = app.service.launch(app.service.plan("fails.py", [], local))
    wait_until(lambda: (Path(failed.run_dir) / "exit_code").exists())
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "--project", str(project), "runs", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    runs = json.loads(done.stdout)
    assert [r["id"] for r in runs] == [failed.id]
    row = runs[0]
    assert row["status"] == "failed" and row["exit_code"] == 3
    assert row["host"] == local.id and row["script"] == "fails.py"
    assert row["started"].endswith("Z") and row["ended"].endswith("Z")
    assert {"last_epoch", "last_loss"} <= row.keys()

    table = subprocess.run(
        [sys.executable, "-m", "app.cli", "--project", str(project), "runs"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert failed.id in table and "failed" in table
