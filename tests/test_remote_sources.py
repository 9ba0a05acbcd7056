"""Checkpoints and logs on an SSH host, read by byte range through the transport, against a
real sshd on 127.0.0.1: the same metadata as a local listing, a multi-GB checkpoint described
for a few KB of transfer, malicious pickles never run, downloads with progress, cleanup on the
host, and the log index over a remote log."""

# ruff: noqa: F811 - test functions take the imported `sshd` fixture by name

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from app.checkpoints import (
    DEFAULT_CACHE,
    delete_checkpoints,
    list_checkpoints,
    plan_cleanup,
    read_checkpoint,
)
from app.log_index import LogIndex, compile_search
from app.remote_sources import (
    DownloadCancelled,
    TransportByteSource,
    TransportCheckpointSource,
    download_checkpoint,
    list_remote_checkpoints,
)
from app.settings import CheckpointSettings
from providers.base import CommandResult, DirEntry, Transport, TransportError
from tests.fixtures.checkpoints.torch_zip import torch_pickle, write_sparse_checkpoint
from tests.sshd_server import SshdServer, sshd  # noqa: F401 (a fixture)
from tests.test_checkpoint_safety import malicious_files, torch_zip_bytes

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "checkpoints"
GLOBS = CheckpointSettings().globs


class CountingTransport(Transport):
    """The SSH transport, counting every command and every byte it brings back."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.label = inner.label
        self.commands = 0
        self.bytes_received = 0

    def _count(self, received: int) -> None:
        self.commands += 1
        self.bytes_received += received

    def run(self, argv: Sequence[str], **options) -> CommandResult:
        result = self.inner.run(argv, **options)
        self._count(len(result.stdout))
        return result

    def read_from(self, path: str, offset: int, max_bytes: int) -> bytes:
        data = self.inner.read_from(path, offset, max_bytes)
        self._count(len(data))
        return data

    def file_size(self, path: str) -> int | None:
        self._count(0)
        return self.inner.file_size(path)

    def list_dir(self, path: str) -> list[DirEntry]:
        self._count(0)
        return self.inner.list_dir(path)

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.inner.write_file(path, data, mode)

    def home(self) -> str:
        return self.inner.home()


def host_dir(sshd: SshdServer, name: str) -> Path:
    """A directory on the host (the sshd's sessions see the test's tmp dir as $HOME)."""
    path = sshd.remote_home / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def rows(infos) -> list[dict]:
    """Everything a checkpoint row says but its mtime (compared with a tolerance)."""
    return [
        {key: value for key, value in dataclasses.asdict(info).items() if key != "mtime"}
        for info in infos
    ]


# --- listing ---------------------------------------------------------------------------------------
def test_remote_listing_equals_the_local_listing_of_the_same_files(sshd: SshdServer) -> None:
    root = host_dir(sshd, "checkpoints")
    for child in FIXTURES.iterdir():
        if child.is_dir():
            shutil.copytree(child, root / child.name)
    source = TransportCheckpointSource(sshd.transport())
    compared = 0
    for directory in sorted(p for p in root.iterdir()):
        local = list_checkpoints(str(directory), GLOBS, cache=None)
        remote = list_remote_checkpoints(source, str(directory), GLOBS, cache=None)

        assert rows(remote) == rows(local), directory.name
        for mine, theirs in zip(remote, local, strict=True):
            assert mine.mtime == pytest.approx(theirs.mtime, abs=1e-6)
        compared += len(local)
    # Every kind the fixtures hold came through: torch, legacy, Lightning, HF dirs, Keras,
    # safetensors, sidecars, the example's JSON, unsafe pickles.
    kinds = {i.kind for d in root.iterdir() for i in list_checkpoints(str(d), GLOBS, cache=None)}
    assert {"torch", "torch-legacy", "lightning", "hf-trainer", "safetensors"} <= kinds
    assert compared >= 20

    # One checkpoint read by path, with its sidecar merged, is the same as locally too.
    one = str(root / "sidecar" / "model.pt")
    assert rows([read_checkpoint(one, source=source)]) == rows([read_checkpoint(one)])


def test_listing_again_costs_one_command_when_nothing_changed(sshd: SshdServer) -> None:
    root = host_dir(sshd, "again")
    for child in [*(FIXTURES / "hf").iterdir(), *(FIXTURES / "lightning").iterdir()]:
        if child.is_dir():
            shutil.copytree(child, root / child.name)
        else:
            shutil.copy2(child, root / child.name)
    counting = CountingTransport(sshd.transport())
    source = TransportCheckpointSource(counting)
    first = list_remote_checkpoints(source, str(root), GLOBS)
    assert {i.kind for i in first} == {"hf-trainer", "lightning"}
    before = counting.commands

    again = list_remote_checkpoints(source, str(root), GLOBS)

    assert rows(again) == rows(first)
    # The listing itself; files come from the metadata cache, HF directories' files from
    # the listing (one level below) and their trainer_state.json from the block cache.
    assert counting.commands == before + 1


def test_a_missing_remote_directory_lists_nothing_and_a_file_is_not_a_directory(
    sshd: SshdServer,
) -> None:
    source = TransportCheckpointSource(sshd.transport())
    assert list_remote_checkpoints(source, f"{sshd.remote_home}/nope", GLOBS) == []
    (sshd.remote_home / "plain").write_text("x")
    assert list_remote_checkpoints(source, f"{sshd.remote_home}/plain", GLOBS) == []
    with pytest.raises(FileNotFoundError):
        source.stat(f"{sshd.remote_home}/nope")


def test_a_multi_gb_checkpoint_on_the_host_is_described_from_a_few_kb(sshd: SshdServer) -> None:
    directory = host_dir(sshd, "big")
    path = directory / "epoch-12.pt"
    size = write_sparse_checkpoint(path, 3 * 2**30, epoch=12, step=120_000, loss=0.8125)
    assert size > 3 * 2**30
    assert path.stat().st_blocks * 512 < 1 << 20  # a sparse file: 3 GB that take no disk
    counting = CountingTransport(sshd.transport())
    source = TransportCheckpointSource(counting)

    infos = list_remote_checkpoints(source, str(directory), GLOBS, cache=None)

    [info] = infos
    assert (info.kind, info.status, info.error) == ("torch", "ok", None)
    assert (info.epoch, info.step, info.loss) == (12, 120_000, 0.8125)
    assert info.size_bytes == size
    # Three commands: the listing, the zip's head (pickle, byteorder, the loss scalar) and
    # its end records with the central directory. A few dozen KB of 3 GB.
    assert counting.bytes_received < 48 * 1024, counting.bytes_received
    assert counting.commands == 3, counting.commands
    assert source.stats.bytes_read <= counting.bytes_received


def test_a_remote_checkpoint_file_reads_the_same_bytes_as_the_local_file(
    sshd: SshdServer,
) -> None:
    """Random seeks and reads of every size, through a cache far smaller than the reads."""
    path = host_dir(sshd, "bytes") / "blob.bin"
    content = os.urandom(3 * 2**20 + 77)
    path.write_bytes(content)
    source = TransportCheckpointSource(sshd.transport(), block_size=4096, cache_bytes=32 * 1024)
    rng = random.Random(5)
    with source.open(str(path)) as remote:
        assert remote.seek(0, os.SEEK_END) == len(content)
        for _ in range(40):
            offset = rng.randrange(len(content) + 10)
            length = rng.choice([1, 30, 4096, 5000, 70_000, 1_500_000])
            remote.seek(offset)
            assert remote.read(length) == content[offset : offset + length], (offset, length)
        remote.seek(len(content) - 10)
        assert remote.read() == content[-10:]


def test_a_checkpoint_with_a_pickle_larger_than_the_cache_reads_like_the_local_one(
    sshd: SshdServer,
) -> None:
    directory = host_dir(sshd, "large-pickle")
    state = {"epoch": 7, "global_step": 700, "loss": 0.125, "history": list(range(300_000))}
    (directory / "big.pt").write_bytes(torch_zip_bytes(torch_pickle(state)))
    source = TransportCheckpointSource(sshd.transport(), cache_bytes=64 * 1024)

    [remote] = list_remote_checkpoints(source, str(directory), GLOBS, cache=None)

    assert (remote.epoch, remote.step, remote.loss, remote.status) == (7, 700, 0.125, "ok")
    assert rows([remote]) == rows(list_checkpoints(str(directory), GLOBS, cache=None))


def test_malicious_pickles_on_the_host_are_listed_unsafe_and_never_run(
    sshd: SshdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "pwned"  # every payload would create it, on either side
    directory = host_dir(sshd, "evil")
    for name, content in malicious_files(marker).items():
        (directory / name).write_bytes(content)
    shutil.copy(FIXTURES / "unsafe" / "malicious.pt", directory / "committed.pt")
    monkeypatch.setenv("CHECKPOINT_TEST_MARKER", str(marker))  # what committed.pt touches
    (directory / "good.pt").write_bytes(torch_zip_bytes(torch_pickle({"epoch": 4, "loss": 0.25})))
    source = TransportCheckpointSource(sshd.transport())

    infos = {i.name: i for i in list_remote_checkpoints(source, str(directory), GLOBS)}

    assert not marker.exists()
    assert infos.pop("good.pt").status == "ok"
    assert set(infos) == set(malicious_files(marker)) | {"committed.pt"}
    for name, info in infos.items():
        assert info.status == "unsafe", (name, info.error)
        assert info.error.startswith("refuses GLOBAL "), info.error
    assert "refuses GLOBAL posix.system" in infos["committed.pt"].error
    assert "refuses GLOBAL builtins.eval" in infos["eval.pt"].error


# --- downloads -------------------------------------------------------------------------------------
def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_download_equals_the_source_and_reports_progress(
    sshd: SshdServer, tmp_path: Path
) -> None:
    remote = host_dir(sshd, "dl") / "model.pt"
    remote.write_bytes(os.urandom(5 * 2**20 + 12345))
    os.utime(remote, (1_700_000_000.5, 1_700_000_000.5))
    progress: list[tuple[int, int]] = []
    local_dir = tmp_path / "downloads"

    result = download_checkpoint(
        sshd.transport(),
        str(remote),
        local_dir,
        on_progress=lambda done, total: progress.append((done, total)),
        block_bytes=1 << 20,
    )

    local = local_dir / "model.pt"
    assert result.local_path == str(local)
    assert digest(local) == digest(remote)
    assert result.bytes == remote.stat().st_size and result.files == 1
    assert local.stat().st_mtime == pytest.approx(1_700_000_000.5, abs=1e-3)
    total = remote.stat().st_size
    assert progress[0] == (0, total) and progress[-1] == (total, total)
    assert 5 <= len(progress) <= 7  # about one call per MB, streamed in 64 KB pieces
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    assert sorted(p.name for p in local_dir.iterdir()) == ["model.pt"]  # no temp left


def test_a_transport_that_cannot_stream_downloads_in_blocks(
    sshd: SshdServer, tmp_path: Path
) -> None:
    remote = host_dir(sshd, "dl") / "model.pt"
    remote.write_bytes(os.urandom(5 * 2**20 + 12345))
    counting = CountingTransport(sshd.transport())  # has no run_streaming
    progress: list[tuple[int, int]] = []

    download_checkpoint(
        counting,
        str(remote),
        tmp_path,
        on_progress=lambda done, total: progress.append((done, total)),
        block_bytes=1 << 20,
    )

    assert digest(tmp_path / "model.pt") == digest(remote)
    total = remote.stat().st_size
    assert progress == [(0, total), *((mb << 20, total) for mb in range(1, 6)), (total, total)]
    assert counting.commands == 1 + 6  # the stat, then one read per 1 MB block


def test_an_hf_checkpoint_directory_downloads_whole_and_replaces_an_old_copy(
    sshd: SshdServer, tmp_path: Path
) -> None:
    remote = host_dir(sshd, "hf") / "checkpoint-8"
    shutil.copytree(FIXTURES / "hf" / "checkpoint-8", remote)
    (remote / "sub").mkdir()
    (remote / "sub" / "extra.bin").write_bytes(b"\x00\x01" * 1000)
    local_dir = tmp_path / "downloads"
    (local_dir / "checkpoint-8").mkdir(parents=True)
    (local_dir / "checkpoint-8" / "stale.txt").write_text("from an older download")
    progress: list[tuple[int, int]] = []

    result = download_checkpoint(
        sshd.transport(), str(remote), local_dir, on_progress=lambda *p: progress.append(p)
    )

    local = local_dir / "checkpoint-8"
    want = sorted(str(p.relative_to(remote)) for p in remote.rglob("*") if p.is_file())
    got = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
    assert got == want
    for rel in want:
        assert digest(local / rel) == digest(remote / rel), rel
    assert result.files == len(want)
    assert progress[-1][0] == progress[-1][1] == result.bytes
    assert sorted(p.name for p in local_dir.iterdir()) == ["checkpoint-8"]
    # The copy reads as the same checkpoint.
    assert read_checkpoint(str(local)).step == read_checkpoint(str(remote)).step == 8


def test_a_cancelled_download_leaves_nothing_behind(sshd: SshdServer, tmp_path: Path) -> None:
    remote = host_dir(sshd, "dl") / "big.pt"
    remote.write_bytes(os.urandom(4 << 20))
    cancel = threading.Event()
    local_dir = tmp_path / "downloads"

    def on_progress(done: int, total: int) -> None:
        if done > 0:
            cancel.set()  # the user pressed cancel after the first block

    streaming, in_blocks = sshd.transport(), CountingTransport(sshd.transport())
    for transport in (streaming, in_blocks):  # a stream, then `read_from` block by block
        cancel.clear()
        with pytest.raises(DownloadCancelled):
            download_checkpoint(
                transport,
                str(remote),
                local_dir,
                on_progress=on_progress,
                cancel=cancel,
                block_bytes=1 << 20,
            )
        assert list(local_dir.iterdir()) == []
    assert in_blocks.bytes_received < 2 << 20  # stopped at the next block


# --- cleanup on the host ---------------------------------------------------------------------------
def test_cleanup_deletes_files_sidecars_and_hf_directories_on_the_host(
    sshd: SshdServer,
) -> None:
    root = host_dir(sshd, "cleanup")
    for name in ("example", "hf", "sidecar"):
        shutil.copytree(FIXTURES / name, root / name)
    directory = root / "example"
    shutil.copy(root / "sidecar" / "model.pt", directory / "old.pt")
    (directory / "old.pt.json").write_text('{"epoch": 0, "step": 1, "loss": 5.0}')
    for name in ("checkpoint-4", "checkpoint-8"):
        shutil.move(root / "hf" / name, directory / name)
    for when, name in enumerate(
        ["old.pt", "checkpoint-4", "epoch-0001.ckpt.json", "checkpoint-8", "epoch-0002.ckpt.json"]
    ):
        for path in [directory / name, *(directory / name).glob("*")]:
            os.utime(path, (1e6 * (when + 1), 1e6 * (when + 1)))
    (directory / "-tricky name.pt").write_bytes(b"not a checkpoint")  # kept: corrupt
    source = TransportCheckpointSource(sshd.transport())
    infos = list_remote_checkpoints(source, str(directory), GLOBS)
    assert len(infos) == 6

    plan = plan_cleanup(infos, keep_newest=1)
    report = delete_checkpoints(plan, source=source)

    assert [i.name for i in plan.delete] == ["old.pt", "checkpoint-4", "epoch-0001.ckpt.json"]
    assert sorted(p.name for p in directory.iterdir()) == sorted(i.name for i in plan.keep)
    assert (directory / "-tricky name.pt").exists()
    assert set(report.deleted) == {i.path for i in plan.delete} | {str(directory / "old.pt.json")}
    assert report.failed == {}
    assert report.bytes_freed == plan.bytes_freed > 0
    assert (root / "sidecar" / "model.pt").exists()  # only what the plan named


def test_cleanup_on_the_host_leaves_a_file_rewritten_since_the_listing(
    sshd: SshdServer,
) -> None:
    directory = host_dir(sshd, "rewritten")
    for step in (1, 2, 3):
        (directory / f"epoch-{step}.ckpt.json").write_text(
            f'{{"format": "runctl-example-v1", "epoch": {step}, "step": {step}, "loss": 1.0}}'
        )
    source = TransportCheckpointSource(sshd.transport())
    plan = plan_cleanup(list_remote_checkpoints(source, str(directory), GLOBS), keep_newest=1)
    (directory / "epoch-1.ckpt.json").write_text("{}  ")

    report = delete_checkpoints(plan, source=source)

    assert (directory / "epoch-1.ckpt.json").exists()
    assert not (directory / "epoch-2.ckpt.json").exists()
    assert "changed since it was listed" in report.failed[str(directory / "epoch-1.ckpt.json")]


class DropsBeforeReading(CountingTransport):
    """The real transport; the host goes away (sshd stopped) just before the first file read."""

    def __init__(self, inner: Transport, server: SshdServer) -> None:
        super().__init__(inner)
        self.server = server

    def read_from(self, path: str, offset: int, max_bytes: int) -> bytes:
        self.server.stop()
        return super().read_from(path, offset, max_bytes)


def test_a_dropped_connection_while_reading_is_an_error_not_a_corrupt_row(
    sshd: SshdServer,
) -> None:
    directory = host_dir(sshd, "drop")
    (directory / "a.pt").write_bytes(torch_zip_bytes(torch_pickle({"epoch": 1, "loss": 0.5})))
    source = TransportCheckpointSource(DropsBeforeReading(sshd.transport(), sshd))

    with pytest.raises(TransportError, match=r"reading .*a\.pt failed"):
        list_remote_checkpoints(source, str(directory), GLOBS)

    # Nothing read during the failure is remembered: the next listing reads the file again.
    assert not [key for key in DEFAULT_CACHE.entries if key[0] == id(source)]


# --- logs ------------------------------------------------------------------------------------------
def in_worker(function, *args):
    """Call `function` on another thread, as the dashboard's thread workers do (the test
    itself runs on the main thread, which the source treats as the UI thread)."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = function(*args)
        except BaseException as err:
            box["error"] = err

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("value")


