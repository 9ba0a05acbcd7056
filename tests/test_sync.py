"""The sync engine against two real targets: this machine (LocalTransport) and a real sshd.

What a user gets: the first sync sends everything the ignore rules keep, a second sends
nothing, a change sends that file, a deletion deletes it, an interrupted sync finishes when run
again, dry-run changes nothing, modes and in-project symlinks survive, outside symlinks do not.
"""

# ruff: noqa: F811 - test functions take the imported `sshd` fixture by name

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from app.sync import (
    MANIFEST,
    SyncCancelled,
    SyncError,
    SyncProgress,
    default_cache_path,
    remote_project_dir,
    scan_project,
    sync_project,
)
from providers.base import Transport, TransportError
from providers.local import LocalTransport
from tests.sshd_server import SshdServer, sshd  # noqa: F401 (a fixture)


@pytest.fixture(params=["local", "ssh"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Transport, str]:
    if request.param == "local":
        return LocalTransport(), str(tmp_path / "remote" / "proj")
    server: SshdServer = request.getfixturevalue("sshd")
    transport = server.transport()
    return transport, remote_project_dir(transport.home(), "proj")


def write(root: Path, rel: str, data: str | bytes = "x", mode: int | None = None) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    if mode is not None:
        path.chmod(mode)
    return path


def make_project(root: Path) -> None:
    write(root, ".git/HEAD", "ref: refs/heads/main\n")
    write(root, ".gitignore", "*.log\n/data/\nbuild/\n")
    write(root, "train.py", "print('train')\n", mode=0o755)
    write(root, "README.md", "# project\n")
    write(root, "lib/model.py", "W = 1\n")
    write(root, "lib/__pycache__/model.cpython-311.pyc", b"\0compiled")
    write(root, "lib/stale.pyc", b"\0compiled")
    write(root, "run.log", "ignored by the root .gitignore\n")
    write(root, "data/big.bin", b"\0" * 1000)
    write(root, "build/out.o", b"\0")
    # A .gitignore two levels down re-includes one log and ignores its own tmp dir; one more
    # level down ignores a secret; the deepest file that matches wins, like git.
    write(root, "src/pkg/.gitignore", "!keep.log\ntmp/\n")
    write(root, "src/pkg/keep.log", "kept by !keep.log\n")
    write(root, "src/pkg/other.log", "still ignored\n")
    write(root, "src/pkg/tmp/scratch.txt", "ignored\n")
    write(root, "src/pkg/core.py", "CORE = True\n")
    write(root, "src/pkg/deep/.gitignore", "secret.txt\n")
    write(root, "src/pkg/deep/secret.txt", "ignored\n")
    write(root, "src/pkg/deep/tmp/nested.txt", "ignored by the parent's tmp/ rule\n")
    write(root, "src/pkg/deep/public.txt", "shipped\n")
    write(root, ".venv/bin/python", "not shipped")
    write(root, "node_modules/x/index.js", "not shipped")
    write(root, "checkpoints/epoch1.pt", b"\0" * 100)
    write(root, "runs/r1/output.log", "not shipped")
    write(root, "private.key", "secret", mode=0o600)
    write(root, "données/modèle é.txt", "a name tar must carry in a PAX header\n")
    write(root, "deep/" + "long_directory_name/" * 8 + "file.py", "a path over 100 bytes\n")
    os.symlink("lib/model.py", root / "model_link.py")
    os.symlink("/etc/hostname", root / "outside_link")


EXPECTED = {
    ".gitignore",
    "train.py",
    "README.md",
    "lib/model.py",
    "src/pkg/.gitignore",
    "src/pkg/keep.log",
    "src/pkg/core.py",
    "src/pkg/deep/.gitignore",
    "src/pkg/deep/public.txt",
    "private.key",
    "model_link.py",
    "données/modèle é.txt",
    "deep/" + "long_directory_name/" * 8 + "file.py",
}


def remote_tree(remote_dir: str) -> dict[str, tuple[str, int]]:
    """path -> (sha256 or link target, mode) of what is on the host, runctl's own dir aside."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(remote_dir):
        rel_dir = os.path.relpath(dirpath, remote_dir)
        if rel_dir == ".runctl":
            dirnames[:] = []
            continue
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if os.path.islink(path):
                found[rel] = ("link:" + os.readlink(path), 0)
            else:
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                found[rel] = (digest, os.stat(path).st_mode & 0o777)
    return found


def local_view(root: Path, paths: set[str]) -> dict[str, tuple[str, int]]:
    view = {}
    for rel in paths:
        path = root / rel
        if path.is_symlink():
            view[rel] = ("link:" + os.readlink(path), 0)
        else:
            view[rel] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mode & 0o777)
    return view


def test_first_sync_sends_what_the_ignore_rules_keep(
    target: tuple[Transport, str], tmp_path: Path
) -> None:
    transport, remote_dir = target
    root = tmp_path / "proj"
    make_project(root)
    result = sync_project(transport, root, remote_dir, cache_path=tmp_path / "cache.json")
    assert {e.path for e in result.plan.upload} == EXPECTED
    assert result.plan.delete == []
    assert ("outside_link", "symlink to outside the project (not followed)") in (
        result.plan.tree.skipped
    )
    assert remote_tree(remote_dir) == local_view(root, EXPECTED)  # contents, modes, links
    assert os.stat(os.path.join(remote_dir, "train.py")).st_mode & 0o777 == 0o755
    assert os.path.isfile(os.path.join(remote_dir, MANIFEST))
    report = result.to_json("gpu")
    assert report["uploaded"] == sorted(EXPECTED) and report["bytes_sent"] == result.bytes_sent > 0


def test_no_change_sends_nothing_then_one_change_sends_one_file(
    target: tuple[Transport, str], tmp_path: Path
) -> None:
    transport, remote_dir = target
    root = tmp_path / "proj"
    make_project(root)
    cache = tmp_path / "cache.json"
    sync_project(transport, root, remote_dir, cache_path=cache)

    again = sync_project(transport, root, remote_dir, cache_path=cache)
    assert again.plan.upload == [] and again.plan.delete == []
    assert again.bytes_sent == 0
    assert again.plan.tree.hashed == 0  # nothing re-read: size and mtime were unchanged

    (root / "README.md").touch()  # a new mtime, the same content: nothing to send
    assert sync_project(transport, root, remote_dir, cache_path=cache).plan.upload == []

    big = "".join(f"line {i}: some model code\n" for i in range(2000)).encode()
    write(root, "lib/model.py", big)
    changed = sync_project(transport, root, remote_dir, cache_path=cache)
    assert [e.path for e in changed.plan.upload] == ["lib/model.py"]
    assert changed.plan.tree.hashed == 0  # its size changed: hashed while it was sent
    settled = sync_project(transport, root, remote_dir, cache_path=cache)
    assert settled.plan.nothing_to_do and settled.plan.tree.hashed == 0  # hash was recorded
    assert remote_tree(remote_dir) == local_view(root, EXPECTED)

    (root / "train.py").chmod(0o700)  # a mode change alone is shipped too
    moded = sync_project(transport, root, remote_dir, cache_path=cache)
    assert [e.path for e in moded.plan.upload] == ["train.py"]
    assert os.stat(os.path.join(remote_dir, "train.py")).st_mode & 0o777 == 0o700


def test_deletions_reach_the_host_but_host_only_files_stay(
    target: tuple[Transport, str], tmp_path: Path
) -> None:
    transport, remote_dir = target
    root = tmp_path / "proj"
    make_project(root)
    sync_project(transport, root, remote_dir)
    outputs = Path(remote_dir) / "outputs" / "metrics.json"  # written by training on the host
    write(outputs.parent, outputs.name, "{}")
    (root / "README.md").unlink()
    shutil.rmtree(root / "src/pkg/deep")
    result = sync_project(transport, root, remote_dir)
    assert result.plan.upload == []
    assert result.plan.delete == ["README.md", "src/pkg/deep/.gitignore", "src/pkg/deep/public.txt"]
    expected = EXPECTED - set(result.plan.delete)
    on_host = remote_tree(remote_dir)
    assert on_host.pop("outputs/metrics.json")  # never ours, never deleted
    assert on_host == local_view(root, expected)
    assert not (Path(remote_dir) / "src/pkg/deep").exists()  # emptied directories go too


def test_dry_run_lists_and_changes_nothing(target: tuple[Transport, str], tmp_path: Path) -> None:
    transport, remote_dir = target
    root = tmp_path / "proj"
    make_project(root)
    dry = sync_project(transport, root, remote_dir, dry_run=True)
    assert {e.path for e in dry.plan.upload} == EXPECTED
    assert not Path(remote_dir).exists()
    report = dry.to_json("gpu")
    assert report["dry_run"] is True and report["bytes_sent"] == dry.plan.bytes_to_send > 0

    sync_project(transport, root, remote_dir)
    write(root, "new.py", "NEW = 1\n")
    (root / "README.md").unlink()
    before = remote_tree(remote_dir)
    dry = sync_project(transport, root, remote_dir, dry_run=True)
    assert [e.path for e in dry.plan.upload] == ["new.py"]
    assert dry.plan.delete == ["README.md"]
    assert remote_tree(remote_dir) == before


def interrupted_then_finished(
    transport: Transport, root: Path, remote_dir: str, interrupt: Callable[[], None] | None
) -> None:
    """Sync, change things, interrupt the next sync a few files into its stream (cancel it,
    or let `interrupt` break the connection), revert the half-sent file, and sync again."""
    make_project(root)
    original = "V1 = 1\n" * 1000
    write(root, "lib/model.py", original)
    sync_project(transport, root, remote_dir)
    manifest = Path(remote_dir, MANIFEST).read_bytes()

    for i in range(30):
        write(root, f"data_files/part{i:02}.py", os.urandom(200_000))
    write(root, "lib/model.py", "V2 = 2\n" * 1000)
    (root / "README.md").unlink()

    checks = 0

    def cancel() -> bool:
        nonlocal checks
        checks += 1
        if checks == 40 and interrupt is not None:
            interrupt()
        return interrupt is None and checks >= 40

    with pytest.raises((SyncCancelled, TransportError, SyncError)):
        sync_project(transport, root, remote_dir, cancel=cancel)
    assert checks >= 40
    assert Path(remote_dir, MANIFEST).read_bytes() == manifest  # the old manifest stands

    write(root, "lib/model.py", original)  # the user reverts the file that was half sent
    finished = sync_project(transport, root, remote_dir)
    assert "lib/model.py" in {e.path for e in finished.plan.upload}  # pending: sent again
    expected = (EXPECTED - {"README.md"}) | {f"data_files/part{i:02}.py" for i in range(30)}
    assert remote_tree(remote_dir) == local_view(root, expected)
    assert sync_project(transport, root, remote_dir).plan.nothing_to_do


def test_cancelled_sync_finishes_when_run_again(
    target: tuple[Transport, str], tmp_path: Path
) -> None:
    transport, remote_dir = target
    interrupted_then_finished(transport, tmp_path / "proj", remote_dir, None)


def test_sync_cut_by_a_dropped_connection_finishes_when_run_again(
    sshd: SshdServer, tmp_path: Path
) -> None:
    transport = sshd.transport()
    remote_dir = remote_project_dir(transport.home(), "proj")
    interrupted_then_finished(transport, tmp_path / "proj", remote_dir, sshd.kill_connections)


def test_progress_reports_files_bytes_and_rate(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    for i in range(20):
        write(root, f"shard{i:02}.bin", os.urandom(300_000))
    seen: list[SyncProgress] = []
    result = sync_project(LocalTransport(), root, str(tmp_path / "r"), on_progress=seen.append)
    last = seen[-1]
    assert (last.files_done, last.files_total) == (20, 20)
    assert last.bytes_done == last.bytes_total == result.plan.bytes_to_send == 6_000_000
    assert last.rate_bps > 0 and last.bytes_sent <= result.bytes_sent
    assert [p.bytes_done for p in seen] == sorted(p.bytes_done for p in seen)


def test_include_and_exclude_lists(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    make_project(root)
    tree = scan_project(root, include=["data/"], exclude=["*.md", "src/pkg/deep/"])
    files = set(tree.files)
    assert "data/big.bin" in files  # brought back from the .gitignore
    assert "README.md" not in files and "src/pkg/deep/public.txt" not in files
    assert ".venv/bin/python" not in files and ".git/HEAD" not in files


def test_remote_dir_defaults_and_overrides() -> None:
    assert remote_project_dir("/home/me", "proj") == "/home/me/runctl/proj"
    assert remote_project_dir("/home/me", "proj", remote_root="/data") == "/data/proj"
    assert remote_project_dir("/home/me", "proj", remote_root="~/work") == "/home/me/work/proj"
    assert remote_project_dir("/home/me", "proj", remote_dir="code/p") == "/home/me/code/p"


def test_cache_path_is_per_host_and_dir(tmp_path: Path) -> None:
    a = default_cache_path(tmp_path, tmp_path, "gpu", "/r/p")
    assert a != default_cache_path(tmp_path, tmp_path, "other", "/r/p")
    assert a.parent == tmp_path / "sync"


def test_cancel_with_an_event(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    make_project(root)
    stop = threading.Event()
    stop.set()
    with pytest.raises(SyncCancelled):
        sync_project(LocalTransport(), root, str(tmp_path / "r"), cancel=stop)
