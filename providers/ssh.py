"""One machine over SSH, through the OpenSSH client (`ssh`) run as a subprocess.

Why OpenSSH and not asyncssh: the Transport API is synchronous and called from thread
workers, so asyncssh would need an event loop thread of its own; and the `ssh` the user already
has is the one that knows their setup. It reads `~/.ssh/config` completely (Host aliases, User,
Port, IdentityFile, ProxyJump, Match blocks, agents, certificates), checks host keys against
the user's known_hosts files natively, and with ControlMaster/ControlPersist one TCP+SSH
connection is shared by every command (a command costs a few milliseconds after the first).
asyncssh would have to re-implement each of those config features and would still differ in
corner cases. The cost: commands are strings for the remote shell, so every argv is quoted
with `shlex.join` (POSIX shell quoting) and never interpolated.

Host keys: `StrictHostKeyChecking=yes` always (never a silent `no`), against the user's
configured known_hosts files plus runctl's own file (`known_hosts`, under the state dir). An
unknown host raises `UnknownHostKey` carrying the key's SHA256 fingerprint and its
known_hosts line, read by a probe connection that offers no credentials at all;
`trust_host_key(err)` appends that line to runctl's file and the next connection works. A
changed key raises `HostKeyChanged` and nothing is written anywhere.

Connections: ControlMaster=auto with a persistent master (ControlPersist, idle minutes);
ServerAliveInterval keepalives end a dead connection in under a minute; ConnectTimeout bounds
the connect. After a drop, the next command notices the stale control socket, and `ssh`
itself opens a new master: reconnection needs no code here beyond retrying idempotent reads.

Telling ssh's failures from the command's: every remote command is wrapped so the host shell
first prints its process-group id and last the command's exit status, on stderr (both lines
are removed from results). A result without the exit line means the connection failed before
the command finished, whatever the exit code; with it, even a command's own exit 255 is just
an exit code. The process-group id lets a cancelled or timed-out command be ended on the host
(`kill -- -PGID`): with a shared connection, killing the local `ssh` alone would leave it
running. This needs a POSIX-like login shell on the host (sh, bash, dash, zsh, ksh).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from providers.base import CommandResult, DirEntry, Transport, TransportError
from providers.streaming import CancelCheck, OutputCallback, popen_streaming

SSH = "ssh"
PGID_MARK = "runctl-pgid="


EXIT_MARK = "runctl-exit="
_EXIT_LINE = re.compile(rb"(?:^|\n)" + EXIT_MARK.encode() + rb"(\d+)\n?$")


def _unmarked(result: CommandResult) -> tuple[CommandResult, bool]:
    """The result without our two marker lines, and whether the remote command completed
    (its exit line arrived: the connection held until the end)."""
    stderr = result.stderr
    if stderr.startswith(PGID_MARK.encode()):
        stderr = stderr.partition(b"\n")[2]
    found = _EXIT_LINE.search(stderr)
    if found is not None:
        stderr = stderr[: found.start()] + (b"\n" if found.group(0).startswith(b"\n") else b"")
    return CommandResult(result.argv, result.returncode, result.stdout, stderr), found is not None


class UnknownHostKey(TransportError):
    """The host's key is in no known_hosts file: a person must decide whether to trust it."""

    def __init__(
        self,
        host: str,
        fingerprint: str,
        key_line: str,
        known_hosts: Path | None,
        key_type: str = "",
    ):
        self.host = host
        self.fingerprint = fingerprint  # "SHA256:..." as `ssh-keygen -l` prints it
        self.key_type = key_type  # "ED25519", "ECDSA", "RSA"
        self.key_line = key_line  # the known_hosts line that trusts it
        self.known_hosts = known_hosts  # where trust_host_key() will write it
        super().__init__(
            f"the host key of {host} is not known (fingerprint {fingerprint}); "
            "compare it with the machine's own (`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` "
            "there) and trust it if they match"
        )


class HostKeyChanged(TransportError):
    """The host presented a different key than the one on record: refused."""

    def __init__(self, host: str, known_hosts_file: str | None = None):
        self.host = host
        self.known_hosts_file = known_hosts_file  # the file holding the old key, when ssh says
        remove = f"ssh-keygen -R '{host}'" + (f" -f {known_hosts_file}" if known_hosts_file else "")
        super().__init__(
            f"the host key of {host} has CHANGED since it was trusted; refusing to connect "
            "(someone may be intercepting the connection, or the machine was reinstalled). "
            f"Only if you know the machine was reinstalled: `{remove}`, then connect again."
        )


