"""Clear errors and retries: no credentials, access denied, expired token, throttling, 5xx and
an unreachable endpoint, against moto with faults injected in front of it."""

from __future__ import annotations

import socket
import time

import boto3
import pytest

from providers.aws import (
    AccessDenied,
    AwsProvider,
    EndpointUnreachable,
    ExpiredCredentials,
    NoCredentials,
    Throttled,
)
from tests.moto_server import (
    REGION,
    FaultInjector,
    moto,  # noqa: F401
    no_real_aws,  # noqa: F401
)

pytestmark = pytest.mark.usefixtures("moto")


def managed_instance() -> str:
    reply = boto3.client("ec2", region_name=REGION).run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.micro",
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "runctl:managed", "Value": "true"}]}
        ],
    )
    return reply["Instances"][0]["InstanceId"]


def provider(**options) -> AwsProvider:
    retries: list[str] = []
    made = AwsProvider(regions=[REGION], max_backoff_s=0.0, on_retry=retries.append, **options)
    made.retries_seen = retries  # type: ignore[attr-defined]
    return made


@pytest.mark.parametrize(
    ("code", "status", "said"),
    [
        ("RequestLimitExceeded", 503, "AWS is throttling DescribeInstances; retrying"),
        ("InternalError", 500, "AWS answered 500 to DescribeInstances; retrying"),
        ("Unavailable", 503, "AWS answered 503 to DescribeInstances; retrying"),
    ],
)
def test_throttling_and_5xx_back_off_and_recover(code, status, said):
    instance_id = managed_instance()
    aws = provider()
    injector = FaultInjector(
        aws.clients.client("ec2", REGION), "ec2.DescribeInstances", code, status, times=2
    )
    started = time.monotonic()
    rows = aws.list_instances()
    assert [row.id for row in rows] == [instance_id]
    assert injector.sends == 3  # two faults, then moto answered
    assert aws.retries_seen == [said, said]
    assert time.monotonic() - started < 5


def test_throttling_that_never_ends_is_a_clear_error():
    aws = provider(max_attempts=3)
    FaultInjector(
        aws.clients.client("ec2", REGION),
        "ec2.DescribeInstances",
        "RequestLimitExceeded",
        503,
        times=100,
    )
    with pytest.raises(Throttled) as caught:
        aws.list_instances()
    assert str(caught.value).startswith(
        "AWS is throttling DescribeInstances in us-east-1 and retries ran out"
    )
    assert aws.last_results[REGION].error is caught.value


def test_access_denied_names_the_refused_call():
    aws = provider()
    FaultInjector(
        aws.clients.client("ec2", REGION), "ec2.DescribeInstances", "UnauthorizedOperation", 403, 1
    )
    with pytest.raises(AccessDenied) as caught:
        aws.list_instances()
    assert caught.value.operation == "DescribeInstances"
    assert str(caught.value).startswith(
        "AWS refused DescribeInstances in us-east-1: access denied. "
        "Grant your IAM user or role the permission for DescribeInstances."
    )


def test_expired_token_says_how_to_log_in_again():
    aws = provider()
    FaultInjector(
        aws.clients.client("ec2", REGION), "ec2.DescribeInstances", "RequestExpired", 400, 1
    )
    with pytest.raises(ExpiredCredentials, match=r"have expired. Run `aws sso login"):
        aws.list_instances()


def test_no_credentials_is_the_one_line_to_act_on(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    aws = provider()
    with pytest.raises(NoCredentials) as caught:
        aws.list_instances()
    assert str(caught.value) == (
        "No AWS credentials found (profile 'default'). Run `aws configure` or set AWS_PROFILE."
    )


def test_an_unreachable_endpoint_is_named(monkeypatch):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    aws = provider(max_attempts=2, connect_timeout_s=1.0)
    with pytest.raises(EndpointUnreachable) as caught:
        aws.list_instances()
    assert str(caught.value).startswith("Cannot reach the AWS ec2 endpoint for us-east-1")
    assert "Check your network, proxy or AWS_ENDPOINT_URL." in str(caught.value)
    assert aws.retries_seen  # the connection failure was retried before giving up
