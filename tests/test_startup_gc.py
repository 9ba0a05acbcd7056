"""The garbage collector is off from the command's start to the dashboard's first frame (a
start-up cost, app/gc_pauses.py) and always on again after: the dashboard turns it back on
after its first frame, every other command once its settings are read, even when they fail."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import gc_pauses
from app.cli import main
from tests.test_dashboard_pilot import make_app, until


@pytest.fixture
def collector_restored() -> Iterator[None]:
    yield
    gc_pauses.end_startup_pause()
    gc.enable()


async def test_the_dashboard_turns_the_collector_on_after_its_first_frame(
    project: Path, collector_restored: None
) -> None:
    gc_pauses.pause_for_startup()
    assert not gc.isenabled()
    app = make_app(project)
    async with app.run_test() as pilot:
        await until(pilot, gc.isenabled)
        assert "this machine" in str(app.instances_table.get_row_at(0)[1])


def test_other_commands_turn_it_on_again(project: Path, collector_restored: None) -> None:
    assert main(["--project", str(project), "runs", "--json"]) == 0
    assert gc.isenabled()


def test_a_settings_error_turns_it_on_again(project: Path, collector_restored: None) -> None:
    (project / "runctl.toml").write_text("[ui]\nrefresh_s = 'fast'\n")
    assert main(["--project", str(project)]) == 2
    assert gc.isenabled()


def test_it_never_turns_on_a_collector_someone_else_turned_off(collector_restored: None) -> None:
    gc.disable()
    gc_pauses.pause_for_startup()
    gc_pauses.end_startup_pause()
    assert not gc.isenabled()
