"""The sync engine over the SSM transport: the bundle goes inline when small and through the
S3 bucket (a presigned URL the host fetches) when large; moto answers the AWS calls and
`LocalAgent` runs each SSM script under `sh` here, as the SSM agent would on the host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.sync import sync_project
from tests.moto_server import (
    moto,  # noqa: F401
    no_real_aws,  # noqa: F401
)
from tests.test_ssm_moto import BUCKET, LocalAgent, transport

pytestmark = pytest.mark.usefixtures("moto")


@pytest.fixture
def instance_id() -> str:
    import boto3

    reply = boto3.client("ec2", region_name="us-east-1").run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="g5.xlarge"
    )
    return reply["Instances"][0]["InstanceId"]


def make_project(root: Path) -> None:
    (root / ".git").mkdir(parents=True)
    (root / "train.py").write_text("print('hello from ssm')\n")
    (root / "data").mkdir()
    (root / "data" / "weights.bin").write_bytes(os.urandom(200_000))  # > the inline limit


def test_a_project_syncs_over_ssm_and_a_resync_sends_nothing(instance_id, tmp_path):
    project = tmp_path / "proj"
    make_project(project)
    ssm = transport(instance_id, BUCKET)
    agent = LocalAgent(ssm)
    remote = tmp_path / "host" / "proj"
    first = sync_project(ssm, project, str(remote))
    assert first.bytes_sent > 0
    assert (remote / "train.py").read_text() == "print('hello from ssm')\n"
    assert (remote / "data" / "weights.bin").read_bytes() == (
        project / "data" / "weights.bin"
    ).read_bytes()
    commands_before = agent.runs
    again = sync_project(ssm, project, str(remote))
    assert again.plan.nothing_to_do and again.bytes_sent == 0
    assert agent.runs - commands_before <= 2  # reading the manifest, nothing shipped
