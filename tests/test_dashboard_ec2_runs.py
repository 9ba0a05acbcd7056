"""An EC2 instance (in moto, running as a real HTTP server) driven from the dashboard over SSH:
the user's ssh config has a `Host <instance id>` entry, here pointing at a real OpenSSH server on
127.0.0.1, so connecting to the instance id reaches it. Selecting the row asks about the unknown
host key; then a sync after its dry-run confirmation, the example training started on the
instance, its log and loss streaming in, and a stop through the confirmation."""

# ruff: noqa: F811 - test functions take the imported `moto` and `sshd` fixtures by name
from __future__ import annotations

from pathlib import Path

from app.settings import load_settings
from app.sync_report import known_hosts_path
from app.tui import RunctlApp
from tests.moto_server import MotoServer, moto  # noqa: F401 (a fixture)
from tests.sshd_server import SshdServer, sshd  # noqa: F401 (a fixture)
from tests.test_dashboard_aws import launch_managed, select
from tests.test_dashboard_pilot import confirmation, until
from tests.test_dashboard_ssh import train_then_stop
from tests.test_ec2_transport import configure_aws, key_pair


def ssh_config_for(instance_id: str, sshd: SshdServer, root: Path) -> Path:
    """The user's ssh config: the instance id goes to the test sshd, whose host key no
    known_hosts file holds yet."""
    config = root / "ssh_config"
    config.write_text(
        f"Host {instance_id}\n"
        "    HostName 127.0.0.1\n"
        f"    Port {sshd.port}\n"
        f"    User {sshd.target.partition('@')[0]}\n"
        f"    IdentityFile {sshd.user_key}\n"
        "    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {root / 'known_hosts'}\n"
    )
    return config


async def test_sync_train_follow_and_stop_on_an_ec2_instance_over_ssh(
    moto: MotoServer, sshd: SshdServer, project: Path, isolated_home: Path, tmp_path: Path
) -> None:
    instance_id = launch_managed(KeyName=key_pair())
    configure_aws(project, ssh_config=ssh_config_for(instance_id, sshd, tmp_path))
    app = RunctlApp(load_settings(project), project)
    remote_project = sshd.remote_home / "runctl" / project.name
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            await select(pilot, app, f"aws:{instance_id}")
            # Its runs are read at once: the unknown key becomes the trust question.
            _, body = await confirmation(pilot, app)
            assert sshd.fingerprint() in body and app.focused.id == "cancel"
            await pilot.press("y")
            await until(pilot, lambda: known_hosts_path(isolated_home).exists())

            await pilot.press("S")
            _, body = await confirmation(pilot, app)
            assert "training/train.py" in body and str(remote_project) in body
            await pilot.press("y")
            await until(pilot, lambda: (remote_project / "training" / "train.py").is_file(), 30)

            run = await train_then_stop(pilot, app, f"aws:{instance_id}")
            assert run.host == instance_id and run.project_root == str(remote_project)
            assert run.run_dir.startswith(f"{sshd.remote_home}/.runctl/runs/")
            chosen = [op.message for op in app.oplog.recent if op.name == "transport"]
            assert chosen and "your ssh config has an entry" in chosen[-1]
            assert f"aws:{instance_id}" in {
                op.target for op in app.oplog.recent if op.name == "sync"
            }
    finally:
        app.service.close()