@dataclass(frozen=True, slots=True)
class SshTarget:
    """`alias`, `user@host`, `host:port`, `user@host:port` or `user@[v6addr]:port`."""

    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> SshTarget:
        rest = text.strip()
        if not rest or any(c.isspace() for c in rest) or rest.startswith("-"):
            raise ValueError(
                f"not an SSH destination: {text!r} (expected alias or user@host[:port])"
            )
        user = None
        if "@" in rest:
            user, rest = rest.rsplit("@", 1)
        port = None
        if rest.startswith("["):
            host, _, tail = rest[1:].partition("]")
            if tail.startswith(":"):
                port = int(tail[1:])
        elif rest.count(":") == 1:
            host, port_text = rest.split(":")
            if not port_text.isdigit():
                raise ValueError(f"not an SSH destination: {text!r} (port must be a number)")
            port = int(port_text)
        else:
            host = rest
        return cls(host, user or None, port)

    def __str__(self) -> str:
        where = f"[{self.host}]" if ":" in self.host else self.host
        text = f"{self.user}@{where}" if self.user else where
        return f"{text}:{self.port}" if self.port else text


def default_control_dir() -> Path:
    """A short, private directory for control sockets (a socket path must stay < 104 bytes)."""
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    return base / f"runctl-ssh-{os.getuid()}"


UNREACHABLE = re.compile(
    r"Could not resolve|Connection refused|timed out|No route to host|Network is unreachable|"
    r"banner exchange|kex_exchange_identification|Name or service not known",
    re.IGNORECASE,
)


