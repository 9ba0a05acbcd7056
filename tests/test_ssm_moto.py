"""The SSM transport's AWS calls against moto as a real server.

moto records `send_command` but runs nothing, so `LocalAgent` plays the SSM agent where a
test needs output: after SendCommand it runs the script under `sh` here and puts the output
where SSM puts it, in the output bucket. The transport's polling, S3 output reading and S3
input staging are its own code against moto."""

from __future__ import annotations

import os
import subprocess

import boto3
import pytest

from providers.aws import AwsClients
from providers.base import TransportError
from providers.ssm import SSMTransport, command_script
from tests.moto_server import (
    REGION,
    FaultInjector,
    moto,  # noqa: F401
    no_real_aws,  # noqa: F401
)

pytestmark = pytest.mark.usefixtures("moto")
BUCKET = "runctl-ssm-output"


@pytest.fixture
def instance_id() -> str:
    reply = boto3.client("ec2", region_name=REGION).run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="g5.xlarge"
    )
    return reply["Instances"][0]["InstanceId"]


def transport(instance_id: str, bucket: str | None = None, sleeps: list | None = None):
    clients = AwsClients(max_backoff_s=0.0)
    if bucket:
        clients.client("s3", REGION).create_bucket(Bucket=bucket)
    return SSMTransport(
        instance_id,
        REGION,
        clients,
        output_bucket=bucket,
        poll_initial_s=0.01,
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
    )


class LocalAgent:
    def __init__(self, ssm: SSMTransport) -> None:
        self.ssm = ssm
        self.runs = 0
        ssm.clients.client("ssm", REGION).meta.events.register(
            "after-call.ssm.SendCommand", self.after_send
        )

    def after_send(self, parsed: dict, **_: object) -> None:
        command = parsed["Command"]
        script = command["Parameters"]["commands"][0]
        done = subprocess.run(["sh", "-c", script], capture_output=True, timeout=60)
        self.runs += 1
        boto3.client("s3", region_name=REGION).put_object(
            Bucket=command["OutputS3BucketName"],
            Key=self.ssm.output_key(command["CommandId"]),
            Body=done.stdout,
        )


def test_send_command_uses_run_shell_script_with_the_quoted_script(instance_id):
    ssm = transport(instance_id)
    with pytest.raises(TransportError, match=r"SSM returned no exit status"):
        ssm.run(["echo", "it's $HOME"], timeout=30)
    [command] = boto3.client("ssm", region_name=REGION).list_commands()["Commands"]
    assert command["DocumentName"] == "AWS-RunShellScript"
    assert command["InstanceIds"] == [instance_id]
    assert command["Parameters"]["commands"] == [command_script(["echo", "it's $HOME"])]
    assert command["Parameters"]["executionTimeout"] == ["30"]


def test_whole_output_comes_from_the_s3_output_bucket(instance_id, tmp_path):
    ssm = transport(instance_id, BUCKET)
    agent = LocalAgent(ssm)
    log = tmp_path / "output.log"
    log.write_bytes(os.urandom(1_000_000))
    # One command for a megabyte: far beyond SSM's 24,000 inline characters.
    assert ssm.read_from(str(log), 0, 2_000_000) == log.read_bytes()
    assert agent.runs == 1
    [command] = boto3.client("ssm", region_name=REGION).list_commands()["Commands"]
    assert command["OutputS3BucketName"] == BUCKET


def test_large_input_is_staged_in_s3_and_fetched_by_the_host(instance_id, tmp_path):
    ssm = transport(instance_id, BUCKET)
    LocalAgent(ssm)
    bundle = os.urandom(300_000)
    target = tmp_path / "bundle.tar.gz"
    ssm.write_file(str(target), bundle)
    assert target.read_bytes() == bundle
    script = boto3.client("ssm", region_name=REGION).list_commands()["Commands"][0]
    assert len(script["Parameters"]["commands"][0]) < 10_000  # the bytes went through S3


def test_polling_backs_off_while_the_invocation_is_not_there_yet(instance_id):
    sleeps: list[float] = []
    ssm = transport(instance_id, BUCKET, sleeps)
    LocalAgent(ssm)
    FaultInjector(
        ssm.clients.client("ssm", REGION),
        "ssm.GetCommandInvocation",
        "InvocationDoesNotExist",
        400,
        times=3,
        protocol="json",
    )
    assert ssm.run(["echo", "ok"]).stdout == b"ok\n"
    assert sleeps == pytest.approx([0.01, 0.016, 0.0256])


def test_ssm_throttling_is_retried(instance_id):
    ssm = transport(instance_id, BUCKET)
    LocalAgent(ssm)
    injector = FaultInjector(
        ssm.clients.client("ssm", REGION),
        "ssm.SendCommand",
        "ThrottlingException",
        400,
        times=2,
        protocol="json",
    )
    assert ssm.home() == os.environ["HOME"]
    assert injector.sends == 3
