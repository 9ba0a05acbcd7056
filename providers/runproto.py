"""The one run protocol, written once against `Transport`.

Every run is a directory `<runs_root>/<run_id>/` on the host where it runs, managed by
`launcher.sh` (the same script locally, over SSH and over SSM). The truth lives on the host;
the local store only mirrors it, so a TUI restart loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from providers.base import Transport, TransportError

# Read beside this module (importlib.resources would cost ~10 ms of start-up for one file).
LAUNCHER_SOURCE: bytes = Path(__file__).with_name("launcher.sh").read_bytes()
LAUNCHER_SHA = hashlib.sha256(LAUNCHER_SOURCE).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class RunState:
    """What the launcher says about a run directory."""

    kind: str  # "running" | "starting" | "exited" | "lost" | "missing"
    pgid: int | None = None
    exit_code: int | None = None

    @property
    def alive(self) -> bool:
        return self.kind in ("running", "starting")

    @classmethod
    def parse(cls, text: str) -> RunState:
        words = text.split()
        if not words:
            return cls("lost")
        kind = words[0]
        number = int(words[1]) if len(words) > 1 and words[1].lstrip("-").isdigit() else None
        if kind == "running":
            return cls("running", pgid=number)
        if kind == "exited":
            return cls("exited", exit_code=number)
        if kind in ("starting", "lost", "missing"):
            return cls(kind)
        return cls("lost")


@dataclass(slots=True)
class RunSpec:
    """Everything needed to start one run on one host."""

    run_id: str
    run_dir: str
    workdir: str  # the project root on that host; the script path is relative to it
    checkpoint_dir: str
    argv: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        """The variables the launcher gives the script (shown by the dry-run)."""
        return {
            "RUNCTL_RUN_ID": self.run_id,
            "RUNCTL_RUN_DIR": self.run_dir,
            "RUNCTL_CHECKPOINT_DIR": self.checkpoint_dir,
            "RUNCTL_PROJECT_ROOT": self.workdir,
            "PYTHONUNBUFFERED": "1",
        }

    @property
    def log_path(self) -> str:
        return f"{self.run_dir}/output.log"


def new_run_id(now: float | None = None) -> str:
    """Sortable by start time, unique across hosts: 20261123-052301-3fa9c2."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"{stamp}-{os.urandom(3).hex()}"


class RunProtocol:
    """Start, inspect, signal and stop runs on one host through its transport."""

    def __init__(self, transport: Transport, launcher_path: str | None = None) -> None:
        self.transport = transport
        self._launcher_path = launcher_path

    # The launcher must exist on the host before any call; remote hosts get a copy named by
    # its hash, so an upgraded launcher never overwrites one a running supervisor executes.
    def launcher_path(self) -> str:
        if self._launcher_path is None:
            path = f"{self.transport.home()}/.runctl/launcher-{LAUNCHER_SHA}.sh"
            if self.transport.file_size(path) != len(LAUNCHER_SOURCE):
                self.transport.write_file(path, LAUNCHER_SOURCE, mode=0o755)
            self._launcher_path = path
        return self._launcher_path

    def _launcher(self, *args: str, timeout: float = 30.0) -> str:
        result = self.transport.run(["sh", self.launcher_path(), *args], timeout=timeout)
        if not result.ok:
            raise TransportError(
                f"run protocol on {self.transport.label}: {result.describe_failure()}"
            )
        return result.text()

    def start(self, spec: RunSpec) -> int:
        """Start the run detached; returns its process-group id."""
        meta = json.dumps(spec.meta, sort_keys=True)
        out = self._launcher(
            "start", spec.run_dir, spec.workdir, spec.checkpoint_dir, meta, *spec.argv
        )
        try:
            return int(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise TransportError(
                f"run protocol on {self.transport.label}: the launcher printed {out!r}, "
                "expected a process-group id"
            ) from None

    def status(self, run_dir: str) -> RunState:
        return RunState.parse(self._launcher("status", run_dir))

    def list_runs(self, runs_root: str) -> dict[str, RunState]:
        states: dict[str, RunState] = {}
        for line in self._launcher("list", runs_root).splitlines():
            run_id, _, rest = line.partition(" ")
            if run_id:
                states[run_id] = RunState.parse(rest)
        return states

    def signal(self, run_dir: str, signal_name: str) -> bool:
        return self._launcher("signal", run_dir, signal_name).strip() == "sent"

    def read_meta(self, run_dir: str) -> dict[str, Any]:
        try:
            raw = self.transport.read_from(f"{run_dir}/meta.json", 0, 1 << 20)
            value = json.loads(raw.decode("utf-8", "replace") or "{}")
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return value if isinstance(value, dict) else {}

    def running_in_project(self, runs_root: str, workdir: str) -> list[tuple[str, dict]]:
        """Runs alive under `runs_root` whose project is `workdir` (one training per project)."""
        found = []
        for run_id, state in sorted(self.list_runs(runs_root).items()):
            if not state.alive:
                continue
            meta = self.read_meta(f"{runs_root}/{run_id}")
            if meta.get("project_root") == workdir:
                found.append((run_id, meta))
        return found

    def stop(
        self,
        run_dir: str,
        grace_s: float,
        on_tick: Callable[[float], None] | None = None,
        poll_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> tuple[RunState, bool]:
        """SIGTERM the run's group, wait up to `grace_s` (calling `on_tick(seconds_left)`), then
        SIGKILL. Returns the final state and whether SIGKILL was needed."""
        state = self.status(run_dir)
        if not state.alive:
            return state, False
        self.signal(run_dir, "TERM")
        deadline = clock() + grace_s
        while (left := deadline - clock()) > 0:
            if on_tick is not None:
                on_tick(left)
            state = self.status(run_dir)
            if not state.alive:
                return state, False
            sleep(min(poll_s, max(left, 0.0)))
        killed = self.signal(run_dir, "KILL")
        # The supervisor writes exit_code as soon as it reaps the child; give it a moment.
        settle = clock() + 10.0
        state = self.status(run_dir)
        while state.alive and clock() < settle:
            sleep(0.05)
            state = self.status(run_dir)
        return state, killed


def describe_argv(argv: Sequence[str]) -> str:
    return shlex.join(argv)
