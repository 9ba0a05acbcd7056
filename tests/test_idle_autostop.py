"""The idle auto-stop against moto (a real HTTP server) and a real OpenSSH server standing for
the instance: an instance with auto-stop on and no active run for idle_warn_minutes gets its
runs' checkpoints copied to S3 first and is stopped only then; when the copy fails it keeps
running and the dashboard says why. `A` turns auto-stop on for the selected instance."""

# ruff: noqa: F811 - test functions take the imported `moto` and `sshd` fixtures by name
from __future__ import annotations

from pathlib import Path

import boto3

from app.s3_checkpoints import list_objects, run_prefix
from app.settings import load_settings
from app.tui import RunctlApp
from tests.moto_server import REGION, MotoServer, moto  # noqa: F401 (a fixture)
from tests.sshd_server import SshdServer, sshd  # noqa: F401 (a fixture)
from tests.test_dashboard_aws import launch_managed, select, state_of
from tests.test_dashboard_pilot import until
from tests.test_dashboard_s3 import said
from tests.test_terminate_warning import BUCKET, configure, run_on_host

IDLE_MINUTES = 0.005  # 0.3 s


def costs(project: Path, **values: object) -> None:
    with (project / "runctl.toml").open("a") as toml:
        toml.write("[costs]\n" + "".join(f"{k} = {v!r}\n" for k, v in values.items()))


async def test_an_idle_instance_is_stopped_after_its_checkpoints_are_in_s3(
    moto: MotoServer, sshd: SshdServer, project: Path, tmp_path: Path
) -> None:
    instance_id = launch_managed("t3.micro")
    configure(project, sshd, tmp_path, refresh_s=0.5)
    costs(project, idle_warn_minutes=IDLE_MINUTES, idle_auto_stop=[instance_id])
    app = RunctlApp(load_settings(project), project)
    app.copy_with_host_cli = False  # never let the test host's own AWS CLI reach out
    run = run_on_host(app, instance_id, sshd, "20261101-100000-cccccc", epochs=2)
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            await until(pilot, lambda: state_of(instance_id) in ("stopping", "stopped"), 60)
            prefix = run_prefix(project.name, run.id)
            s3 = boto3.client("s3", region_name=REGION)
            assert {o.key: o.size for o in list_objects(s3, BUCKET, prefix)} == {
                prefix + p.name: p.stat().st_size for p in Path(run.checkpoint_dir).iterdir()
            }
            [copy] = [op for op in app.oplog.recent if op.name == "checkpoints-to-s3"]
            [stop] = [op for op in app.oplog.recent if op.name == "auto-stop"]
            assert copy.result == stop.result == "ok"
            assert f"in S3, then {instance_id} → stopping" in stop.message
            await until(pilot, lambda: said(app, "2 checkpoint file(s) of 1 run(s) in S3"))
    finally:
        app.service.close()


async def test_a_failed_copy_keeps_the_instance_running_and_says_why(
    moto: MotoServer, sshd: SshdServer, project: Path, tmp_path: Path
) -> None:
    instance_id = launch_managed("t3.micro")
    # The bucket does not exist: the copy fails, so nothing may be stopped.
    configure(project, sshd, tmp_path, refresh_s=0.5, s3_bucket="no-such-bucket")
    costs(project, idle_warn_minutes=IDLE_MINUTES)  # auto-stop is off until A
    app = RunctlApp(load_settings(project), project)
    app.copy_with_host_cli = False
    run_on_host(app, instance_id, sshd, "20261101-100000-dddddd", epochs=1)
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            await select(pilot, app, f"aws:{instance_id}")
            await pilot.press("A")
            await until(pilot, lambda: said(app, f"Idle auto-stop is on for {instance_id}"))
            assert app.autostop_on(instance_id)
            await until(pilot, lambda: said(app, "was NOT stopped"), timeout=60)
            assert said(app, "no-such-bucket")
            [attempt] = [op for op in app.oplog.recent if op.name == "auto-stop"]
            assert attempt.result == "error" and "not stopped" in attempt.message
            assert state_of(instance_id) == "running"
            # Not tried again at every refresh: one attempt, then a pause.
            await pilot.pause(1.5)
            assert len([op for op in app.oplog.recent if op.name == "auto-stop"]) == 1
            assert state_of(instance_id) == "running"

            await pilot.press("A")  # and off again
            await until(pilot, lambda: said(app, f"Idle auto-stop is off for {instance_id}"))
            assert not app.autostop_on(instance_id)
    finally:
        app.service.close()
