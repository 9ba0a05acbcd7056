"""How the dashboard looks, at 120x36 with a frozen clock: pytest-textual-snapshot compares
each screen with the SVG accepted in tests/__snapshots__/ (update with --snapshot-update after
looking at the report)."""

from __future__ import annotations

import pytest

from tests.dashboard_scene import (
    SCENE_HOSTNAME,
    build_scene,
    show_launch_dry_run,
    show_stop_dialog,
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
    assert snap_compare(scene, terminal_size=SIZE, run_before=show_stop_dialog)


def test_launch_dialog_dry_run(scene, snap_compare) -> None:
    assert snap_compare(scene, terminal_size=SIZE, run_before=show_launch_dry_run)


def test_help_lists_the_keys(scene, snap_compare) -> None:
    async def open_help(pilot) -> None:
        await wait_until_painted(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.2)

    assert snap_compare(scene, terminal_size=SIZE, run_before=open_help)
