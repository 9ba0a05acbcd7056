"""A spot interruption, end to end: a spot instance in moto (a real HTTP server) reached over SSH
(`Host i-*` in the user's ssh config points at a real OpenSSH server on 127.0.0.1) runs the
example training; its metadata service — a local stand-in speaking IMDSv2, asked from the host
through the transport — announces a termination. The dashboard stops the run with SIGTERM (it
saves a checkpoint), copies its checkpoints to S3, records the interruption and offers a
relaunch naming the last checkpoint; after the confirmation a new instance of the same type is
requested, and the run continues there from that checkpoint."""

# ruff: noqa: F811 - test functions take the imported fixtures by name
from __future__ import annotations

import asyncio
from pathlib import Path

import boto3

from app.s3_checkpoints import list_objects, run_prefix
from app.settings import load_settings
from app.spot_interruptions import is_interrupted
from app.tui import RunctlApp
from tests.moto_server import REGION, MotoServer, moto  # noqa: F401 (a fixture)
from tests.sshd_server import SshdServer, sshd  # noqa: F401 (a fixture)
from tests.test_aws_spot_notice import FakeImds, imds, url  # noqa: F401 (a fixture)
from tests.test_dashboard_aws import launch_managed
from tests.test_dashboard_pilot import confirmation, until
from tests.test_terminate_warning import BUCKET, configure

SPOT = {"MarketType": "spot", "SpotOptions": {"SpotInstanceType": "one-time"}}
NOTICE = b'{"action": "terminate", "time": "2026-11-23T20:40:00Z"}'
IMAGE = "ami-999844e0"  # one of moto's images


def instances_of_type(kind: str) -> list[dict]:
    reply = boto3.client("ec2", region_name=REGION).describe_instances(
        Filters=[{"Name": "instance-type", "Values": [kind]}]
    )
    return [i for r in reply["Reservations"] for i in r["Instances"]]


def start_training(app: RunctlApp, key: str):
    """What t does on the instance: sync, then the example, saving a checkpoint per epoch."""
    instance = app.instances[key]
    app.service.host_sync(instance).run()
    args = ["--epochs", "200", "--steps-per-epoch", "10", "--step-delay", "0.02"]
    return app.service.launch(app.service.plan("training/train.py", args, instance))


async def test_a_notice_stops_copies_marks_and_relaunches_from_the_last_checkpoint(
    moto: MotoServer, sshd: SshdServer, imds: FakeImds, project: Path, tmp_path: Path
) -> None:
    instance_id = launch_managed("g5.xlarge", InstanceMarketOptions=SPOT)
    with (project / "runctl.toml").open("a") as toml:
        toml.write("install_deps = false\n")  # under [train]: the example needs no packages
    configure(
        project,
        sshd,
        tmp_path,
        spot_watch_s=0.3,
        ami=IMAGE,
        ami_parameter="/runctl-test/no-such-parameter",
    )
    app = RunctlApp(load_settings(project), project)
    app.spot_imds_url = url(imds)
    app.copy_with_host_cli = False  # never let the test host's own AWS CLI reach out
    app.relaunch_poll_s = 0.1
    key = f"aws:{instance_id}"
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            try:
                await until(pilot, lambda: key in app.instances, timeout=60)
                assert app.instances[key].lifecycle == "spot"
                run = await asyncio.to_thread(start_training, app, key)
                checkpoints = Path(run.checkpoint_dir)
                await until(
                    pilot, lambda: len(list(checkpoints.glob("epoch-*.ckpt.json"))) >= 2, 60
                )

                imds.notice = NOTICE
                interrupted = await until(
                    pilot, lambda: (r := app.store.get_run(run.id)) and is_interrupted(r) and r, 60
                )
                imds.notice = None  # the next instance is not being interrupted
                assert interrupted.status == "interrupted" and interrupted.exit_code == 0
                assert "terminate notice for 2026-11-23T20:40:00Z" in interrupted.error
                assert "checkpoints in S3" in interrupted.error
                [saved] = checkpoints.glob("interrupted-*.ckpt.json")  # written on SIGTERM
                prefix = run_prefix(project.name, run.id)
                s3 = boto3.client("s3", region_name=REGION)
                assert {o.key: o.size for o in list_objects(s3, BUCKET, prefix)} == {
                    prefix + p.name: p.stat().st_size for p in checkpoints.iterdir()
                }

                # The relaunch is offered, naming the last checkpoint, and asked before anything.
                _, body = await confirmation(pilot, app)
                last = f"s3://{BUCKET}/{prefix}{saved.name}"
                assert last in body and "g5.xlarge" in body and "spot" in body
                assert len(instances_of_type("g5.xlarge")) == 1
                [plan] = app.relaunch_plans
                assert plan.checkpoint_url == last and plan.instance_type == "g5.xlarge"
                assert plan.resume_args("/x/" + saved.name)[-2:] == ["--resume", "/x/" + saved.name]
                await pilot.press("y")

                await until(pilot, lambda: len(instances_of_type("g5.xlarge")) == 2, 30)
                new = next(
                    i for i in instances_of_type("g5.xlarge") if i["InstanceId"] != instance_id
                )
                assert new.get("InstanceLifecycle") == "spot"
                resumed = await until(
                    pilot,
                    lambda: next((r for r in app.store.runs() if r.parent_run_id == run.id), None),
                    60,
                )
                assert (
                    resumed.instance_id == new["InstanceId"] and resumed.parent_checkpoint == last
                )
                restored = resumed.args[resumed.args.index("--resume") + 1]
                assert restored.endswith(f"/.runctl/restored/{run.id}/{saved.name}")
                assert Path(restored).read_bytes() == saved.read_bytes()
                log = Path(resumed.run_dir, "output.log")
                await until(pilot, lambda: log.is_file() and "Resumed from" in log.read_text(), 30)
            finally:  # trainings run detached on the host: end any still running
                for current in app.store.runs():
                    if current.active:
                        await asyncio.to_thread(app.service.stop, current, None, 5)
    finally:
        app.service.close()
