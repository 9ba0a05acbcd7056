"""`runctl-tui sync HOST [--dry-run] [--json]`: sync the project to a `[[hosts]]` machine.

`hosts_provider(settings)` and `host_sync(settings, root, provider, host).run(...)` are the
same steps the dashboard's sync key takes, so the two can never disagree on where code goes.

Exit codes: 0 synced (or nothing to do, or a dry-run); 1 the sync itself failed (the host keeps
its previous state; run it again); 2 the host is not configured, cannot be reached, or its key
is unknown or changed — with one line on stderr saying which and what to do.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.project import project_name
from app.sync import (
    ProgressCallback,
    SyncError,
    SyncResult,
    default_cache_path,
    describe_plan,
    remote_project_dir,
    sync_project,
)
from providers.base import Transport, TransportError
from providers.hosts import HostsProvider
from providers.ssh import UnknownHostKey

EXIT_OK = 0
EXIT_SYNC_FAILED = 1
EXIT_HOST = 2


def known_hosts_path(state_dir: Path) -> Path:
    """runctl's own known_hosts file (keys the user trusted in runctl), under the state dir."""
    return Path(state_dir) / "ssh" / "known_hosts"


def sync_options(settings: Any) -> dict[str, Any]:
    """include / exclude / remote_dir from `[sync]` when the settings have it, else defaults."""
    section = getattr(settings, "sync", None)
    checkpoint_dir = getattr(getattr(settings, "train", None), "checkpoint_subdir", "checkpoints")
    return {
        "include": list(getattr(section, "include", None) or []),
        "exclude": list(getattr(section, "exclude", None) or []),
        "remote_dir": getattr(section, "remote_dir", None) or None,
        "output_dirs": [checkpoint_dir or "checkpoints", "runs"],
    }


def ssh_config_file(settings: Any) -> str | None:
    """`[ssh] config_file` when the settings have it; None = the user's ~/.ssh/config."""
    return getattr(getattr(settings, "ssh", None), "config_file", None) or None


@dataclass(slots=True)
class HostSync:
    """Everything needed to sync this project to one machine (the dashboard's sync key and the
    CLI use the same one)."""

    host: str
    transport: Transport
    remote_dir: str
    options: dict[str, Any]
    cache_path: Path
    project_root: Path

    def run(
        self,
        *,
        dry_run: bool = False,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | Callable[[], bool] | None = None,
    ) -> SyncResult:
        return sync_project(
            self.transport,
            self.project_root,
            self.remote_dir,
            include=self.options["include"],
            exclude=self.options["exclude"],
            output_dirs=self.options["output_dirs"],
            cache_path=self.cache_path,
            dry_run=dry_run,
            on_progress=on_progress,
            cancel=cancel,
        )


def hosts_provider(settings: Any) -> HostsProvider:
    """The `[[hosts]]` provider with runctl's known_hosts and the configured ssh config."""
    return HostsProvider(
        settings.hosts,
        known_hosts=known_hosts_path(settings.state_dir),
        config_file=ssh_config_file(settings),
    )


def host_sync(settings: Any, project_root: Path, provider: HostsProvider, host: str) -> HostSync:
    """Resolve the remote project dir (one SSH round trip for the home dir) and the options.

    Raises TransportError (unknown host name, unreachable, host key unknown or changed)."""
    record = provider.record(host)
    return transport_sync(
        settings, project_root, provider.transport(host), host, record.remote_root
    )


def transport_sync(
    settings: Any,
    project_root: Path,
    transport: Transport,
    host: str,
    remote_root: str | None = None,
) -> HostSync:
    """The sync target of any machine reached through `transport` (an EC2 instance over SSH
    or SSM too): the project's directory there, the options and the local manifest cache."""
    options = sync_options(settings)
    remote_dir = remote_project_dir(
        transport.home(), project_name(project_root), remote_root, options["remote_dir"]
    )
    cache_path = default_cache_path(settings.cache_dir, project_root, host, remote_dir)
    return HostSync(host, transport, remote_dir, options, cache_path, project_root)


def sync_main(
    settings: Any, project_root: Path, host_name: str, dry_run: bool, as_json: bool
) -> int:
    provider = hosts_provider(settings)

    def fail(code: int, message: str) -> int:
        print(f"runctl-tui sync: {' '.join(message.split())}", file=sys.stderr)
        return code

    try:
        target = host_sync(settings, project_root, provider, host_name)
        result = target.run(dry_run=dry_run)
    except UnknownHostKey as err:
        return fail(
            EXIT_HOST,
            f"{host_name}: {err}. To trust it: accept it in the dashboard, or connect once with "
            f"`ssh {provider.record(host_name).ssh}` and compare the fingerprint.",
        )
    except SyncError as err:
        return fail(EXIT_SYNC_FAILED, f"{host_name}: {err}")
    except TransportError as err:  # unreachable, refused key, changed key, not configured
        return fail(EXIT_HOST, str(err))
    # The shared connection is left to expire by itself (ControlPersist): the dashboard may be
    # using the same one right now.

    if as_json:
        print(json.dumps(result.to_json(host_name)))
    else:
        sent, deleted = ("Would send", "would delete") if dry_run else ("Sent", "deleted")
        for line in describe_plan(result.plan):
            print(line)
        print(
            f"{sent} {len(result.plan.upload)} file(s), {deleted} {len(result.plan.delete)} "
            f"on {host_name}:{target.remote_dir} in {result.seconds:.2f} s"
            + ("" if dry_run else f" ({result.bytes_sent:,} bytes on the wire)")
        )
    return EXIT_OK
