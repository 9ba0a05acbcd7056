"""What every provider and transport offers.

A Provider knows machines (list, launch, start, stop, terminate, price); a Transport talks to
one machine (run a command, read a file from an offset, list a directory, receive bytes). The
run protocol (`providers.runproto`) is written once against `Transport`, so local runs, SSH
runs and SSM runs are the same code above the transport.

The API is synchronous on purpose: the dashboard calls it from thread workers, and the
headless commands and tests call it directly, with no event loop to share.
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field


class ProviderError(Exception):
    """A failure a person can act on: `str(err)` says what failed, why, and what to do."""


class TransportError(ProviderError):
    """The machine could not be reached or the command could not be run."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    def describe_failure(self) -> str:
        """One line naming the command and the last line it wrote to stderr."""
        err = self.stderr.decode("utf-8", "replace").strip().splitlines()
        last = err[-1] if err else "no error output"
        return f"`{shlex.join(self.argv)}` exited {self.returncode}: {last}"


@dataclass(frozen=True, slots=True)
class DirEntry:
    name: str
    size: int
    mtime: float
    is_dir: bool


@dataclass(slots=True)
class Instance:
    """One machine as the Instances pane shows it."""

    provider: str
    id: str
    name: str | None = None
    type: str | None = None
    gpu: str | None = None
    state: str = "unknown"
    lifecycle: str | None = None  # "spot" | "on-demand" | None
    region: str | None = None
    launched_at: str | None = None  # ISO 8601, UTC
    uptime_s: float | None = None
    price_per_hour: float | None = None
    accrued_usd: float | None = None
    warnings: list[str] = field(default_factory=list)
    address: str | None = None
    reachable: bool | None = None

    def to_json(self) -> dict:
        return {
            "provider": self.provider,
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "gpu": self.gpu,
            "state": self.state,
            "lifecycle": self.lifecycle,
            "region": self.region,
            "launched_at": self.launched_at,
            "uptime_s": self.uptime_s,
            "price_per_hour": self.price_per_hour,
            "accrued_usd": self.accrued_usd,
            "warnings": list(self.warnings),
        }


class Transport(ABC):
    """Talks to one machine. Paths are POSIX paths on that machine."""

    #: a short label for messages and the operations log ("local", "ssh gpu-box", ...)
    label: str = "machine"

    @abstractmethod
    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = 60.0,
        cwd: str | None = None,
    ) -> CommandResult:
        """Run argv on the machine (no shell interpolation of the arguments)."""

    @abstractmethod
    def read_from(self, path: str, offset: int, max_bytes: int) -> bytes:
        """Bytes of `path` from `offset`, at most `max_bytes`; b"" when there is nothing new.

        Raises FileNotFoundError when the file does not exist.
        """

    @abstractmethod
    def file_size(self, path: str) -> int | None:
        """Size in bytes, or None when the file does not exist."""

    @abstractmethod
    def list_dir(self, path: str) -> list[DirEntry]:
        """Entries of a directory; [] when it does not exist."""

    @abstractmethod
    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write a whole file atomically (temp file + rename), creating parent directories."""

    @abstractmethod
    def home(self) -> str:
        """The home directory of the user we act as on the machine."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the transport may be used again afterwards."""


class Provider(ABC):
    """Knows machines of one kind."""

    name: str = "provider"

    @abstractmethod
    def list_instances(self) -> list[Instance]: ...

    @abstractmethod
    def transport_for(self, instance: Instance) -> Transport: ...
