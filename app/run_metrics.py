"""Metrics of one run as its log streams in: the parser and the progress tracker together."""

from __future__ import annotations

import os
from collections.abc import Sequence

from app.eta import ProgressSummary, ProgressTracker
from app.logparse import LogParser, MetricPoint


class RunMetrics:
    def __init__(self, extra_patterns: Sequence[str] = ()) -> None:
        self.extra_patterns = list(extra_patterns)
        self.reset()

    def reset(self) -> None:
        self.parser = LogParser(self.extra_patterns)
        self.tracker = ProgressTracker()
        self.points_seen = 0

    def take_partial_line(self) -> bytes:
        """The start of a line the parser holds (its end has not come yet), as UTF-8, and a
        fresh parser: the caller reads the log from there another way (a burst). The progress
        is kept."""
        partial = self.parser.take_pending()
        self.parser = LogParser(self.extra_patterns)
        return partial

    def feed(self, text: str, now: float) -> list[MetricPoint]:
        points = self.parser.feed(text)
        if points:
            self.points_seen += len(points)
            self.tracker.update(points, now)
        return points

    def summary(self, now: float) -> ProgressSummary | None:
        return self.tracker.summary(now) if self.points_seen else None


def latest_progress(log_path: str, tail_bytes: int = 256 * 1024) -> dict[str, float | int | None]:
    """Last epoch / step / loss from the end of a local log (for the run store and `runs`)."""
    try:
        with open(log_path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - tail_bytes))
            raw = handle.read()
    except OSError:
        return {}
    parser = LogParser()
    points = parser.feed(raw.decode("utf-8", "replace")) + parser.flush()
    progress: dict[str, float | int | None] = {}
    for point in points:
        if point.is_validation:
            continue
        if point.epoch is not None:
            progress["last_epoch"] = point.epoch
        if point.total_epochs is not None:
            progress["total_epochs"] = point.total_epochs
        if point.step is not None:
            progress["last_step"] = point.step
        if point.loss is not None:
            progress["last_loss"] = point.loss
    return progress
