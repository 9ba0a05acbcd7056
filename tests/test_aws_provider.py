"""The EC2 provider against moto as a real HTTP server: launch, list, stop, start, terminate."""

from __future__ import annotations

import subprocess
from pathlib import Path

import boto3
import pytest

from app.costs import PriceCatalog
from providers.aws import (
    MANAGED_TAG,
    PROTECTED_TAG,
    AwsProvider,
    LaunchOptions,
    ProtectedInstance,
    SpotUnavailable,
    bootstrap_user_data,
    mark_vanished,
)
from tests.moto_server import (
    REGION,
    CallCounter,
    FaultInjector,
    moto,  # noqa: F401
    no_real_aws,  # noqa: F401
)

pytestmark = pytest.mark.usefixtures("moto")


@pytest.fixture
def provider() -> AwsProvider:
    return AwsProvider(
        regions=[REGION], on_demand_price=PriceCatalog().on_demand, max_backoff_s=0.0
    )


@pytest.fixture
def image_id() -> str:
    """One of moto's built-in AMIs: a Deep Learning AMI whose root device is /dev/xvda (not
    the usual /dev/sda1, so the test sees the device name really read from the image)."""
    ec2 = boto3.client("ec2", region_name=REGION)
    [image] = ec2.describe_images(ImageIds=["ami-999844e0"])["Images"]
    assert image["RootDeviceName"] == "/dev/xvda"
    # What a launch names must exist: moto checks them as EC2 and IAM do.
    ec2.create_key_pair(KeyName="ada-key")
    group = ec2.create_security_group(GroupName="runctl-ssh", Description="ssh from home")
    SECURITY_GROUP[0] = group["GroupId"]
    iam = boto3.client("iam", region_name=REGION)
    iam.create_instance_profile(InstanceProfileName="runctl-ssm")
    return image["ImageId"]


SECURITY_GROUP = ["sg-unset"]


def options(image_id: str, **overrides) -> LaunchOptions:
    values = dict(
        instance_type="g5.xlarge",
        project="vision",
        user="ada",
        name="vision-train",
        ami=image_id,
        key_name="ada-key",
        security_group_ids=[SECURITY_GROUP[0]],
        instance_profile="runctl-ssm",
        root_volume_gb=200,
    )
    values.update(overrides)
    return LaunchOptions(**values)


def by_id(provider: AwsProvider, instance_id: str, show_all: bool = False):
    rows = {row.id: row for row in provider.list_instances(show_all)}
    return rows.get(instance_id)


