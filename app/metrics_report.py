"""`runctl-tui metrics LOGFILE [--json]`: the parsed points of a training log and a summary.

The file is read in blocks and every point is written out as it is parsed, so a log of any
size runs in constant memory (apart from the summary's bounded loss history).
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TextIO

from app.eta import ProgressSummary, ProgressTracker, format_duration
from app.logparse import LogParser, MetricPoint, as_json_point

BLOCK_BYTES = 1 << 20
EXIT_UNREADABLE = 2


def read_blocks(handle, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
    while block := handle.read(block_bytes):
        yield block


def metrics_main(logfile: str, as_json: bool, extra_patterns: Sequence[str]) -> int:
    for pattern in extra_patterns:
        try:
            re.compile(pattern)
        except re.error as err:
            print(
                f"runctl-tui metrics: the extra pattern {pattern!r} in [logs] extra_patterns "
                f"is not a valid regex ({err}); fix it in runctl.toml",
                file=sys.stderr,
            )
            return EXIT_UNREADABLE
    parser = LogParser(extra_patterns)
    try:
        handle = open(logfile, "rb")  # noqa: SIM115 - closed below, after the first read
        first = handle.read(BLOCK_BYTES)
    except OSError as err:
        reason = err.strerror or str(err)
        print(f"runctl-tui metrics: cannot read {logfile}: {reason}", file=sys.stderr)
        return EXIT_UNREADABLE
    now = time.time()
    tracker = ProgressTracker()
    out = sys.stdout
    writer = JsonWriter(out) if as_json else TableWriter(out)
    try:
        with handle:
            block = first
            while block:
                points = parser.feed(block)
                tracker.update(points, now)
                writer.points(points)
                block = handle.read(BLOCK_BYTES)
        points = parser.flush()
        tracker.update(points, now)
        writer.points(points)
    except OSError as err:
        print(f"runctl-tui metrics: reading {logfile} failed: {err}", file=sys.stderr)
        return EXIT_UNREADABLE
    writer.finish(tracker.summary(now), logfile)
    return 0


def summary_json(summary: ProgressSummary) -> dict:
    return {
        "epoch": summary.epoch,
        "total_epochs": summary.total_epochs,
        "step": summary.step,
        "total_steps": summary.total_steps,
        "loss": summary.loss,
        "eta_seconds": summary.eta_seconds,
        "rate_steps_per_s": summary.rate_steps_per_s,
    }


class JsonWriter:
    """One JSON object, written point by point. nan and inf stay numbers (`NaN`, `Infinity`,
    as Python's json module reads and writes them): a nan loss is the news, not a null."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.first = True
        out.write('{"points": [')

    def points(self, points: list[MetricPoint]) -> None:
        if not points:
            return
        text = ",\n".join(json.dumps(as_json_point(point)) for point in points)
        self.out.write(("\n" if self.first else ",\n") + text)
        self.first = False

    def finish(self, summary: ProgressSummary, _logfile: str) -> None:
        self.out.write('\n], "summary": ' + json.dumps(summary_json(summary)) + "}\n")


def _number(value: float | int | None, digits: int = 5) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"


class TableWriter:
    """A readable table of the points, then the summary."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.count = 0
        out.write(f"{'LINE':>8} {'EPOCH':>9} {'STEP':>13} {'LOSS':>10}  OTHER\n")

    def points(self, points: list[MetricPoint]) -> None:
        rows = []
        for point in points:
            epoch = _number(point.epoch) + (f"/{point.total_epochs}" if point.total_epochs else "")
            step = _number(point.step) + (f"/{point.total_steps}" if point.total_steps else "")
            other = " ".join(f"{name}={_number(value)}" for name, value in point.metrics.items())
            if point.is_validation:
                other = "(validation) " + other
            rows.append(f"{point.line:>8} {epoch:>9} {step:>13} {_number(point.loss):>10}  {other}")
        if rows:
            self.out.write("\n".join(rows) + "\n")
            self.count += len(rows)

    def finish(self, summary: ProgressSummary, logfile: str) -> None:
        write = self.out.write
        write(f"\n{self.count} metric points in {logfile}\n")
        if summary.epoch is not None:
            total = f"/{summary.total_epochs}" if summary.total_epochs else ""
            write(f"  epoch      {_number(summary.epoch)}{total}\n")
        if summary.step is not None:
            total = f"/{summary.total_steps}" if summary.total_steps else ""
            write(f"  step       {summary.step}{total}\n")
        if summary.loss is not None:
            trend = f" ({summary.loss_trend})" if summary.loss_trend else ""
            write(f"  loss       {_number(summary.loss)}{trend}\n")
        if summary.val_loss is not None:
            write(f"  val loss   {_number(summary.val_loss)}\n")
        if summary.rate_steps_per_s is not None:
            write(f"  rate       {_number(summary.rate_steps_per_s, 4)} steps/s\n")
        if summary.eta_source == "finished":
            write("  ETA        none: the run reached its last step\n")
        elif summary.eta_seconds is not None:
            source = f" (from the {summary.eta_source})" if summary.eta_source else ""
            write(f"  ETA        {format_duration(summary.eta_seconds)}{source}\n")
        else:
            write(f"  ETA        {summary.eta_reason}\n")
        if summary.nonfinite_count:
            write(f"  warning    {summary.nonfinite_count} nan/inf loss values in the log\n")
