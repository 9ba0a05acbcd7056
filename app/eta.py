"""Progress and ETA from metric points: where the run is, how fast it goes, when it ends.

The rate is measured over a recent window of wall-clock time (not since the start), so a slow
first step, a pause or a resumed run does not skew it. When the end cannot be known (no total,
no rate yet) the summary says why instead of inventing a number.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.logparse import MetricPoint

RATE_WINDOW_S = 60.0
MAX_HISTORY = 5000


@dataclass(slots=True)
class ProgressSummary:
    epoch: float | None = None
    total_epochs: int | None = None
    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    loss_trend: str | None = None  # "down" | "up" | "flat"
    val_loss: float | None = None
    rate_steps_per_s: float | None = None
    eta_seconds: float | None = None
    finish_at: float | None = None
    eta_reason: str | None = None
    nonfinite_loss: bool = False
    loss_history: list[float] = field(default_factory=list)


class ProgressTracker:
    def __init__(self) -> None:
        self.epoch: float | None = None
        self.total_epochs: int | None = None
        self.step: int | None = None
        self.total_steps: int | None = None
        self.loss: float | None = None
        self.val_loss: float | None = None
        self.nonfinite_loss = False
        self.losses: deque[float] = deque(maxlen=MAX_HISTORY)
        # (wall-clock time, step) samples for the rate; only steps that moved forward.
        self._samples: deque[tuple[float, int]] = deque()

    def update(self, points: Sequence[MetricPoint], now: float) -> None:
        for point in points:
            if point.val_loss is not None:
                self.val_loss = point.val_loss
            if point.is_validation:
                continue
            if point.epoch is not None:
                self.epoch = point.epoch
            if point.total_epochs is not None:
                self.total_epochs = point.total_epochs
            if point.total_steps is not None:
                self.total_steps = point.total_steps
            if point.step is not None:
                if self.step is not None and point.step < self.step:
                    self._samples.clear()  # a restart: the old rate says nothing now
                self.step = point.step
                if not self._samples or self._samples[-1][1] != point.step:
                    self._samples.append((now, point.step))
            if point.loss is not None:
                self.loss = point.loss
                if math.isfinite(point.loss):
                    self.losses.append(point.loss)
                    self.nonfinite_loss = False
                else:
                    self.nonfinite_loss = True
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW_S:
            self._samples.popleft()

    def rate(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, s0), (t1, s1) = self._samples[0], self._samples[-1]
        if t1 <= t0 or s1 <= s0:
            return None
        return (s1 - s0) / (t1 - t0)

    def trend(self) -> str | None:
        if len(self.losses) < 4:
            return None
        recent = list(self.losses)[-20:]
        half = len(recent) // 2
        before = sum(recent[:half]) / half
        after = sum(recent[half:]) / (len(recent) - half)
        if abs(after - before) <= 0.01 * max(abs(before), 1e-12):
            return "flat"
        return "down" if after < before else "up"

    def summary(self, now: float) -> ProgressSummary:
        rate = self.rate()
        eta = finish = None
        reason = None
        if self.total_steps is None or self.step is None:
            reason = "unknown: the log shows no step total"
        elif rate is None:
            reason = "measuring…"
        else:
            eta = max(self.total_steps - self.step, 0) / rate
            # Time since the last measured step already counts toward the remaining time.
            if self._samples:
                eta = max(eta - (now - self._samples[-1][0]), 0.0)
            finish = now + eta
        return ProgressSummary(
            epoch=self.epoch,
            total_epochs=self.total_epochs,
            step=self.step,
            total_steps=self.total_steps,
            loss=self.loss,
            loss_trend=self.trend(),
            val_loss=self.val_loss,
            rate_steps_per_s=rate,
            eta_seconds=eta,
            finish_at=finish,
            eta_reason=reason,
            nonfinite_loss=self.nonfinite_loss,
            loss_history=list(self.losses),
        )
