"""Which transport reaches an EC2 instance, against moto as a real HTTP server: SSH with a
public address and a key pair, SSM with an instance profile, a clear error with neither, an ssh
config entry for the instance id winning, and `aws.transport` forcing either. Then the whole
run path over SSM through `RunService` — sync, dependencies, launch, log, stop — with
`LocalAgent` running each SSM script under `sh` here, as the SSM agent would on the host."""

# ruff: noqa: F811 - test functions take the imported `moto` fixture by name
from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from app.deps import install_deps, plan_deps
from app.remote_logfollow import read_whole_log
from app.runs import RunService
from providers.base import Instance, ProviderError
from providers.ssh import SSHTransport
from providers.ssm import SSMTransport
from tests.conftest import wait_until
from tests.moto_server import REGION, MotoServer, moto  # noqa: F401 (a fixture)
from tests.test_dashboard_aws import launch_managed
from tests.test_runproto_local import make_service
from tests.test_ssm_moto import BUCKET, LocalAgent

AWS_MARK = "# [aws] of this test\n"


def configure_aws(project: Path, ssh_config: Path | None = None, **aws: object) -> None:
    """An `[aws]` section for moto's region (and `[ssh] config_file`) in runctl.toml,
    replacing the one an earlier call wrote."""
    path = project / "runctl.toml"
    kept = path.read_text().partition(AWS_MARK)[0]
    lines = [AWS_MARK, "[aws]", f'regions = ["{REGION}"]']
    lines += [f"{key} = {json.dumps(value)}" for key, value in aws.items()]
    if ssh_config is not None:
        lines += ["[ssh]", f"config_file = {json.dumps(str(ssh_config))}"]
    path.write_text(kept + "\n".join(lines) + "\n")


def key_pair(name: str = "trainer-key") -> str:
    boto3.client("ec2", region_name=REGION).create_key_pair(KeyName=name)
    return name


def instance_profile(name: str = "runctl-ssm") -> dict:
    iam = boto3.client("iam", region_name=REGION)
    iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}")
    iam.create_instance_profile(InstanceProfileName=name)
    iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    return {"Name": name}


def no_public_address() -> dict:
    return {"NetworkInterfaces": [{"DeviceIndex": 0, "AssociatePublicIpAddress": False}]}


def row_of(service: RunService, instance_id: str) -> Instance:
    """The instance as the Instances pane gets it from the provider."""
    return next(row for row in service.aws.list_instances() if row.id == instance_id)


def public_address(instance_id: str) -> str:
    reply = boto3.client("ec2", region_name=REGION).describe_instances(InstanceIds=[instance_id])
    return reply["Reservations"][0]["Instances"][0]["PublicIpAddress"]


def transport_of(project: Path, instance_id: str):
    service = make_service(project)
    transport = service.transport_for(row_of(service, instance_id))
    chosen = [op.message for op in service.oplog.recent if op.name == "transport"][-1]
    return transport, chosen


def test_auto_takes_ssh_with_a_public_address_and_a_key_pair(moto: MotoServer, project) -> None:
    configure_aws(project)
    instance_id = launch_managed(KeyName=key_pair(), IamInstanceProfile=instance_profile())
    transport, why = transport_of(project, instance_id)
    assert isinstance(transport, SSHTransport)
    assert transport.target.user == "ubuntu" and transport.target.host == public_address(
        instance_id
    )
    assert transport.name == instance_id and "trainer-key" in why


