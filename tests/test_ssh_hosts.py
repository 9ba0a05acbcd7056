"""The hosts provider: `[[hosts]]` records become Instances rows with reachability checked
for real (bounded, in parallel), and the unknown-host-key question can be answered."""

# ruff: noqa: F811 - test functions take the imported `sshd` fixture by name

from __future__ import annotations

import time

from providers.hosts import HostRecord, HostsProvider
from providers.ssh import UnknownHostKey
from tests.sshd_server import SshdServer, sshd  # noqa: F401 (a fixture)


def test_rows_with_reachability_and_the_trust_question(sshd: SshdServer) -> None:
    known_hosts = sshd.root / "runctl-state" / "ssh" / "known_hosts"
    provider = HostsProvider(
        [
            {
                "name": "box",
                "ssh": sshd.target,
                "identity_file": str(sshd.user_key),
                "gpu": "A10G",
                "price_per_hour": 1.25,
            },
            HostRecord("gone", "root@127.0.0.1:1", identity_file=str(sshd.user_key)),
        ],
        known_hosts=known_hosts,
        config_file=sshd.root / "empty_ssh_config",
        check_timeout_s=5,
    )
    (sshd.root / "empty_ssh_config").write_text("")
    started = time.monotonic()
    rows = {row.id: row for row in provider.list_instances()}
    assert time.monotonic() - started < 12  # bounded, both checked at once
    box, gone = rows["box"], rows["gone"]
    assert (box.provider, box.gpu, box.price_per_hour, box.type) == (
        "ssh", "A10G", 1.25, sshd.target,
    )  # fmt: skip
    assert box.state == "unknown host key" and box.reachable is False
    assert sshd.fingerprint() in box.warnings[0]
    assert gone.state == "unreachable" and "cannot connect" in gone.warnings[0]

    question = provider.checks["box"].error
    assert isinstance(question, UnknownHostKey)
    provider.trust(question)  # the user compared the fingerprint and said yes
    rows = {row.id: row for row in provider.list_instances()}
    assert rows["box"].state == "reachable" and rows["box"].reachable is True
    assert rows["box"].warnings == []
    assert provider.transport("box").run(["echo", "hi"]).text() == "hi\n"
    # Without checking again, the rows keep the last known state.
    assert {r.id: r.state for r in provider.list_instances(check=False)} == {
        "box": "reachable",
        "gone": "unreachable",
    }
    provider.close()


def test_record_from_settings_like_objects() -> None:
    class Settings:
        name = "lab"
        ssh = "lab-alias"
        identity_file = None
        gpu = None
        price_per_hour = 0.0
        remote_root = "/data"

    assert HostRecord.of(Settings()) == HostRecord("lab", "lab-alias", remote_root="/data")
