"""The run store: SQLite in WAL mode under the state dir, mirroring what the hosts say.

Every write is one short `BEGIN IMMEDIATE` transaction, and every process has its own
connection with a busy timeout, so two `runctl-tui` processes can write at once without
corrupting the file or losing a write. A killed TUI loses at most the write in flight.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

ACTIVE_STATUSES = ("starting", "running", "stopping")
FINAL_STATUSES = ("finished", "failed", "stopped", "lost")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_info (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    provider TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    project_root TEXT NOT NULL,
    script TEXT NOT NULL,
    args TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    status TEXT NOT NULL,
    exit_code INTEGER,
    run_dir TEXT NOT NULL,
    checkpoint_dir TEXT NOT NULL,
    parent_run_id TEXT,
    parent_checkpoint TEXT,
    stop_requested_at REAL,
    last_epoch REAL,
    total_epochs INTEGER,
    last_step INTEGER,
    last_loss REAL,
    last_checkpoint_at REAL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_instance ON runs (provider, instance_id, started_at);
CREATE TABLE IF NOT EXISTS launch_defaults (
    project_root TEXT PRIMARY KEY,
    script TEXT NOT NULL,
    args TEXT NOT NULL,
    instance_key TEXT
);
"""


class StoreError(Exception):
    pass


@dataclass(slots=True)
class Run:
    id: str
    host: str
    provider: str
    instance_id: str
    project_root: str
    script: str  # relative to project_root, POSIX separators
    args: list[str]
    started_at: float
    status: str
    run_dir: str
    checkpoint_dir: str
    ended_at: float | None = None
    exit_code: int | None = None
    parent_run_id: str | None = None
    parent_checkpoint: str | None = None
    stop_requested_at: float | None = None
    last_epoch: float | None = None
    total_epochs: int | None = None
    last_step: int | None = None
    last_loss: float | None = None
    last_checkpoint_at: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def log_path(self) -> str:
        return f"{self.run_dir}/output.log"

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "provider": self.provider,
            "script": self.script,
            "args": list(self.args),
            "status": self.status,
            "started": _iso(self.started_at),
            "ended": _iso(self.ended_at),
            "exit_code": self.exit_code,
            "last_epoch": self.last_epoch,
            "total_epochs": self.total_epochs,
            "last_loss": self.last_loss,
            "parent_run_id": self.parent_run_id,
            "parent_checkpoint": self.parent_checkpoint,
            "run_dir": self.run_dir,
        }


_COLUMNS = [f.name for f in fields(Run) if f.name != "extra"]


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class RunStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                str(path), timeout=10.0, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA busy_timeout = 10000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as err:
            raise StoreError(
                f"the run store {path} cannot be opened: {err}. Move it aside to start afresh "
                "(runs on hosts are found again from their run directories)."
            ) from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._transaction() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            row = db.execute("SELECT version FROM schema_info").fetchone()
            if row is None:
                db.execute("INSERT INTO schema_info (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise StoreError(
                    f"the run store {self.path} was written by a newer runctl-tui "
                    f"(schema {row[0]}, this one knows {SCHEMA_VERSION}); upgrade runctl-tui"
                )

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self._db.execute("SELECT version FROM schema_info").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writes ----------------------------------------------------------------------------------
    def add_run(self, run: Run) -> None:
        values = [getattr(run, name) for name in _COLUMNS]
        values[_COLUMNS.index("args")] = json.dumps(run.args)
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self._transaction() as db:
            db.execute(
                f"INSERT OR REPLACE INTO runs ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
                values,
            )

    def update_run(self, run_id: str, **changes: Any) -> None:
        unknown = set(changes) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown run fields: {sorted(unknown)}")
        if not changes:
            return
        if "args" in changes:
            changes["args"] = json.dumps(changes["args"])
        assignments = ", ".join(f"{name} = ?" for name in changes)
        with self._transaction() as db:
            db.execute(f"UPDATE runs SET {assignments} WHERE id = ?", [*changes.values(), run_id])

    def remember_launch(
        self, project_root: str, script: str, args: str, instance_key: str | None
    ) -> None:
        """The launch dialog opens with the last values used in this project."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO launch_defaults VALUES (?, ?, ?, ?)",
                (project_root, script, args, instance_key),
            )

    def launch_defaults(self, project_root: str) -> dict[str, str]:
        with self._lock:
            row = self._db.execute(
                "SELECT script, args, instance_key FROM launch_defaults WHERE project_root = ?",
                (project_root,),
            ).fetchone()
        if row is None:
            return {}
        return {"script": row[0], "args": row[1], "instance_key": row[2] or ""}

    # -- reads -----------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> Run | None:
        rows = self._select("WHERE id = ?", (run_id,))
        return rows[0] if rows else None

    def runs(
        self,
        provider: str | None = None,
        instance_id: str | None = None,
        statuses: Sequence[str] | None = None,
        limit: int = 500,
    ) -> list[Run]:
        """Runs, newest first, optionally of one instance and/or in some statuses."""
        clauses, params = [], []
        if provider is not None:
            clauses.append("provider = ?")
            params.append(provider)
        if instance_id is not None:
            clauses.append("instance_id = ?")
            params.append(instance_id)
        if statuses:
            clauses.append(f"status IN ({', '.join('?' for _ in statuses)})")
            params.extend(statuses)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._select(f"{where} ORDER BY started_at DESC LIMIT ?", (*params, limit))

    def _select(self, tail: str, params: Sequence[Any]) -> list[Run]:
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM runs {tail}", params)
            result = []
            for row in rows.fetchall():
                data = dict(zip(_COLUMNS, row, strict=True))
                data["args"] = json.loads(data["args"])
                result.append(Run(**data))
            return result