def test_on_demand_launch_runs_lists_stops_starts_and_terminates(provider, image_id):
    plan = provider.plan_launch(options(image_id))
    request = plan.request
    # The Deep Learning AMI parameter does not exist in moto: the configured AMI is used.
    assert request["ImageId"] == image_id and plan.ami_source == "aws.ami in runctl.toml"
    # The root volume goes to the AMI's own root device name.
    assert request["BlockDeviceMappings"][0]["DeviceName"] == "/dev/xvda"
    assert request["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 200
    tags = {t["Key"]: t["Value"] for t in request["TagSpecifications"][0]["Tags"]}
    assert tags == {
        MANAGED_TAG: "true",
        "runctl:project": "vision",
        "runctl:user": "ada",
        "Name": "vision-train",
    }
    assert request["KeyName"] == "ada-key" and request["SecurityGroupIds"] == SECURITY_GROUP
    assert request["IamInstanceProfile"] == {"Name": "runctl-ssm"}
    assert "InstanceMarketOptions" not in request
    assert plan.price_per_hour == pytest.approx(1.006)
    assert plan.gpu is not None and plan.gpu.label() == "A10G x1, 22 GiB"
    assert '"InstanceType": "g5.xlarge"' in plan.describe()

    [instance_id] = provider.launch(plan)
    steps = []
    ready = provider.wait_ready(
        [instance_id],
        REGION,
        progress=lambda step, message: steps.append(step),
        reachable=lambda row: row.address is not None,
        poll_s=0.01,
    )
    assert [s for s in dict.fromkeys(steps)] == ["pending", "running", "reachable"]
    assert ready[0].reachable is True

    row = by_id(provider, instance_id)
    assert row is not None
    assert (row.state, row.type, row.lifecycle, row.region) == (
        "running",
        "g5.xlarge",
        "on-demand",
        REGION,
    )
    assert row.name == "vision-train"
    assert row.gpu == "A10G x1, 22 GiB"
    assert row.price_per_hour == pytest.approx(1.006)
    assert row.uptime_s is not None and row.uptime_s >= 0
    assert row.accrued_usd == pytest.approx(1.006 * row.uptime_s / 3600)
    assert row.launched_at and row.launched_at.endswith("Z")

    assert provider.stop([instance_id], REGION)[instance_id] in ("stopping", "stopped")
    assert by_id(provider, instance_id).state == "stopped"
    assert by_id(provider, instance_id).uptime_s is None  # not billed while stopped
    assert provider.start([instance_id], REGION)[instance_id] in ("pending", "running")
    assert by_id(provider, instance_id).state == "running"
    provider.terminate([instance_id], REGION)
    row = by_id(provider, instance_id)
    assert row.state == "terminated" and "terminated" in row.warnings


def test_spot_launch_is_listed_as_spot_with_the_spot_price(provider, image_id):
    plan = provider.plan_launch(options(image_id, spot=True, spot_max_price=0.5))
    market = plan.request["InstanceMarketOptions"]
    assert market["MarketType"] == "spot"
    assert market["SpotOptions"]["MaxPrice"] == "0.5000"
    [instance_id] = provider.launch(plan)
    provider.wait_ready([instance_id], REGION, poll_s=0.01)
    row = by_id(provider, instance_id)
    assert row.lifecycle == "spot" and row.state == "running"
    assert row.price_per_hour == pytest.approx(0.00001)  # moto's spot price history


def test_unfilled_spot_request_raises_a_distinct_error_and_on_demand_is_a_separate_step(
    provider, image_id
):
    plan = provider.plan_launch(options(image_id, spot=True))
    injector = FaultInjector(
        provider.clients.client("ec2", REGION),
        "ec2.RunInstances",
        "InsufficientInstanceCapacity",
        500,
        times=10,
    )
    with pytest.raises(SpotUnavailable) as caught:
        provider.launch(plan)
    assert "No spot capacity for g5.xlarge in us-east-1" in str(caught.value)
    assert "launch on-demand" in str(caught.value)
    # Nothing was launched behind the user's back.
    assert provider.list_instances(show_all=True) == []
    injector.times = 0
    [instance_id] = provider.launch(plan.on_demand())
    assert by_id(provider, instance_id).lifecycle == "on-demand"


def test_deep_learning_ami_comes_from_its_ssm_parameter_when_it_exists(provider, image_id):
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name="/runctl-test/deeplearning/ami-id", Value=image_id, Type="String"
    )
    plan = provider.plan_launch(
        options("ami-configured", ami_parameter="/runctl-test/deeplearning/ami-id")
    )
    assert plan.request["ImageId"] == image_id
    assert plan.ami_source == "SSM parameter /runctl-test/deeplearning/ami-id"


def test_no_ami_anywhere_says_what_to_set(provider):
    with pytest.raises(Exception, match=r"set aws.ami to an AMI id of that region"):
        provider.plan_launch(options(None))


def test_only_managed_instances_unless_all_are_asked_for(provider, image_id):
    ec2 = boto3.client("ec2", region_name=REGION)
    ec2.run_instances(ImageId=image_id, MinCount=2, MaxCount=2, InstanceType="t3.micro")
    [managed] = provider.launch(provider.plan_launch(options(image_id)))
    assert [row.id for row in provider.list_instances()] == [managed]
    everything = provider.list_instances(show_all=True)
    assert len(everything) == 3
    strangers = [row for row in everything if row.id != managed]
    assert all("not managed by runctl" in row.warnings for row in strangers)
    assert all(row.gpu is None for row in strangers)  # t3 has no GPU
    assert all(row.price_per_hour == pytest.approx(0.0104) for row in strangers)


def test_protected_instances_cannot_be_terminated(provider, image_id):
    [instance_id] = provider.launch(provider.plan_launch(options(image_id)))
    boto3.client("ec2", region_name=REGION).create_tags(
        Resources=[instance_id], Tags=[{"Key": PROTECTED_TAG, "Value": "true"}]
    )
    with pytest.raises(ProtectedInstance, match=r"runctl:protected=true"):
        provider.terminate([instance_id], REGION)
    assert by_id(provider, instance_id).state == "running"


