"""Progress and ETA from metric points: where the run is, how fast it goes, when it ends.

Progress is counted in steps on one monotone counter across epochs, so a bar that restarts at
0 every epoch (Lightning, Keras, tqdm loops) and a global step counter (the Hugging Face
Trainer, nanoGPT) give the same kind of number; a log that shows only epochs counts epochs.

The ETA prefers what a progress bar itself says is left (tqdm and Lightning print it), moved
on by the time since that bar was drawn. Otherwise it divides the steps left by a rate measured
over a recent window of wall-clock time with outliers dropped: a slow first step, a pause for
evaluation or a checkpoint, or a run resumed at epoch 5 of 10 does not skew it. Epochs of
different length are handled because the rate is per step, not per epoch. When the end cannot
be known the summary says why (`eta_reason`) instead of inventing a number.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from app.logparse import MetricPoint

RATE_WINDOW_S = 120.0  # the rate is measured over this much recent wall-clock time
MAX_RATE_SAMPLES = 240
OUTLIER_FACTOR = 4.0  # an interval this much slower per step than the median is a pause
STALL_AFTER_S = 300.0  # no progress for this long: the ETA is withheld
MAX_HISTORY = 4096  # loss_history keeps the whole run in at most this many values
TREND_WINDOW = 40
TREND_FLAT = 0.02  # a relative change below this is "flat"
BAR_KINDS = ("bar", "keras")
LATE_REDRAW_STEPS = 3  # a step this close behind the last one is a late redraw, not a restart


@dataclass(slots=True)
class ProgressSummary:
    """What the metrics strip shows. `eta_seconds` is None exactly when `eta_reason` says why.

    Beyond the basics: `epoch_eta_seconds` (the current epoch alone, when the number of epochs
    is unknown), `eta_source` ("progress bar" | "measured rate" | "bar rate" | "finished"),
    `progress` (0..1 of the whole run when known), `val_loss_history`, `metrics` (the latest
    value of every other named metric), `nonfinite_count` and `loss_history_stride` (how many
    raw losses each `loss_history` value averages; 1 until the run outgrows MAX_HISTORY)."""

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
    val_loss_history: list[float] = field(default_factory=list)
    loss_history_stride: int = 1
    epoch_eta_seconds: float | None = None
    eta_source: str | None = None
    progress: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    nonfinite_count: int = 0


class DecimatingHistory:
    """A whole run's series in bounded memory: when full, neighbours are averaged in pairs."""

    def __init__(self, capacity: int = MAX_HISTORY) -> None:
        self.capacity = capacity
        self.values: list[float] = []
        self.stride = 1
        self._sum = 0.0
        self._count = 0

    def append(self, value: float) -> None:
        self._sum += value
        self._count += 1
        if self._count < self.stride:
            return
        self.values.append(self._sum / self._count)
        self._sum, self._count = 0.0, 0
        if len(self.values) >= self.capacity:
            pairs = self.values
            self.values = [(pairs[i] + pairs[i + 1]) / 2 for i in range(0, len(pairs) - 1, 2)] + (
                [pairs[-1]] if len(pairs) % 2 else []
            )
            self.stride *= 2

    def replace_last(self, value: float) -> None:
        """The same step drawn again with a newer value (Lightning draws every step twice)."""
        if self.stride == 1 and self.values:
            self.values[-1] = value
        else:
            self.append(value)

    def snapshot(self) -> list[float]:
        return list(self.values)


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


