"""The loss history of a whole run, bounded in memory, extracted from a log of any size in blocks.

A run's chart needs every loss the log holds, but never more resolution than a screen: a
`BucketSeries` keeps at most `max_buckets` buckets (count, sum, min, max) of equal x-span and
doubles the span when full, so a million points or a billion cost the same few kilobytes. The x
axis is the training record number (the n-th training loss in the log): steps restart each
epoch in many loops and are missing in others, while the record count always grows. A
validation loss is placed at the training record count when it appeared.

`scan_loss_history` reads the log in blocks (a worker runs it; it yields after each block so the
chart fills in as it goes). By default it pulls only training and validation losses out of each
block with two bytes regexes anchored on a literal ("oss", "al") that Python's regex engine finds
fast, and converts them with `map(float, ...)`: about 2.1M lines/s on the 1 GB log's mix here.
Given a parser, it parses every line instead (`feed_columns`, every value into arrays, and the
losses taken from them): exact, about 1M lines/s on that mix (1.2M on the parse bench's, where
every line is a metric line). The metrics strip (epoch, step, ETA) only needs the tail, which
the app parses with the real parser. No textual import.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import add
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from app.logparse import LossSeries

BLOCK_BYTES = 8 << 20
MAX_BUCKETS = 2048

# Loose on purpose (a strict float grammar costs the regex a third of its speed): what is not a
# number (`loss 1-2`) is dropped when converting.
_NUMBER = rb"([-+\d.][\d.eE+-]*|nan|inf|-inf)"
_KEY_TO_VALUE = rb"[\"']?[ \t:=]*[\"']?"
# The training loss: `loss`, `Loss`, `train_loss`, `training_loss`, `train/loss`, `train loss`,
# `avg loss`, quoted keys (`'loss': '1.8'`, `"loss": 0.5`) — but not `eval_loss`, `aux_loss`,
# `test loss` or `cross`. The literal `oss` comes first so the engine can skip ahead to it.
# `val loss` / `Validation loss` would match too: `add_block` only runs this between the
# matches of VALIDATION_LOSS, which saves the regex the lookbehinds that exclude them.
TRAIN_LOSS = re.compile(
    rb"oss"
    rb"(?:(?<=[^\w/][Ll]oss)|(?<=^[Ll]oss)|(?<=train_loss)|(?<=training_loss)|(?<=train/loss))"
    rb"(?<!est loss)" + _KEY_TO_VALUE + _NUMBER,
    re.MULTILINE,
)
NEWLINE = re.compile(rb"\n")
BLOCK_SLICE_BYTES = 256 * 1024  # scanned per regex call: ~2-3 ms of GIL at most

# The validation loss: `val_loss`, `val loss`, `val/loss`, `valid_loss`, `validation_loss`,
# `eval_loss`, `Val loss`.
VALIDATION_LOSS = re.compile(
    rb"al(?:(?<=[^A-Za-z][Vv]al)|(?<=^[Vv]al)|(?<=[^A-Za-z]eval)|(?<=^eval))"
    rb"(?:id|idation)?[_ /]?[Ll]oss" + _KEY_TO_VALUE + _NUMBER,
    re.MULTILINE,
)

Column = tuple[int, float, float, float]  # count, sum, min, max


class BucketSeries:
    """(x, y) points downsampled as they arrive: bucket b holds x in [b*span, (b+1)*span)."""

    def __init__(self, max_buckets: int = MAX_BUCKETS, span: int = 1) -> None:
        self.max_buckets = max_buckets
        self.span = span  # a power of two; start wider when many points are expected
        self.counts: list[int] = []
        self.sums: list[float] = []
        self.lows: list[float] = []
        self.highs: list[float] = []
        self.points = 0
        self.nonfinite = 0
        self.last: float | None = None

    def state(self) -> dict[str, Any]:
        return {
            "max_buckets": self.max_buckets,
            "span": self.span,
            "counts": self.counts,
            "sums": self.sums,
            "lows": self.lows,
            "highs": self.highs,
            "points": self.points,
            "nonfinite": self.nonfinite,
            "last": self.last,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BucketSeries:
        series = cls(state["max_buckets"])
        series.span = state["span"]
        series.counts, series.sums = state["counts"], state["sums"]
        series.lows, series.highs = state["lows"], state["highs"]
        series.points, series.nonfinite = state["points"], state["nonfinite"]
        series.last = state["last"]
        return series

    def copy(self) -> BucketSeries:
        other = BucketSeries(self.max_buckets)
        other.span = self.span
        other.counts = self.counts.copy()
        other.sums = self.sums.copy()
        other.lows = self.lows.copy()
        other.highs = self.highs.copy()
        other.points, other.nonfinite, other.last = self.points, self.nonfinite, self.last
        return other

    def add(self, x: int, y: float) -> None:
        if not math.isfinite(y):
            self.nonfinite += 1
            return
        bucket = x // self.span
        while bucket >= self.max_buckets:
            self._halve()
            bucket = x // self.span
        self._grow_to(bucket)
        self.counts[bucket] += 1
        self.sums[bucket] += y
        if y < self.lows[bucket]:
            self.lows[bucket] = y
        if y > self.highs[bucket]:
            self.highs[bucket] = y
        self.points += 1
        self.last = y

    def add_many(self, xs: Sequence[int], ys: Sequence[float]) -> None:
        """Points at increasing, not necessarily consecutive x (validation losses): each bucket
        takes its run of points at once (found by bisection, summed by C-level sum/min/max)."""
        if len(xs) != len(ys):
            raise ValueError(f"{len(xs)} x values for {len(ys)} y values")
        if not ys:
            return
        if not math.isfinite(sum(ys)):  # one nan/inf anywhere makes the sum non-finite
            finite = list(map(math.isfinite, ys))
            self.nonfinite += finite.count(False)
            xs, ys = list(itertools.compress(xs, finite)), list(itertools.compress(ys, finite))
            if not ys:
                return
        while xs[-1] // self.span >= self.max_buckets:
            self._halve()
        span = self.span
        self._grow_to(xs[-1] // span)
        position = 0
        while position < len(ys):
            bucket = xs[position] // span
            end = bisect.bisect_left(xs, (bucket + 1) * span, position)
            self._add_run(bucket, ys[position:end])
            position = end

    def extend(self, x0: int, ys: Sequence[float]) -> None:
        """Points at x0, x0+1, ... (a block of consecutive records: sliced per bucket, so the
        work per point is C-level `sum`/`min`/`max`). nan and inf are counted, not plotted."""
        if not ys:
            return
        finite = math.isfinite(sum(ys))  # one nan/inf anywhere makes the sum non-finite
        position = 0
        while position < len(ys):
            bucket = (x0 + position) // self.span
            if bucket >= self.max_buckets:
                self._halve()
                continue
            end = min(len(ys), (bucket + 1) * self.span - x0)
            piece = ys[position:end]
            position = end
            if not finite:
                kept = [y for y in piece if math.isfinite(y)]
                self.nonfinite += len(piece) - len(kept)
                piece = kept
                if not piece:
                    continue
            self._grow_to(bucket)
            self._add_run(bucket, piece)

    def _add_run(self, bucket: int, piece: Sequence[float]) -> None:
        """Finite points, in order, into one bucket that exists."""
        self.counts[bucket] += len(piece)
        self.sums[bucket] += sum(piece)
        self.lows[bucket] = min(self.lows[bucket], min(piece))
        self.highs[bucket] = max(self.highs[bucket], max(piece))
        self.points += len(piece)
        self.last = piece[-1]

    def _grow_to(self, bucket: int) -> None:
        missing = bucket + 1 - len(self.counts)
        if missing > 0:
            self.counts += [0] * missing
            self.sums += [0.0] * missing
            self.lows += [math.inf] * missing
            self.highs += [-math.inf] * missing

    def _halve(self) -> None:
        """Merge neighbouring buckets: the span doubles, the memory stays."""
        counts, sums, lows, highs = [], [], [], []
        for i in range(0, len(self.counts), 2):
            j = slice(i, i + 2)
            counts.append(sum(self.counts[j]))
            sums.append(sum(self.sums[j]))
            lows.append(min(self.lows[j]))
            highs.append(max(self.highs[j]))
        self.counts, self.sums, self.lows, self.highs = counts, sums, lows, highs
        self.span *= 2

    def merge_from(self, other: BucketSeries, x_offset: int) -> None:
        """Add another series' buckets, shifted by `x_offset` (each lands where its middle is)."""
        for bucket, count in enumerate(other.counts):
            if not count:
                continue
            x = x_offset + bucket * other.span + other.span // 2
            target = x // self.span
            while target >= self.max_buckets:
                self._halve()
                target = x // self.span
            self._grow_to(target)
            self.counts[target] += count
            self.sums[target] += other.sums[bucket]
            self.lows[target] = min(self.lows[target], other.lows[bucket])
            self.highs[target] = max(self.highs[target], other.highs[bucket])
        self.points += other.points
        self.nonfinite += other.nonfinite
        if other.last is not None:
            self.last = other.last

    def columns(self, width: int, x_total: int, x_offset: int = 0) -> list[Column | None]:
        """The series cut into `width` equal columns of x over [0, x_total), this series
        starting at `x_offset`; a column with no point is None."""
        result: list[Column | None] = [None] * width
        if x_total <= 0 or width <= 0:
            return result
        scale = width / x_total
        for bucket, count in enumerate(self.counts):
            if not count:
                continue
            middle = x_offset + bucket * self.span + self.span / 2
            column = min(width - 1, int(middle * scale))
            entry = (count, self.sums[bucket], self.lows[bucket], self.highs[bucket])
            result[column] = merge_columns(result[column], entry)
        return result


