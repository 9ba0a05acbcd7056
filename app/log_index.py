"""A line index of a log of any size: built from the end backwards, lazily, and forwards as the
log grows, so the tail of a 1 GB log is readable at once.

The index never holds an int per line. The file is cut into fixed 64 KB chunks and the index
keeps one count per chunk (how many line breaks it holds, an `array('I')`) plus their running
sums: 16,384 numbers for 1 GB. Line N is found by bisecting the running sums and scanning one
chunk. Counting line breaks runs at memory speed (`bytes.count`), so indexing is bound by the
read, and the tail is indexed first: `open()` reads only the last chunks, a worker calls
`extend_backward()` until the start is reached.

Line numbers are positions in the indexed region: line 0 is the first line whose start is
known. While the region grows backwards every number shifts by the lines added (the view adds
them to its scroll offset); once `complete` they are the file's own (0-based) line numbers.
Search results are byte offsets, which never shift; `line_of_offset` turns them into numbers.

The bytes come from a `ByteSource` (size, read at an offset, identity), so the same index serves
a local file and, later, a remote log read from an offset. No textual import.
"""

from __future__ import annotations

import bisect
import itertools
import os
import re
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.logfollow import NEEDS_CLEANING, DisplayLines

CHUNK_BYTES = 64 * 1024
BLOCK_BYTES = 8 << 20  # one read of a backward extension, a search or a scan
MAX_LINE_CHARS = 2_000  # a longer line is cut for display: its start and how much more
MAX_RANGE_READ = 1 << 20  # read_lines reads a range in one go below this, line by line above
MAX_INTERESTING = 100_000  # stored hits of the interesting-lines scan (the rest are counted)

Cancelled = Callable[[], bool]


def _never_cancelled() -> bool:
    return False


class ByteSource(Protocol):
    """Where the log's bytes are: a local file now, a remote one read by offset later."""

    name: str

    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...

    def identity(self) -> Hashable | None:
        """Changes when the log is replaced (rotation); None when the source cannot tell."""
        ...


