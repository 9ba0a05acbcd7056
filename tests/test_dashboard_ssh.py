"""The dashboard against a real OpenSSH server on 127.0.0.1: a [[hosts]] row, the trust question
for its unknown key, a sync after a dry-run confirmation, and a training started on the host,
followed over SSH and stopped through the confirmation."""

# ruff: noqa: F811 - test functions take the imported `sshd` fixture by name
from __future__ import annotations

from pathlib import Path

from app.settings import load_settings
from app.store import Run
from app.sync_report import known_hosts_path
from app.tui import RunctlApp
from tests.conftest import log_lines
from tests.sshd_server import SshdServer, sshd  # noqa: F401 (a fixture)
from tests.test_dashboard_pilot import confirmation, launch_from_dialog, until
from tests.test_deps import host_like_this_machine, tiny_package
from tests.test_sync_report import configure, trust_server


def make_app(project: Path) -> RunctlApp:
    return RunctlApp(load_settings(project), project)


async def select_host(pilot, app: RunctlApp) -> None:
    table = app.instances_table
    await until(pilot, lambda: "ssh:box" in table.rows)
    table.focus()
    table.move_cursor(row=table.get_row_index("ssh:box"))
    await until(pilot, lambda: app.selected_instance_key == "ssh:box")


async def test_unknown_host_key_is_asked_with_its_fingerprint_then_remembered(
    sshd: SshdServer, project: Path, isolated_home: Path
) -> None:
    configure(project, sshd)
    app = make_app(project)
    async with app.run_test(size=(120, 36)) as pilot:
        table = app.instances_table
        await until(
            pilot,
            lambda: (
                "ssh:box" in table.rows and "unknown host key" in str(table.get_row("ssh:box")[4])
            ),
        )
        await select_host(pilot, app)
        _, body = await confirmation(pilot, app)
        assert sshd.fingerprint() in body
        assert app.focused.id == "cancel"
        await pilot.press("y")
        await until(pilot, lambda: known_hosts_path(isolated_home).exists())
        await until(pilot, lambda: "reachable" in str(table.get_row("ssh:box")[4]), timeout=40)


async def test_sync_then_train_on_the_host_follow_its_log_and_stop_it(
    sshd: SshdServer, project: Path, isolated_home: Path
) -> None:
    configure(project, sshd)
    trust_server(isolated_home, sshd)
    app = make_app(project)
    remote_project = sshd.remote_home / "runctl" / project.name
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            await select_host(pilot, app)
            await pilot.press("S")
            _, body = await confirmation(pilot, app)
            assert "training/train.py" in body and "to send" in body
            await pilot.press("y")
            await until(pilot, lambda: (remote_project / "training" / "train.py").is_file())

            run = await train_then_stop(pilot, app, "ssh:box")
            assert run.run_dir.startswith(str(sshd.remote_home))
            operations = [op.name for op in app.oplog.recent]
            assert "sync" in operations and "install" not in operations
            assert run.project_root == str(remote_project)
    finally:
        app.service.hosts.close()


async def train_then_stop(pilot, app: RunctlApp, target: str) -> Run:
    """Start the example training on a host from the launch dialog (dependency step off),
    see its log, read over the transport, stream into the view and the strip parse a loss;
    then stop it through the confirmation. Returns the stopped run."""
    await launch_from_dialog(
        pilot, app, "--step-delay 0.05 --epochs 50", target=target, install_deps=False
    )
    provider, _, host = target.partition(":")
    run = await until(
        pilot,
        lambda: next((r for r in app.store.runs() if r.provider == provider), None),
        timeout=60,
    )
    await until(pilot, lambda: any("loss=" in line for line in log_lines(app)), 60)
    await until(pilot, lambda: "loss 0." in str(app.query_one("#metrics-text").render()))

    app.runs_table.focus()
    await until(pilot, lambda: app.selected_run_id == run.id)
    await pilot.press("s")
    _, body = await confirmation(pilot, app)
    assert f"on {provider} {host}" in body
    await pilot.press("y")
    stopped = await until(
        pilot,
        lambda: (r := app.store.get_run(run.id)) and r.status == "stopped" and r,
        timeout=40,
    )
    assert stopped.exit_code == 0
    await until(pilot, lambda: any("Received SIGTERM" in line for line in log_lines(app)), 30)
    return stopped


async def test_install_deps_streams_pip_into_the_log_pane_then_skips_when_unchanged(
    sshd: SshdServer, project: Path, isolated_home: Path
) -> None:
    configure(project, sshd)
    trust_server(isolated_home, sshd)
    host_like_this_machine(sshd)
    tiny_package(project)
    app = make_app(project)
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            await select_host(pilot, app)
            await pilot.press("D")
            await until(pilot, lambda: "Dependencies" in str(app.log_view.border_title))
            await until(
                pilot,
                lambda: any("Successfully installed tinypkg" in line for line in log_lines(app)),
                timeout=180,
            )
            lines = log_lines(app)
            assert "[2/2] pip install -r requirements.txt" in lines
            await until(pilot, lambda: any("installed with pip" in line for line in log_lines(app)))
            await pilot.press("D")  # nothing changed: the hash matches the last install
            await until(
                pilot,
                lambda: (
                    any("skipped" in line for line in log_lines(app))
                    and not any("Successfully" in line for line in log_lines(app))
                ),
                timeout=60,
            )
    finally:
        app.service.hosts.close()
