"""The terminate dialog counts, before it opens, the checkpoints on the instance that exist
nowhere else: an EC2 instance in moto (a real HTTP server) reached over SSH through the user's
ssh config (`Host i-*` pointing at a real OpenSSH server on 127.0.0.1), a finished run in the
store whose checkpoints are on that host, one of them copied to S3. When the host does not
answer, the dialog says the check failed instead of claiming nothing would be lost; typing
the instance id stays required either way."""

# ruff: noqa: F811 - test functions take the imported `moto` and `sshd` fixtures by name
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import boto3

from app.s3_checkpoints import run_prefix
from app.settings import load_settings
from app.store import Run
from app.tui import RunctlApp
from tests.conftest import write_example_checkpoint
from tests.moto_server import REGION, MotoServer, moto  # noqa: F401 (a fixture)
from tests.sshd_server import SshdServer, sshd  # noqa: F401 (a fixture)
from tests.test_checkpoints_pane import finished_run
from tests.test_dashboard_aws import launch_managed, select
from tests.test_dashboard_pilot import confirmation, until
from tests.test_ec2_transport import configure_aws

BUCKET = "ada-checkpoints"


def every_instance_is_the_sshd(sshd: SshdServer, root: Path) -> Path:
    """The user's ssh config: any instance id reaches the test sshd, whose key is trusted."""
    config = root / "ssh_config"
    config.write_text(
        "Host i-*\n"
        "    HostName 127.0.0.1\n"
        f"    Port {sshd.port}\n"
        f"    User {sshd.target.partition('@')[0]}\n"
        f"    IdentityFile {sshd.user_key}\n"
        "    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {sshd.known_hosts}\n"
    )
    return config


def configure(project: Path, sshd: SshdServer, root: Path, **aws: object) -> None:
    """moto's region, the bucket (made in moto), every instance over SSH to the sshd."""
    aws.setdefault("s3_bucket", BUCKET)
    if aws["s3_bucket"] == BUCKET:
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    configure_aws(project, ssh_config=every_instance_is_the_sshd(sshd, root), **aws)


def run_on_host(
    app: RunctlApp, instance_id: str, sshd: SshdServer, run_id: str, epochs: int
) -> Run:
    """A finished run of the example in the store, its checkpoints on the instance's disk."""
    run_dir = sshd.remote_home / ".runctl" / "runs" / run_id
    now = time.time()
    for epoch in range(1, epochs + 1):
        write_example_checkpoint(run_dir / "checkpoints", epoch, 1.0 / epoch, now - 600 + epoch)
    (run_dir / "exit_code").write_text("0\n")
    run = replace(
        finished_run(app, app.project_root, run_id),  # the same run, moved to the instance
        host=instance_id,
        provider="aws",
        instance_id=instance_id,
        project_root=str(sshd.remote_home / "runctl" / "proj"),
        run_dir=str(run_dir),
        checkpoint_dir=str(run_dir / "checkpoints"),
    )
    app.store.add_run(run)
    return run


async def test_terminate_names_the_checkpoints_that_exist_only_on_the_instance(
    moto: MotoServer, sshd: SshdServer, project: Path, tmp_path: Path
) -> None:
    instance_id = launch_managed()
    configure(project, sshd, tmp_path)
    app = RunctlApp(load_settings(project), project)
    run = run_on_host(app, instance_id, sshd, "20261101-100000-aaaaaa", epochs=3)
    first = Path(run.checkpoint_dir, "epoch-0001.ckpt.json")
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=BUCKET,
        Key=run_prefix(project.name, run.id) + first.name,
        Body=first.read_bytes(),
    )
    lost = sum(Path(run.checkpoint_dir, f"epoch-000{e}.ckpt.json").stat().st_size for e in (2, 3))
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            await select(pilot, app, f"aws:{instance_id}")
            await pilot.press("K")
            await until(
                pilot, lambda: any("Checking checkpoints" in n.message for n in app._notifications)
            )
            modal, body = await confirmation(pilot, app)
            assert f"Terminating destroys 2 checkpoints, {lost} B, not copied anywhere" in body
            assert f"{run.id}/epoch-0002.ckpt.json" in body
            assert f"{run.id}/epoch-0003.ckpt.json" in body
            assert "epoch-0001" not in body  # it is in S3
            assert modal.query_one("#confirm").disabled  # the id must still be typed
            await pilot.press("escape")

            sshd.stop()  # the host goes away: the check fails, and says so
            await pilot.press("K")
            modal, body = await confirmation(pilot, app)
            assert f"Could not check checkpoints on {instance_id}: " in body
            assert "destroys" not in body
            assert modal.query_one("#confirm").disabled
            await pilot.press("escape")
        assert (
            boto3.client("ec2", region_name=REGION).describe_instances(InstanceIds=[instance_id])[
                "Reservations"
            ][0]["Instances"][0]["State"]["Name"]
            == "running"
        )
    finally:
        app.service.close()
