"""The operations log: every operation (launch, stop, sync, install, cloud/SSH call batches) as
one JSON line under the state dir — start, duration, target, result — rotated by size.

It answers "what is it doing right now, and what failed?": the Events view shows the recent
entries, including operations still in progress. With debug on, entries carry their detail
(commands run, API calls).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROTATE_BYTES = 5 * 1024 * 1024
KEEP_ROTATED = 3


@dataclass(slots=True)
class Operation:
    name: str
    target: str
    started_at: float
    duration_s: float | None = None
    result: str = "running"  # "running" | "ok" | "error"
    message: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self, debug: bool) -> dict[str, Any]:
        data = {
            "op": self.name,
            "target": self.target,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "result": self.result,
            "message": self.message,
        }
        if debug and self.detail:
            data["detail"] = self.detail
        return data


class OperationLog:
    def __init__(self, path: Path, debug: bool = False, keep_in_memory: int = 500) -> None:
        self.path = path
        self.debug = debug
        self.recent: deque[Operation] = deque(maxlen=keep_in_memory)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Operation], None]] = []
        self._load_tail()

    def subscribe(self, listener: Callable[[Operation], None]) -> None:
        self._listeners.append(listener)

    @contextmanager
    def operation(self, name: str, target: str, **detail: Any) -> Iterator[Operation]:
        """Record an operation around a block; an exception marks it failed and propagates."""
        op = Operation(name, target, time.time(), detail=dict(detail))
        start = time.monotonic()
        self._notify(op)
        try:
            yield op
        except BaseException as err:
            op.result = "error"
            op.message = op.message or str(err) or type(err).__name__
            raise
        else:
            if op.result == "running":
                op.result = "ok"
        finally:
            op.duration_s = round(time.monotonic() - start, 4)
            self._write(op)

    def record(self, name: str, target: str, result: str, message: str = "", **detail) -> None:
        op = Operation(name, target, time.time(), 0.0, result, message, dict(detail))
        self._write(op)

    def _notify(self, op: Operation) -> None:
        with self._lock:
            if op not in self.recent:
                self.recent.append(op)
        for listener in list(self._listeners):
            listener(op)

    def _write(self, op: Operation) -> None:
        line = json.dumps(op.to_json(self.debug), default=str) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._rotate_if_needed(len(line))
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line)
        self._notify(op)

    def _rotate_if_needed(self, incoming: int) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size + incoming <= ROTATE_BYTES:
            return
        for index in range(KEEP_ROTATED - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    def _load_tail(self, max_bytes: int = 256 * 1024) -> None:
        """Show the last session's operations too: read the end of the file, not all of it."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - max_bytes))
                raw = handle.read()
        except FileNotFoundError:
            return
        for line in (
            raw.decode("utf-8", "replace").splitlines()[1:]
            if len(raw) >= max_bytes
            else (raw.decode("utf-8", "replace").splitlines())
        ):
            try:
                data = json.loads(line)
                self.recent.append(
                    Operation(
                        data["op"],
                        data.get("target", ""),
                        float(data["started_at"]),
                        data.get("duration_s"),
                        data.get("result", "ok"),
                        data.get("message", ""),
                    )
                )
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a crash is skipped, not fatal
