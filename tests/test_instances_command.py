"""`runctl-tui instances [--all] [--json]` run as a real subprocess against moto."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from tests.conftest import REPO
from tests.moto_server import (
    REGION,
    aws_test_env,
    moto,  # noqa: F401
    no_real_aws,  # noqa: F401
)

KEYS = {
    "provider",
    "id",
    "name",
    "type",
    "gpu",
    "state",
    "lifecycle",
    "region",
    "launched_at",
    "uptime_s",
    "price_per_hour",
    "accrued_usd",
    "warnings",
}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / ".git").mkdir()  # a project root, so no settings outside the test are read
    return tmp_path


@pytest.fixture
def aws_env(moto) -> dict[str, str]:  # noqa: F811 - the imported fixture
    """The environment of a subprocess that talks to this test's moto server."""
    return aws_test_env(moto.url)


def run_instances(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "HOME": str(cwd),
        "RUNCTL_HOME": str(cwd / "state"),
    }
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "instances", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **env},
    )


def launch(instance_type: str, managed: bool, name: str) -> str:
    tags = [{"Key": "Name", "Value": name}]
    if managed:
        tags.append({"Key": "runctl:managed", "Value": "true"})
    reply = boto3.client("ec2", region_name=REGION).run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        InstanceType=instance_type,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )
    return reply["Instances"][0]["InstanceId"]


def test_json_lists_local_and_managed_aws_instances(aws_env, workdir):
    managed = launch("g5.xlarge", True, "train-1")
    launch("t3.micro", False, "someone-elses")
    done = run_instances("--json", cwd=workdir, env=dict(aws_env))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    rows = json.loads(done.stdout)
    assert all(set(row) == KEYS for row in rows)
    assert [row["provider"] for row in rows] == ["local", "aws"]
    aws = rows[1]
    assert aws["id"] == managed and aws["name"] == "train-1"
    assert (aws["type"], aws["gpu"], aws["state"]) == ("g5.xlarge", "A10G x1, 22 GiB", "running")
    assert (aws["lifecycle"], aws["region"]) == ("on-demand", REGION)
    assert aws["price_per_hour"] == pytest.approx(1.006)
    assert aws["uptime_s"] >= 0 and aws["accrued_usd"] >= 0
    assert aws["launched_at"].endswith("Z")
    assert aws["warnings"] == []


def test_all_lists_unmanaged_instances_too(aws_env, workdir):
    launch("g5.xlarge", True, "train-1")
    stranger = launch("t3.micro", False, "someone-elses")
    done = run_instances("--json", "--all", cwd=workdir, env=dict(aws_env))
    assert done.returncode == 0, done.stderr
    rows = [row for row in json.loads(done.stdout) if row["provider"] == "aws"]
    assert len(rows) == 2
    [other] = [row for row in rows if row["id"] == stranger]
    assert other["gpu"] is None and other["warnings"] == ["not managed by runctl"]


def test_table_output_shows_the_columns(aws_env, workdir):
    launch("g5.xlarge", True, "train-1")
    done = run_instances(cwd=workdir, env=dict(aws_env))
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.splitlines()
    assert header.split() == [
        "PROVIDER",
        "ID",
        "NAME",
        "TYPE",
        "GPU",
        "STATE",
        "MARKET",
        "UPTIME",
        "$/H",
        "SPENT",
    ]
    assert any("g5.xlarge" in line and "$1.006" in line for line in lines)


def test_without_credentials_aws_rows_are_absent_and_stderr_says_why(aws_env, workdir):
    env = dict(aws_env)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        env.pop(name)
    launch("g5.xlarge", True, "train-1")
    done = run_instances("--json", cwd=workdir, env=env)
    assert done.returncode == 0
    assert [row["provider"] for row in json.loads(done.stdout)] == ["local"]
    assert done.stderr == (
        "runctl-tui: AWS: No AWS credentials found (profile 'default'). "
        "Run `aws configure` or set AWS_PROFILE.\n"
    )


def test_unreachable_aws_still_lists_ssh_hosts_and_exits_0(aws_env, workdir):
    (workdir / "runctl.toml").write_text(
        '[aws]\nregions = ["us-east-1"]\n\n[[hosts]]\nname = "gpu-box"\nssh = "ada@10.0.0.9"\n'
    )
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**dict(aws_env), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    done = run_instances("--json", cwd=workdir, env=env)
    assert done.returncode == 0
    rows = json.loads(done.stdout)
    assert [(row["provider"], row["id"]) for row in rows][1:] == [("ssh", "gpu-box")]
    [line] = done.stderr.splitlines()
    assert line.startswith("runctl-tui: AWS: Cannot reach the AWS ec2 endpoint for us-east-1")


def test_no_region_anywhere_says_how_to_set_one(aws_env, workdir):
    env = dict(aws_env)
    env.pop("AWS_REGION")
    env.pop("AWS_DEFAULT_REGION")
    done = run_instances("--json", cwd=workdir, env=env)
    assert done.returncode == 0
    assert "No AWS region configured" in done.stderr
    assert os.linesep not in done.stderr.rstrip("\n")
