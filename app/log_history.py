"""The loss history of a whole run, bounded in memory, extracted from a log of any size in blocks.

A run's chart needs every loss the log holds, but never more resolution than a screen: a
`BucketSeries` keeps at most `max_buckets` buckets (count, sum, min, max) of equal x-span and
doubles the span when full, so a million points or a billion cost the same few kilobytes. The x
axis is the training record number (the n-th training loss in the log): steps restart each
epoch in many loops and are missing in others, while the record count always grows. A
validation loss is placed at the training record count when it appeared.

`scan_loss_history` reads the log in blocks (a worker runs it; it yields after each block so the
chart fills in as it goes). Running the full parser over a gigabyte costs ~20 s on this machine
(14.5M lines at well under 1M lines/s), so the scan pulls only training and validation losses out
of each block with two bytes regexes anchored on a literal ("oss", "al") that Python's regex
engine finds fast, and converts them with `map(float, ...)`. Projects whose own extra patterns
define `loss` pass their parser instead (slower, exact). The metrics strip (epoch, step, ETA)
only needs the tail, which the app parses with the real parser. No textual import.
"""

from __future__ import annotations

import codecs
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

BLOCK_BYTES = 8 << 20
MAX_BUCKETS = 2048

_NUMBER = rb"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf)"
_KEY_TO_VALUE = rb"[\"']?[ \t]*[:=]?[ \t]*[\"']?"
# The training loss: `loss`, `Loss`, `train_loss`, `training_loss`, `train/loss`, `train loss`,
# `avg loss`, quoted keys (`'loss': '1.8'`, `"loss": 0.5`) — but not `val loss`, `eval_loss`,
# `aux_loss` or `cross`. The literal `oss` comes first so the engine can skip ahead to it.
TRAIN_LOSS = re.compile(
    rb"oss"
    rb"(?:(?<=[^\w/][Ll]oss)|(?<=^[Ll]oss)|(?<=train_loss)|(?<=training_loss)|(?<=train/loss))"
    rb"(?<![Vv]al loss)(?<!ion loss)(?<!est loss)" + _KEY_TO_VALUE + _NUMBER,
    re.MULTILINE,
)
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

    def __init__(self, max_buckets: int = MAX_BUCKETS) -> None:
        self.max_buckets = max_buckets
        self.span = 1
        self.counts: list[int] = []
        self.sums: list[float] = []
        self.lows: list[float] = []
        self.highs: list[float] = []
        self.points = 0
        self.nonfinite = 0
        self.last: float | None = None

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
        self.add_many([x], [y])

    def add_many(self, xs: Sequence[int], ys: Sequence[float]) -> None:
        """Points at increasing, not necessarily consecutive x (validation losses)."""
        for x, y in zip(xs, ys, strict=True):
            if not math.isfinite(y):
                self.nonfinite += 1
                continue
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

    def __init__(self, max_buckets: int = MAX_BUCKETS) -> None:
        self.train = BucketSeries(max_buckets)
        self.validation = BucketSeries(max_buckets)
        self.train_records = 0  # x of the next training loss

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

    def add_block(self, data: bytes) -> None:
        """Losses in a block of whole lines, in the order they appear."""
        position = 0
        train: list[bytes] = []
        validation_x: list[int] = []
        validation_y: list[float] = []
        for match in VALIDATION_LOSS.finditer(data):
            train += TRAIN_LOSS.findall(data, position, match.start())
            validation_x.append(self.train_records + len(train))
            validation_y.append(float(match.group(1)))
            position = match.end()
        train += TRAIN_LOSS.findall(data, position)
        if train:
            values = list(map(float, train))
            self.train.extend(self.train_records, values)
            self.train_records += len(values)
        self.validation.add_many(validation_x, validation_y)


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
) -> Iterator[tuple[bytes, int]]:
    """Blocks of whole lines from `start` to `end` (a line longer than a block is split), each
    with the offset just past it."""
    end = source.size() if end is None else end
    position = start
    carry = b""
    while position < end and not cancelled():
        data = source.read(position, min(block_bytes, end - position))
        if not data:
            break
        position += len(data)
        data = carry + data
        cut = data.rfind(b"\n") + 1 if position < end else len(data)
        if cut == 0 and len(data) < 4 * block_bytes:
            carry = data
            continue
        if cut == 0:
            cut = len(data)  # one enormous line: take it in pieces
        carry = data[cut:]
        yield data[:cut], position - len(carry)
    if carry and not cancelled():
        yield carry, position


def scan_loss_history(
    source: ReadableSource,
    *,
    start: int = 0,
    end: int | None = None,
    history: LossHistory | None = None,
    parser: Any | None = None,
    block_bytes: int = BLOCK_BYTES,
    cancelled: Callable[[], bool] = lambda: False,
) -> Iterator[HistoryProgress]:
    """Fill a `LossHistory` from the log between `start` and `end`, a block at a time; yields a
    snapshot after each block. With `parser` (a `LogParser`: `feed(text)`, `flush()`) every line
    is parsed instead of the fast loss scan."""
    history = history or LossHistory()
    total = source.size() if end is None else end
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for block, scanned in iter_line_blocks(source, start, total, block_bytes, cancelled):
        if parser is not None:
            history.add_points(parser.feed(decoder.decode(block)))
        else:
            history.add_block(block)
        yield HistoryProgress(history.copy(), scanned, total)
    if parser is not None and not cancelled():
        history.add_points(parser.feed(decoder.decode(b"", final=True)) + parser.flush())
        yield HistoryProgress(history.copy(), total, total)
