"""The dashboard driven with Pilot: launch from the dialog, see metrics and checkpoints, stop
through the confirmation, refuse a second training, read-only mode, pre-flight errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.screens.launch import LaunchScreen
from app.settings import load_settings
from app.store import Run
from app.tui import RunctlApp
from tests.conftest import log_lines
from widgets.confirm_modal import ConfirmModal


async def until(pilot, predicate, timeout: float = 30.0):
    """Let the app run until `predicate()` is truthy (no fixed sleeps)."""
    loops = int(timeout / 0.05)
    for _ in range(loops):
        value = predicate()
        if value:
            return value
        await pilot.pause(0.05)
    raise AssertionError(f"not reached within {timeout} s: {predicate}")


async def confirmation(pilot, app) -> tuple[ConfirmModal, str]:
    """Wait for the confirmation dialog, mounted (its focus set); returns it and the text of
    its body."""
    modal = await until(
        pilot,
        lambda: isinstance(app.screen, ConfirmModal) and app.screen.focused and app.screen,
    )
    return modal, str(modal.query_one("#confirm-body").render())


def make_app(project: Path, **overrides) -> RunctlApp:
    return RunctlApp(load_settings(project, **overrides), project)


async def launch_from_dialog(
    pilot, app: RunctlApp, args: str, target: str | None = None, install_deps: bool = True
) -> None:
    """t, the example training with `args`, on `target` ("ssh:box", "aws:i-...") when given;
    `install_deps=False` clears the box that installs dependencies first on a host."""
    await pilot.press("t")
    screen = await until(pilot, lambda: isinstance(app.screen, LaunchScreen) and app.screen)
    screen.query_one("#script").value = "training/train.py"
    screen.query_one("#args").value = args
    if target is not None:
        screen.query_one("#target").value = target
    if not install_deps:
        screen.query_one("#install-deps").value = False
    await pilot.click("#start")


async def test_start_from_launch_dialog_then_stop_through_confirmation(project: Path) -> None:
    app = make_app(project)
    async with app.run_test(size=(120, 36)) as pilot:
        await launch_from_dialog(pilot, app, "--step-delay 0.02 --steps-per-epoch 20 --epochs 100")
        runs = app.runs_table
        run = await until(
            pilot, lambda: next((r for r in runs.runs.values() if r.status == "running"), None)
        )
        await until(pilot, lambda: any("loss=" in line for line in log_lines(app)))
        strip_text = str(app.query_one("#metrics-text").render())
        await until(pilot, lambda: "loss 0." in str(app.query_one("#metrics-text").render()))
        await until(pilot, lambda: app.checkpoints_table.row_count >= 1)
        assert strip_text is not None

        await pilot.press("s")
        _, body = await confirmation(pilot, app)
        assert run.id in body and "SIGTERM" in body and "training/train.py" in body
        assert app.focused.id == "cancel"  # a stray enter never stops anything
        await pilot.press("y")
        stopped = await until(
            pilot, lambda: (r := app.store.get_run(run.id)) and r.status == "stopped" and r
        )
        assert stopped.exit_code == 0
        await until(pilot, lambda: "stopped" in str(runs.get_row(run.id)[2]))


async def test_cancel_in_confirmation_keeps_the_run(project: Path) -> None:
    app = make_app(project)
    async with app.run_test(size=(120, 36)) as pilot:
        await launch_from_dialog(pilot, app, "--step-delay 0.05 --epochs 100")
        runs = app.runs_table
        run = await until(
            pilot, lambda: next((r for r in runs.runs.values() if r.status == "running"), None)
        )
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("enter")  # focus is on Cancel
        await until(pilot, lambda: not isinstance(app.screen, ConfirmModal))
        assert app.store.get_run(run.id).status == "running"
        app.service.stop(run, grace_s=5)


async def test_second_training_asks_start_anyway(project: Path) -> None:
    app = make_app(project)
    async with app.run_test(size=(120, 36)) as pilot:
        await launch_from_dialog(pilot, app, "--step-delay 0.05 --epochs 100")
        runs = app.runs_table
        first = await until(
            pilot, lambda: next((r for r in runs.runs.values() if r.status == "running"), None)
        )
        await launch_from_dialog(pilot, app, "--step-delay 0.05 --epochs 100")
        _, body = await confirmation(pilot, app)
        assert first.id in body
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmModal))
        assert len(app.store.runs()) == 1
        app.service.stop(first, grace_s=5)


async def test_preflight_blocks_a_script_that_does_not_compile(project: Path) -> None:
    (project / "broken.py").write_text("def oops(:\n")
    app = make_app(project)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("t")
        screen = await until(pilot, lambda: isinstance(app.screen, LaunchScreen) and app.screen)
        screen.query_one("#script").value = "broken.py"
        await pilot.click("#start")
        result = screen.query_one("#launch-result")
        await until(pilot, lambda: "does not compile" in str(result.render()))
        assert isinstance(app.screen, LaunchScreen)
        assert app.store.runs() == []


async def test_launch_dialog_opens_on_the_field_to_fill_in(project: Path) -> None:
    app = make_app(project)  # runctl.toml names no script, and none was used before
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("t")
        screen = await until(pilot, lambda: isinstance(app.screen, LaunchScreen) and app.screen)
        assert screen.focused.id == "script"

    (project / "runctl.toml").write_text(
        '[train]\nstop_grace_s = 5\ndefault_script = "training/train.py"\n'
    )
    app = make_app(project)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("t", *"--epochs 2")  # typed the moment the dialog shows
        screen = await until(pilot, lambda: isinstance(app.screen, LaunchScreen) and app.screen)
        assert screen.query_one("#script").value == "training/train.py"
        assert screen.query_one("#args").value == "--epochs 2"


async def test_dry_run_shows_argv_environment_and_run_dir_without_starting(project: Path) -> None:
    app = make_app(project)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("t")
        screen = await until(pilot, lambda: isinstance(app.screen, LaunchScreen) and app.screen)
        screen.query_one("#script").value = "training/train.py"
        screen.query_one("#args").value = "--epochs 2 --note 'a b'"
        await pilot.click("#dry-run")
        result = screen.query_one("#launch-result")
        text = await until(pilot, lambda: "argv" in str(result.render()) and str(result.render()))
        assert "training/train.py --epochs 2 --note 'a b'" in text
        assert "RUNCTL_CHECKPOINT_DIR=" in text and "run dir:" in text
        assert app.store.runs() == []


async def test_script_that_fails_at_once_is_reported_with_its_last_lines(project: Path) -> None:
    (project / "fails.py").write_text(
        "import sys\nprint('cannot find data/train.csv')\nsys.exit(1)\n"
    )
    app = make_app(project)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("t")
        screen = await until(pilot, lambda: isinstance(app.screen, LaunchScreen) and app.screen)
        screen.query_one("#script").value = "fails.py"
        screen.query_one("#args").value = ""
        await pilot.click("#start")
        await until(pilot, lambda: any(r.status == "failed" for r in app.store.runs()))
        notes = await until(
            pilot, lambda: [n for n in app._notifications if "failed" in (n.title or "")]
        )
        assert "cannot find data/train.csv" in notes[0].message
        assert "exited 1" in notes[0].message
        await until(pilot, lambda: any("cannot find data" in line for line in log_lines(app)))


@pytest.mark.parametrize("read_only", [True, False])
async def test_read_only_hides_and_disables_stop(project: Path, read_only: bool) -> None:
    app = make_app(project, read_only=read_only)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        assert (app.check_action("stop_run", ()) is False) is read_only
        footer_keys = {b.binding.action for b in app.screen.active_bindings.values() if b.enabled}
        assert ("stop_run" not in footer_keys) is read_only


async def test_filter_the_focused_table(project: Path) -> None:
    app = make_app(project)
    for run_id, script in (
        ("20261101-100000-aaaaaa", "alpha.py"),
        ("20261101-110000-bbbbbb", "beta.py"),
    ):
        app.store.add_run(
            Run(
                id=run_id,
                host=app.service.local.list_instances()[0].id,
                provider="local",
                instance_id=app.service.local.list_instances()[0].id,
                project_root=str(project),
                script=script,
                args=[],
                started_at=1.0,
                status="finished",
                run_dir="/nowhere",
                checkpoint_dir="/nowhere/checkpoints",
                exit_code=0,
            )
        )
    async with app.run_test(size=(120, 36)) as pilot:
        table = app.runs_table
        await until(pilot, lambda: table.row_count == 2)
        table.focus()
        await pilot.press("slash", "b", "e")
        await until(pilot, lambda: table.row_count == 1)
        assert "beta.py" in str(table.get_row_at(0)[1])
        await pilot.press("escape")
        await until(pilot, lambda: table.row_count == 2)
        assert app.focused is table


async def test_help_lists_every_key_and_palette_has_every_action(project: Path) -> None:
    app = make_app(project)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        text = str(app.screen.query_one("Static").render())
        for key in ("t", "s", "r", "e", "g", "f", "/", "?", "q"):
            assert f"\n  {key} " in text.replace("slash", "/").replace("question_mark", "?")
        await pilot.press("escape")
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Train", "Stop run", "Resume", "Events", "Filter", "Help"} <= titles
