"""How the app reaches one EC2 instance: over SSH or over SSM, chosen from what it has.

The rule, for `aws.transport = "auto"`, from the instance's DescribeInstances record:

1. SSH to the instance id when the user's ssh config has an entry for it (`ssh -G` says it
   goes elsewhere than the bare id: a `HostName`, or a `ProxyCommand` such as
   `aws ssm start-session --target %h`). That entry then decides user, key, port and route.
2. SSH to `aws.ssh_user@<public address>` when the instance has a public address and a key:
   its key pair (`KeyName`) or `aws.ssh_identity_file`.
3. SSM when it has an instance profile.
4. Otherwise a ProviderError naming what is missing.

`"ssh"` forces SSH (1 or 2, without needing a key pair: the agent's or default keys may do);
`"ssm"` forces SSM. Either way the instance must be running. Nothing here imports textual or
boto3: the caller hands in the record and, for SSM, the provider's `AwsClients`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers.base import ProviderError, Transport

SSH = "ssh"
SSM = "ssm"


@dataclass(frozen=True, slots=True)
class Ec2Route:
    """The transport chosen for one instance, and why."""

    instance_id: str
    region: str
    kind: str  # SSH | SSM
    target: str | None = None  # the ssh destination (the instance id, or user@address)
    identity_file: str | None = None  # passed to ssh as -i; None = ssh config / agent
    address: str | None = None  # the public address it was chosen with
    why: str = ""

    def describe(self) -> str:
        return f"{self.instance_id}: {self.kind} ({self.why})"


def ssh_config_entry(instance_id: str, config_file: str | Path | None) -> bool:
    """Whether the ssh config has an entry that applies to the instance id: `ssh -G` resolves
    it to another host name, or through a ProxyCommand. No connection is made."""
    from providers.ssh import SSHTransport

    resolved = SSHTransport(instance_id, config_file=config_file).resolved()
    proxy = resolved.get("proxycommand", "none").strip().lower()
    return resolved.get("hostname", instance_id) != instance_id or proxy not in ("", "none")


def key_file_for(record: dict, aws: Any) -> str | None:
    """`aws.ssh_identity_file`, else `~/.ssh/<KeyName>.pem` when that file exists (where
    the EC2 console's download usually goes), else None (ssh's agent and default keys)."""
    if aws.ssh_identity_file:
        return str(Path(aws.ssh_identity_file).expanduser())
    name = record.get("KeyName")
    if name:
        for candidate in (f"~/.ssh/{name}.pem", f"~/.ssh/{name}"):
            path = Path(candidate).expanduser()
            if path.is_file():
                return str(path)
    return None


def choose_route(record: dict, region: str, aws: Any, has_config_entry: bool) -> Ec2Route:
    """The route for an instance (see the module docstring). `aws`: the `[aws]` settings."""
    instance_id = record["InstanceId"]
    state = record.get("State", {}).get("Name", "unknown")
    if state != "running":
        raise ProviderError(
            f"{instance_id} is {state}: start it first (U in Instances), then try again"
        )
    address = record.get("PublicIpAddress")
    key = record.get("KeyName") or aws.ssh_identity_file
    profile = record.get("IamInstanceProfile")
    mode = aws.transport

    def by_ssh(why: str) -> Ec2Route:
        if has_config_entry:
            return Ec2Route(instance_id, region, SSH, instance_id, None, address, why)
        target = f"{aws.ssh_user}@{address}"
        return Ec2Route(instance_id, region, SSH, target, key_file_for(record, aws), address, why)

    if mode == SSM:
        return Ec2Route(instance_id, region, SSM, address=address, why="aws.transport = ssm")
    if mode == SSH:
        if has_config_entry or address:
            return by_ssh("aws.transport = ssh")
        raise ProviderError(
            f"{instance_id} has no public address and your ssh config has no `Host` entry for "
            "it: add one (e.g. with a ProxyCommand through `aws ssm start-session`), or set "
            "aws.transport to auto or ssm"
        )
    if has_config_entry:
        return by_ssh("your ssh config has an entry for it")
    if address and key:
        return by_ssh(f"public address {address} and key {record.get('KeyName') or key}")
    if profile:
        return Ec2Route(instance_id, region, SSM, address=address, why="instance profile")
    if address:
        lacks, fix = "no key pair (nor aws.ssh_identity_file)", "add a key pair"
    elif key:
        lacks, fix = "no public address", "give it a public address"
    else:
        lacks, fix = "no public address/key pair", "add a key pair"
    raise ProviderError(
        f"{instance_id} has {lacks} and no instance profile: {fix} or an instance profile "
        f"with SSM permissions (or a `Host {instance_id}` entry in your ssh config)"
    )


def route_transport(
    route: Ec2Route,
    aws: Any,
    *,
    clients: Any = None,
    known_hosts: str | Path | None = None,
    config_file: str | Path | None = None,
) -> Transport:
    """The transport for a route: the same OpenSSH transport `[[hosts]]` use (runctl's
    known_hosts, so the trust-on-first-use question works the same), or SSM through the
    provider's clients (`clients`, needed for SSM only)."""
    if route.kind == SSH:
        from providers.ssh import SSHTransport

        return SSHTransport(
            route.target or route.instance_id,
            name=route.instance_id,
            identity_file=route.identity_file,
            config_file=config_file,
            known_hosts=known_hosts,
        )
    from providers.ssm import SSMTransport

    return SSMTransport(
        route.instance_id,
        route.region,
        clients,
        output_bucket=aws.ssm_output_bucket or aws.s3_bucket,
        run_as=aws.ssm_run_as,
    )
