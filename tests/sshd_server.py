"""A real OpenSSH server on 127.0.0.1 for provider tests, with its own keys and config.

Import the fixture into a test module with `from tests.sshd_server import sshd  # noqa: F401`.

Each test gets its own `sshd -D -e -f CONFIG` on a free port with a freshly generated host key
and user key, a client `ssh_config` naming it `testhost`, and a `known_hosts` that already
trusts it, all in the test's tmp dir: the real user's ~/.ssh is never read or written. The
server accepts `HOME` from the client (`AcceptEnv HOME`) and the client config sends a tmp dir
as HOME, so remote files (`~/.runctl`, `~/runctl/<project>`) land in the test's tmp dir too.

A missing `sshd` FAILS the tests with the command that installs it: these tests are the only
proof that the SSH parts work, so they must never quietly skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
INSTALL_HINT = "install it with `apt-get install -y openssh-server rsync`"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )


def _descendant_pids(root: int) -> list[int]:
    found: list[int] = []
    frontier = [root]
    while frontier:
        children = [pid for parent in frontier for pid in _child_pids(parent)]
        found.extend(children)
        frontier = children
    return found


def _child_pids(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found.append(int(entry.name))
    return found


@dataclass
class SshdServer:
    """One running sshd and the client files that reach it."""

    root: Path
    port: int
    host_key: Path  # private host key; `.pub` beside it
    user_key: Path  # private user key; `.pub` beside it
    ssh_config: Path  # client config: `Host testhost` -> this server
    known_hosts: Path  # trusts this server's host key
    remote_home: Path  # what $HOME is for sessions of this server
    process: subprocess.Popen | None = None
    log_path: Path = field(default=None)  # type: ignore[assignment]
    transports: list = field(default_factory=list)

    alias = "testhost"

    @property
    def target(self) -> str:
        """`user@host:port`, as a `[[hosts]] ssh =` value would say it."""
        return f"{os.environ.get('USER') or 'root'}@127.0.0.1:{self.port}"

    def transport(self, **options):
        """An SSHTransport to this server through its client config (closed at teardown);
        runctl's own known_hosts defaults to a file beside the server's files."""
        from providers.ssh import SSHTransport

        options.setdefault("config_file", self.ssh_config)
        options.setdefault("known_hosts", self.root / "runctl_known_hosts")
        options.setdefault("connect_timeout", 5)
        transport = SSHTransport(options.pop("target", self.alias), **options)
        self.transports.append(transport)
        return transport

    def fingerprint(self) -> str:
        out = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{self.host_key}.pub"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return out.split()[1]

    def start(self) -> None:
        config = self.root / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
                    "StrictModes no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    f"SetEnv HOME={self.remote_home}",
                    "MaxSessions 50",
                    "MaxStartups 50:30:100",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )
        self.log_path = self.root / "sshd.log"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"sshd exited with {self.process.returncode}: {self.log_path.read_text()}"
                )
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"sshd did not listen within 10 s: {self.log_path.read_text()}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        for transport in self.transports:
            transport.close()
        if self.process is not None and self.process.poll() is None:
            # Stop accepting first (SIGSTOP: its children stay its children, so they can
            # still be found), then end every connection, then the server: a client that
            # reconnected in between must not keep a session alive past the "host down".
            self.process.send_signal(signal.SIGSTOP)
            self.kill_connections()
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def kill_connections(self) -> int:
        """SIGKILL every per-connection sshd process and what it started, as a network drop
        would end them (the monitor alone is not enough: its unprivileged child holds the
        socket)."""
        assert self.process is not None
        victims = _descendant_pids(self.process.pid)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(victims)

    def new_host_key(self) -> None:
        """Restart with a different host key (what a reinstalled or impostor machine shows)."""
        self.stop()
        for suffix in ("", ".pub"):
            Path(f"{self.host_key}{suffix}").unlink()
        _keygen(self.host_key, "test host key (new)")
        self.start()


def make_sshd(root: Path) -> SshdServer:
    if not Path(SSHD).exists() or shutil.which("ssh") is None:
        pytest.fail(f"OpenSSH server or client is missing ({SSHD}, ssh): {INSTALL_HINT}")
    root.mkdir(parents=True, exist_ok=True)
    try:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    except PermissionError:
        pytest.fail(f"/run/sshd does not exist and cannot be created: {INSTALL_HINT}")
    host_key = root / "ssh_host_ed25519_key"
    user_key = root / "id_ed25519"
    _keygen(host_key, "test host key")
    _keygen(user_key, "test user key")
    (root / "authorized_keys").write_text(Path(f"{user_key}.pub").read_text())
    remote_home = root / "remote-home"
    remote_home.mkdir()
    port = _free_port()
    known_hosts = root / "known_hosts"
    known_hosts.write_text(
        f"[127.0.0.1]:{port} {' '.join(Path(f'{host_key}.pub').read_text().split()[:2])}\n"
    )
    ssh_config = root / "ssh_config"
    ssh_config.write_text(
        "\n".join(
            [
                "Host testhost",
                "    HostName 127.0.0.1",
                f"    Port {port}",
                "Host *",
                f"    User {os.environ.get('USER') or 'root'}",
                f"    IdentityFile {user_key}",
                "    IdentitiesOnly yes",
                f"    UserKnownHostsFile {known_hosts}",
                "",
            ]
        )
    )
    server = SshdServer(root, port, host_key, user_key, ssh_config, known_hosts, remote_home)
    server.start()
    return server


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshdServer]:
    server = make_sshd(tmp_path / "sshd")
    try:
        yield server
    finally:
        server.stop()
