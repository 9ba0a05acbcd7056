"""Following a run's log by byte offset, in time-based batches, and turning bytes into lines a
terminal can show.

`follow_local_file` wakes on a filesystem event (watchfiles, ~15 ms) rather than polling, reads
everything new from the last offset, and after delivering a batch waits `batch_s` so a burst
becomes a few large batches instead of a message per line. `DisplayLines` decodes across chunk
boundaries, keeps what a terminal would show of `\\r` progress updates, strips escape sequences
and control bytes, and cuts giant lines so a 1 MB line cannot stall the view.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
CONTROL_BYTES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Anything that needs per-line cleaning: \r, escapes, backspaces, other control bytes.
NEEDS_CLEANING = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
MAX_DISPLAY_CHARS = 10_000


@dataclass(slots=True)
class Chunk:
    """New bytes of the file. `reset` means the file shrank and is read again from its start."""

    data: bytes
    offset: int  # file offset of data[0]
    reset: bool = False


class DisplayLines:
    """Bytes in, complete display lines out (the unterminated tail is kept for later)."""

    def __init__(self, max_chars: int = MAX_DISPLAY_CHARS) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self.max_chars = max_chars

    def reset(self) -> None:
        self._decoder.reset()
        self._partial = ""

    def feed(self, data: bytes) -> tuple[list[str], str]:
        """Returns (display lines, the decoded text for the parser)."""
        text = self._decoder.decode(data)
        if not text:
            return [], ""
        pieces = (self._partial + text).split("\n")
        self._partial = pieces.pop()
        if len(self._partial) > 4 * self.max_chars:
            # A line with no end in sight (a \r progress storm, binary junk): show its latest
            # state now and drop the rest, so memory stays bounded.
            pieces.append(self._partial)
            self._partial = ""
        # One scan of the whole batch decides whether any line needs cleaning: plain output
        # (the common case) then costs no per-line regex work at all.
        if NEEDS_CLEANING.search(text) is None and not self._partial_was_dirty(pieces):
            if any(len(line) > self.max_chars for line in pieces):
                pieces = [self._cut(line) for line in pieces]
            return pieces, text
        return [self.clean(line) for line in pieces], text

    def _partial_was_dirty(self, pieces: list[str]) -> bool:
        # The first piece began in an earlier batch, which may have held a \r or an escape.
        return bool(pieces) and NEEDS_CLEANING.search(pieces[0]) is not None

    def _cut(self, line: str) -> str:
        if len(line) > self.max_chars:
            return f"{line[: self.max_chars]} … [{len(line) - self.max_chars:,} more characters]"
        return line

    def clean(self, line: str) -> str:
        if "\r" in line:
            # What a terminal shows: the text after the last carriage return.
            segments = [s for s in line.split("\r") if s]
            line = segments[-1] if segments else ""
        if "\x1b" in line:
            line = ANSI_ESCAPE.sub("", line)
        if "\b" in line:
            line = _apply_backspaces(line)
        line = CONTROL_BYTES.sub("", line)
        return self._cut(line)


def _apply_backspaces(line: str) -> str:
    out: list[str] = []
    for char in line:
        if char == "\b":
            if out:
                out.pop()
        else:
            out.append(char)
    return "".join(out)


async def follow_local_file(
    path: str,
    offset: int = 0,
    *,
    batch_s: float = 0.1,
    max_chunk: int = 4 << 20,
    idle_check_s: float = 1.0,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[Chunk]:
    """Yield new bytes of `path` from `offset` until `stop` is set (or the caller stops)."""
    from watchfiles import awatch  # imported here: the dashboard paints before it loads

    stop = stop or asyncio.Event()
    changed = asyncio.Event()

    async def watch() -> None:
        directory = os.path.dirname(path) or "."
        # Watching the directory also sees the file being replaced (rotation).
        async for _ in awatch(directory, step=10, debounce=50, stop_event=stop, recursive=False):
            changed.set()

    watcher = asyncio.create_task(watch())
    try:
        while not stop.is_set():
            changed.clear()
            try:
                size = os.path.getsize(path)
            except OSError:
                size = None
            if size is not None and size < offset:
                offset = 0
                yield Chunk(b"", 0, reset=True)
            data = b""
            if size is not None and size > offset:
                with open(path, "rb") as handle:
                    handle.seek(offset)
                    data = handle.read(max_chunk)
            if data:
                yield Chunk(data, offset)
                offset += len(data)
                if len(data) < max_chunk:
                    await asyncio.sleep(batch_s)  # let the next batch accumulate
                continue
            if watcher.done() and watcher.exception() is not None:
                # No filesystem events on this system: fall back to polling, slowly.
                await asyncio.sleep(min(batch_s * 2, idle_check_s))
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=idle_check_s)
    finally:
        stop.set()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher
