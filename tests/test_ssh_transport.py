"""SSHTransport against a real sshd on 127.0.0.1: argv never interpolated, files read from an
offset and written atomically, one shared connection, reconnect after a drop, clear errors."""

# ruff: noqa: F811 - test functions take the imported `sshd` fixture by name

from __future__ import annotations

import time
from pathlib import Path

import pytest

from providers.base import TransportError
from providers.ssh import SshTarget, SSHTransport
from providers.streaming import CommandCancelled, stream_command
from tests.conftest import wait_until
from tests.sshd_server import SshdServer, sshd  # noqa: F401 (a fixture)

NASTY = ["; touch pwned", "$(touch pwned)", "`touch pwned`", 'it\'s "quoted"', "a  b", "", "*"]


def test_argv_reaches_the_remote_verbatim(sshd: SshdServer) -> None:
    transport = sshd.transport()
    result = transport.run(
        ["python3", "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", *NASTY],
        cwd=str(sshd.remote_home),
    )
    assert result.ok, result.describe_failure()
    assert result.text().strip() == __import__("json").dumps(NASTY)
    assert not (sshd.remote_home / "pwned").exists()
    assert transport.run(["pwd"], cwd=str(sshd.remote_home)).text().strip() == str(sshd.remote_home)


def test_exit_codes_stdin_and_the_commands_own_255(sshd: SshdServer) -> None:
    transport = sshd.transport()
    assert transport.run(["sh", "-c", "exit 7"]).returncode == 7
    assert transport.run(["sh", "-c", "exit 255"]).returncode == 255  # not mistaken for ssh's
    assert transport.run(["cat"], input=b"through stdin\n").stdout == b"through stdin\n"


def test_files_by_offset_size_listing_and_atomic_write(sshd: SshdServer) -> None:
    transport = sshd.transport()
    home = transport.home()
    assert home == str(sshd.remote_home)
    path = f"{home}/dir with space/log.txt"
    transport.write_file(path, b"line one\nline two\n", mode=0o640)
    assert (Path(path).stat().st_mode & 0o777) == 0o640
    assert transport.file_size(path) == 18
    assert transport.read_from(path, 9, 100) == b"line two\n"
    assert transport.read_from(path, 0, 4) == b"line"
    assert transport.read_from(path, 18, 100) == b""
    [entry] = transport.list_dir(f"{home}/dir with space")
    assert (entry.name, entry.size, entry.is_dir) == ("log.txt", 18, False)
    assert abs(entry.mtime - Path(path).stat().st_mtime) < 1
    assert transport.list_dir(f"{home}/missing") == []
    assert transport.file_size(f"{home}/missing") is None
    with pytest.raises(FileNotFoundError):
        transport.read_from(f"{home}/missing", 0, 10)
    assert sorted(p.name for p in Path(path).parent.iterdir()) == ["log.txt"]  # no temp left


def test_one_connection_is_shared_and_comes_back_after_a_drop(sshd: SshdServer) -> None:
    transport = sshd.transport()
    transport.check()
    master = transport.master_pid()
    assert master is not None
    started = time.monotonic()
    for _ in range(10):
        assert transport.run(["true"]).ok
    assert transport.master_pid() == master
    per_command = (time.monotonic() - started) / 10
    assert per_command < 0.15, f"{per_command:.3f} s per command: the connection is not reused"

    assert sshd.kill_connections() >= 1  # the network drops
    assert transport.file_size(f"{transport.home()}/nothing") is None  # reads retry once
    assert transport.run(["echo", "back"]).text() == "back\n"
    assert transport.master_pid() not in (None, master)


def test_unreachable_host_is_one_clear_line(tmp_path: Path) -> None:
    transport = SSHTransport(
        "nobody@127.0.0.1:1", config_file=tmp_path / "none", known_hosts=tmp_path / "kh"
    )
    (tmp_path / "none").write_text("")
    with pytest.raises(TransportError) as failed:
        transport.run(["true"])
    message = str(failed.value)
    assert "\n" not in message
    assert "cannot connect to [127.0.0.1]:1" in message and "refused" in message


def test_streaming_in_and_out_and_cancel(sshd: SshdServer) -> None:
    transport = sshd.transport()
    seen: list[bytes] = []
    chunks = (bytes([65 + i % 26]) * 65536 for i in range(64))  # 4 MiB, generated lazily
    result = stream_command(
        transport, ["sh", "-c", "wc -c; echo to-stderr >&2"], stdin_chunks=chunks,
        on_output=seen.append, merge_stderr=True,
    )  # fmt: skip
    assert result.ok
    assert b"".join(seen).split() == [b"4194304", b"to-stderr"]

    started = time.monotonic()
    with pytest.raises(CommandCancelled):
        stream_command(
            transport, ["sleep", "31.25"], cancel=lambda: time.monotonic() - started > 0.5
        )
    assert time.monotonic() - started < 5
    wait_until(lambda: not remote_processes("sleep 31.25"), timeout=10)  # ended on the host too


def test_timeout_is_a_transport_error(sshd: SshdServer) -> None:
    transport = sshd.transport()
    started = time.monotonic()
    with pytest.raises(TransportError, match="took longer than 1 s"):
        transport.run(["sleep", "32.5"], timeout=1)
    assert time.monotonic() - started < 6
    wait_until(lambda: not remote_processes("sleep 32.5"), timeout=10)


def remote_processes(command_line: str) -> list[int]:
    """Pids whose command line is exactly this (the sshd host is this machine)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            text = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, UnicodeDecodeError):
            continue
        if entry.name.isdigit() and text == command_line:
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gpu-box", SshTarget("gpu-box")),
        ("me@10.0.0.5", SshTarget("10.0.0.5", "me")),
        ("me@10.0.0.5:2222", SshTarget("10.0.0.5", "me", 2222)),
        ("host:22", SshTarget("host", None, 22)),
        ("me@[::1]:2200", SshTarget("::1", "me", 2200)),
    ],
)
def test_ssh_destinations(text: str, expected: SshTarget) -> None:
    assert SshTarget.parse(text) == expected


def test_bad_destination_is_refused() -> None:
    for bad in ("-oProxyCommand=x", "a b", "", "host:port"):
        with pytest.raises(ValueError):
            SshTarget.parse(bad)


def test_large_output_arrives_whole(sshd: SshdServer) -> None:
    transport = sshd.transport()
    result = transport.run(["head", "-c", "3000000", "/dev/zero"])
    assert len(result.stdout) == 3_000_000


def test_ssh_config_alias_user_port_identity_and_proxyjump(sshd: SshdServer) -> None:
    """Everything comes from the user's ssh config: an alias whose HostName, Port, User and
    IdentityFile are there, reached through a ProxyJump host (the same sshd, hop by hop)."""
    sshd.ssh_config.write_text(
        sshd.ssh_config.read_text()
        + f"Host jumped\n    HostName 127.0.0.1\n    Port {sshd.port}\n    ProxyJump testhost\n"
    )
    transport = sshd.transport(target="jumped")
    assert transport.run(["echo", "via the jump host"]).text() == "via the jump host\n"
    assert transport.resolved()["proxyjump"] == "testhost"


def test_providers_and_domain_services_import_no_textual_and_providers_no_app() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import providers.ssh, providers.hosts, providers.streaming\n"
        "assert not [m for m in sys.modules if m == 'app' or m.startswith('app.')], 'app'\n"
        "import app.sync, app.deps, app.remote_logfollow, app.sync_report\n"
        "assert 'textual' not in sys.modules, 'textual'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