class FileSource:
    """A local file, read with `pread` so a worker and the UI can read at once."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.name = self.path
        self._fd: int | None = None
        self._fd_identity: Hashable | None = None
        self._lock = threading.Lock()

    def _stat(self) -> os.stat_result | None:
        try:
            return os.stat(self.path)
        except OSError:
            return None

    def size(self) -> int:
        stat = self._stat()
        return stat.st_size if stat else 0

    def identity(self) -> Hashable | None:
        stat = self._stat()
        return (stat.st_dev, stat.st_ino) if stat else None

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        with self._lock:
            identity = self.identity()
            if self._fd is None or identity != self._fd_identity:
                self._close()
                try:
                    self._fd = os.open(self.path, os.O_RDONLY)
                except OSError:
                    return b""
                self._fd_identity = identity
            fd = self._fd
        return os.pread(fd, length, offset)

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        with self._lock:
            self._close()


class BytesSource:
    """A log held in memory: tests, and remote tails kept in a buffer."""

    def __init__(self, data: bytes = b"", name: str = "<memory>") -> None:
        self.data = bytearray(data)
        self.name = name
        self.generation = 0

    def append(self, data: bytes) -> None:
        self.data += data

    def replace(self, data: bytes) -> None:
        self.data = bytearray(data)
        self.generation += 1

    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        return bytes(self.data[offset : offset + max(0, length)])

    def identity(self) -> Hashable | None:
        return self.generation


@dataclass(slots=True)
class BackwardBlock:
    """Line-break counts of the chunks before the region, read but not yet added."""

    generation: int
    first_chunk: int
    new_first_chunk: int
    counts: array


@dataclass(slots=True)
class IndexChange:
    """What `update` found: new lines, or a log that shrank or was replaced (`reset`)."""

    lines_added: int = 0
    reset: bool = False


# What a terminal shows of a line: \r progress redraws, escapes and control bytes resolved. Lines
# are cut here, before cleaning, so the cleaner's own cut never applies.
_TERMINAL_VIEW = DisplayLines(max_chars=1 << 62)


def cut_for_display(raw: bytes, total_bytes: int, max_chars: int = MAX_LINE_CHARS) -> str:
    """Decode a line (bad UTF-8 becomes U+FFFD), resolve what a terminal would show of it and
    cut it, saying how much is not shown."""
    text = raw.decode("utf-8", "replace")
    if NEEDS_CLEANING.search(text) is not None:
        text = _TERMINAL_VIEW.clean(text)
    if len(text) > max_chars or total_bytes > len(raw):
        shown = text[:max_chars]
        hidden = total_bytes - len(shown.encode("utf-8", "replace"))
        if hidden > 0:
            return f"{shown} … [{hidden:,} more bytes]"
        return shown
    return text


class LogIndex:
    """Line index over a `ByteSource`; thread-safe (the UI reads while a worker extends it)."""

    def __init__(self, source: ByteSource, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.source = source
        self.chunk_bytes = chunk_bytes
        self._lock = threading.RLock()
        self.generation = 0  # bumped on every reset; work begun before a reset is dropped
        self._chunk_cache: OrderedDict[tuple[int, int, int], bytes] = OrderedDict()
        self._clear()

    def _clear(self) -> None:
        self._first_chunk = 0  # the indexed region starts at _first_chunk * chunk_bytes
        self._counts = array("I")  # line breaks in each chunk of the region
        self._running = array("Q", [0])  # line breaks before each chunk (len(counts) + 1)
        self._end = 0  # bytes indexed: the region is [first_chunk * chunk, end)
        self._ends_with_newline = False
        self._identity: Hashable | None = None
        self._chunk_cache.clear()

    # -- state -------------------------------------------------------------------------------------
    @property
    def indexed_bytes(self) -> int:
        return self._end

    @property
    def region_start(self) -> int:
        return self._first_chunk * self.chunk_bytes

    @property
    def complete(self) -> bool:
        """The region reaches the start of the log: line numbers are the file's own."""
        return self._first_chunk == 0

    @property
    def line_count(self) -> int:
        """Lines known so far (all of them once `complete`)."""
        with self._lock:
            breaks = self._running[-1]
            if self._end == 0:
                return 0
            starts = breaks + (1 if self._first_chunk == 0 else 0)
            return starts - (1 if self._ends_with_newline and breaks else 0)

    # -- building ----------------------------------------------------------------------------------
    def open(self, min_lines: int = 200) -> int:
        """Index the end of the source until `min_lines` lines are known; returns the count."""
        with self._lock:
            self.generation += 1
            self._clear()
            self._identity = self.source.identity()
            size = self.source.size()
            # The chunk holding the last byte, so the region is never empty for a non-empty log.
            self._first_chunk = max(0, size - 1) // self.chunk_bytes
            self._end = self._first_chunk * self.chunk_bytes
            self._add_forward(self._end, self.source.read(self._end, size - self._end))
        while self.line_count < min_lines and not self.complete:
            self.extend_backward(max(self.chunk_bytes, 256 * 1024))
        return self.line_count

    def extend_backward(self, max_bytes: int = BLOCK_BYTES) -> int:
        """Index up to `max_bytes` more before the region; returns how many lines were added."""
        return self.commit_backward(self.read_backward(max_bytes))

    def read_backward(
        self, max_bytes: int = BLOCK_BYTES, below: BackwardBlock | None = None
    ) -> BackwardBlock | None:
        """The slow half of `extend_backward` (read and count), changing nothing: run it in a
        worker, then `commit_backward` where line numbers are used, so they shift exactly when
        the view shifts its rows. Given `below` (not committed yet), it reads on below that
        block and returns both as one, so a worker can commit a few times a second however
        many reads that takes."""
        with self._lock:
            if self._first_chunk == 0:
                return below
            generation = self.generation
            first = self._first_chunk
        top = below.new_first_chunk if below is not None else first
        if top == 0:
            return below
        new_first = max(0, top - max(1, max_bytes // self.chunk_bytes))
        start = new_first * self.chunk_bytes
        data = self.source.read(start, top * self.chunk_bytes - start)
        counts = array("I", _chunk_counts(data, self.chunk_bytes))
        if below is not None:
            return BackwardBlock(
                below.generation, below.first_chunk, new_first, counts + below.counts
            )
        return BackwardBlock(generation, first, new_first, counts)

    def commit_backward(self, block: BackwardBlock | None) -> int:
        """Prepend what `read_backward` counted; returns the lines added (0 if it is stale)."""
        if block is None:
            return 0
        with self._lock:
            if self.generation != block.generation or self._first_chunk != block.first_chunk:
                return 0  # reset meanwhile, or another extension won: nothing to add
            if len(block.counts) != block.first_chunk - block.new_first_chunk:
                return 0  # the file shrank under us; the next update resets
            before = self.line_count
            self._counts = block.counts + self._counts
            self._first_chunk = block.new_first_chunk
            self._rebuild_running()
            self._chunk_cache.clear()
            return self.line_count - before

    def extend_backward_to(self, offset: int) -> None:
        """Make sure the line holding `offset` is indexed."""
        while not self.complete and self.region_start > offset:
            self.extend_backward()

    def update(self) -> IndexChange:
        """Catch up with the source: index what was appended, or reset if it shrank or was
        replaced (the region is then the new log's tail)."""
        with self._lock:
            size = self.source.size()
            identity = self.source.identity()
            if size < self._end or (identity is not None and identity != self._identity):
                self.open()
                return IndexChange(self.line_count, reset=True)
            before = self.line_count
            offset = self._end
            while offset < size:
                data = self.source.read(offset, min(BLOCK_BYTES, size - offset))
                if not data:
                    break
                self._add_forward(offset, data)
                offset += len(data)
            return IndexChange(self.line_count - before)

    def replaced(self) -> bool:
        """The source shrank below what is indexed or is another file now (rotation)."""
        identity = self.source.identity()
        if identity is not None and self._identity is not None and identity != self._identity:
            return True
        return self.source.size() < self._end

    def append(self, offset: int, data: bytes) -> int:
        """Index bytes a follower already read (they lie at `offset` in the source); returns the
        lines added. Bytes already indexed are skipped; a gap is read from the source."""
        with self._lock:
            before = self.line_count
            if offset > self._end:
                self.update()
            end = offset + len(data)
            if end > self._end:
                if offset < self._end:
                    data = data[self._end - offset :]
                    offset = self._end
                if offset == self._end:
                    self._add_forward(offset, data)
            return self.line_count - before

    def _add_forward(self, offset: int, data: bytes) -> None:
        size = self.chunk_bytes
        position = 0
        while position < len(data):
            chunk = (offset + position) // size
            room = (chunk + 1) * size - (offset + position)
            piece_end = min(len(data), position + room)
            breaks = data.count(b"\n", position, piece_end)
            slot = chunk - self._first_chunk
            if slot == len(self._counts):
                self._counts.append(breaks)
                self._running.append(self._running[-1] + breaks)
            else:
                self._counts[slot] += breaks
                self._running[-1] += breaks
            self._chunk_cache.pop((self.generation, chunk, 0), None)
            position = piece_end
        if data:
            self._end = offset + len(data)
            self._ends_with_newline = data.endswith(b"\n")

    def _rebuild_running(self) -> None:
        self._running = array("Q", itertools.accumulate(self._counts, initial=0))

    # -- reading -----------------------------------------------------------------------------------
    def _chunk(self, chunk: int) -> bytes:
        start = chunk * self.chunk_bytes
        length = min(self.chunk_bytes, self._end - start)
        key = (self.generation, chunk, length)
        cached = self._chunk_cache.get(key)
        if cached is None:
            cached = self.source.read(start, length)
            self._chunk_cache[key] = cached
            if len(self._chunk_cache) > 16:
                self._chunk_cache.popitem(last=False)
        return cached

    def _break_position(self, ordinal: int) -> int:
        """File offset of the `ordinal`-th (0-based) line break of the region."""
        slot = bisect.bisect_right(self._running, ordinal) - 1
        data = self._chunk(self._first_chunk + slot)
        position = -1
        for _ in range(ordinal - self._running[slot] + 1):
            position = data.find(b"\n", position + 1)
        return (self._first_chunk + slot) * self.chunk_bytes + position

    def line_start(self, line: int) -> int:
        """Byte offset where `line` begins; `line_count` gives the end of the region."""
        with self._lock:
            if line >= self.line_count:
                return self._end
            if self._first_chunk == 0:
                return 0 if line <= 0 else self._break_position(line - 1) + 1
            return self._break_position(max(0, line)) + 1

    def line_end(self, line: int) -> int:
        """Byte offset just past the line's text (its line break excluded)."""
        with self._lock:
            if line + 1 < self.line_count:
                return self.line_start(line + 1) - 1
            return self._end - (1 if self._ends_with_newline else 0)

    def line_of_offset(self, offset: int) -> int | None:
        """The line holding byte `offset`, or None when it is not in the indexed region."""
        with self._lock:
            if offset < self.region_start or offset > self._end or self.line_count == 0:
                return None
            offset = min(offset, self._end - 1)
            slot = offset // self.chunk_bytes - self._first_chunk
            chunk_start = (self._first_chunk + slot) * self.chunk_bytes
            data = self._chunk(self._first_chunk + slot)
            breaks = self._running[slot] + data.count(b"\n", 0, offset - chunk_start)
            line = breaks if self._first_chunk == 0 else breaks - 1
            return line if line >= 0 else None

    def read_lines(self, first: int, count: int, max_chars: int = MAX_LINE_CHARS) -> list[str]:
        """Text of lines `first` .. `first + count - 1` (fewer at the end), decoded with
        replacement characters, each cut to `max_chars` with a note of what is not shown."""
        with self._lock:
            total = self.line_count
            first = max(0, first)
            last = min(total, first + max(0, count))
            if first >= last:
                return []
            start = self.line_start(first)
            stop = self.line_end(last - 1)
            if stop - start <= MAX_RANGE_READ:
                pieces = self.source.read(start, stop - start).split(b"\n")
                return [
                    cut_for_display(piece[: max_chars * 4], len(piece), max_chars)
                    for piece in pieces[: last - first]
                ]
            return [self._read_long_line(line, max_chars) for line in range(first, last)]

    def _read_long_line(self, line: int, max_chars: int) -> str:
        start = self.line_start(line)
        length = self.line_end(line) - start
        head = self.source.read(start, min(length, max_chars * 4))
        if b"\r" in head and length > len(head):
            # A progress bar redrawn with \r for a whole epoch: show its latest state.
            tail = self.source.read(start + length - 4096, 4096)
            latest = tail.rsplit(b"\r", 1)[-1]
            return f"[… {length - len(latest):,} bytes of updates] " + cut_for_display(
                latest, len(latest), max_chars
            )
        return cut_for_display(head, length, max_chars)

    # -- search and the lines that matter -----------------------------------------------------------
    @staticmethod
    def compile_search(text: str, *, regex: bool = False, ignore_case: bool = True) -> BytesPattern:
        return compile_search(text, regex=regex, ignore_case=ignore_case)

    def scan_interesting(self, **options) -> Iterator[InterestingLines]:
        """`scan_interesting` over this index's source (see there)."""
        return scan_interesting(self.source, **options)

    def search(
        self,
        pattern: BytesPattern,
        from_line: int,
        *,
        backward: bool = False,
        cancelled: Cancelled = _never_cancelled,
        block_bytes: int = BLOCK_BYTES,
    ) -> int | None:
        """Byte offset of the first match after line `from_line` (or the last one before it),
        read in blocks; None when there is none in the indexed region. The offset stays valid
        while the region grows; `line_of_offset` names its line."""
        if backward:
            return self._search_backward(pattern, from_line, cancelled, block_bytes)
        position = self.line_start(from_line + 1)
        while not cancelled():
            end = self._end
            if position >= end:
                return None
            block = self.source.read(position, min(block_bytes, end - position))
            if not block:
                return None
            if position + len(block) < end:
                cut = block.rfind(b"\n")
                if cut >= 0:
                    block = block[: cut + 1]  # whole lines, so no match is split
            match = pattern.search(block)
            if match is not None:
                return position + match.start()
            position += len(block)
        return None

    def _search_backward(
        self, pattern: BytesPattern, from_line: int, cancelled: Cancelled, block_bytes: int
    ) -> int | None:
        if from_line <= 0:
            return None
        floor = self.line_start(0)
        position = self.line_start(from_line)
        while not cancelled() and position > floor:
            start = max(floor, position - block_bytes)
            block = self.source.read(start, position - start)
            if start > floor:
                cut = block.find(b"\n")
                if cut >= 0:
                    block = block[cut + 1 :]
                    start += cut + 1
            last_match = None
            for match in pattern.finditer(block):
                last_match = match
            if last_match is not None:
                return start + last_match.start()
            position = start
        return None


class BytesPattern(Protocol):
    """What `LogIndex.search` needs of a pattern: a compiled bytes regex, or `LiteralPattern`."""

    def search(self, block: bytes) -> Any: ...

    def finditer(self, block: bytes) -> Iterator[Any]: ...


@dataclass(slots=True, frozen=True)
class LiteralMatch:
    position: int

    def start(self) -> int:
        return self.position


class LiteralPattern:
    """Plain text found with `bytes.find` (GBs per second; a regex runs at ~200 MB/s), in a
    lower-cased copy of the block when case is ignored."""

    def __init__(self, needle: bytes, ignore_case: bool) -> None:
        self.ignore_case = ignore_case
        self.needle = needle.lower() if ignore_case else needle

    def _prepare(self, block: bytes) -> bytes:
        return block.lower() if self.ignore_case else block

    def search(self, block: bytes) -> LiteralMatch | None:
        position = self._prepare(block).find(self.needle)
        return LiteralMatch(position) if position >= 0 else None

    def finditer(self, block: bytes) -> Iterator[LiteralMatch]:
        haystack = self._prepare(block)
        position = haystack.find(self.needle)
        while position >= 0:
            yield LiteralMatch(position)
            position = haystack.find(self.needle, position + max(1, len(self.needle)))


def compile_search(text: str, *, regex: bool = False, ignore_case: bool = True) -> BytesPattern:
    """The pattern `LogIndex.search` takes. Raises `re.error` for a bad regex (show it).

    Matching runs on the raw bytes (no decoding of gigabytes), so ignoring case applies to ASCII
    letters."""
    raw = text.encode("utf-8")
    if not regex:
        return LiteralPattern(raw, ignore_case)
    flags = re.MULTILINE | (re.IGNORECASE if ignore_case else 0)
    return re.compile(raw, flags)


def _chunk_counts(data: bytes, chunk_bytes: int) -> Iterator[int]:
    for start in range(0, len(data), chunk_bytes):
        yield data.count(b"\n", start, start + chunk_bytes)


# -- the lines that matter -------------------------------------------------------------------------
# Each needle is found with `bytes.find` (memchr speed, GBs per second); one alternation regex
# over a gigabyte runs at ~25 MB/s here. nan/inf must stand alone ("nanoGPT", "info" do not count).
INTERESTING_NEEDLES = (
    b"Traceback",
    b"Error",
    b"ERROR",
    b"WARNING",
    b"Warning",
    b"nan",
    b"NaN",
    b"inf",
    b"OOM",
    b"out of memory",
    b"CUDA error",
)
WHOLE_WORD_NEEDLES = {b"nan", b"NaN", b"inf", b"OOM"}


@dataclass(slots=True)
class InterestingLines:
    """One batch of the scan: hits with their line numbers (0-based, the file's own), byte
    offsets and text; `scanned_bytes` of `total_bytes` done."""

    lines: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    scanned_bytes: int = 0
    total_bytes: int = 0
    dropped: int = 0  # hits past MAX_INTERESTING, counted but not kept
    next_line: int = 0  # the number of the line starting at `scanned_bytes`


def _is_word_byte(value: int) -> bool:
    return (
        value == 0x5F
        or (0x30 <= value <= 0x39)
        or (0x41 <= value <= 0x5A)
        or (0x61 <= value <= 0x7A)
    )


def _hits_in_block(block: bytes) -> list[int]:
    """Sorted offsets (within `block`) of the starts of the lines that hold a needle."""
    starts: set[int] = set()
    for needle in INTERESTING_NEEDLES:
        position = block.find(needle)
        whole_word = needle in WHOLE_WORD_NEEDLES
        while position >= 0:
            after = position + len(needle)
            if not whole_word or (
                (position == 0 or not _is_word_byte(block[position - 1]))
                and (after >= len(block) or not _is_word_byte(block[after]))
            ):
                line_start = block.rfind(b"\n", 0, position) + 1
                starts.add(line_start)
                line_end = block.find(b"\n", after)
                if line_end < 0:
                    break
                position = block.find(needle, line_end)
            else:
                position = block.find(needle, after)
    return sorted(starts)


def scan_interesting(
    source: ByteSource,
    *,
    start_offset: int = 0,
    first_line: int = 0,
    end_offset: int | None = None,
    block_bytes: int = BLOCK_BYTES,
    max_kept: int = MAX_INTERESTING,
    max_chars: int = 300,
    cancelled: Cancelled = _never_cancelled,
) -> Iterator[InterestingLines]:
    """Scan the log forward in blocks for Traceback, Error, WARNING, nan, inf, OOM / out of
    memory and CUDA errors; yields one batch per block (run it in a worker).

    `start_offset` must be a line start whose 0-based number is `first_line` (0, 0 for a whole
    log; the previous end for a log that grew)."""
    end = source.size() if end_offset is None else end_offset
    position = start_offset
    line = first_line
    kept = 0
    while position < end and not cancelled():
        block = source.read(position, min(block_bytes, end - position))
        if not block:
            break
        if position + len(block) < end:
            cut = block.rfind(b"\n")
            if cut >= 0:
                block = block[: cut + 1]
        batch = InterestingLines(total_bytes=end)
        counted_to = 0
        for hit in _hits_in_block(block):
            line += block.count(b"\n", counted_to, hit)
            counted_to = hit
            if kept >= max_kept:
                batch.dropped += 1
                continue
            kept += 1
            line_end = block.find(b"\n", hit)
            line_end = len(block) if line_end < 0 else line_end
            raw = block[hit : min(line_end, hit + max_chars * 4)]
            batch.lines.append(line)
            batch.offsets.append(position + hit)
            batch.texts.append(cut_for_display(raw, line_end - hit, max_chars))
        line += block.count(b"\n", counted_to)
        position += len(block)
        batch.scanned_bytes = position
        batch.next_line = line
        yield batch
