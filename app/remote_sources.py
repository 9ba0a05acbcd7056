"""Checkpoints and logs on another machine, read through any `Transport` by byte range.

Three pieces, none of which copies a whole file to learn something about it:

- `TransportCheckpointSource(transport)`: `app.checkpoints.CheckpointSource` for a directory on
  the transport's machine. `list` is one `find` command for the directory and one level below
  it (so HF `checkpoint-N/` directories cost no extra round trip), `stat` is one `find`, `open`
  hands the readers a seekable file that fetches only the byte ranges they read, in aligned
  16 KB blocks kept in a per-source LRU cache, with read-ahead at the end (a zip's head
  arrives in one request, its end records and central directory in another), and `delete`
  is `rm -f` / `rm -rf`. Paths go to the host as arguments of a fixed `sh -c` script or an
  argv, never interpolated. So `list_remote_checkpoints(source, dir, globs)` gives the local
  metadata of a multi-GB torch checkpoint on a GPU box for 3 commands and ~35 KB.
- `download_checkpoint(transport, remote_path, local_dir, on_progress=..., cancel=...)`: a
  checkpoint file or HF directory copied to a temp name beside the destination (one stream
  per file, or `read_from` blocks on a transport that cannot stream), renamed into place
  when complete, with progress and cancellation.
- `TransportByteSource(transport, path)`: `app.log_index.ByteSource` (size, read, identity) of
  a remote log, with a bounded LRU block cache so the log view's reads of the tail and of the
  pages on screen cost few round trips.

Threads: every call here may wait for the network (one command costs ~15 ms over the test
sshd on loopback, mostly starting `ssh`; add the network's round trip elsewhere), so call them
from thread workers. The one
exception the log view forces is `TransportByteSource.read` on the UI thread (rendering asks the
index for the lines on screen): pages near the tail are served from the cache the opening
filled (the view opens the index in a worker), `feed()` puts the follower's new bytes there
too, and a read that misses costs one round trip. On the UI thread a failed read returns b""
(the rows show empty, `last_error` says why) instead of raising into a render.

Requires a POSIX `sh` and GNU `find`/`stat` on the host (any Linux; the SSH transport's own
`list_dir` needs the same). No textual import.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat as stat_module
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from app.checkpoints import (
    DEFAULT_CACHE,
    CheckpointInfo,
    MetadataCache,
    SourceEntry,
    list_checkpoints,
    open_range_file,
)
from providers.base import CommandResult, Transport, TransportError
from providers.local import LocalTransport
from providers.streaming import CommandCancelled, stream_command

# -- the commands run on the host (paths are "$1", never part of the script) ------------------
# A relative path could start with "-" or "(" and be taken for an option or an expression of
# find: prefix it with "./".
_SAFE_PATH = "p=$1; case $p in /*) ;; *) p=./$p ;; esac; "
# One record per entry: size, mtime (seconds with fraction), type letter, path relative to the
# listed directory; NUL-terminated so any file name survives. -L follows links, as a local
# listing does (a dangling link shows type "l" and is skipped).
_RECORD = "%s %T@ %y %P\\0"
LIST_SCRIPT = (
    _SAFE_PATH + '[ -e "$p" ] || exit 3; [ -d "$p" ] || exit 4; cd -- "$p" || exit 5; '
    f"find -L . -mindepth 1 -maxdepth 2 -printf '{_RECORD}'; exit 0"
)
STAT_SCRIPT = (
    _SAFE_PATH + '[ -e "$p" ] || exit 3; find -L "$p" -maxdepth 0 -printf \'%s %T@ %y %f\\0\''
)
TREE_SCRIPT = (
    _SAFE_PATH + '[ -d "$p" ] || exit 4; cd -- "$p" || exit 5; '
    f"find -L . -mindepth 1 -type f -printf '{_RECORD}'"
)
LOG_STAT_SCRIPT = _SAFE_PATH + '[ -f "$p" ] || exit 3; stat -L -c "%s %d %i" -- "$p"'

CHECKPOINT_BLOCK = 16 * 1024  # what one metadata read fetches at least
CHECKPOINT_CACHE = 8 << 20  # per source, across files
ENTRY_TTL_S = 10.0  # how long a listed size stays good enough to open the file with
LOG_BLOCK = 256 * 1024
LOG_CACHE = 4 << 20
LOG_STAT_TTL_S = 0.2
DOWNLOAD_BLOCK = 8 << 20


@dataclass
class TransferStats:
    """What went over the transport: commands run and file bytes received."""

    requests: int = 0
    bytes_read: int = 0

    def add(self, received: int) -> None:
        self.requests += 1
        self.bytes_read += received


def _sh(transport: Transport, script: str, *args: str) -> CommandResult:
    """Run one of the scripts above (read-only, so tried again once after a dropped
    connection; a host that cannot be reached at all is not tried twice)."""
    argv = ["sh", "-c", script, "sh", *args]
    try:
        return transport.run(argv)
    except TransportError as err:
        if "cannot connect" in str(err):
            raise
        return transport.run(argv)


def _failure_error(transport: Transport, what: str, path: str, result: CommandResult) -> OSError:
    """The OSError for a host command that failed for a file-system reason."""
    lines = result.stderr.decode("utf-8", "replace").strip().splitlines()
    if result.returncode == 3:
        return FileNotFoundError(2, "no such file or directory", path)
    if result.returncode == 4:
        return NotADirectoryError(20, "not a directory", path)
    if any("Permission denied" in line for line in lines):
        return PermissionError(13, "permission denied", path)
    why = lines[-1] if lines else f"exit status {result.returncode}"
    return OSError(f"{transport.label}: cannot {what} {path}: {why}")


def _parse_records(data: bytes) -> Iterable[tuple[int, float, str, str]]:
    """(size, mtime, type letter, relative path) of each NUL-terminated `find` record."""
    for record in data.split(b"\0"):
        if not record:
            continue
        size, mtime, kind, rel = record.split(b" ", 3)
        yield int(size), float(mtime), kind.decode(), rel.decode("utf-8", "surrogateescape")


Fetch = Callable[[int, int], bytes]


class _BlockCache:
    """Aligned blocks of remote files, LRU-bounded, keyed by (file key, block index): the file
    key names one version of one file (a checkpoint's path, size and mtime), so blocks of a
    file listed again unchanged are still good. A block shorter than `block_size` was cut by
    the end of the file when fetched: it serves the bytes it has and is fetched again when
    more are asked of it (a log grows)."""

    def __init__(self, block_size: int, capacity_bytes: int, stats: TransferStats) -> None:
        self.block_size = block_size
        self.capacity = max(2, capacity_bytes // block_size)
        self.stats = stats
        self.blocks: OrderedDict[tuple[Hashable, int], bytes] = OrderedDict()
        self.lock = threading.Lock()
        self.generation = 0  # bumped by clear(): a fetch begun before it is not stored

    def clear(self) -> None:
        with self.lock:
            self.blocks.clear()
            self.generation += 1

    def put(self, key: Hashable, index: int, data: bytes, generation: int | None = None) -> None:
        with self.lock:
            if generation is not None and generation != self.generation:
                return
            self.blocks[key, index] = data
            self.blocks.move_to_end((key, index))
            while len(self.blocks) > self.capacity:
                self.blocks.popitem(last=False)

    def has(self, key: Hashable, index: int) -> bool:
        with self.lock:
            return (key, index) in self.blocks

    def cached(self, key: Hashable, index: int, need: int) -> bytes | None:
        """Block `index` if it holds at least `need` bytes (or is a whole block)."""
        with self.lock:
            block = self.blocks.get((key, index))
            if block is None:
                return None
            if len(block) < need and len(block) < self.block_size:
                return None
            self.blocks.move_to_end((key, index))
            return block

    def read(
        self,
        key: Hashable,
        fetch: Fetch,
        offset: int,
        length: int,
        read_ahead: tuple[int, int] = (0, 0),
    ) -> bytes:
        """Bytes [offset, offset + length), fewer at the end of the file. Missing blocks are
        fetched with `fetch(offset, length)` as one contiguous request, widened by
        `read_ahead` (blocks before, after). A fetch larger than half the cache is returned
        but not stored."""
        if length <= 0:
            return b""
        size = self.block_size
        first, last = offset // size, (offset + length - 1) // size
        blocks: dict[int, bytes] = {}  # what this read assembles, safe from eviction
        missing = []
        for index in range(first, last + 1):
            found = self.cached(key, index, min(size, offset + length - index * size))
            if found is None:
                missing.append(index)
            else:
                blocks[index] = found
        if missing:
            start = max(0, missing[0] - read_ahead[0])
            stop = missing[-1] + 1 + read_ahead[1]
            keep = stop - start <= self.capacity // 2
            generation = self.generation
            data = fetch(start * size, (stop - start) * size)
            self.stats.add(len(data))
            for index in range(start, stop):
                piece = data[(index - start) * size : (index - start + 1) * size]
                blocks[index] = piece
                if keep and (piece or index <= missing[-1]):
                    self.put(key, index, piece, generation)
                if len(piece) < size:
                    break
        out = bytearray()
        for index in range(first, last + 1):
            block = blocks.get(index, b"")
            lo = max(0, offset - index * size)
            hi = min(size, offset + length - index * size)
            out += block[lo:hi]
            if len(block) < hi:
                break  # the end of the file
        return bytes(out)


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------
class TransportCheckpointSource:
    """`app.checkpoints.CheckpointSource` over a Transport (see the module docstring).

    Keep one per transport for the dashboard's life: `list_checkpoints`' metadata cache is
    keyed by the source, so a directory listed again re-reads only new or changed files."""

    def __init__(
        self,
        transport: Transport,
        *,
        block_size: int = CHECKPOINT_BLOCK,
        cache_bytes: int = CHECKPOINT_CACHE,
        entry_ttl_s: float = ENTRY_TTL_S,
    ) -> None:
        self.transport = transport
        self.block_size = block_size
        self.entry_ttl_s = entry_ttl_s
        self.stats = TransferStats()
        # Blocks of every file read, kept across opens: an HF directory listed again reads
        # its unchanged trainer_state.json from here.
        self._cache = _BlockCache(block_size, cache_bytes, self.stats)
        self.errors: dict[str, str] = {}  # path -> the transport failure met while reading it
        self._lock = threading.Lock()
        # What the last list/stat said, so `open` and the listing of an HF directory's files
        # need no round trip of their own: path -> (when, entry), dir -> (when, entries).
        self._entries: dict[str, tuple[float, SourceEntry]] = {}
        self._listings: dict[str, tuple[float, list[SourceEntry]]] = {}

    # -- remembered answers -------------------------------------------------------------------
    def _fresh(self, when: float) -> bool:
        return time.monotonic() - when <= self.entry_ttl_s

    def _remember(self, entries: Iterable[SourceEntry]) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._entries) > 50_000:
                self._entries.clear()
            for entry in entries:
                self._entries[entry.path] = (now, entry)

    def forget(self) -> None:
        """Drop remembered listings (after the app changed files on the host itself)."""
        with self._lock:
            self._entries.clear()
            self._listings.clear()

    def _run(self, script: str, path: str) -> CommandResult:
        try:
            return _sh(self.transport, script, path)
        except TransportError as err:
            self.errors[path] = str(err)
            raise

    # -- CheckpointSource ---------------------------------------------------------------------
    def list(self, directory: str) -> list[SourceEntry]:
        directory = directory.rstrip("/") or "/"
        base = directory.rstrip("/")
        with self._lock:
            remembered = self._listings.pop(directory, None)
        if remembered is not None and self._fresh(remembered[0]):
            return list(remembered[1])  # listed with its parent a moment ago; used once
        result = self._run(LIST_SCRIPT, directory)
        if not result.ok:
            raise _failure_error(self.transport, "list", directory, result)
        self.stats.add(len(result.stdout))
        top: list[SourceEntry] = []
        below: dict[str, list[SourceEntry]] = {}
        for size, mtime, kind, rel in _parse_records(result.stdout):
            if kind == "l":
                continue  # a dangling link, as a local listing skips it
            parent, _, name = rel.rpartition("/")
            entry = SourceEntry(f"{base}/{rel}", name, kind == "d", size, mtime)
            if parent:
                below.setdefault(f"{base}/{parent}", []).append(entry)
            else:
                top.append(entry)
        now = time.monotonic()
        with self._lock:
            for stale in [d for d, (when, _) in self._listings.items() if not self._fresh(when)]:
                del self._listings[stale]
            for entry in top:
                if entry.is_dir:
                    self._listings[entry.path] = (now, below.get(entry.path, []))
        self._remember(top)
        self._remember(entry for entries in below.values() for entry in entries)
        return top

    def stat(self, path: str) -> SourceEntry:
        path = path.rstrip("/") or "/"
        result = self._run(STAT_SCRIPT, path)
        if not result.ok or not result.stdout:
            raise _failure_error(self.transport, "stat", path, result)
        self.stats.add(len(result.stdout))
        size, mtime, kind, name = next(iter(_parse_records(result.stdout)))
        if kind == "l":
            raise FileNotFoundError(2, "dangling link", path)
        entry = SourceEntry(path, name, kind == "d", size, mtime)
        self._remember([entry])
        return entry

    def open(self, path: str) -> BinaryIO:
        with self._lock:
            known = self._entries.get(path)
        entry = known[1] if known is not None and self._fresh(known[0]) else self.stat(path)
        if entry.is_dir:
            raise IsADirectoryError(21, "is a directory", path)
        size = entry.size

        def fetch(offset: int, length: int) -> bytes:
            if offset >= size:
                return b""
            try:
                return self.transport.read_from(path, offset, min(length, size - offset))
            except TransportError as err:
                self.errors[path] = str(err)
                raise OSError(f"the connection failed while reading it: {err}") from None

        cache, key = self._cache, (path, size, entry.mtime)
        last_block = max(0, size - 1) // self.block_size

        def read_range(offset: int, length: int) -> bytes:
            # A read of at most one block is the buffer filling itself after a seek: it gets
            # the rest of the current block only, so a few bytes at a block's end do not
            # fetch the next block too (a reader that needs more asks again).
            if length <= self.block_size:
                boundary = (offset // self.block_size + 1) * self.block_size
                if offset + length > boundary and not cache.has(key, boundary // self.block_size):
                    length = boundary - offset
            # Touching the last block (a zip's end records) also fetches the one before it,
            # where the central directory is.
            ahead = (1, 0) if (offset + length - 1) // self.block_size >= last_block else (0, 0)
            return cache.read(key, fetch, offset, length, ahead)

        return open_range_file(size, read_range, block_size=self.block_size)

    def delete(self, path: str, is_dir: bool) -> None:
        path = path.rstrip("/")  # "link/" would make rm follow a link to a directory
        argv = ["rm", "-rf" if is_dir else "-f", "--", path]
        result = self.transport.run(argv)
        if not result.ok:
            raise _failure_error(self.transport, "delete", path, result)
        with self._lock:
            self._entries.pop(path, None)
            self._listings.pop(path, None)


def list_remote_checkpoints(
    source: TransportCheckpointSource,
    directory: str,
    globs: Sequence[str],
    cache: MetadataCache | None = DEFAULT_CACHE,
) -> list[CheckpointInfo]:
    """`list_checkpoints` on the host, except that a connection failure while reading a file
    raises TransportError (show it; list again later) instead of listing the file as corrupt,
    and nothing read during the failure stays in the metadata cache."""
    source.errors.clear()
    infos = list_checkpoints(directory, globs, source=source, cache=cache)
    if source.errors:
        failed = set(source.errors)
        if cache is not None:
            for key in [k for k in cache.entries if k[0] == id(source) and k[1] in failed]:
                cache.entries.pop(key, None)
        path, why = next(iter(source.errors.items()))
        raise TransportError(f"{source.transport.label}: reading {path} failed: {why}")
    return infos


def list_tree(transport: Transport, directory: str) -> list[tuple[str, int, float]]:
    """(path relative to `directory`, size, mtime) of every file below it, in one command.
    Raises NotADirectoryError / FileNotFoundError / OSError as a local listing would."""
    result = _sh(transport, TREE_SCRIPT, directory)
    if not result.ok:
        raise _failure_error(transport, "list", directory, result)
    return [
        (rel, size, mtime)
        for size, mtime, kind, rel in _parse_records(result.stdout)
        if kind == "f"
    ]


# ---------------------------------------------------------------------------------------------
# Downloads
# ---------------------------------------------------------------------------------------------
class DownloadCancelled(Exception):
    """The download was cancelled; nothing was left at the destination."""


@dataclass(frozen=True)
class DownloadResult:
    local_path: str
    files: int
    bytes: int
    seconds: float


def _is_cancelled(cancel: threading.Event | Callable[[], bool] | None) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def download_checkpoint(
    transport: Transport,
    remote_path: str,
    local_dir: str | os.PathLike[str],
    *,
    on_progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    block_bytes: int = DOWNLOAD_BLOCK,
) -> DownloadResult:
    """Copy a checkpoint file, or an HF `checkpoint-N/` directory, to `local_dir/<name>`.

    Blocking: run it in a thread worker. Each file is copied into a hidden temp name in
    `local_dir` and renamed into place when all of it arrived (replacing an older copy), with
    the remote modification time. A transport that streams (SSH, local) sends each file as one
    `head -c SIZE` stream: one command per file, at the connection's speed; any other reads
    it in `block_bytes` blocks with `read_from`. `on_progress(done_bytes, total_bytes)` is
    called once at 0, after every `block_bytes` and at the end. `cancel` (an Event or a
    callable) stops it within a block (or, streaming, within ~50 ms plus ending the command on
    the host): the temp copy is removed and DownloadCancelled raised. A file that shrinks
    while being copied raises OSError; bytes appended meanwhile are not copied (the size at
    the start counts)."""
    started = time.monotonic()
    source = TransportCheckpointSource(transport)
    remote_path = remote_path.rstrip("/") or "/"
    top = source.stat(remote_path)
    files = list_tree(transport, remote_path) if top.is_dir else [("", top.size, top.mtime)]
    total = sum(size for _, size, _ in files)
    local_dir = os.fspath(local_dir)
    os.makedirs(local_dir, exist_ok=True)
    destination = os.path.join(local_dir, top.name)
    if top.is_dir:
        temp = tempfile.mkdtemp(prefix=f".{top.name}.", suffix=".part", dir=local_dir)
    else:
        handle, temp = tempfile.mkstemp(prefix=f".{top.name}.", suffix=".part", dir=local_dir)
        os.close(handle)
    progress = _Progress(on_progress, total, block_bytes)
    try:
        for rel, size, mtime in files:
            remote = f"{remote_path}/{rel}" if rel else remote_path
            local = os.path.join(temp, rel) if rel else temp
            os.makedirs(os.path.dirname(local), exist_ok=True)
            with open(local, "wb") as out:
                copied = _copy_file(transport, remote, size, out, progress, cancel, block_bytes)
            if copied != size:
                raise OSError(
                    f"{remote} got shorter while it was copied ({copied} of {size} bytes): it "
                    "is being rewritten; download it again when it is done"
                )
            os.utime(local, (mtime, mtime))
        if _is_cancelled(cancel):
            raise DownloadCancelled(f"download of {remote_path} cancelled")
        if top.is_dir:
            os.chmod(temp, 0o755)
            old = None
            if os.path.lexists(destination):
                old = f"{temp}.old"
                os.rename(destination, old)
            os.rename(temp, destination)
            if old is not None:
                _remove(old)
        else:
            os.chmod(temp, 0o644)
            os.replace(temp, destination)
    except BaseException:
        _remove(temp)
        raise
    progress.finish()
    return DownloadResult(destination, len(files), progress.done, time.monotonic() - started)


class _Progress:
    """Calls `on_progress(done, total)` at 0, each time another `every` bytes arrived, and at
    the end."""

    def __init__(self, callback: Callable[[int, int], None] | None, total: int, every: int):
        self.callback = callback
        self.total = total
        self.every = max(1, every)
        self.done = 0
        self.reported = 0
        if callback is not None:
            callback(0, total)

    def add(self, count: int) -> None:
        self.done += count
        if self.callback is not None and self.done - self.reported >= self.every:
            self.reported = self.done
            self.callback(self.done, self.total)

    def finish(self) -> None:
        if self.callback is not None and self.reported != self.done:
            self.reported = self.done
            self.callback(self.done, self.total)


def _copy_file(
    transport: Transport,
    remote: str,
    size: int,
    out: BinaryIO,
    progress: _Progress,
    cancel: threading.Event | Callable[[], bool] | None,
    block_bytes: int,
) -> int:
    """The first `size` bytes of `remote` into `out`; returns how many arrived."""
    if hasattr(transport, "run_streaming") or isinstance(transport, LocalTransport):
        copied = 0

        def write(chunk: bytes) -> None:
            nonlocal copied
            out.write(chunk)
            copied += len(chunk)
            progress.add(len(chunk))

        try:
            result = stream_command(
                transport, ["head", "-c", str(size), "--", remote], on_output=write, cancel=cancel
            )
        except CommandCancelled:
            raise DownloadCancelled(f"download of {remote} cancelled") from None
        if result.returncode != 0:
            raise _failure_error(transport, "read", remote, result)
        return copied
    offset = 0
    while offset < size:
        if _is_cancelled(cancel):
            raise DownloadCancelled(f"download of {remote} cancelled")
        data = transport.read_from(remote, offset, min(block_bytes, size - offset))
        if not data:
            break
        out.write(data)
        offset += len(data)
        progress.add(len(data))
    return offset


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat_module.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)


# ---------------------------------------------------------------------------------------------
# Logs
# ---------------------------------------------------------------------------------------------
def _on_ui_thread() -> bool:
    """Textual runs the app (and async workers) on the main thread."""
    return threading.current_thread() is threading.main_thread()


class TransportByteSource:
    """`app.log_index.ByteSource` of a log on the transport's machine.

    Reads go through an LRU cache of `block_bytes` blocks bounded by `cache_bytes` (reads
    larger than half the cache, like a search's 8 MB blocks, go straight to the host and are
    not cached). `size()` and `identity()` come from one `stat`: the other value is kept for
    one use within `stat_ttl_s`, so the index's size-then-identity checks (`update`,
    `replaced`, `open`) cost one round trip. A new inode (rotation) or a shorter file empties
    the cache.

    The UI thread never waits for a stat once one is known: `LogView.append` asks
    `index.replaced()` on the UI thread for every batch, which would otherwise cost a round
    trip each time. There size()/identity() answer the last values a worker saw (the view's
    opening, `poll_stat()`), with the size advanced by `feed()`. Reads on the UI thread that
    miss the cache still cost one round trip (a page scrolled far from the tail).

    How the dashboard should drive it (`follow_log` is an async worker: the UI thread):
      source = TransportByteSource(transport, log_path)
      end, _ = await asyncio.to_thread(source.poll_stat)
      log_view.open_index(LogIndex(source))          # its thread worker reads the tail
      async for chunk in afollow_remote_log(transport, log_path, end):
          if chunk.reset:
              log_view.reload()
              continue
          source.feed(chunk.offset, chunk.data)      # the follower's bytes: no re-read
          log_view.append(chunk.offset, chunk.data)
          if time to check (every few seconds):      # notices rotation (a new inode)
              await asyncio.to_thread(source.poll_stat)
    """

    def __init__(
        self,
        transport: Transport,
        path: str,
        *,
        block_bytes: int = LOG_BLOCK,
        cache_bytes: int = LOG_CACHE,
        stat_ttl_s: float = LOG_STAT_TTL_S,
    ) -> None:
        self.transport = transport
        self.path = path
        self.name = f"{transport.label}:{path}"
        self.stat_ttl_s = stat_ttl_s
        self.stats = TransferStats()
        self.last_error: str | None = None
        self._cache = _BlockCache(block_bytes, cache_bytes, self.stats)
        self._stat_lock = threading.Lock()
        # (when, size, identity, which of the two may still be answered from it)
        self._stat: tuple[float, int, Hashable | None, set[str]] | None = None
        self._known_size = 0
        self._known_identity: Hashable | None = None

    # -- size and identity ---------------------------------------------------------------------
    def _stat_now(self, wanted: str) -> tuple[int, Hashable | None]:
        """(size, identity). One stat answers a pair of calls: the value the caller did not
        ask for is kept for one use by the other accessor, for at most `stat_ttl_s`. On the
        UI thread, once any stat is known, the last known values are returned without a
        round trip (see `poll_stat`)."""
        other = "identity" if wanted == "size" else "size"
        with self._stat_lock:
            if self._stat is not None and _on_ui_thread():
                return self._known_size, self._known_identity
            stashed = self._stat
            if (
                stashed is not None
                and wanted in stashed[3]
                and time.monotonic() - stashed[0] <= self.stat_ttl_s
            ):
                stashed[3].discard(wanted)
                return stashed[1], stashed[2]
        try:
            result = _sh(self.transport, LOG_STAT_SCRIPT, self.path)
        except TransportError as err:
            self._failed(err)
            return self._known_size, self._known_identity
        self.stats.add(len(result.stdout))
        if result.returncode == 3:
            size, identity = 0, None
        elif not result.ok:
            self._failed(TransportError(result.describe_failure()))
            return self._known_size, self._known_identity
        else:
            words = result.stdout.split()
            size, identity = int(words[0]), (self.path, int(words[1]), int(words[2]))
        self.last_error = None
        with self._stat_lock:
            if identity != self._known_identity or size < self._known_size:
                self._cache.clear()  # rotated or truncated: every cached byte is stale
            self._known_size, self._known_identity = size, identity
            self._stat = (time.monotonic(), size, identity, {other})
        return size, identity

    def size(self) -> int:
        return self._stat_now("size")[0]

    def identity(self) -> Hashable | None:
        return self._stat_now("identity")[1]

    def poll_stat(self) -> tuple[int, Hashable | None]:
        """Ask the host for the size and identity now (from a worker): what the UI thread's
        size()/identity() answer from then on. Raises TransportError when the host cannot be
        reached."""
        with self._stat_lock:
            if self._stat is not None:
                self._stat[3].clear()
        return self._stat_now("size")

    # -- bytes -----------------------------------------------------------------------------------
    def _fetch(self, offset: int, length: int) -> bytes:
        return self.transport.read_from(self.path, offset, length)

    def _failed(self, err: Exception) -> None:
        self.last_error = f"{self.transport.label}: cannot read {self.path}: {err}"
        if not _on_ui_thread():
            raise err

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        try:
            if length > self._cache.capacity * self._cache.block_size // 2:
                data = self._fetch(offset, length)
                self.stats.add(len(data))
                return data
            return self._cache.read(None, self._fetch, offset, length)
        except FileNotFoundError:
            return b""  # removed or rotated away: the next identity() says so
        except TransportError as err:
            self._failed(err)  # raises in workers; on the UI thread the rows show empty
            return b""

    def feed(self, offset: int, data: bytes) -> None:
        """Bytes a follower read at `offset`: cached so the view's reads of them cost nothing.
        A block that starts before `offset` is stored only when its earlier bytes are cached
        already (else a read fetches it whole)."""
        size = self._cache.block_size
        end = offset + len(data)
        index = offset // size
        while index * size < end:
            start = index * size
            if start < offset:
                cached = self._cache.cached(None, index, offset - start)
                if cached is None or len(cached) < offset - start:
                    index += 1
                    continue  # the block's first bytes are not here: let a read fetch it
                block = cached[: offset - start] + data[: start + size - offset]
            else:
                block = data[start - offset : start - offset + size]
            self._cache.put(None, index, block)
            index += 1
        with self._stat_lock:
            self._known_size = max(self._known_size, end)
            if self._stat is not None and self._stat[1] < end:
                self._stat = (self._stat[0], end, self._stat[2], self._stat[3])

    def clear_cache(self) -> None:
        self._cache.clear()


__all__ = [
    "DownloadCancelled",
    "DownloadResult",
    "TransferStats",
    "TransportByteSource",
    "TransportCheckpointSource",
    "download_checkpoint",
    "list_remote_checkpoints",
]
