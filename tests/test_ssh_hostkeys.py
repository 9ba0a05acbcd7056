"""Host keys: an unknown host is asked about with its fingerprint, trusted once and remembered;
a changed key is refused; nothing ever connects with checking turned off."""

# ruff: noqa: F811 - test functions take the imported `sshd` fixture by name

from __future__ import annotations

import pytest

from providers.ssh import HostKeyChanged, UnknownHostKey, trust_host_key
from tests.sshd_server import SshdServer, sshd  # noqa: F401 (a fixture)


def stranger_config(sshd: SshdServer) -> None:
    """A client that knows nothing about the server yet (its own known_hosts is empty)."""
    empty = sshd.root / "user_known_hosts"
    empty.write_text("")
    text = sshd.ssh_config.read_text().replace(str(sshd.known_hosts), str(empty))
    sshd.ssh_config.write_text(text)


def test_unknown_host_is_asked_about_then_trusted_and_remembered(sshd: SshdServer) -> None:
    stranger_config(sshd)
    runctl_known_hosts = sshd.root / "state" / "ssh" / "known_hosts"
    transport = sshd.transport(known_hosts=runctl_known_hosts)
    with pytest.raises(UnknownHostKey) as asked:
        transport.run(["true"])
    question = asked.value
    assert question.fingerprint == sshd.fingerprint()
    assert question.fingerprint in str(question) and question.key_type == "ED25519"
    assert question.host == f"[127.0.0.1]:{sshd.port}"
    assert (
        question.key_line.split()[1:] == (sshd.host_key.with_suffix(".pub").read_text().split()[:2])
    )
    assert not runctl_known_hosts.exists()  # asking writes nothing
    assert not list(sshd.remote_home.iterdir())  # and runs nothing

    trust_host_key(question)
    assert transport.run(["echo", "hello"]).text() == "hello\n"
    # Remembered: a new transport (a restarted app) connects without asking.
    again = sshd.transport(known_hosts=runctl_known_hosts)
    assert again.run(["echo", "again"]).text() == "again\n"
    assert runctl_known_hosts.read_text().count("\n") == 1
    trust_host_key(question)  # trusting twice does not duplicate the line
    assert runctl_known_hosts.read_text().count("\n") == 1


def test_changed_host_key_is_refused(sshd: SshdServer) -> None:
    transport = sshd.transport()
    assert transport.run(["true"]).ok
    before = sshd.known_hosts.read_text()
    sshd.new_host_key()
    for attempt in (transport, sshd.transport()):
        with pytest.raises(HostKeyChanged) as refused:
            attempt.run(["true"])
        message = str(refused.value)
        assert "CHANGED" in message and "refusing" in message
        assert refused.value.known_hosts_file == str(sshd.known_hosts)
    assert sshd.known_hosts.read_text() == before  # nothing was "fixed" behind the user's back


def test_changed_key_is_refused_even_when_ssh_config_says_no_checking(sshd: SshdServer) -> None:
    sshd.ssh_config.write_text(sshd.ssh_config.read_text() + "    StrictHostKeyChecking no\n")
    sshd.new_host_key()
    with pytest.raises(HostKeyChanged):
        sshd.transport().run(["true"])
