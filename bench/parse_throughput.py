"""Parse throughput: lines per second of the log parser over a generated 2,000,000-line log in
which every line carries metrics, in the formats the parser knows, mixed; printed beside the
floor measured in the same run (splitting the same blocks into lines and iterating them with no
parsing). Not a test; run it: `python bench/parse_throughput.py [LINES] [RUNS]`.

Three ways of using the parser are measured, each checked against the values the generator
printed (every training loss and validation loss, in order):

- full parse into columns: `feed_columns` per block, every value of every record read into
  numpy arrays (`logcolumns.Columns`: the same values as the point objects, which the tests
  check bit for bit). The headline figure: a full parse, and what a whole file needs. Its
  losses and, outside the timing, the count of values it read are checked here too.

- loss-series extraction: `feed_batch` per block and `losses()` of each batch into a
  `LossHistory`, what `log_history.scan_loss_history` does when given a parser. Every record
  is cut, shaped and given its plan, but only the training and validation losses are
  converted: this is not a full parse of every metric. (The dashboard's chart does not use
  this path today: it calls `scan_loss_history` without a parser, i.e. the block regex scan
  measured by bench/big_log.py.)
- point objects: `feed` per block, which builds a `MetricPoint` with every value converted
  (the live follow, `runctl-tui metrics`), with bytes blocks and with str blocks (decoded
  first, as a live follow does).
"""

from __future__ import annotations

import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.log_history import LossHistory
from app.logcolumns import NUMBER_FIELDS
from app.logparse import LogParser

BLOCK = 1 << 20
BAR = "█▏▎▍▌▋▊▉"


def bar(fraction: float, width: int = 10) -> str:
    full = int(fraction * width)
    partial = int((fraction * width - full) * 8)
    text = "█" * full + (BAR[partial] if full < width and partial else "")
    return text.ljust(width)


def make_line(rng: random.Random, i: int) -> tuple[str, str, str | None]:
    """A line, its training loss as printed, and its validation loss as printed (or None)."""
    epoch, step, total = i // 1000 + 1, i % 1000 + 1, 1000
    loss = rng.uniform(0.01, 3.0)
    kind = i % 8
    if kind == 0:
        text = f"{loss:.4f}"
        return (
            f"Epoch {epoch}/10 step {step}/{total} loss={text} acc={rng.random():.3f} lr={rng.uniform(1e-5, 1e-3):.2e}",
            text,
            None,
        )
    if kind == 1:
        pct = step * 100 // total
        text = f"{loss:.3f}"
        return (
            f"\rEpoch {epoch - 1}: {pct:3d}%|{bar(step / total)}| {step}/{total} "
            f"[00:{step % 60:02d}<00:{(total - step) % 60:02d}, {rng.uniform(5, 50):.2f}it/s, "
            f"v_num=0, train_loss={text}]",
            text,
            None,
        )
    if kind == 2:
        text = f"{loss:.4f}"
        return (
            f"{{'loss': '{text}', 'grad_norm': '{rng.uniform(0, 5):.4f}', 'learning_rate': '{rng.uniform(1e-5, 1e-3):.3e}', 'epoch': '{epoch + step / total:.2f}'}}",
            text,
            None,
        )
    if kind == 3:
        text, val = f"{loss:.4f}", f"{loss * 1.1:.4f}"
        return (
            f"{step}/{total} - 0s - {rng.randint(1, 999)}ms/step - accuracy: {rng.random():.4f} - loss: {text} - val_loss: {val}",
            text,
            val,
        )
    if kind == 4:
        text = f"{loss:.4f}"
        return (
            f"iter {i}: loss {text}, time {rng.uniform(10, 99):.2f}ms, mfu {rng.uniform(10, 60):.2f}%",
            text,
            None,
        )
    if kind == 5:
        text = f"{loss}"
        return (
            f'{{"epoch": {epoch}, "step": {i}, "loss": {text}, "lr": {rng.uniform(1e-5, 1e-3)}}}',
            text,
            None,
        )
    if kind == 6:
        pct = step * 100 // total
        text = f"{loss:.3g}"
        return (
            f"\r{pct:3d}%|{bar(step / total)}| {step}/{total} [00:{step % 60:02d}<00:{(total - step) % 60:02d}, {rng.uniform(1, 9):.2f}it/s, loss={text}]",
            text,
            None,
        )
    text, val = f"{loss:.4f}", f"{loss * 1.2:.4f}"
    return (
        f"Epoch [{epoch}/10] [Batch {step}/{total}] Loss {text} val_loss: {val}",
        text,
        val,
    )


