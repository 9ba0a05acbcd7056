"""The run store: WAL, a schema version, and no lost writes with two processes at once."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.store import SCHEMA_VERSION, Run, RunStore, StoreError

REPO = Path(__file__).resolve().parent.parent


def make_run(run_id: str, started: float = 1.0, status: str = "running") -> Run:
    return Run(
        id=run_id,
        host="h",
        provider="local",
        instance_id="h",
        project_root="/p",
        script="training/train.py",
        args=["--epochs", "5"],
        started_at=started,
        status=status,
        run_dir=f"/runs/{run_id}",
        checkpoint_dir=f"/runs/{run_id}/checkpoints",
    )


def test_wal_mode_and_schema_version(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "s.db")
    assert store.schema_version == SCHEMA_VERSION
    mode = sqlite3.connect(tmp_path / "s.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_round_trip_and_lineage(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "s.db")
    store.add_run(make_run("a", 1.0, "finished"))
    resumed = make_run("b", 2.0)
    resumed.parent_run_id, resumed.parent_checkpoint = (
        "a",
        "/runs/a/checkpoints/epoch-0002.ckpt.json",
    )
    store.add_run(resumed)
    store.update_run("b", status="stopped", exit_code=0, last_loss=0.25)
    got = store.get_run("b")
    assert got.status == "stopped" and got.exit_code == 0 and got.last_loss == 0.25
    assert got.parent_run_id == "a" and got.args == ["--epochs", "5"]
    assert [r.id for r in store.runs()] == ["b", "a"]
    assert [r.id for r in store.runs(statuses=["finished"])] == ["a"]


def test_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    RunStore(tmp_path / "s.db").close()
    db = sqlite3.connect(tmp_path / "s.db")
    db.execute("UPDATE schema_info SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer runctl-tui"):
        RunStore(tmp_path / "s.db")


def test_a_schema_1_store_is_migrated_and_keeps_its_runs(tmp_path: Path) -> None:
    """A database written before the instance_states table (schema 1) opens, keeps its runs,
    gains the table and says schema 2 — in one transaction, so a second process opening it at
    the same time sees either version, never half of the change."""
    from app.store import _SCHEMA, InstanceState

    old = sqlite3.connect(tmp_path / "s.db")
    old.executescript(_SCHEMA)  # the runs and launch_defaults tables, unchanged since 1
    old.execute("INSERT INTO schema_info (version) VALUES (1)")
    old.execute(
        "INSERT INTO runs (id, host, provider, instance_id, project_root, script, args, "
        "started_at, ended_at, status, run_dir, checkpoint_dir) VALUES "
        "('kept', 'h', 'local', 'h', '/p', 'train.py', '[]', 5, 6, 'finished', '/r', '/c')"
    )
    old.commit()
    old.close()
    tables = {
        row[0]
        for row in sqlite3.connect(tmp_path / "s.db").execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        )
    }
    assert "instance_states" not in tables

    store = RunStore(tmp_path / "s.db")
    assert store.schema_version == SCHEMA_VERSION == 2
    assert [run.id for run in store.runs()] == ["kept"]
    state = InstanceState("i-1", "us-east-1", "running", 10.0, 11.0, 1.0, 8.0)
    assert store.record_instance_states([state]) == [state]
    assert store.instance_histories(["i-1"]) == {"i-1": [state]}
    store.close()
    assert RunStore(tmp_path / "s.db").schema_version == 2  # opening again changes nothing


def test_corrupt_store_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "s.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot be opened"):
        RunStore(tmp_path / "s.db")


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    writer = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        sys.path.insert(0, sys.argv[3])
        from app.store import Run, RunStore
        store = RunStore(Path(sys.argv[1]))
        prefix = sys.argv[2]
        for i in range(300):
            store.add_run(Run(id=f"{prefix}{i}", host="h", provider="local", instance_id="h",
                project_root="/p", script="s.py", args=[], started_at=float(i), status="running",
                run_dir="/r", checkpoint_dir="/c"))
            store.update_run(f"{prefix}{i}", status="finished", exit_code=0)
        """
    )
    db = tmp_path / "shared.db"
    procs = [
        subprocess.Popen([sys.executable, "-c", writer, str(db), prefix, str(REPO)])
        for prefix in ("a", "b")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    runs = RunStore(db).runs(limit=10_000)
    assert len(runs) == 600
    assert all(r.status == "finished" and r.exit_code == 0 for r in runs)
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_processes_opening_a_new_store_at_the_same_moment_all_open_it(tmp_path: Path) -> None:
    # SQLite fails a switch to WAL at once, without waiting, while another process is creating
    # the same file. Four openers meet at a barrier before each of 120 new files, so they collide.
    opener = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        sys.path.insert(0, sys.argv[2])
        from app.store import RunStore
        folder, me = Path(sys.argv[1]), sys.argv[3]
        for n in range(120):
            (folder / f"ready{n}-{me}").touch()
            while len(list(folder.glob(f"ready{n}-*"))) < 4:
                if (folder / "failed").exists():  # an opener that failed never arrives
                    sys.exit(1)
                time.sleep(0.0005)
            try:
                RunStore(folder / f"store{n}.db").close()
            except BaseException:
                (folder / "failed").touch()
                raise
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", opener, str(tmp_path), str(REPO), str(me)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for me in range(4)
    ]
    try:
        errors = [p.communicate(timeout=120)[1] for p in procs]
    finally:
        for p in procs:  # none left waiting at a barrier after a failure here
            p.kill()
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    for n in range(120):
        assert RunStore(tmp_path / f"store{n}.db").schema_version == SCHEMA_VERSION
