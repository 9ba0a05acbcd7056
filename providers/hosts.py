"""Machines the user listed by hand (`[[hosts]]` in runctl.toml), reached over SSH.

The provider takes plain records (a `HostRecord`, a dict, or any object with the same
attributes, such as the app's `HostSettings`) so it never imports the app. Each host gets one
`SSHTransport`, kept for the provider's life so its connection is shared by everything that
talks to that host. Reachability is a real `true` run over SSH, bounded by `check_timeout_s`
and done for all hosts in parallel; the last result per host is kept, with the typed error,
so the dashboard can turn an `UnknownHostKey` into its trust question.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers.base import Instance, Provider, Transport, TransportError
from providers.ssh import HostKeyChanged, SSHTransport, UnknownHostKey, trust_host_key

SSH_PROVIDER = "ssh"

REACHABLE = "reachable"
UNREACHABLE = "unreachable"
UNKNOWN_HOST_KEY = "unknown host key"
HOST_KEY_CHANGED = "host key changed"


@dataclass(frozen=True, slots=True)
class HostRecord:
    """One `[[hosts]]` entry."""

    name: str
    ssh: str  # an ~/.ssh/config alias, or user@host[:port]
    identity_file: str | None = None
    gpu: str | None = None
    price_per_hour: float = 0.0
    remote_root: str | None = None  # where projects go on that host; default ~/runctl

    @classmethod
    def of(cls, value: HostRecord | Mapping[str, Any] | Any) -> HostRecord:
        if isinstance(value, HostRecord):
            return value
        get = value.get if isinstance(value, Mapping) else lambda k, d=None: getattr(value, k, d)
        return cls(
            name=str(get("name")),
            ssh=str(get("ssh")),
            identity_file=get("identity_file"),
            gpu=get("gpu"),
            price_per_hour=float(get("price_per_hour", 0.0) or 0.0),
            remote_root=get("remote_root"),
        )


@dataclass(frozen=True, slots=True)
class HostCheck:
    """The last reachability check of one host."""

    name: str
    state: str  # REACHABLE | UNREACHABLE | UNKNOWN_HOST_KEY | HOST_KEY_CHANGED
    message: str  # "" when reachable, else what failed and what to do
    error: TransportError | None
    checked_at: float  # time.time()
    seconds: float

    @property
    def reachable(self) -> bool:
        return self.state == REACHABLE


class HostsProvider(Provider):
    """The `[[hosts]]` machines; see the module docstring."""

    name = SSH_PROVIDER

    def __init__(
        self,
        hosts: Iterable[HostRecord | Mapping[str, Any] | Any],
        *,
        known_hosts: str | Path | None = None,
        config_file: str | Path | None = None,
        control_dir: str | Path | None = None,
        check_timeout_s: float = 8.0,
    ) -> None:
        self.records = {record.name: record for record in map(HostRecord.of, hosts)}
        self.known_hosts = Path(known_hosts) if known_hosts else None
        self.config_file = config_file
        self.control_dir = control_dir
        self.check_timeout_s = check_timeout_s
        self._transports: dict[str, SSHTransport] = {}
        self.checks: dict[str, HostCheck] = {}

    def record(self, name: str) -> HostRecord:
        try:
            return self.records[name]
        except KeyError:
            known = ", ".join(sorted(self.records)) or "none"
            raise TransportError(
                f"no host named {name!r} in [[hosts]] of runctl.toml (configured: {known})"
            ) from None

    def transport(self, name: str) -> SSHTransport:
        """The one transport of host `name` (created on first use)."""
        if name not in self._transports:
            record = self.record(name)
            self._transports[name] = SSHTransport(
                record.ssh,
                name=record.name,
                identity_file=record.identity_file,
                config_file=self.config_file,
                known_hosts=self.known_hosts,
                control_dir=self.control_dir,
                connect_timeout=min(10.0, self.check_timeout_s),
            )
        return self._transports[name]

    def transport_for(self, instance: Instance) -> Transport:
        return self.transport(instance.id)

    def check(self, name: str) -> HostCheck:
        """Run `true` on the host (reusing its connection when up), bounded in time."""
        started = time.monotonic()
        try:
            self.transport(name).check(timeout=self.check_timeout_s)
            state, message, error = REACHABLE, "", None
        except UnknownHostKey as err:
            state, message, error = UNKNOWN_HOST_KEY, str(err), err
        except HostKeyChanged as err:
            state, message, error = HOST_KEY_CHANGED, str(err), err
        except TransportError as err:
            state, message, error = UNREACHABLE, str(err), err
        result = HostCheck(name, state, message, error, time.time(), time.monotonic() - started)
        self.checks[name] = result
        return result

    def check_all(self) -> dict[str, HostCheck]:
        """Check every host at once; takes about as long as the slowest (bounded)."""
        if not self.records:
            return {}
        with ThreadPoolExecutor(max_workers=min(16, len(self.records))) as pool:
            return dict(zip(self.records, pool.map(self.check, self.records), strict=True))

    def list_instances(self, check: bool = True) -> list[Instance]:
        """One row per host; `check=False` shows the last known state without connecting."""
        checks = self.check_all() if check else self.checks
        rows = []
        for name, record in self.records.items():
            result = checks.get(name)
            rows.append(
                Instance(
                    provider=SSH_PROVIDER,
                    id=name,
                    name=name,
                    type=record.ssh,
                    gpu=record.gpu,
                    state=result.state if result else "unknown",
                    price_per_hour=record.price_per_hour,
                    warnings=[result.message] if result and result.message else [],
                    address=record.ssh,
                    reachable=result.reachable if result else None,
                )
            )
        return rows

    def trust(self, error: UnknownHostKey) -> Path:
        """Remember the key from an UnknownHostKey the user accepted (in `known_hosts`)."""
        return trust_host_key(error, self.known_hosts)

    def close(self) -> None:
        for transport in self._transports.values():
            transport.close()