QUIET = [
    "INFO:root:saving checkpoint to /runs/ckpt/model_{i}.pt",
    "  warnings.warn(  # deprecated argument; see https://example.org/docs#{i}",
    "Downloading shard {i} of the dataset from the cache",
    "[rank0]: NCCL INFO Channel {i} : 0[0] -> 1[1] via P2P/IPC",
]


def generate_quiet(lines: int) -> bytes:
    """Lines that carry no metrics: what the parser should skip for almost nothing."""
    return "\n".join(QUIET[i % 4].format(i=i) for i in range(lines)).encode() + b"\n"


def generate(lines: int) -> tuple[bytes, list[float], list[float]]:
    """The log, and the training and validation losses it prints, in order."""
    rng = random.Random(7)
    made = [make_line(rng, i) for i in range(lines)]
    data = "\n".join(text for text, _, _ in made).encode() + b"\n"
    train = [float(loss) for _, loss, _ in made]
    validation = [float(val) for _, _, val in made if val is not None]
    return data, train, validation


def blocks_of(data: bytes) -> list[bytes]:
    return [data[i : i + BLOCK] for i in range(0, len(data), BLOCK)]


def floor(blocks: list[bytes]) -> tuple[float, int]:
    """Split the same blocks into lines and iterate them, no parsing."""
    start = time.perf_counter()
    count = 0
    pending = b""
    for block in blocks:
        pieces = (pending + block).split(b"\n")
        pending = pieces.pop()
        for _line in pieces:
            count += 1
    return time.perf_counter() - start, count


def extract(blocks: list[bytes]) -> tuple[float, LogParser, LossHistory, list[float], list[float]]:
    """Whole-file extraction as `scan_loss_history` does it (its parser branch), timed; the
    losses are also kept, outside the timing, to be checked."""
    parser = LogParser()
    history = LossHistory()
    train: list[float] = []
    validation: list[float] = []
    elapsed = 0.0
    for block in [*blocks, None]:
        start = time.perf_counter()
        batch = parser.feed_batch(block) if block is not None else parser.flush_batch()
        series = batch.losses()
        history.add_losses(series)
        elapsed += time.perf_counter() - start
        train += series.train
        validation += series.validation
    return elapsed, parser, history, train, validation


def parse_columns(blocks: list[bytes]) -> tuple[float, LogParser, int, list, list, int]:
    """`feed_columns` per block: every value of every record into arrays, timed; the losses
    and the number of values read are taken out, outside the timing, to be checked."""
    parser = LogParser()
    count = values = 0
    train: list[float] = []
    validation: list[float] = []
    elapsed = 0.0
    for block in [*blocks, None]:
        start = time.perf_counter()
        columns = parser.feed_columns(block) if block is not None else parser.flush_columns()
        elapsed += time.perf_counter() - start
        count += len(columns)
        values += sum(
            int(column.present.sum())
            for column in (*columns.fields.values(), *columns.metrics.values())
        )
        series = columns.losses()
        train += series.train
        validation += series.validation
    return elapsed, parser, count, train, validation, values


def parse(blocks: list[bytes], as_text: bool) -> tuple[float, LogParser, int, list, list]:
    """`feed` per block: a `MetricPoint` per record, every value converted, timed; their losses
    are taken out, outside the timing, to be checked (and the points let go, as a consumer
    that does not keep them would)."""
    parser = LogParser()
    count = 0
    train: list[float] = []
    validation: list[float] = []
    elapsed = 0.0
    for block in [*blocks, None]:
        start = time.perf_counter()
        if block is None:
            points = parser.flush()
        else:
            points = parser.feed(block.decode("utf-8", "replace") if as_text else block)
        elapsed += time.perf_counter() - start
        count += len(points)
        train += [p.loss for p in points if p.loss is not None and not p.is_validation]
        validation += [p.val_loss for p in points if p.val_loss is not None]
    return elapsed, parser, count, train, validation


