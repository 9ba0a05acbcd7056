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

SCHEMA_VERSION = 2
# How long a write waits for another process's write to finish before it fails.
_BUSY_TIMEOUT_S = 10.0

ACTIVE_STATUSES = ("starting", "running", "stopping")
# interrupted: stopped because EC2 reclaimed its spot instance (app/spot_interruptions.py)
FINAL_STATUSES = ("finished", "failed", "stopped", "lost", "interrupted")

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

# Steps from version N-1 to N, run in order inside the opening transaction: a database written
# by an older runctl-tui keeps its runs and gains what is new.
_MIGRATIONS = {
    # 2: state intervals of cloud instances, for money spent across stop / start.
    2: """
CREATE TABLE IF NOT EXISTS instance_states (
    instance_id TEXT NOT NULL,
    region TEXT,
    state TEXT NOT NULL,
    since REAL NOT NULL,
    recorded_at REAL NOT NULL,
    rate REAL,
    storage_gb REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS instance_states_by_instance ON instance_states (instance_id, since);
""",
}


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


@dataclass(frozen=True, slots=True)
class InstanceState:
    """One state interval of a cloud instance: `state` from `since` until the next row's
    `since` (or now). `recorded_at` is when runctl saw it; `rate` ($/h, None when unknown) and
    `storage_gb` (its EBS volumes) are the latest known while this row is the instance's last."""

    instance_id: str
    region: str | None
    state: str
    since: float
    recorded_at: float
    rate: float | None = None
    storage_gb: float = 0.0


_STATE_COLUMNS = [f.name for f in fields(InstanceState)]


def _execute_script(db: sqlite3.Connection, script: str) -> None:
    # Not `executescript`: it commits first, and this runs inside the opening transaction.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _switch_to_wal(db: sqlite3.Connection, deadline: float) -> None:
    # SQLite does not call the busy handler for a journal-mode change: while another process
    # opens the same new file, the switch fails at once with "database is locked". Retry it.
    pause = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


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
                str(path), timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            _switch_to_wal(self._db, deadline=time.monotonic() + _BUSY_TIMEOUT_S)
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
            _execute_script(db, _SCHEMA)
            row = db.execute("SELECT version FROM schema_info").fetchone()
            if row is None:
                db.execute("INSERT INTO schema_info (version) VALUES (1)")
                version = 1
            else:
                version = row[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the run store {self.path} was written by a newer runctl-tui "
                    f"(schema {version}, this one knows {SCHEMA_VERSION}); upgrade runctl-tui"
                )
            for step in range(version + 1, SCHEMA_VERSION + 1):
                _execute_script(db, _MIGRATIONS[step])
            if version < SCHEMA_VERSION:
                db.execute("UPDATE schema_info SET version = ?", (SCHEMA_VERSION,))

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

    def record_instance_states(self, states: Sequence[InstanceState]) -> list[InstanceState]:
        """Append each state that differs from its instance's last recorded one; when it is
        the same, only refresh that row's rate and storage. One transaction, deciding on what
        is in the file: two processes seeing the same change record it once. Returns the
        states appended."""
        appended = []
        with self._transaction() as db:
            for item in states:
                last = db.execute(
                    "SELECT rowid, state, rate, storage_gb FROM instance_states "
                    "WHERE instance_id = ? ORDER BY since DESC, rowid DESC LIMIT 1",
                    (item.instance_id,),
                ).fetchone()
                if last is None or last[1] != item.state:
                    values = [getattr(item, name) for name in _STATE_COLUMNS]
                    db.execute(
                        f"INSERT INTO instance_states ({', '.join(_STATE_COLUMNS)}) "
                        f"VALUES ({', '.join('?' for _ in _STATE_COLUMNS)})",
                        values,
                    )
                    appended.append(item)
                elif (last[2], last[3]) != (item.rate, item.storage_gb):
                    db.execute(
                        "UPDATE instance_states SET rate = ?, storage_gb = ? WHERE rowid = ?",
                        (item.rate, item.storage_gb, last[0]),
                    )
        return appended

    # -- reads -----------------------------------------------------------------------------------
    def instance_histories(
        self, instance_ids: Sequence[str] = (), live_since: float | None = None
    ) -> dict[str, list[InstanceState]]:
        """State intervals, oldest first, of the given instances and (with `live_since`) of
        every instance that changed state since then or whose last state is not final
        (terminated, gone): what "this month" has to count."""
        clauses, params = [], []
        if instance_ids:
            clauses.append(f"instance_id IN ({', '.join('?' for _ in instance_ids)})")
            params.extend(instance_ids)
        if live_since is not None:
            clauses.append(
                "instance_id IN (SELECT instance_id FROM (SELECT instance_id, state, since, "
                "ROW_NUMBER() OVER (PARTITION BY instance_id ORDER BY since DESC, rowid DESC) "
                "AS newest FROM instance_states) WHERE newest = 1 AND "
                "(since >= ? OR state NOT IN ('terminated', 'gone')))"
            )
            params.append(live_since)
        if not clauses:
            return {}
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_STATE_COLUMNS)} FROM instance_states "
                f"WHERE {' OR '.join(clauses)} ORDER BY instance_id, since, rowid",
                params,
            ).fetchall()
        histories: dict[str, list[InstanceState]] = {}
        for row in rows:
            histories.setdefault(row[0], []).append(InstanceState(*row))
        return histories

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
