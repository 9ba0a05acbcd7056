# ruff: noqa: F811 - test functions take the imported `moto` fixture by name
"""The EC2 launch dialog and the show-all toggle, driven with Pilot against moto running as a
real HTTP server on 127.0.0.1: each type with its GPU and $/h while choosing; a dry run that
shows the exact RunInstances request and creates nothing; an on-demand launch that ends
running, reachable and listed; a spot request without capacity that asks before going
on-demand; `a` between managed and every instance; no launch in read-only mode.

Launched instances sit in a subnet of 127.0.0.0/16, so the SSH check of a new instance knocks
on a loopback address (moto would otherwise invent a public one) where the test listens."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from textual.widgets import OptionList

from app.launch_actions import Reachability
from app.settings import load_settings
from app.tui import RunctlApp
from providers.base import Instance
from tests.moto_server import REGION, MotoServer, fault_response, moto  # noqa: F401
from tests.test_dashboard_aws import launch_managed
from tests.test_dashboard_pilot import confirmation, until
from widgets.confirm_modal import ConfirmModal
from widgets.ec2_launch_dialog import Ec2LaunchDialog, rate

AMI = "ami-999844e0"  # one of moto's images in every region
KEY = "trainer-key"
PROFILE = "trainer-profile"
FIRST_ADDRESS = "127.0.0.4"  # moto hands out a subnet's addresses in order, after .1-.3


def loopback_subnet() -> str:
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="127.0.0.0/16")["Vpc"]["VpcId"]
    return ec2.create_subnet(VpcId=vpc, CidrBlock="127.0.0.0/24")["Subnet"]["SubnetId"]


@pytest.fixture
def ssh_port() -> Iterator[int]:
    """A listening port on the address the first launched instance gets: its "port 22"."""
    with socket.socket() as server:
        server.bind((FIRST_ADDRESS, 0))
        server.listen(8)
        yield server.getsockname()[1]


def make_app(project: Path, ssh_port: int = 22, extra: str = "", **overrides) -> RunctlApp:
    boto3.client("ec2", region_name=REGION).create_key_pair(KeyName=KEY)
    (project / "runctl.toml").write_text(
        "[aws]\n"
        f'regions = ["{REGION}"]\n'
        f'ami = "{AMI}"\n'
        f'key_name = "{KEY}"\n'
        f'subnet_id = "{loopback_subnet()}"\n'
        'instance_types = ["t3.micro", "g5.xlarge", "g4dn.xlarge"]\n' + extra
    )
    app = RunctlApp(load_settings(project, **overrides), project)
    app.aws_max_backoff_s = 0.0  # botocore retries (of moto's 500s) without sleeping
    app.launch_poll_s = 0.02
    app.launch_timeout_s = 20.0
    app.launch_ssh_port = ssh_port
    return app


def instances_in_moto() -> list[dict]:
    reply = boto3.client("ec2", region_name=REGION).describe_instances()
    return [item for r in reply["Reservations"] for item in r["Instances"]]


def tags_of(item: dict) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in item.get("Tags", ())}


def finished(app: RunctlApp, name: str):
    """The last finished operation `name` in the operations log, or None."""
    done = [op for op in app.oplog.recent if op.name == name and op.result != "running"]
    return done[-1] if done else None


async def open_dialog(pilot, app: RunctlApp) -> Ec2LaunchDialog:
    await pilot.press("L")
    dialog = await until(pilot, lambda: isinstance(app.screen, Ec2LaunchDialog) and app.screen)
    types = dialog.query_one("#ec2-types", OptionList)
    await until(pilot, lambda: "A10G" in str(types.get_option("g5.xlarge").prompt))
    return dialog


class NoSpotCapacity:
    """Answers every spot RunInstances with InsufficientInstanceCapacity, in front of moto;
    on-demand requests go through."""

    def __init__(self, client) -> None:
        self.refused = 0
        client.meta.events.register("before-send.ec2.RunInstances", self)

    def __call__(self, request, **_: object):
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        if "InstanceMarketOptions.MarketType=spot" not in body:
            return None
        self.refused += 1
        return fault_response(
            "InsufficientInstanceCapacity",
            500,
            message="There is no Spot capacity available that matches your request.",
        )


async def test_types_show_gpu_and_price_and_dry_run_shows_the_request_creating_nothing(
    moto: MotoServer, project: Path
) -> None:
    app = make_app(project)
    async with app.run_test(size=(120, 36)) as pilot:
        dialog = await open_dialog(pilot, app)
        types = dialog.query_one("#ec2-types", OptionList)
        g5 = str(types.get_option("g5.xlarge").prompt)
        assert "A10G x1, 22 GiB" in g5 and "$1.006/h" in g5
        assert "T4 x1, 16 GiB" in str(types.get_option("g4dn.xlarge").prompt)
        assert "no GPU" in str(types.get_option("t3.micro").prompt)
        assert types.highlighted_option.id == "g5.xlarge"  # aws.default_instance_type
        assert dialog.query_one("#key-name").value == KEY  # prefilled from runctl.toml

        dialog.query_one("#spot").value = True
        price = await until(pilot, lambda: dialog.spot_now.get((REGION, "g5.xlarge")))
        shown = str(dialog.query_one("#ec2-spot-now").render())
        assert shown == f"spot now: {rate(price)} (on-demand $1.006/h)"

        await pilot.press("ctrl+t")
        result = dialog.query_one("#ec2-result")
        text = await until(
            pilot, lambda: "RunInstances request" in (t := str(result.render())) and t
        )
        request, _ = json.JSONDecoder().raw_decode(text, text.index("\n{") + 1)
        assert request["InstanceType"] == "g5.xlarge" and request["ImageId"] == AMI
        assert request["KeyName"] == KEY
        assert request["InstanceMarketOptions"]["MarketType"] == "spot"
        tags = {t["Key"]: t["Value"] for t in request["TagSpecifications"][0]["Tags"]}
        assert tags["runctl:managed"] == "true" and tags["runctl:project"] == project.name
        assert tags["runctl:user"] and tags["Name"] == f"runctl-{project.name}"
        image = boto3.client("ec2", region_name=REGION).describe_images(ImageIds=[AMI])
        root = image["Images"][0]["RootDeviceName"]
        assert request["BlockDeviceMappings"][0]["DeviceName"] == root
        assert request["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 100
        assert "runctl bootstrap" in text  # the user data, shown as text after the request
        assert instances_in_moto() == []

        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, Ec2LaunchDialog))
        assert instances_in_moto() == []


async def test_launch_on_demand_waits_until_reachable_and_lists_it(
    moto: MotoServer, project: Path, ssh_port: int
) -> None:
    app = make_app(project, ssh_port)
    async with app.run_test(size=(120, 36)) as pilot:
        dialog = await open_dialog(pilot, app)
        assert not dialog.query_one("#spot").value
        await pilot.click("#launch")
        ready = await until(pilot, lambda: finished(app, "wait-ready"))
        assert ready.result == "ok", ready.message
        [item] = instances_in_moto()
        assert item["State"]["Name"] == "running" and item["InstanceType"] == "g5.xlarge"
        assert item.get("InstanceLifecycle") != "spot"
        assert tags_of(item)["runctl:managed"] == "true"
        assert item["PrivateIpAddress"] == FIRST_ADDRESS
        assert ready.message == (
            f"reachable over SSH (port {ssh_port}): {item['InstanceId']} at {FIRST_ADDRESS}"
        )
        assert finished(app, "launch").result == "ok"
        await until(pilot, lambda: f"aws:{item['InstanceId']}" in app.instances_table.rows)
        assert app.sub_title == app._base_sub_title  # the progress line is gone


async def test_spot_without_capacity_asks_before_launching_on_demand(
    moto: MotoServer, project: Path, ssh_port: int
) -> None:
    app = make_app(project, ssh_port, extra="spot = true\n")
    async with app.run_test(size=(120, 36)) as pilot:
        await open_dialog(pilot, app)  # the app's provider exists once the types are listed
        no_capacity = NoSpotCapacity(app._aws_provider.clients.client("ec2", REGION))
        await pilot.click("#launch")
        _, body = await confirmation(pilot, app)
        assert (
            "Spot capacity for g5.xlarge in us-east-1 is not available "
            "(InsufficientInstanceCapacity): launch on-demand at $1.006/h instead?"
        ) in body
        assert app.focused.id == "cancel"
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmModal))
        assert no_capacity.refused >= 1 and instances_in_moto() == []
        assert finished(app, "launch").result == "error"

        await open_dialog(pilot, app)
        await pilot.click("#launch")
        await confirmation(pilot, app)
        await pilot.press("y")
        ready = await until(pilot, lambda: finished(app, "wait-ready"))
        assert ready.result == "ok", ready.message
        [item] = instances_in_moto()
        assert item["State"]["Name"] == "running" and item.get("InstanceLifecycle") != "spot"
        assert "InstanceMarketOptions" not in str(item)
        await until(pilot, lambda: f"aws:{item['InstanceId']}" in app.instances_table.rows)


async def test_with_an_instance_profile_reachable_means_ssm_and_moto_never_says_so(
    moto: MotoServer, project: Path
) -> None:
    boto3.client("iam", region_name=REGION).create_instance_profile(InstanceProfileName=PROFILE)
    app = make_app(project, extra=f'instance_profile = "{PROFILE}"\n')
    app.launch_timeout_s = 0.5
    async with app.run_test(size=(120, 36)) as pilot:
        dialog = await open_dialog(pilot, app)
        assert dialog.query_one("#instance-profile").value == PROFILE
        await pilot.click("#launch")
        waited = await until(pilot, lambda: finished(app, "wait-ready"))
        [item] = instances_in_moto()
        assert item["State"]["Name"] == "running"
        # moto has no DescribeInstanceInformation: the SSM check never sees the agent online,
        # and after the timeout the warning says the instance runs but is not reachable yet.
        assert waited.result == "error"
        warning = await until(
            pilot,
            lambda: next((n for n in app._notifications if "not yet reachable" in n.message), None),
        )
        assert warning.severity == "warning"
        assert f"{item['InstanceId']} is running but not yet reachable over SSM" in warning.message
        assert "SSM did not answer" in warning.message
        await until(pilot, lambda: f"aws:{item['InstanceId']}" in app.instances_table.rows)


async def test_a_toggles_between_managed_and_every_instance(
    moto: MotoServer, project: Path
) -> None:
    managed = launch_managed()
    reply = boto3.client("ec2", region_name=REGION).run_instances(
        ImageId=AMI, MinCount=1, MaxCount=1, InstanceType="t3.micro"
    )
    untagged = reply["Instances"][0]["InstanceId"]
    app = make_app(project)
    async with app.run_test(size=(120, 36)) as pilot:
        table = app.instances_table
        await until(pilot, lambda: f"aws:{managed}" in table.rows)
        assert f"aws:{untagged}" not in table.rows
        assert table.border_title == "Instances"

        await pilot.press("a")
        assert table.border_title == "Instances (all in account)"
        await until(pilot, lambda: f"aws:{untagged}" in table.rows)
        assert "not managed by runctl" in table.instances[f"aws:{untagged}"].warnings

        await pilot.press("a")
        assert table.border_title == "Instances"
        await until(pilot, lambda: f"aws:{untagged}" not in table.rows)
        assert f"aws:{managed}" in table.rows


async def test_read_only_has_no_launch(moto: MotoServer, project: Path) -> None:
    app = make_app(project, read_only=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("L")
        await pilot.pause()
        assert not isinstance(app.screen, Ec2LaunchDialog)
        assert app.check_action("launch_instance", ()) is False
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert "Launch EC2" not in titles and "All instances" in titles


def test_ssh_check_says_why_a_closed_port_is_not_reachable() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    check = Reachability(None, via_ssm=False, ssh_port=port, connect_timeout_s=1.0)
    assert check.via == f"SSH (port {port})"
    assert not check(Instance("aws", "i-1", address=None))
    assert check.last_answer == "no address yet"
    assert not check(Instance("aws", "i-1", address="127.0.0.1"))
    assert check.last_answer.startswith(f"port {port} at 127.0.0.1: ")
    assert "refused" in check.last_answer.lower()
