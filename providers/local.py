"""The local machine: a provider with one instance (this host) and a subprocess transport."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from providers.base import CommandResult, DirEntry, Instance, Provider, Transport, TransportError

LOCAL_PROVIDER = "local"


class LocalTransport(Transport):
    label = "local"

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = 60.0,
        cwd: str | None = None,
    ) -> CommandResult:
        try:
            done = subprocess.run(
                list(argv),
                input=input,
                capture_output=True,
                timeout=timeout,
                cwd=cwd,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except FileNotFoundError as err:
            raise TransportError(
                f"cannot run {argv[0]!r} on this machine: {err.strerror}"
            ) from None
        except subprocess.TimeoutExpired:
            raise TransportError(f"`{' '.join(argv)}` took longer than {timeout:.0f} s") from None
        return CommandResult(tuple(argv), done.returncode, done.stdout, done.stderr)

    def read_from(self, path: str, offset: int, max_bytes: int) -> bytes:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(max_bytes)

    def file_size(self, path: str) -> int | None:
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            return None

    def list_dir(self, path: str) -> list[DirEntry]:
        entries = []
        try:
            with os.scandir(path) as scan:
                for entry in scan:
                    try:
                        info = entry.stat()
                    except FileNotFoundError:
                        continue  # deleted between listing and stat
                    entries.append(
                        DirEntry(entry.name, info.st_size, info.st_mtime, entry.is_dir())
                    )
        except (FileNotFoundError, NotADirectoryError):
            return []
        return entries

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def home(self) -> str:
        return str(Path.home())


class LocalProvider(Provider):
    """This machine, always there, always $0/h."""

    name = LOCAL_PROVIDER

    def __init__(self) -> None:
        self._transport = LocalTransport()

    def list_instances(self) -> list[Instance]:
        return [local_instance()]

    def transport_for(self, instance: Instance) -> Transport:
        return self._transport


def local_instance() -> Instance:
    return Instance(
        provider=LOCAL_PROVIDER,
        id=socket.gethostname(),
        name="this machine",
        type=f"{os.cpu_count() or 1} CPU",
        gpu=None,
        state="running",
        price_per_hour=0.0,
        accrued_usd=0.0,
        reachable=True,
    )