def create_managed_instances(image_id: str, count: int, instance_type: str = "g4dn.xlarge"):
    """`count` managed instances in more than 1,000 reservations (one launch each, then the
    rest in one launch): EC2 pages DescribeInstances by reservation."""
    from concurrent.futures import ThreadPoolExecutor

    ec2 = boto3.client("ec2", region_name=REGION)
    tags = [{"ResourceType": "instance", "Tags": [{"Key": MANAGED_TAG, "Value": "true"}]}]

    def launch(n: int) -> None:
        ec2.run_instances(
            ImageId=image_id,
            MinCount=n,
            MaxCount=n,
            InstanceType=instance_type,
            TagSpecifications=tags,
        )

    singles = min(count, 1001)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(launch, [1] * singles))
    if count > singles:
        launch(count - singles)


def test_1500_instances_are_listed_with_two_describe_calls(provider, image_id):
    create_managed_instances(image_id, 1500)
    counter = CallCounter(provider.clients.client("ec2", REGION), "ec2.DescribeInstances")
    rows = provider.list_instances()
    assert len(rows) == 1500
    assert len({row.id for row in rows}) == 1500
    assert counter.calls == 2
    assert {row.gpu for row in rows} == {"T4 x1, 16 GiB"}
    assert provider.last_results[REGION].describe_calls == 2


def test_instances_that_vanished_are_marked_terminated(provider, image_id):
    [instance_id] = provider.launch(provider.plan_launch(options(image_id)))
    before = provider.list_instances()
    gone = mark_vanished(before, [], answered_regions=[REGION])
    assert [(row.id, row.state) for row in gone] == [(instance_id, "terminated")]
    assert "terminated outside runctl" in gone[0].warnings[-1]
    assert mark_vanished(before, [], answered_regions=["eu-west-1"]) == []


def test_several_regions_are_listed_together(image_id):
    provider = AwsProvider(regions=[REGION, "eu-west-1"], max_backoff_s=0.0)
    boto3.client("ec2", region_name=REGION).run_instances(
        ImageId=image_id,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.micro",
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": MANAGED_TAG, "Value": "true"}]}
        ],
    )
    rows = provider.list_instances()
    assert [row.region for row in rows] == [REGION]
    assert set(provider.last_results) == {REGION, "eu-west-1"}


def test_bootstrap_user_data_prepares_the_runs_root_and_logs_what_it_did(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "log" / "bootstrap.log"
    script = bootstrap_user_data("~/runctl", log_path=str(log))
    done = subprocess.run(
        ["sh", "-c", script],
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), "RUNCTL_HOME_DIR": str(home)},
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert (home / "runctl" / "runs").is_dir() and (home / "runctl" / "projects").is_dir()
    text = log.read_text()
    assert "runctl bootstrap started" in text and "runctl bootstrap done" in text
    assert f"runs root ready: {home}/runctl" in text
    assert "gpu: nvidia-smi not found" in text or "gpu: " in text


def test_a_type_the_region_does_not_describe_keeps_its_row_without_gpu_facts(provider, image_id):
    # moto's us-east-1 has no p3.2xlarge in DescribeInstanceTypes (like a retired type): the
    # call that fails for it is repeated without it, and every row is still listed.
    ids = []
    for kind in ("p3.2xlarge", "g5.xlarge"):
        ids += provider.launch(provider.plan_launch(options(image_id, instance_type=kind)))
    rows = {row.id: row for row in provider.list_instances()}
    assert rows[ids[0]].gpu is None and rows[ids[0]].price_per_hour == pytest.approx(3.06)
    assert rows[ids[1]].gpu == "A10G x1, 22 GiB"
    assert provider.last_results[REGION].detail_error is None


def test_launch_dialog_choices_show_gpu_and_price_for_catalog_types(provider):
    catalog = PriceCatalog()
    counter = CallCounter(provider.clients.client("ec2", REGION), "ec2.DescribeInstanceTypes")
    choices = {
        kind: (gpu, price)
        for kind, gpu, price in provider.type_choices(REGION, catalog.instance_types())
    }
    assert set(choices) == set(catalog.instance_types())
    gpu, price = choices["g5.xlarge"]
    assert gpu.label() == "A10G x1, 22 GiB" and price == pytest.approx(1.006)
    assert choices["t3.micro"] == (None, pytest.approx(0.0104))
    calls = counter.calls
    provider.type_choices(REGION, ["g5.xlarge", "t3.micro"])
    assert counter.calls == calls  # cached
