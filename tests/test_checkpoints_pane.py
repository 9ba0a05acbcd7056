"""The Checkpoints pane driven with Pilot: metadata and the best mark, unsafe files listed but
never executed, sorting, details, cleanup behind a confirmation that lists every file, and a
resume that really continues the example training from the chosen checkpoint."""

from __future__ import annotations

import time
from pathlib import Path

from app.settings import load_settings
from app.store import Run
from app.tui import RunctlApp
from tests.conftest import wait_until, write_example_checkpoint
from tests.test_checkpoint_safety import malicious_files
from tests.test_dashboard_pilot import confirmation, until
from tests.test_runproto_local import make_service


def make_app(project: Path) -> RunctlApp:
    return RunctlApp(load_settings(project), project)


def finished_run(app: RunctlApp, project: Path, run_id: str) -> Run:
    local = app.service.local.list_instances()[0]
    run_dir = app.settings.runs_root / run_id
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "output.log").write_text("Epoch 1/10 step 100/1000 loss=0.5\n")
    (run_dir / "exit_code").write_text("0\n")
    run = Run(
        id=run_id,
        host=local.id,
        provider="local",
        instance_id=local.id,
        project_root=str(project),
        script="training/train.py",
        args=["--epochs", "10", "--step-delay", "0.01"],
        started_at=time.time() - 3600,
        ended_at=time.time() - 3000,
        status="finished",
        exit_code=0,
        run_dir=str(run_dir),
        checkpoint_dir=str(run_dir / "checkpoints"),
    )
    app.store.add_run(run)
    return run


async def test_pane_lists_metadata_marks_the_best_and_never_runs_a_malicious_pickle(
    project: Path, tmp_path: Path
) -> None:
    app = make_app(project)
    run = finished_run(app, project, "20261101-100000-aaaaaa")
    directory = Path(run.checkpoint_dir)
    now = time.time()
    for epoch, loss in ((1, 0.61), (2, 0.42), (3, 0.47)):
        write_example_checkpoint(directory, epoch, loss, now - 1000 + epoch * 100, total_steps=1000)
    marker = tmp_path / "pwned"
    for name, content in malicious_files(marker).items():
        (directory / name).write_bytes(content)
    (directory / "truncated.pt").write_bytes(b"PK\x03\x04" + b"\x00" * 20)

    async with app.run_test(size=(120, 36)) as pilot:
        table = app.checkpoints_table
        expected_rows = 3 + len(malicious_files(marker)) + 1
        await until(pilot, lambda: table.row_count == expected_rows)
        best = table.get_row(str(directory / "epoch-0002.ckpt.json"))
        assert str(best[0]) == "★" and str(best[5]) == "0.42" and str(best[4]) == "200"
        statuses = {str(table.get_row(key.value)[2]) for key in table.rows}
        assert {"unsafe", "corrupt", "example-json"} <= statuses
        unsafe_row = table.get_row(str(directory / "plain-protocol2.pt"))
        assert str(unsafe_row[2]) == "unsafe"

        # Details of the unsafe file say why, and nothing ran.
        table.focus()
        table.move_cursor(row=table.get_row_index(str(directory / "plain-protocol2.pt")))
        await pilot.press("enter")
        details = await until(pilot, lambda: app.screen.query("Static").first() and app.screen)
        text = str(details.query("Static").first().render())
        assert "unsafe" in text and "refuses GLOBAL" in text
        await pilot.press("escape")

        # Sorting by loss puts the best first; cycling goes on to age.
        table.sort_by("Loss", reverse=False)
        await pilot.pause()
        assert str(table.get_row_at(0)[1]).startswith("epoch-0002")
        tab = app.query_one("#lower-tabs").get_tab("tab-checkpoints")
        await until(pilot, lambda: "by loss ▲" in str(tab.label))
        await pilot.press("o")  # the next order: age, newest first
        await until(pilot, lambda: "by age ▼" in str(tab.label))
    assert not marker.exists(), "a pickle's payload ran"


async def test_cleanup_confirms_every_file_then_keeps_newest_and_best(project: Path) -> None:
    (project / "runctl.toml").write_text("[checkpoints]\nkeep_newest = 2\n")
    app = make_app(project)
    run = finished_run(app, project, "20261101-100000-bbbbbb")
    directory = Path(run.checkpoint_dir)
    now = time.time()
    losses = {1: 0.30, 2: 0.50, 3: 0.55, 4: 0.52, 5: 0.51}  # epoch 1 is the best
    for epoch, loss in losses.items():
        write_example_checkpoint(directory, epoch, loss, now - 1000 + epoch * 100, total_steps=1000)

    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app.checkpoints_table.row_count == 5)
        await pilot.press("c")
        _, body = await confirmation(pilot, app)
        assert "Delete 2" in body and "Keep 3" in body
        for epoch in (2, 3):
            assert f"- epoch-{epoch:04d}.ckpt.json" in body
        for epoch in (1, 4, 5):
            assert f"+ epoch-{epoch:04d}.ckpt.json" in body
        assert app.focused.id == "cancel"
        await pilot.press("y")
        await until(pilot, lambda: app.checkpoints_table.row_count == 3)
    remaining = sorted(p.name for p in directory.iterdir())
    assert remaining == ["epoch-0001.ckpt.json", "epoch-0004.ckpt.json", "epoch-0005.ckpt.json"]


