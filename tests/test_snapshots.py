"""How the dashboard looks, at 120x36 with a frozen clock: pytest-textual-snapshot compares
each screen with the SVG accepted in tests/__snapshots__/ (update with --snapshot-update after
looking at the report)."""

from __future__ import annotations

import pytest

from tests.dashboard_scene import (
    SCENE_HOSTNAME,
    build_scene,
    stop_cursor_blink,
    stop_scene,
    wait_until_painted,
)

SIZE = (120, 36)


@pytest.fixture
def scene(monkeypatch: pytest.MonkeyPatch):
    # The local instance is named after this machine; pin it so the pictures match anywhere.
    monkeypatch.setattr("socket.gethostname", lambda: SCENE_HOSTNAME)
    app, service, _project = build_scene()
    yield app
    stop_scene(service)


def test_dashboard_with_a_run_in_progress(scene, snap_compare) -> None:
    assert snap_compare(scene, terminal_size=SIZE, run_before=wait_until_painted)


def test_stop_confirmation_names_the_run(scene, snap_compare) -> None:
    async def open_stop_dialog(pilot) -> None:
        await wait_until_painted(pilot)
        await pilot.press("s")
        await pilot.pause(0.2)

    assert snap_compare(scene, terminal_size=SIZE, run_before=open_stop_dialog)


def test_launch_dialog_dry_run(scene, snap_compare) -> None:
    async def dry_run(pilot) -> None:
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

    assert snap_compare(scene, terminal_size=SIZE, run_before=dry_run)


def test_help_lists_the_keys(scene, snap_compare) -> None:
    async def open_help(pilot) -> None:
        await wait_until_painted(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.2)

    assert snap_compare(scene, terminal_size=SIZE, run_before=open_help)
