"""Following a run's log on another machine, through any Transport, by byte offset.

The remote twin of `app.logfollow.follow_local_file`, yielding the same `Chunk`s so the same
`DisplayLines`, parser and ETA consume both. Each poll asks the file's size and reads what is
new from the last offset; after delivering a batch it waits `batch_s` so a burst becomes a few
large chunks, never a message per line. The offset only advances by bytes actually received
from a command that completed, so a connection that drops mid-read loses nothing and repeats
nothing: the next successful read starts at the same offset. While the host cannot be
reached it retries with backoff and reports its state through `on_status`. A file that got
shorter (truncated, replaced) yields `Chunk(b"", 0, reset=True)` and is read again from 0.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

from app.logfollow import Chunk
from providers.base import Transport, TransportError


@dataclass(frozen=True, slots=True)
class FollowStatus:
    """What the log pane says about the connection while following."""

    connected: bool
    message: str  # "" when connected; else why, and when the next try is
    retry_in_s: float = 0.0


def follow_remote_log(
    transport: Transport,
    path: str,
    offset: int = 0,
    *,
    batch_s: float = 0.25,
    idle_poll_s: float = 0.5,
    max_chunk: int = 4 << 20,
    max_backoff_s: float = 10.0,
    stop: threading.Event | None = None,
    on_status: Callable[[FollowStatus], None] | None = None,
) -> Iterator[Chunk]:
    """Yield new bytes of `path` on the transport's machine from `offset` until `stop` is set.

    Blocking: run it in a thread worker (or use `afollow_remote_log` from asyncio)."""
    stop = stop or threading.Event()
    connected = True
    backoff = 0.5

    def report(ok: bool, message: str = "", retry_in: float = 0.0) -> None:
        nonlocal connected
        if on_status is not None and (ok != connected or not ok):
            on_status(FollowStatus(ok, message, retry_in))
        connected = ok

    while not stop.is_set():
        try:
            size = transport.file_size(path)
            data = b""
            if size is not None and size < offset:
                offset = 0
                report(True)
                yield Chunk(b"", 0, reset=True)
            if size is not None and size > offset:
                data = transport.read_from(path, offset, min(size - offset, max_chunk))
        except FileNotFoundError:
            size, data = None, b""  # removed between the two calls: the next poll says more
        except TransportError as err:
            report(False, f"{err}; retrying in {backoff:.0f} s", backoff)
            stop.wait(backoff)
            backoff = min(backoff * 2, max_backoff_s)
            continue
        report(True)
        backoff = 0.5
        if data:
            yield Chunk(data, offset)
            offset += len(data)
            if len(data) < max_chunk:
                stop.wait(batch_s)  # let the next batch accumulate
            continue
        stop.wait(idle_poll_s)


async def afollow_remote_log(
    transport: Transport, path: str, offset: int = 0, **options
) -> AsyncIterator[Chunk]:
    """`follow_remote_log` for asyncio code: each poll runs in a thread; stops when the
    consumer stops iterating (or `options["stop"]` is set)."""
    stop = options.pop("stop", None) or threading.Event()
    chunks = follow_remote_log(transport, path, offset, stop=stop, **options)
    try:
        while not stop.is_set():
            chunk = await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                return
            yield chunk
    finally:
        stop.set()


def read_whole_log(transport: Transport, path: str, block: int = 4 << 20) -> bytes:
    """Everything in the log now (for tests and small logs; the view reads from the end)."""
    out = bytearray()
    while True:
        data = transport.read_from(path, len(out), block)
        if not data:
            return bytes(out)
        out += data