def write_log(path: Path, lines: int, needle_at: int) -> list[bytes]:
    text = [
        (b"NEEDLE-in-the-haystack" if i == needle_at else b"epoch %d step %d loss: 0.%04d")
        % ((i // 1000, i, i % 10000) if i != needle_at else ())
        for i in range(lines)
    ]
    path.write_bytes(b"\n".join(text) + b"\n")
    return text


def test_the_log_index_over_a_remote_log_shows_its_tail_and_finds_text(
    sshd: SshdServer,
) -> None:
    log = host_dir(sshd, "run") / "output.log"
    lines = write_log(log, 120_000, needle_at=1_234)  # ~4 MB
    counting = CountingTransport(sshd.transport())
    source = TransportByteSource(counting, str(log))
    index = LogIndex(source)

    in_worker(index.open, 200)  # the view opens it in a thread worker

    count = index.line_count
    assert count >= 200
    assert index.read_lines(count - 3, 3) == [line.decode() for line in lines[-3:]]
    opened_with = counting.commands
    assert opened_with <= 3, opened_with  # one stat, the tail, at most one step back
    # Scrolling around the tail is served from the cache: no round trip.
    for first in range(count - 200, count - 20, 20):
        index.read_lines(first, 20)
    assert counting.commands == opened_with

    while not index.complete:
        in_worker(index.extend_backward)
    assert index.line_count == len(lines)
    offset = in_worker(index.search, compile_search("needle"), -1)
    assert offset is not None
    assert index.line_of_offset(offset) == 1_234
    assert index.read_lines(1_234, 1) == ["NEEDLE-in-the-haystack"]
    assert in_worker(index.search, compile_search("no such text"), -1) is None

    # The log grows on the host: update() reads just the new bytes.
    with log.open("ab") as handle:
        handle.write(b"epoch 999 step 1 loss: 0.5\n")
    change = in_worker(index.update)
    assert change.lines_added == 1 and not change.reset
    assert index.read_lines(index.line_count - 1, 1) == ["epoch 999 step 1 loss: 0.5"]

    # The log is replaced (rotation, a new inode): the index starts over on the new file.
    replacement = log.with_name("output.log.new")
    replacement.write_bytes(b"fresh start\n")
    os.replace(replacement, log)
    assert not index.replaced()  # the UI thread answers from what a worker saw last...
    in_worker(source.poll_stat)
    assert index.replaced()  # ...until a worker looks again
    change = in_worker(index.update)
    assert change.reset
    assert index.read_lines(0, 5) == ["fresh start"]


def test_remote_log_reads_return_the_file_bytes_at_any_offset(sshd: SshdServer) -> None:
    log = host_dir(sshd, "run") / "output.log"
    content = os.urandom(5 * 2**20 + 3)
    log.write_bytes(content)
    source = TransportByteSource(sshd.transport(), str(log), block_bytes=64 * 1024)
    rng = random.Random(7)
    for _ in range(40):
        offset = rng.randrange(len(content) + 10)
        length = rng.choice([1, 100, 65_536, 200_000, 3_000_000])
        assert source.read(offset, length) == content[offset : offset + length], (offset, length)


def test_bytes_the_follower_read_are_fed_to_the_cache(sshd: SshdServer) -> None:
    log = host_dir(sshd, "run") / "output.log"
    log.write_bytes(b"line 0\n")
    counting = CountingTransport(sshd.transport())
    source = TransportByteSource(counting, str(log))
    index = LogIndex(source)
    in_worker(index.open, 10)
    new = b"".join(b"line %d\n" % i for i in range(1, 500))
    with log.open("ab") as handle:
        handle.write(new)
    before = counting.commands

    # On the UI thread, as LogView.append does it: no round trip at all.
    source.feed(7, new)  # what follow_remote_log yielded
    assert not index.replaced()
    index.append(7, new)

    assert index.read_lines(index.line_count - 2, 2) == ["line 498", "line 499"]
    assert counting.commands == before


def test_a_remote_log_read_never_raises_on_the_ui_thread(sshd: SshdServer) -> None:
    log = host_dir(sshd, "run") / "output.log"
    write_log(log, 50_000, needle_at=10)
    source = TransportByteSource(sshd.transport(), str(log))
    assert in_worker(source.poll_stat)[0] == log.stat().st_size
    sshd.stop()

    # pytest runs tests on the main thread: the UI's.
    assert source.read(0, 100) == b""
    assert "cannot read" in (source.last_error or "")
    assert source.size() == log.stat().st_size  # the last known size, no round trip

    raised: list[BaseException] = []

    def worker() -> None:
        try:
            source.read(0, 100)
        except TransportError as err:
            raised.append(err)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert raised  # a worker hears about it and can report it


def test_remote_sources_import_no_textual() -> None:
    import subprocess
    import sys

    code = "import sys, app.remote_sources\nassert 'textual' not in sys.modules\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