class SSHTransport(Transport):
    """Runs commands on one host with the user's OpenSSH client (see the module docstring)."""

    def __init__(
        self,
        target: str,
        *,
        name: str | None = None,
        identity_file: str | Path | None = None,
        config_file: str | Path | None = None,
        known_hosts: str | Path | None = None,
        control_dir: str | Path | None = None,
        connect_timeout: float = 10.0,
        keepalive_s: float = 15.0,
        persist_s: float = 300.0,
    ) -> None:
        self.target = SshTarget.parse(target)
        self.name = name or target
        self.label = f"ssh {self.name}"
        self.identity_file = Path(identity_file).expanduser() if identity_file else None
        self.config_file = Path(config_file).expanduser() if config_file else None
        self.known_hosts = Path(known_hosts).expanduser() if known_hosts else None
        self.control_dir = Path(control_dir) if control_dir else default_control_dir()
        self.connect_timeout = connect_timeout
        self.keepalive_s = keepalive_s
        self.persist_s = persist_s
        self._home: str | None = None
        self._resolved: dict[str, str] | None = None
        self._lock = threading.Lock()

    # -- the ssh command line ------------------------------------------------------------------
    def _base_args(self) -> list[str]:
        args = [SSH]
        if self.config_file is not None:
            args += ["-F", str(self.config_file)]
        if self.target.port is not None:
            args += ["-p", str(self.target.port)]
        if self.target.user is not None:
            args += ["-l", self.target.user]
        if self.identity_file is not None:
            args += ["-i", str(self.identity_file), "-o", "IdentitiesOnly=yes"]
        return args

    def resolved(self) -> dict[str, str]:
        """What `ssh -G` says the effective settings for this host are (no connection made)."""
        if self._resolved is None:
            try:
                done = subprocess.run(
                    [*self._base_args(), "-G", "--", self.target.host],
                    capture_output=True,
                    timeout=10,
                    stdin=subprocess.DEVNULL,
                )
            except FileNotFoundError:
                raise TransportError(
                    "the OpenSSH client `ssh` is not installed on this machine "
                    "(apt-get install openssh-client)"
                ) from None
            if done.returncode != 0:
                last = done.stderr.decode("utf-8", "replace").strip().splitlines()
                raise TransportError(
                    f"{self.label}: ssh cannot use its configuration: "
                    f"{last[-1] if last else 'ssh -G failed'}"
                )
            settings: dict[str, str] = {}
            for line in done.stdout.decode("utf-8", "replace").splitlines():
                key, _, value = line.partition(" ")
                settings.setdefault(key.lower(), value)
            self._resolved = settings
        return self._resolved

    @property
    def display_host(self) -> str:
        settings = self.resolved()
        host, port = settings.get("hostname", self.target.host), settings.get("port", "22")
        return host if port == "22" else f"[{host}]:{port}"

    def _known_hosts_files(self) -> list[str]:
        files = self.resolved().get("userknownhostsfile", "~/.ssh/known_hosts").split()
        if self.known_hosts is not None:
            files.append(str(self.known_hosts))
        return [f'"{f}"' if " " in f else f for f in files]

    def _control_path(self) -> str:
        # Transports with different key files or known_hosts must not share a master: the
        # master's host-key check is the only one made.
        options = "\0".join([*self._base_args(), *self._known_hosts_files()])
        tag = hashlib.sha1(options.encode()).hexdigest()[:8]
        return str(self.control_dir / f"{tag}-%C")

    def ssh_args(self, *, multiplex: bool = True) -> list[str]:
        """The full `ssh ... -- host` prefix (the remote command string is appended)."""
        args = [
            *self._base_args(),
            "-T",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "UserKnownHostsFile=" + " ".join(self._known_hosts_files()),
            "-o", f"ConnectTimeout={max(1, round(self.connect_timeout))}",
            "-o", f"ServerAliveInterval={max(1, round(self.keepalive_s))}",
            "-o", "ServerAliveCountMax=3",
        ]  # fmt: skip
        if multiplex:
            self.control_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            args += [
                "-o", "ControlMaster=auto",
                "-o", f"ControlPath={self._control_path()}",
                "-o", f"ControlPersist={max(1, round(self.persist_s))}",
            ]  # fmt: skip
        return [*args, "--", self.target.host]

    @staticmethod
    def remote_command(argv: Sequence[str], cwd: str | None = None) -> str:
        """The string the remote shell runs: argv quoted word by word, never interpolated."""
        if not argv:
            raise ValueError("empty command")
        command = shlex.join(argv)
        return f"cd {shlex.quote(cwd)} && {command}" if cwd else command

    # -- errors --------------------------------------------------------------------------------
    def _failure(self, result: CommandResult) -> TransportError:
        """The TransportError for an ssh that failed before the remote command completed."""
        lines = [
            line.strip()
            for line in result.stderr.decode("utf-8", "replace").splitlines()
            if line.strip()
        ]
        text = "\n".join(lines)
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or "has changed and you have" in text:
            offending = next(
                (m for line in lines if (m := re.search(r"Offending .* key in (.+):\d+$", line))),
                None,
            )
            return HostKeyChanged(self.display_host, offending.group(1) if offending else None)
        if "Host key verification failed" in text:
            return self._unknown_host_key()
        if not lines:
            return TransportError(
                f"{self.label}: the connection was lost before the command finished "
                f"(ssh exited {result.returncode})"
            )
        last = lines[-1].removeprefix("ssh: ")
        if "Permission denied" in text:
            return TransportError(
                f"{self.label}: the host refused our key ({last}); set identity_file for this "
                "host or add your key to ssh-agent"
            )
        if UNREACHABLE.search(text):
            return TransportError(f"{self.label}: cannot connect to {self.display_host}: {last}")
        return TransportError(f"{self.label}: the connection failed: {last}")

    def _unknown_host_key(self) -> TransportError:
        """Fetch the key the host offers, with a connection that sends no credentials."""
        with tempfile.TemporaryDirectory(prefix="runctl-hostkey-") as scratch:
            probe_file = Path(scratch) / "known_hosts"
            args = [
                *self._base_args(),
                "-T",
                "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=accept-new",
                "-o", f"UserKnownHostsFile={probe_file}",
                "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "UpdateHostKeys=no",
                "-o", "HashKnownHosts=no",
                "-o", f"ConnectTimeout={max(1, round(self.connect_timeout))}",
                "-o", "ControlMaster=no",
                "-o", "ControlPath=none",
                # No credentials at all: the probe stops at authentication, runs nothing.
                "-o", "PubkeyAuthentication=no",
                "-o", "PasswordAuthentication=no",
                "-o", "KbdInteractiveAuthentication=no",
                "-o", "GSSAPIAuthentication=no",
                "-o", "HostbasedAuthentication=no",
                "--", self.target.host, "true",
            ]  # fmt: skip
            with contextlib.suppress(subprocess.TimeoutExpired):
                subprocess.run(
                    args,
                    capture_output=True,
                    timeout=self.connect_timeout + 10,
                    stdin=subprocess.DEVNULL,
                )
            lines = probe_file.read_text().splitlines() if probe_file.exists() else []
            key_line = next((line for line in lines if line.strip()), "")
            if not key_line:
                return TransportError(
                    f"{self.label}: the host key of {self.display_host} is not known and could "
                    "not be read; connect once with `ssh` to check it"
                )
            listed = subprocess.run(
                ["ssh-keygen", "-l", "-E", "sha256", "-f", str(probe_file)],
                capture_output=True,
                text=True,
            )
        words = listed.stdout.split()
        fingerprint = words[1] if len(words) > 1 else "unknown"
        key_type = words[-1].strip("()") if words else ""
        return UnknownHostKey(self.display_host, fingerprint, key_line, self.known_hosts, key_type)

    # -- running commands ----------------------------------------------------------------------
    def _ssh(
        self,
        remote: str,
        *,
        argv: Sequence[str],
        input: bytes | None = None,
        timeout: float | None = 60.0,
        retry: bool = False,
        stdin_chunks: Iterable[bytes] | None = None,
        on_output: OutputCallback | None = None,
        cancel: threading.Event | CancelCheck | None = None,
    ) -> CommandResult:
        """Run a remote command string; raise TransportError when ssh itself failed.

        The remote shell first prints its process-group id on stderr (sshd makes each
        session's shell a session leader), so a cancelled or timed-out command is ended on
        the host too: with a shared connection, killing the local client would not end it."""
        marked = f"echo {PGID_MARK}$$ >&2; {remote}\nrc=$?; echo {EXIT_MARK}$rc >&2; exit $rc"
        if input is not None:
            stdin_chunks = (input,)
        attempts = 2 if retry else 1
        for attempt in range(attempts):
            result = popen_streaming(
                [*self.ssh_args(), marked],
                tuple(argv),
                stdin_chunks=stdin_chunks,
                on_output=on_output,
                merge_stderr=False,
                timeout=timeout,
                cancel=cancel,
                describe_timeout=lambda: f"{self.label}: `{shlex.join(argv)}`",
                on_abort=self._end_remote,
            )
            result, completed = _unmarked(result)
            if completed:
                return result
            failure = self._failure(result)
            dropped = type(failure) is TransportError and "cannot connect" not in str(failure)
            if attempt + 1 < attempts and dropped:
                continue  # a stale master or a drop mid-command: ssh opens a new connection
            raise failure
        raise AssertionError("unreachable")

    def _end_remote(self, stderr_head: bytes) -> None:
        found = re.search(rb"^" + PGID_MARK.encode() + rb"(\d+)$", stderr_head, re.MULTILINE)
        if found is None:
            return  # the command never started on the host
        pgid = found.group(1).decode()
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                [
                    *self.ssh_args(),
                    f"kill -TERM -- -{pgid} 2>/dev/null; sleep 1; kill -KILL -- -{pgid} 2>/dev/null; true",
                ],
                capture_output=True,
                timeout=self.connect_timeout + 5,
                stdin=subprocess.DEVNULL,
            )

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = 60.0,
        cwd: str | None = None,
    ) -> CommandResult:
        return self._ssh(self.remote_command(argv, cwd), argv=argv, input=input, timeout=timeout)

    def run_streaming(
        self,
        argv: Sequence[str],
        *,
        stdin_chunks: Iterable[bytes] | None = None,
        on_output: OutputCallback | None = None,
        merge_stderr: bool = False,
        timeout: float | None = None,
        cancel: threading.Event | CancelCheck | None = None,
        cwd: str | None = None,
    ) -> CommandResult:
        """Like `run`, with stdin fed chunk by chunk and output handed to `on_output` live.

        `merge_stderr` merges on the host (`2>&1` there), so ssh's own errors stay apart and
        are still recognised."""
        remote = self.remote_command(argv, cwd)
        if merge_stderr:
            remote = f"{{ {remote} ; }} 2>&1"
        self.check()  # a host-key question must come before a stream is half sent
        return self._ssh(
            remote,
            argv=argv,
            stdin_chunks=stdin_chunks,
            on_output=on_output,
            timeout=timeout,
            cancel=cancel,
        )

    def check(self, timeout: float | None = None) -> None:
        """Connect (or reuse the connection) and run `true`; raises the typed errors."""
        self._ssh("true", argv=("true",), timeout=timeout or self.connect_timeout + 10, retry=True)

    def _sh(self, script: str, *args: str, input: bytes | None = None) -> CommandResult:
        """A small POSIX sh script with positional arguments, retried once after a drop
        (only used for idempotent operations)."""
        argv = ["sh", "-c", script, "sh", *args]
        return self._ssh(self.remote_command(argv), argv=argv, input=input, retry=True)

    def read_from(self, path: str, offset: int, max_bytes: int) -> bytes:
        if max_bytes <= 0:
            return b""
        result = self._sh(
            '[ -f "$1" ] || exit 3; tail -c "+$2" -- "$1" | head -c "$3"',
            path,
            str(offset + 1),
            str(max_bytes),
        )
        if result.returncode == 3:
            raise FileNotFoundError(path)
        if not result.ok:
            raise TransportError(f"{self.label}: cannot read {path}: {result.describe_failure()}")
        return result.stdout

    def file_size(self, path: str) -> int | None:
        result = self._sh('[ -f "$1" ] || exit 3; wc -c < "$1"', path)
        if result.returncode == 3:
            return None
        if not result.ok:
            raise TransportError(f"{self.label}: cannot stat {path}: {result.describe_failure()}")
        return int(result.stdout.split()[0])

    def list_dir(self, path: str) -> list[DirEntry]:
        # GNU find prints size, mtime, type and name in one pass; names are NUL-terminated so
        # any file name survives.
        result = self._sh(
            '[ -d "$1" ] || exit 0; cd "$1" && '
            "find . -mindepth 1 -maxdepth 1 -printf '%s %T@ %y %f\\0'",
            path,
        )
        if not result.ok:
            raise TransportError(f"{self.label}: cannot list {path}: {result.describe_failure()}")
        entries = []
        for record in result.stdout.split(b"\0"):
            if not record:
                continue
            size, mtime, kind, name = record.split(b" ", 3)
            entries.append(
                DirEntry(
                    name.decode("utf-8", "surrogateescape"), int(size), float(mtime), kind == b"d"
                )
            )
        return entries

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        result = self._sh(
            'dir=$(dirname -- "$1") && mkdir -p -- "$dir" && tmp="$1.tmp.$$" && '
            'cat > "$tmp" && chmod "$2" "$tmp" && mv -f -- "$tmp" "$1" '
            '|| { rm -f -- "$tmp"; exit 1; }',
            path,
            f"{mode:o}",
            input=data,
        )
        if not result.ok:
            raise TransportError(f"{self.label}: cannot write {path}: {result.describe_failure()}")

    def home(self) -> str:
        if self._home is None:
            result = self._sh('printf %s "$HOME"')
            if not result.ok or not result.stdout.startswith(b"/"):
                raise TransportError(
                    f"{self.label}: cannot find the home directory: {result.describe_failure()}"
                )
            self._home = result.stdout.decode("utf-8", "surrogateescape")
        return self._home

    def close(self) -> None:
        """Stop the shared connection (the master); the next command opens a new one."""
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                [*self.ssh_args()[:-2], "-O", "exit", "--", self.target.host],
                capture_output=True,
                timeout=10,
                stdin=subprocess.DEVNULL,
            )

    def master_pid(self) -> int | None:
        """The pid of the shared connection's ssh process, if one is up (for tests/diagnosis)."""
        try:
            done = subprocess.run(
                [*self.ssh_args()[:-2], "-O", "check", "--", self.target.host],
                capture_output=True,
                timeout=10,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        found = re.search(rb"pid=(\d+)", done.stderr)
        return int(found.group(1)) if done.returncode == 0 and found else None


def trust_host_key(error: UnknownHostKey, known_hosts: str | Path | None = None) -> Path:
    """Remember the host key from `error` in runctl's known_hosts file (trust on first use).

    Call only after a person compared `error.fingerprint`. Returns the file written."""
    path = Path(known_hosts) if known_hosts is not None else error.known_hosts
    if path is None:
        raise ValueError("no known_hosts file to write: pass one to SSHTransport(known_hosts=)")
    path.parent.mkdir(parents=True, exist_ok=True)
    line = error.key_line.strip()
    existing = path.read_text().splitlines() if path.exists() else []
    if line not in existing:
        with path.open("a") as handle:
            if existing and not path.read_bytes().endswith(b"\n"):
                handle.write("\n")
            handle.write(line + "\n")
    os.chmod(path, 0o600)
    return path