def test_the_key_file_is_the_configured_one_or_the_key_pairs_pem(
    moto: MotoServer, project, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    pem = tmp_path / "home" / ".ssh" / "trainer-key.pem"
    pem.parent.mkdir(parents=True)
    pem.write_text("not a real key")
    instance_id = launch_managed(KeyName=key_pair())
    configure_aws(project, ssh_user="ec2-user")
    transport, _ = transport_of(project, instance_id)
    assert transport.identity_file == pem and transport.target.user == "ec2-user"

    configure_aws(project, ssh_identity_file=str(tmp_path / "mine"))
    transport, _ = transport_of(project, instance_id)
    assert transport.identity_file == tmp_path / "mine"


def test_auto_takes_ssm_with_only_an_instance_profile(moto: MotoServer, project) -> None:
    configure_aws(project, s3_bucket="team-bucket", ssm_run_as="ubuntu")
    instance_id = launch_managed(IamInstanceProfile=instance_profile())
    transport, why = transport_of(project, instance_id)
    assert isinstance(transport, SSMTransport)
    assert (transport.instance_id, transport.region) == (instance_id, REGION)
    assert transport.output_bucket == "team-bucket"  # ssm_output_bucket defaults to s3_bucket
    assert transport.run_as == "ubuntu" and "instance profile" in why


def test_neither_key_nor_profile_is_an_error_naming_what_is_missing(
    moto: MotoServer, project
) -> None:
    configure_aws(project)
    bare = launch_managed()
    hidden = launch_managed(KeyName=key_pair(), **no_public_address())
    service = make_service(project)
    with pytest.raises(ProviderError) as bare_error:
        service.transport_for(row_of(service, bare))
    assert str(bare_error.value).startswith(
        f"{bare} has no key pair (nor aws.ssh_identity_file) and no instance profile: add a "
        "key pair or an instance profile with SSM permissions"
    )
    with pytest.raises(ProviderError, match=rf"{hidden} has no public address and no instance"):
        service.transport_for(row_of(service, hidden))


def test_an_ssh_config_entry_for_the_instance_id_wins(moto: MotoServer, project, tmp_path) -> None:
    instance_id = launch_managed(IamInstanceProfile=instance_profile(), **no_public_address())
    config = tmp_path / "ssh_config"
    config.write_text(
        "Host i-*\n    ProxyCommand sh -c 'aws ssm start-session --target %h'\n    User me\n"
    )
    configure_aws(project, ssh_config=config)
    transport, why = transport_of(project, instance_id)
    assert isinstance(transport, SSHTransport) and "ssh config" in why
    assert transport.target.host == instance_id and transport.target.user is None
    assert transport.resolved()["user"] == "me"  # the entry decides, not aws.ssh_user


def test_transport_setting_forces_ssh_or_ssm(moto: MotoServer, project) -> None:
    with_key = launch_managed(KeyName=key_pair())
    with_profile = launch_managed(IamInstanceProfile=instance_profile())
    hidden = launch_managed(IamInstanceProfile={"Name": "runctl-ssm"}, **no_public_address())
    configure_aws(project, transport="ssm")
    transport, _ = transport_of(project, with_key)
    assert isinstance(transport, SSMTransport)

    configure_aws(project, transport="ssh")
    transport, _ = transport_of(project, with_profile)
    assert isinstance(transport, SSHTransport)
    assert transport.target.host == public_address(with_profile)
    with pytest.raises(ProviderError, match=r"no public address and your ssh config has no"):
        transport_of(project, hidden)


def test_a_stopped_instance_says_to_start_it(moto: MotoServer, project) -> None:
    configure_aws(project)
    instance_id = launch_managed(KeyName=key_pair())
    service = make_service(project)
    service.aws.stop([instance_id], REGION)
    with pytest.raises(ProviderError, match=rf"{instance_id} is (stopping|stopped): start it"):
        service.transport_for(row_of(service, instance_id))
    assert not service.reachable(row_of(service, instance_id))


def test_a_new_address_after_a_restart_chooses_again(moto: MotoServer, project) -> None:
    configure_aws(project)
    instance_id = launch_managed(KeyName=key_pair())
    service = make_service(project)
    row = row_of(service, instance_id)
    first = service.transport_for(row)
    assert service.transport_for(row) is first  # one transport per instance, kept
    row.address = "203.0.113.9"  # what the pane shows after a stop and start
    assert service.transport_for(row) is not first


def test_runs_sync_deps_and_logs_over_ssm(
    moto: MotoServer, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SSM's agent is played by LocalAgent: each script runs under `sh` on this machine as
    the host user, whose home is a tmp dir."""
    home = tmp_path / "ssm-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    configure_aws(project, s3_bucket=BUCKET)
    (project / "requirements.txt").write_text("# the example needs nothing\n")
    instance_id = launch_managed(IamInstanceProfile=instance_profile())
    service = make_service(project)
    instance = row_of(service, instance_id)
    transport = service.transport_for(instance)
    assert isinstance(transport, SSMTransport)
    transport.poll_initial_s = 0.01  # moto answers at once
    LocalAgent(transport)

    target = service.host_sync(instance)
    assert target.remote_dir == f"{home}/runctl/{project.name}"
    target.run()
    assert (home / "runctl" / project.name / "training" / "train.py").is_file()

    plan = plan_deps(project, "training/train.py")
    lines: list[str] = []
    first = install_deps(target.transport, target.remote_dir, plan, on_output=lines.append)
    # pip, or uv when the host has one on its PATH (a shell with the test venv active does)
    step = f"[2/2] {'uv pip' if first.tool == 'uv' else 'pip'} install -r requirements.txt"
    assert not first.skipped and step in lines
    again = install_deps(target.transport, target.remote_dir, plan)
    assert again.skipped
    assert service.python_for(instance) == f"{target.remote_dir}/.venv/bin/python"

    run = service.launch(service.plan("training/train.py", ["--step-delay", "0.05"], instance))
    assert run.provider == "aws" and run.run_dir.startswith(f"{home}/.runctl/runs/")
    log = wait_until(lambda: b"loss" in (data := read_whole_log(transport, run.log_path)) and data)
    assert b"Epoch 1/" in log
    stopped = service.stop(run, grace_s=5)
    assert stopped.status == "stopped" and stopped.exit_code == 0
    assert b"Received SIGTERM" in read_whole_log(transport, run.log_path)
    # A fresh service (the dashboard restarted) finds the run's instance and its state again.
    restarted = make_service(project)
    restarted.aws = service.aws  # as the dashboard hands in its provider; LocalAgent on it
    assert restarted.instance_of(run).region == REGION
    [listed] = restarted.refresh(restarted.instance_of(run))
    assert (listed.id, listed.status) == (run.id, "stopped")
