"""The dashboard's EC2 rows against moto running as a real HTTP server on 127.0.0.1: managed
instances listed with type, GPU and $/h; stop behind a confirmation naming the instance and its
price; terminate only after the instance id is typed; and without AWS configured, a row that
says how to configure it."""

# ruff: noqa: F811 - test functions take the imported `moto` fixture by name
from __future__ import annotations

from pathlib import Path

import boto3

from app.settings import load_settings
from app.tui import RunctlApp
from tests.moto_server import REGION, MotoServer, moto  # noqa: F401 (a fixture)
from tests.test_dashboard_pilot import confirmation, until
from widgets.confirm_modal import ConfirmModal

MANAGED = [{"Key": "runctl:managed", "Value": "true"}, {"Key": "Name", "Value": "trainer"}]


def make_app(project: Path) -> RunctlApp:
    (project / "runctl.toml").write_text(f'[aws]\nregions = ["{REGION}"]\n')
    return RunctlApp(load_settings(project), project)


def launch_managed(instance_type: str = "g5.xlarge", **options: object) -> str:
    """A running instance tagged runctl:managed; `options` go to RunInstances (KeyName,
    IamInstanceProfile, NetworkInterfaces, ...)."""
    ec2 = boto3.client("ec2", region_name=REGION)
    reply = ec2.run_instances(
        ImageId="ami-999844e0",
        MinCount=1,
        MaxCount=1,
        InstanceType=instance_type,
        TagSpecifications=[{"ResourceType": "instance", "Tags": MANAGED}],
        **options,
    )
    return reply["Instances"][0]["InstanceId"]


def state_of(instance_id: str) -> str:
    ec2 = boto3.client("ec2", region_name=REGION)
    reply = ec2.describe_instances(InstanceIds=[instance_id])
    return reply["Reservations"][0]["Instances"][0]["State"]["Name"]


async def select(pilot, app: RunctlApp, key: str) -> None:
    table = app.instances_table
    await until(pilot, lambda: key in table.rows)
    table.focus()
    table.move_cursor(row=table.get_row_index(key))
    await until(pilot, lambda: app.selected_instance_key == key)


async def test_ec2_rows_stop_after_confirmation_and_terminate_needs_the_typed_id(
    moto: MotoServer, project: Path
) -> None:
    stopped_one = launch_managed()
    doomed = launch_managed("t3.micro")
    app = make_app(project)
    async with app.run_test(size=(120, 36)) as pilot:
        table = app.instances_table
        await until(pilot, lambda: f"aws:{stopped_one}" in table.rows, timeout=60)
        row = [str(cell) for cell in table.get_row(f"aws:{stopped_one}")]
        assert row[0] == "aws" and row[2] == "g5.xlarge"
        assert "A10G" in row[3] and row[6].startswith("$1.0")  # g5.xlarge on demand

        await select(pilot, app, f"aws:{stopped_one}")
        await pilot.press("Z")
        modal, body = await confirmation(pilot, app)
        assert stopped_one in body and "g5.xlarge" in body and "/h" in body
        assert app.focused.id == "cancel"
        await pilot.press("y")
        await until(pilot, lambda: state_of(stopped_one) in ("stopping", "stopped"), timeout=30)

        await select(pilot, app, f"aws:{doomed}")
        await pilot.press("K")
        modal, _ = await confirmation(pilot, app)
        assert modal.query_one("#confirm").disabled
        await pilot.press("y")  # not enough: the id must be typed
        assert isinstance(app.screen, ConfirmModal) and state_of(doomed) == "running"
        modal.query_one("#confirm-typed").focus()
        await pilot.press(*doomed)
        await until(pilot, lambda: not modal.query_one("#confirm").disabled)
        await pilot.click("#confirm")
        await until(pilot, lambda: state_of(doomed) in ("shutting-down", "terminated"), timeout=30)


async def test_without_aws_configured_a_row_says_how_to_configure_it(project: Path) -> None:
    app = make_app(project)
    async with app.run_test(size=(120, 36)) as pilot:
        table = app.instances_table
        await until(pilot, lambda: "aws:(aws)" in table.rows, timeout=30)
        instance = table.instances["aws:(aws)"]
        assert instance.state == "not configured"
        assert "aws configure" in instance.warnings[0]
        assert not any(n.severity == "error" for n in app._notifications)


async def test_an_instance_ec2_no_longer_lists_stays_as_terminated_outside_runctl(
    moto: MotoServer, project: Path
) -> None:
    gone = launch_managed()
    app = make_app(project)
    async with app.run_test(size=(120, 36)) as pilot:
        table = app.instances_table
        await until(pilot, lambda: f"aws:{gone}" in table.rows, timeout=60)
        assert table.instances[f"aws:{gone}"].state == "running"
        moto.reset()  # EC2 forgets it, as it does some time after a termination elsewhere
        await pilot.press("g")
        await until(pilot, lambda: table.instances[f"aws:{gone}"].state == "terminated", 60)
        row = table.instances[f"aws:{gone}"]
        assert "terminated outside runctl" in row.warnings[-1]
        assert row.uptime_s is None