def to_float(raw: bytes) -> float | None:
    try:
        return float(raw)
    except ValueError:
        return None


def to_floats(raw: list[bytes]) -> list[float]:
    try:
        return list(map(float, raw))  # C speed; the loose pattern rarely lets junk through
    except ValueError:
        return [value for value in map(to_float, raw) if value is not None]


def merge_columns(a: Column | None, b: Column | None) -> Column | None:
    if a is None:
        return b
    if b is None:
        return a
    return (a[0] + b[0], a[1] + b[1], min(a[2], b[2]), max(a[3], b[3]))


class LossPoint(Protocol):
    loss: float | None
    is_validation: bool

    @property
    def val_loss(self) -> float | None: ...


class LossHistory:
    """Training loss by record number and validation loss at the record count it appeared."""

    def __init__(self, max_buckets: int = MAX_BUCKETS, span: int = 1) -> None:
        self.train = BucketSeries(max_buckets, span)
        self.validation = BucketSeries(max_buckets, span)
        self.train_records = 0  # x of the next training loss

    def state(self) -> dict[str, Any]:
        return {
            "train": self.train.state(),
            "validation": self.validation.state(),
            "train_records": self.train_records,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LossHistory:
        history = cls()
        history.train = BucketSeries.from_state(state["train"])
        history.validation = BucketSeries.from_state(state["validation"])
        history.train_records = state["train_records"]
        return history

    def copy(self) -> LossHistory:
        """A snapshot to hand to the UI while a worker keeps adding to this one."""
        other = LossHistory(self.train.max_buckets)
        other.train = self.train.copy()
        other.validation = self.validation.copy()
        other.train_records = self.train_records
        return other

    @property
    def nonfinite(self) -> int:
        return self.train.nonfinite + self.validation.nonfinite

    def add_points(self, points: Iterable[Any]) -> None:
        """Metric points from the parser (`loss`, `val_loss`, `is_validation`), e.g. live ones."""
        for point in points:
            if point.loss is not None and not point.is_validation:
                self.train.add(self.train_records, point.loss)
                self.train_records += 1
            val_loss = point.val_loss
            if val_loss is not None:
                self.validation.add(self.train_records, val_loss)

    def add_losses(self, series: LossSeries) -> None:
        """A parser batch's losses (`PointBatch.losses()`): what `add_points` does with the
        batch's points, without building them."""
        base = self.train_records
        self.train.extend(base, series.train)
        self.train_records += len(series.train)
        if series.validation:
            xs = list(map(add, series.validation_after, itertools.repeat(base)))
            self.validation.add_many(xs, series.validation)

    def add_block(self, data: bytes | memoryview) -> None:
        """Losses in a block of whole lines, in the order they appear.

        Scanned BLOCK_SLICE_BYTES of whole lines at a time: a regex call holds the GIL until
        it returns, and over a burst's 5 MB batch one call held it for tens of ms, while the
        dashboard's keys and frames waited (bench/burst.py)."""
        end = len(data)
        start = 0
        while start < end:
            stop = start + BLOCK_SLICE_BYTES
            if stop < end:
                newline = NEWLINE.search(data, stop)
                stop = newline.end() if newline else end
            self._add_lines(data, start, min(stop, end))
            start = stop

    def _add_lines(self, data: bytes | memoryview, start: int, stop: int) -> None:
        """`add_block` for the whole lines in data[start:stop] (read in place, no copy)."""
        position = start
        train: list[bytes] = []
        validation_x: list[int] = []
        validation_y: list[float] = []
        for match in VALIDATION_LOSS.finditer(data, start, stop):
            train += TRAIN_LOSS.findall(data, position, match.start())
            position = match.end()
            value = to_float(match.group(1))
            if value is None:  # `val_loss: 1-2`: no value, and no training loss either
                continue
            validation_x.append(self.train_records + len(train))
            validation_y.append(value)
        train += TRAIN_LOSS.findall(data, position, stop)
        if train:
            values = to_floats(train)
            self.train.extend(self.train_records, values)
            self.train_records += len(values)
        self.validation.add_many(validation_x, validation_y)

    def append_history(self, other: LossHistory) -> None:
        """Continue with a history of the log part that follows (a parallel scan's part)."""
        self.train.merge_from(other.train, self.train_records)
        self.validation.merge_from(other.validation, self.train_records)
        self.train_records += other.train_records


@dataclass(slots=True)
class HistoryProgress:
    history: LossHistory  # a snapshot, safe to hand to the UI thread
    scanned_bytes: int
    total_bytes: int

    @property
    def fraction(self) -> float:
        return self.scanned_bytes / self.total_bytes if self.total_bytes else 1.0


class ReadableSource(Protocol):
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...


def iter_line_blocks(
    source: ReadableSource,
    start: int = 0,
    end: int | None = None,
    block_bytes: int = BLOCK_BYTES,
    cancelled: Callable[[], bool] = lambda: False,
) -> Iterator[tuple[memoryview, int]]:
    """Blocks of whole lines from `start` to `end`, each with the offset just past it; a line
    longer than a block comes in block-sized pieces. Blocks are views, not copies: the partial
    line at a block's end is read again as the start of the next."""
    end = source.size() if end is None else end
    position = start
    while position < end and not cancelled():
        data = source.read(position, min(block_bytes, end - position))
        if not data:
            break
        cut = len(data)
        if position + len(data) < end:
            newline = data.rfind(b"\n")
            if newline >= 0:
                cut = newline + 1
        position += cut
        yield memoryview(data)[:cut], position


def scan_loss_history(
    source: ReadableSource,
    *,
    start: int = 0,
    end: int | None = None,
    history: LossHistory | None = None,
    parser: Any | None = None,
    block_bytes: int = BLOCK_BYTES,
    report_every_s: float = 0.25,
    cancelled: Callable[[], bool] = lambda: False,
) -> Iterator[HistoryProgress]:
    """Fill a `LossHistory` from the log between `start` and `end`, a block at a time; yields a
    snapshot at most every `report_every_s` (a redraw per block would cost the UI more than
    the scan) and always at the end. With `parser` (a `LogParser`: `feed_columns(data)`,
    `flush_columns()`) every line is parsed instead of the fast loss scan, and the losses are
    taken from its columns."""
    history = history or LossHistory()
    total = source.size() if end is None else end
    last_report = time.monotonic()
    scanned = start
    for block, scanned in iter_line_blocks(source, start, total, block_bytes, cancelled):
        if parser is not None:
            history.add_losses(parser.feed_columns(bytes(block)).losses())
        else:
            history.add_block(block)
        if time.monotonic() - last_report >= report_every_s and scanned < total:
            last_report = time.monotonic()
            yield HistoryProgress(history.copy(), scanned, total)
    if cancelled():
        return
    if parser is not None:
        history.add_losses(parser.flush_columns().losses())
    yield HistoryProgress(history.copy(), max(scanned, total), total)


def scan_range(path: str, start: int, end: int, block_bytes: int = BLOCK_BYTES) -> LossHistory:
    """The loss history of one part of a local log (a parallel scan's task)."""
    # Lines are rarely under 40 bytes: start with buckets that will not need halving much.
    expected_records = (end - start) // 40
    span = 1 << max(0, (expected_records // MAX_BUCKETS).bit_length() - 1)
    history = LossHistory(span=span)
    with open(path, "rb") as handle:
        source = _HandleSource(handle)
        for block, _ in iter_line_blocks(source, start, end, block_bytes):
            history.add_block(block)
    return history


class _HandleSource:
    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def size(self) -> int:
        return os.fstat(self.handle.fileno()).st_size

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self.handle.fileno(), length, offset)


def line_aligned_bounds(source: ReadableSource, end: int, parts: int) -> list[int]:
    """`parts` + 1 offsets from 0 to `end`, each but the ends just after a line break."""
    bounds = [0]
    for part in range(1, parts):
        guess = max(bounds[-1], end * part // parts)
        probe = source.read(guess, 1 << 20)
        newline = probe.find(b"\n")
        if newline < 0 or guess + newline + 1 >= end:
            break
        bounds.append(guess + newline + 1)
    bounds.append(end)
    return bounds


def scan_loss_history_parallel(
    path: str,
    *,
    end: int | None = None,
    processes: int | None = None,
    part_bytes: int = 32 << 20,
    cancelled: Callable[[], bool] = lambda: False,
) -> Iterator[HistoryProgress]:
    """`scan_loss_history` of a local file on every core: the file is cut into parts at line
    breaks, process k of n scans parts k, k+n, ... and reports each as a line of JSON, and the
    parts are joined in order, so the chart still fills in from the left.

    Plain `python -m app.log_history` children, not multiprocessing: its spawn and fork server
    re-import the app's main module in every child, and forking a running app (threads, a
    terminal) is unsafe. A child imports only this module and holds one block."""
    import selectors
    import subprocess
    import sys
    from pathlib import Path

    with open(path, "rb") as handle:
        source = _HandleSource(handle)
        size = source.size() if end is None else end
        parts = max(1, min(512, size // part_bytes + 1))
        bounds = line_aligned_bounds(source, size, parts)
    ranges = list(itertools.pairwise(bounds))
    processes = max(1, min(len(ranges), processes or min(4, os.cpu_count() or 1)))
    environment = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in (root, environment.get("PYTHONPATH")) if p
    )
    children = []
    for number in range(processes):
        mine = [str(edge) for part in ranges[number::processes] for edge in part]
        command = [sys.executable, "-m", "app.log_history", "scan-ranges", path, *mine]
        children.append(
            subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment
            )
        )
    history = LossHistory()
    done: dict[int, LossHistory] = {}
    joined = 0
    received = [0] * processes
    selector = selectors.DefaultSelector()
    for number, child in enumerate(children):
        selector.register(child.stdout, selectors.EVENT_READ, number)
    try:
        while joined < len(ranges):
            if cancelled():
                return
            for key, _ in selector.select(timeout=0.1):
                number = key.data
                line = key.fileobj.readline()
                if not line:
                    selector.unregister(key.fileobj)
                    child = children[number]
                    if child.wait() != 0:
                        error = child.stderr.read().decode("utf-8", "replace").strip()
                        raise RuntimeError(f"scanning {path} failed: {error[-500:]}")
                    continue
                part = number + received[number] * processes
                received[number] += 1
                done[part] = LossHistory.from_state(json.loads(line))
            before = joined
            while joined in done:
                history.append_history(done.pop(joined))
                joined += 1
            if joined > before:
                yield HistoryProgress(history.copy(), bounds[joined], size)
    finally:
        selector.close()
        for child in children:
            if child.poll() is None:
                child.kill()
            child.wait()
            child.stdout.close()
            child.stderr.close()


def _scan_ranges_command(arguments: list[str]) -> None:
    """The child of `scan_loss_history_parallel`: one JSON line per (start, end) range."""
    path, edges = arguments[0], [int(edge) for edge in arguments[1:]]
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        state = scan_range(path, start, end).state()
        sys.stdout.write(json.dumps(state, separators=(",", ":")) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "scan-ranges":
        _scan_ranges_command(sys.argv[2:])