class ProgressTracker:
    def __init__(self) -> None:
        self.epoch: float | None = None
        self.total_epochs: int | None = None
        self.step: int | None = None
        self.total_steps: int | None = None
        self.loss: float | None = None
        self.val_loss: float | None = None
        self.metrics: dict[str, float] = {}
        self.nonfinite_loss = False
        self.nonfinite_count = 0
        self.losses = DecimatingHistory()
        self.val_losses = DecimatingHistory()
        self._recent_losses: deque[float] = deque(maxlen=TREND_WINDOW)
        self._last_loss_step: int | None = None
        # Counting progress across epochs.
        self.zero_based_epochs = False
        self.per_epoch_steps: bool | None = None  # None until the log shows which
        self._counted = 0.0  # steps done, monotone across epochs (restarts reset the rate only)
        self._epoch_at_step: float | None = None
        self._saw_steps = False
        self._epochs_done = 0.0
        self._last_progress_at: float | None = None
        # (wall-clock time, counted steps), one sample per distinct time.
        self._samples: deque[tuple[float, float]] = deque()
        # The latest training bar: (remaining_s, elapsed_s, rate, arrival time).
        self._bar: tuple[float | None, float | None, float | None, float] | None = None

    # -- input ------------------------------------------------------------------------------
    def update(self, points: Sequence[MetricPoint], now: float) -> None:
        for point in points:
            self._take(point, now)
        cutoff = now - RATE_WINDOW_S
        samples = self._samples
        while len(samples) > 3 and (samples[0][0] < cutoff or len(samples) > MAX_RATE_SAMPLES):
            samples.popleft()

    def _take(self, point: MetricPoint, now: float) -> None:
        val = point.val_loss
        if val is not None:
            # A bar repeats the last validation loss on every update: count each value once.
            repeated = val == self.val_loss and point.kind in ("bar", "keras")
            if math.isfinite(val) and not repeated:
                self.val_losses.append(val)
            self.val_loss = val
        for name, value in point.metrics.items():
            self.metrics[name] = value
        if point.is_validation:
            return
        if point.epoch is not None:
            if point.epoch == 0:
                self.zero_based_epochs = True
            self.epoch = point.epoch
        if point.total_epochs is not None:
            self.total_epochs = point.total_epochs
        if point.total_steps is not None:
            self.total_steps = point.total_steps
        if point.step is not None:
            self._advance(point, now)
        elif point.epoch is not None and not self._saw_steps:
            # A log of epochs only counts epochs; a line with results closes its epoch.
            finished = point.loss is not None or bool(point.metrics)
            self._epochs_done = self._epoch_number(point.epoch) - (0 if finished else 1)
            self._counted = self._epochs_done
            self._record_progress(now)
        if point.step is not None and (
            point.remaining_s is not None or point.rate is not None or point.kind in BAR_KINDS
        ):
            # The latest drawing of the bar, even one that does not know its time yet (a new
            # epoch's `0/16 [00:00<?, ?it/s]`): the previous epoch's "0 s left" is stale.
            self._bar = (point.remaining_s, point.elapsed_s, point.rate, now)
        if point.loss is not None:
            self._take_loss(point.loss, point.step)

    def _take_loss(self, loss: float, step: int | None) -> None:
        self.loss = loss
        if not math.isfinite(loss):
            self.nonfinite_loss = True
            self.nonfinite_count += 1
            return
        self.nonfinite_loss = False
        if step is not None and step == self._last_loss_step:
            self.losses.replace_last(loss)
            if self._recent_losses:
                self._recent_losses[-1] = loss
        else:
            self.losses.append(loss)
            self._recent_losses.append(loss)
        self._last_loss_step = step

    def _advance(self, point: MetricPoint, now: float) -> None:
        step = point.step
        assert step is not None
        epoch = self.epoch
        if not self._saw_steps:
            self._saw_steps = True
            self._samples.clear()
            self._counted = float(step)
            self._guess_mode(point)
        elif self.step is not None:
            new_epoch = (
                epoch is not None
                and self._epoch_at_step is not None
                and epoch > self._epoch_at_step
            )
            if new_epoch and (step < self.step or (step == self.step and self.per_epoch_steps)):
                # The count starts again with each epoch. (Keras verbose=2 shows only each
                # epoch's last `16/16`, so there the same number means a whole new epoch; the
                # Trainer redraws its global bar at the same step after an epoch's dict.)
                self.per_epoch_steps = True
                self._counted += step
            elif step > self.step:
                self._counted += step - self.step
                if new_epoch and self.per_epoch_steps is None:
                    self.per_epoch_steps = False  # the count went on through an epoch change
            elif step < self.step:
                if self.step - step <= LATE_REDRAW_STEPS:
                    return  # a late redraw (Keras on jax printed `1/16` after `3/16`)
                self._samples.clear()  # a restart or a resumed run: the old rate says nothing
                self._bar = None
        self.step = step
        self._epoch_at_step = epoch
        self._record_progress(now)

    def _record_progress(self, now: float) -> None:
        samples = self._samples
        if samples and samples[-1][1] == self._counted:
            return
        self._last_progress_at = now
        if samples and samples[-1][0] == now:
            samples[-1] = (now, self._counted)  # one sample per distinct arrival time
        else:
            samples.append((now, self._counted))

    def _guess_mode(self, point: MetricPoint) -> None:
        """Before an epoch change shows it: are steps counted per epoch or over the run?"""
        if self.epoch is None or self.total_steps is None:
            return
        if point.kind in ("bar", "keras"):
            self.per_epoch_steps = True  # a bar under an epoch label restarts each epoch
        elif self.total_epochs:
            number = self._epoch_number(self.epoch)
            share = self.total_steps / self.total_epochs
            step = point.step or 0
            # A global count cannot be behind the epoch, nor past one epoch's share in epoch 1.
            if (number > 1 and step < (number - 1) * share) or (number <= 1 and step > share):
                self.per_epoch_steps = True

    def _epoch_number(self, epoch: float) -> float:
        """1 for the first epoch, however the log counts."""
        return epoch + 1 if self.zero_based_epochs else epoch

    # -- rates ------------------------------------------------------------------------------
    def measured_rate(self) -> float | None:
        """Units per second over the recent window, pauses and slow starts left out."""
        samples = list(self._samples)
        intervals = [
            (t1 - t0, c1 - c0) for (t0, c0), (t1, c1) in pairwise(samples) if t1 > t0 and c1 > c0
        ]
        if not intervals:
            return None
        per_unit = sorted(dt / dc for dt, dc in intervals)
        typical = per_unit[(len(per_unit) - 1) // 2]  # the lower median
        kept = [(dt, dc) for dt, dc in intervals if dt / dc <= OUTLIER_FACTOR * typical]
        seconds = sum(dt for dt, _ in kept)
        units = sum(dc for _, dc in kept)
        return units / seconds if seconds > 0 else None

    def _typical_interval(self) -> float | None:
        samples = list(self._samples)
        gaps = sorted(t1 - t0 for (t0, _), (t1, _) in pairwise(samples))
        return gaps[len(gaps) // 2] if gaps else None

    # -- the summary ------------------------------------------------------------------------
    def trend(self) -> str | None:
        recent = list(self._recent_losses)
        if len(recent) < 4:
            return None
        half = len(recent) // 2
        before = sum(recent[:half]) / half
        after = sum(recent[half:]) / (len(recent) - half)
        if abs(after - before) <= TREND_FLAT * max(abs(before), 1e-12):
            return "flat"
        return "down" if after < before else "up"

    def summary(self, now: float) -> ProgressSummary:
        result = ProgressSummary(
            epoch=self.epoch,
            total_epochs=self.total_epochs,
            step=self.step,
            total_steps=self.total_steps,
            loss=self.loss,
            loss_trend=self.trend(),
            val_loss=self.val_loss,
            nonfinite_loss=self.nonfinite_loss,
            nonfinite_count=self.nonfinite_count,
            loss_history=self.losses.snapshot(),
            loss_history_stride=self.losses.stride,
            val_loss_history=self.val_losses.snapshot(),
            metrics=dict(self.metrics),
        )
        self._estimate(result, now)
        return result

    def _estimate(self, result: ProgressSummary, now: float) -> None:
        measured = self.measured_rate()
        bar = self._bar
        bar_rate = bar[2] if bar is not None else None
        steps_known = self._saw_steps
        rate = measured if measured is not None else bar_rate
        if steps_known:
            result.rate_steps_per_s = rate

        left, epoch_left, steps_per_epoch, why = self._work_left()
        if left is None:
            result.eta_reason = why
            if epoch_left is not None and rate:
                result.epoch_eta_seconds = epoch_left / rate
            return
        total = self._work_total()
        if total:
            result.progress = min(max(1 - left / total, 0.0), 1.0)
        if left <= 0:
            result.eta_seconds, result.eta_source = 0.0, "finished"
            result.finish_at = self._last_progress_at or now
            return

        since = now - self._last_progress_at if self._last_progress_at is not None else 0.0
        typical = self._typical_interval() or 0.0
        if since > max(STALL_AFTER_S, 10 * typical):
            result.eta_reason = f"stalled: no progress for {format_duration(since)}"
            return

        eta: float | None = None
        if bar is not None and bar[0] is not None and epoch_left is not None:
            remaining_s, elapsed_s, _rate, drawn_at = bar
            # The bar knows the rest of this epoch (or the run, for a global bar); later
            # epochs take as long per step as this one.
            per_step = None
            if rate:
                per_step = 1.0 / rate
            elif elapsed_s and steps_per_epoch and self.step:
                per_step = elapsed_s / self.step
            later = left - epoch_left
            if later <= 0 or per_step is not None:
                eta = max(remaining_s - (now - drawn_at), 0.0) + max(later, 0) * (per_step or 0)
                result.eta_source = "progress bar"
        if eta is None and rate:
            eta = left / rate
            if measured is not None and self._samples:
                eta = max(eta - (now - self._samples[-1][0]), 0.0)
                result.eta_source = "measured rate"
            else:
                result.eta_source = "bar rate"
        if eta is None:
            result.eta_reason = "measuring…" if steps_known or self.epoch is not None else why
            return
        result.eta_seconds = eta
        result.finish_at = now + eta
        if rate and epoch_left is not None and left != epoch_left:
            result.epoch_eta_seconds = epoch_left / rate

    def _work_left(self) -> tuple[float | None, float | None, float | None, str]:
        """(units left in the run, units left in this epoch, units per epoch, reason if unknown)."""
        if self._saw_steps:
            if self.step is None or self.total_steps is None:
                return None, None, None, "unknown: no step total in the log"
            in_epoch = max(self.total_steps - self.step, 0)
            if not self.per_epoch_steps:
                return float(in_epoch), float(in_epoch), None, ""
            if (
                self.epoch is not None
                and self._epoch_at_step is not None
                and self.epoch > self._epoch_at_step
            ):
                in_epoch = self.total_steps  # a new epoch began; its first step is not in yet
            if self.total_epochs is None or self.epoch is None:
                return (
                    None,
                    float(in_epoch),
                    float(self.total_steps),
                    "unknown: number of epochs not in the log",
                )
            later_epochs = max(self.total_epochs - math.floor(self._epoch_number(self.epoch)), 0)
            return (
                float(in_epoch + later_epochs * self.total_steps),
                float(in_epoch),
                float(self.total_steps),
                "",
            )
        if self.epoch is not None:
            if self.total_epochs is None:
                return None, None, None, "unknown: no epoch total in the log"
            left = max(self.total_epochs - self._epochs_done, 0.0)
            return left, None, None, ""
        return None, None, None, "unknown: no progress in the log yet"

    def _work_total(self) -> float | None:
        if self._saw_steps and self.total_steps:
            if self.per_epoch_steps:
                return self.total_steps * self.total_epochs if self.total_epochs else None
            return float(self.total_steps)
        if not self._saw_steps and self.total_epochs:
            return float(self.total_epochs)
        return None