def expected_values(data: bytes) -> int:
    """How many values the point objects of this log hold (the same parse, untimed)."""
    parser = LogParser()
    total = 0
    for block in [*blocks_of(data), None]:
        points = parser.feed(block) if block is not None else parser.flush()
        total += sum(
            len(point.metrics) + sum(getattr(point, name) is not None for name in NUMBER_FIELDS)
            for point in points
        )
    return total


def best_of(runs: int, measure):
    """The fastest of a few runs: the machine is shared, and load only ever slows a run down."""
    return min((measure() for _ in range(runs)), key=lambda result: result[0])


def same_floats(got: list[float], expected: list[float]) -> bool:
    return len(got) == len(expected) and all(
        a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(got, expected, strict=True)
    )


def check(label: str, train: list[float], validation: list[float], expected) -> None:
    _, want_train, want_validation = expected
    if not same_floats(train, want_train) or not same_floats(validation, want_validation):
        sys.exit(
            f"{label}: wrong values: {len(train):,} training losses (want {len(want_train):,}), "
            f"{len(validation):,} validation losses (want {len(want_validation):,})"
        )


def main() -> None:
    lines = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    expected = generate(lines)
    data = expected[0]
    blocks = blocks_of(data)
    print(f"log: {lines:,} lines, {len(data) / 1e6:.1f} MB, every line carries metrics (8 formats)")
    print(f"best of {runs} runs each; every figure's values checked against the generator's")
    floor_s, counted = best_of(runs, lambda: floor(blocks))
    print(
        f"{'floor (split + iterate, no parsing)':<40}: {counted / floor_s:>12,.0f} lines/s  ({floor_s:.2f} s)"
    )

    seconds, parser, count, train, validation, values = best_of(runs, lambda: parse_columns(blocks))
    check("columns", train, validation, expected)
    want_values = expected_values(data)
    if count != lines or values != want_values:
        sys.exit(f"columns: {count:,} points, {values:,} values; want {lines:,}, {want_values:,}")
    print(
        f"{'FULL PARSE, columns (feed_columns)':<40}: {parser.lines_seen / seconds:>12,.0f} lines/s  "
        f"({seconds:.2f} s, {count:,} points, {values:,} values)"
    )

    seconds, parser, history, train, validation = best_of(runs, lambda: extract(blocks))
    check("loss series", train, validation, expected)
    assert history.train.points == len(train) and history.validation.points == len(validation)
    print(
        f"{'loss series only (feed_batch+losses)':<40}: {parser.lines_seen / seconds:>12,.0f} lines/s  "
        f"({seconds:.2f} s, {len(train):,} losses, {len(validation):,} val losses)"
    )
    for as_text in (False, True):
        measure = lambda as_text=as_text: parse(blocks, as_text)  # noqa: E731
        seconds, parser, count, train, validation = best_of(runs, measure)
        check("point objects", train, validation, expected)
        if count != lines:
            sys.exit(f"point objects: {count:,} points, want {lines:,}")
        label = (
            "point objects, str blocks (decode+feed)"
            if as_text
            else "point objects, bytes blocks (feed)"
        )
        print(
            f"{label:<40}: {parser.lines_seen / seconds:>12,.0f} lines/s  ({seconds:.2f} s, {count:,} points)"
        )
    quiet = blocks_of(generate_quiet(lines))
    floor_s, counted = best_of(runs, lambda: floor(quiet))
    seconds, parser, count, _, _ = best_of(runs, lambda: parse(quiet, as_text=False))
    print(
        f"{lines:,} lines without metrics: floor {counted / floor_s:,.0f} lines/s, "
        f"parser {parser.lines_seen / seconds:,.0f} lines/s ({count} points)"
    )


if __name__ == "__main__":
    main()