async def test_resume_from_a_checkpoint_continues_the_example_and_records_lineage(
    project: Path,
) -> None:
    app = make_app(project)
    parent = finished_run(app, project, "20261101-100000-cccccc")
    checkpoint = write_example_checkpoint(
        Path(parent.checkpoint_dir), 3, 0.45, time.time() - 100, total_steps=1000
    )
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app.checkpoints_table.row_count == 1)
        app.checkpoints_table.focus()
        await pilot.press("r")
        screen = await until(pilot, lambda: app.screen.query("#args").first() and app.screen)
        args = screen.query_one("#args").value
        assert f"--resume {checkpoint}" in args and "--epochs 10" in args
        assert "Resume training" in str(screen.query_one("#launch-title").render())
        await pilot.click("#start")
        child = await until(
            pilot,
            lambda: next((r for r in app.store.runs() if r.parent_run_id == parent.id), None),
        )
        assert child.parent_checkpoint == str(checkpoint)
        assert child.args.count("--resume") == 1
        log = Path(child.log_path)
        wait_until(lambda: "Resumed from" in log.read_text())
        assert f"Resumed from {checkpoint} at epoch 4/10 step 300" in log.read_text()
        wait_until(lambda: "Epoch 4/10 step 310/1000" in log.read_text())
        # The Runs pane shows where it came from: the parent's unique id part.
        table = app.runs_table
        await until(
            pilot, lambda: child.id in table.rows and "↻cccccc" in str(table.get_row(child.id)[1])
        )
        app.service.stop(app.store.get_run(child.id), grace_s=5)


async def test_a_running_run_without_a_recent_checkpoint_is_flagged(project: Path) -> None:
    (project / "runctl.toml").write_text("[checkpoints]\nstale_minutes = 1\n")
    (project / "quiet.py").write_text(
        "import time\nprint('training', flush=True)\ntime.sleep(120)\n"
    )
    app = make_app(project)
    local = app.service.local.list_instances()[0]
    run = app.service.launch(app.service.plan("quiet.py", [], local))
    # Its last checkpoint was written five minutes ago: everything since is at risk.
    write_example_checkpoint(Path(run.checkpoint_dir), 1, 0.5, time.time() - 300, total_steps=1000)
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            table = app.runs_table
            await until(
                pilot, lambda: run.id in table.rows and "⚠" in str(table.get_row(run.id)[6])
            )
            assert str(table.get_row(run.id)[6]).startswith("5m")
            notes = await until(
                pilot,
                lambda: [
                    n
                    for n in app._notifications
                    if "Checkpoints are getting old" in (n.title or "")
                ],
            )
            assert run.id in notes[0].message and "5 minutes" in notes[0].message
    finally:
        make_service(project).stop(run, grace_s=5)


async def test_an_older_listing_that_finishes_last_does_not_replace_a_newer_one(
    project: Path, monkeypatch
) -> None:
    """Listings overlap when files arrive in a burst; the pane keeps the newest one's result."""
    import threading

    import app.checkpoints as checkpoints

    app = make_app(project)
    run = finished_run(app, project, "20261101-100000-dddddd")
    directory = Path(run.checkpoint_dir)
    for epoch, loss in ((1, 0.61), (2, 0.42), (3, 0.47)):
        write_example_checkpoint(directory, epoch, loss, time.time() - 500 + epoch, total_steps=10)
    real_list = checkpoints.list_checkpoints
    first_call, release_first, first_returned = (threading.Event() for _ in range(3))

    def list_slowly_the_first_time(*args, **kwargs):
        infos = real_list(*args, **kwargs)
        if not first_call.is_set():
            first_call.set()
            release_first.wait(30)
            first_returned.set()
            return infos[:1]  # what the directory held when this listing read it
        return infos

    monkeypatch.setattr(checkpoints, "list_checkpoints", list_slowly_the_first_time)
    async with app.run_test(size=(120, 36)) as pilot:
        table = app.checkpoints_table
        await until(pilot, first_call.is_set)  # selecting the run started the first listing
        app.list_checkpoints(run)  # a newer one, as a new file's event would
        await until(pilot, lambda: table.row_count == 3)
        release_first.set()
        await until(pilot, first_returned.is_set)
        await pilot.pause(0.3)  # time for its result to arrive, were it posted
        assert table.row_count == 3


async def test_when_a_run_ends_its_checkpoints_are_listed_again(project: Path, monkeypatch) -> None:
    """The final list must not depend on a file event having been seen: listings made while
    the run was running see nothing here, yet the ended run shows its three checkpoints."""
    import app.checkpoints as checkpoints

    real_list = checkpoints.list_checkpoints
    app = make_app(project)

    def list_only_once_the_table_shows_it_ended(directory, *args, **kwargs):
        run = next(iter(app.runs_table.runs.values()), None)
        if run is None or run.active:
            return []
        return real_list(directory, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "list_checkpoints", list_only_once_the_table_shows_it_ended)
    async with app.run_test(size=(120, 36)) as pilot:
        local = app.service.local.list_instances()[0]
        app.service.launch(
            app.service.plan(
                "training/train.py",
                ["--epochs", "3", "--steps-per-epoch", "5", "--step-delay", "0"],
                local,
            )
        )
        app.refresh_runs()
        table = app.checkpoints_table
        run = await until(pilot, lambda: next(iter(app.runs_table.runs.values()), None))
        await until(pilot, lambda: not app.runs_table.runs[run.id].active, timeout=60)
        await until(pilot, lambda: table.row_count == 3)
