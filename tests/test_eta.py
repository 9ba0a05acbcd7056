"""Progress and ETA: measured over a recent window, robust to the things real runs do."""

from __future__ import annotations

import math

import pytest

from app.eta import MAX_HISTORY, STALL_AFTER_S, DecimatingHistory, ProgressTracker
from app.logparse import MetricPoint, parse_text


def feed(tracker: ProgressTracker, points, now: float) -> None:
    tracker.update(points if isinstance(points, list) else [points], now)


def step_point(step: int, total: int | None = None, **fields) -> MetricPoint:
    return MetricPoint(line=step + 1, step=step, total_steps=total, **fields)


def run_steps(tracker, steps, start_time: float, seconds_per_step: float, total=None, **fields):
    now = start_time
    for step in steps:
        feed(tracker, step_point(step, total, **fields), now)
        now += seconds_per_step
    return now - seconds_per_step


def test_steady_rate_gives_remaining_time_and_finish_clock():
    tracker = ProgressTracker()
    now = run_steps(tracker, range(101), 0.0, 1.0, total=200)
    summary = tracker.summary(now)
    assert summary.rate_steps_per_s == pytest.approx(1.0)
    assert summary.eta_seconds == pytest.approx(100.0)
    assert summary.finish_at == pytest.approx(now + 100.0)
    assert summary.eta_source == "measured rate"
    assert summary.progress == pytest.approx(0.5)


def test_a_slow_first_step_does_not_skew_the_rate():
    tracker = ProgressTracker()
    feed(tracker, step_point(0, 1000), 0.0)
    # The first step compiles for 90 s, then steps take 0.5 s.
    run_steps(tracker, range(1, 21), 90.0, 0.5, total=1000)
    summary = tracker.summary(90.0 + 19 * 0.5)
    assert summary.rate_steps_per_s == pytest.approx(2.0)
    assert summary.eta_seconds == pytest.approx(980 / 2.0)


def test_a_pause_for_evaluation_does_not_skew_the_rate():
    tracker = ProgressTracker()
    now = run_steps(tracker, range(0, 40), 0.0, 1.0, total=400)
    now = run_steps(tracker, range(40, 60), now + 60.0, 1.0, total=400)  # a 60 s pause
    assert tracker.summary(now).rate_steps_per_s == pytest.approx(1.0)


def test_resumed_at_epoch_5_of_10_counts_only_what_is_left():
    tracker = ProgressTracker()
    feed(tracker, MetricPoint(line=1, epoch=5, total_epochs=10), 0.0)
    now = run_steps(tracker, range(0, 51), 0.0, 0.1, total=100, kind="bar")
    summary = tracker.summary(now)
    assert summary.rate_steps_per_s == pytest.approx(10.0)
    # 50 steps of epoch 5, then epochs 6..10 of 100 steps each, at 10 steps/s.
    assert summary.eta_seconds == pytest.approx((50 + 5 * 100) / 10.0)
    assert summary.epoch_eta_seconds == pytest.approx(5.0)


def test_epochs_of_different_length_keep_the_per_step_rate():
    tracker = ProgressTracker()
    feed(tracker, MetricPoint(line=1, epoch=1, total_epochs=3), 0.0)
    now = run_steps(tracker, range(0, 101), 0.0, 0.1, total=100, kind="bar")
    feed(tracker, MetricPoint(line=2, epoch=2, total_epochs=3), now)
    now = run_steps(tracker, range(0, 21), now + 0.1, 0.1, total=50, kind="bar")
    summary = tracker.summary(now)
    assert tracker.per_epoch_steps
    # (The change of epoch itself costs one step time without a step: 100/100 -> 0/50.)
    assert summary.rate_steps_per_s == pytest.approx(10.0, rel=0.02)
    assert summary.eta_seconds == pytest.approx((30 + 50) / 10.0, rel=0.02)


def test_steps_counted_over_the_run_are_not_mistaken_for_epoch_restarts():
    tracker = ProgressTracker()
    text = "".join(
        f"Epoch {1 + step // 10}/4 Step {step}/40 loss={1 / step:.4f}\n" for step in range(1, 41)
    )
    for i, point in enumerate(parse_text(text)):
        feed(tracker, point, float(i))
    summary = tracker.summary(39.0)
    assert tracker.per_epoch_steps is False
    assert summary.eta_seconds == 0.0 and summary.eta_source == "finished"


def test_a_bars_own_remaining_time_is_preferred_and_runs_down():
    tracker = ProgressTracker()
    feed(tracker, step_point(10, 100, remaining_s=42.0, elapsed_s=5.0, rate=2.0, kind="bar"), 0.0)
    summary = tracker.summary(0.0)
    assert summary.eta_seconds == pytest.approx(42.0)
    assert summary.eta_source == "progress bar"
    assert summary.rate_steps_per_s == pytest.approx(2.0)
    assert tracker.summary(5.0).eta_seconds == pytest.approx(37.0)


def test_the_bar_covers_this_epoch_and_later_epochs_are_added():
    tracker = ProgressTracker()
    feed(tracker, MetricPoint(line=1, epoch=2, total_epochs=4), 0.0)
    feed(tracker, step_point(50, 100, remaining_s=25.0, elapsed_s=25.0, rate=2.0, kind="bar"), 0.0)
    # 25 s left in epoch 2 (the bar), then epochs 3 and 4 at 2 steps/s.
    assert tracker.summary(0.0).eta_seconds == pytest.approx(25.0 + 200 / 2.0)


def test_a_new_epochs_bar_without_time_yet_replaces_the_last_epochs_bar():
    tracker = ProgressTracker()
    feed(tracker, MetricPoint(line=1, epoch=1, total_epochs=3), 0.0)
    now = run_steps(tracker, range(0, 11), 0.0, 1.0, total=10, kind="bar", remaining_s=0.0)
    feed(tracker, MetricPoint(line=2, epoch=2, total_epochs=3), now)
    feed(tracker, step_point(0, 10, kind="bar"), now + 1)  # `0/10 [00:00<?, ?it/s]`
    summary = tracker.summary(now + 1)
    # Not the old bar's "0 s left": 10 steps of epoch 2 and 10 of epoch 3 at the measured rate.
    assert summary.eta_source == "measured rate"
    assert summary.eta_seconds == pytest.approx(20.0, rel=0.1)


def test_an_epoch_that_has_begun_counts_whole_before_its_first_step():
    # Keras verbose=2: `Epoch 3/5` starts the epoch; its `16/16 - ...` line comes at its end.
    tracker = ProgressTracker()
    for epoch in (1, 2):
        feed(tracker, parse_text(f"Epoch {epoch}/5\n"), epoch - 1.0)
        feed(tracker, parse_text("16/16 - 1s - 62ms/step - loss: 0.5\n"), float(epoch))
    feed(tracker, parse_text("Epoch 3/5\n"), 2.0)
    summary = tracker.summary(2.0)
    assert summary.rate_steps_per_s == pytest.approx(16.0)  # one epoch of 16 steps a second
    assert summary.eta_seconds == pytest.approx(3.0)  # epochs 3, 4 and 5


def test_unknown_total_says_why():
    tracker = ProgressTracker()
    summary = tracker.summary(0.0)
    assert summary.eta_seconds is None and "no progress" in summary.eta_reason
    run_steps(tracker, range(0, 10), 0.0, 1.0)
    summary = tracker.summary(9.0)
    assert summary.eta_seconds is None and "no step total" in summary.eta_reason
    assert summary.rate_steps_per_s == pytest.approx(1.0)


def test_unknown_number_of_epochs_gives_this_epoch_only():
    tracker = ProgressTracker()
    points = parse_text(
        "".join(
            f"\rEpoch 0:  {n}%|#| {n}/100 [00:0{n % 10}<00:09, 10.0it/s, train_loss=0.5]"
            for n in range(1, 20)
        )
    )
    feed(tracker, points, 0.0)
    summary = tracker.summary(0.0)
    assert summary.eta_seconds is None and "number of epochs" in summary.eta_reason
    assert summary.epoch_eta_seconds == pytest.approx(81 / 10.0)


def test_a_restart_drops_the_old_rate():
    tracker = ProgressTracker()
    run_steps(tracker, range(0, 50), 0.0, 1.0, total=100)
    feed(tracker, step_point(0, 100), 100.0)
    assert tracker.measured_rate() is None
    run_steps(tracker, range(1, 11), 100.25, 0.25, total=100)
    assert tracker.summary(102.5).rate_steps_per_s == pytest.approx(4.0)


def test_a_late_redraw_of_an_earlier_step_is_not_a_restart():
    tracker = ProgressTracker()
    now = run_steps(tracker, [2, 3, 1, 4, 5, 6], 0.0, 1.0, total=16)  # Keras on jax did this
    summary = tracker.summary(now)
    assert summary.step == 6
    assert summary.rate_steps_per_s == pytest.approx(4 / 5)  # steps 2..6 over the 5 s


def test_a_stalled_run_gets_no_invented_eta():
    tracker = ProgressTracker()
    now = run_steps(tracker, range(0, 20), 0.0, 1.0, total=100)
    summary = tracker.summary(now + STALL_AFTER_S + 1)
    assert summary.eta_seconds is None
    assert summary.eta_reason.startswith("stalled")


def test_epoch_only_logs_count_epochs():
    tracker = ProgressTracker()
    for epoch in range(1, 4):
        feed(
            tracker,
            MetricPoint(line=epoch, epoch=epoch, total_epochs=10, loss=1 / epoch),
            epoch * 60.0,
        )
    summary = tracker.summary(180.0)
    assert summary.rate_steps_per_s is None  # no steps in this log
    assert summary.eta_seconds == pytest.approx(7 * 60.0)


def test_validation_points_do_not_move_training_progress():
    tracker = ProgressTracker()
    run_steps(tracker, range(0, 11), 0.0, 1.0, total=100)
    feed(
        tracker,
        MetricPoint(line=99, step=3, total_steps=8, is_validation=True, metrics={"val_loss": 0.7}),
        11.0,
    )
    summary = tracker.summary(11.0)
    assert (summary.step, summary.total_steps, summary.val_loss) == (10, 100, 0.7)
    assert summary.val_loss_history == [0.7]


def test_loss_trend_and_nonfinite_warning():
    tracker = ProgressTracker()
    for step in range(20):
        feed(tracker, step_point(step, loss=2.0 - 0.05 * step), float(step))
    assert tracker.summary(20.0).loss_trend == "down"
    for step in range(20, 60):
        feed(tracker, step_point(step, loss=1.0), float(step))
    assert tracker.summary(60.0).loss_trend == "flat"
    feed(tracker, step_point(60, loss=math.nan), 61.0)
    summary = tracker.summary(61.0)
    assert summary.nonfinite_loss and summary.nonfinite_count == 1
    assert all(math.isfinite(v) for v in summary.loss_history)
    feed(tracker, step_point(61, loss=0.9), 62.0)
    assert not tracker.summary(62.0).nonfinite_loss


def test_a_step_drawn_twice_keeps_its_latest_loss_once():
    tracker = ProgressTracker()
    feed(tracker, [step_point(1, loss=3.0), step_point(2, loss=3.0), step_point(2, loss=2.0)], 0.0)
    assert tracker.summary(0.0).loss_history == [3.0, 2.0]


def test_loss_history_covers_the_whole_run_in_bounded_memory():
    history = DecimatingHistory(capacity=MAX_HISTORY)
    for value in range(10 * MAX_HISTORY):
        history.append(float(value))
    assert len(history.values) < MAX_HISTORY
    assert history.values[0] < MAX_HISTORY / 2  # the start of the run is still there
    assert history.values[-1] > 9 * MAX_HISTORY
    assert history.stride >= 8


def test_live_tqdm_run_through_the_parser_gives_a_steady_eta():
    """Three epochs of 100 steps at 10 steps/s, fed as a live follow would: chunks of text."""
    from app.logparse import LogParser

    parser, tracker = LogParser(), ProgressTracker()
    etas = []
    for epoch in range(1, 4):
        for n in range(0, 101):
            left = (100 - n) / 10
            update = (
                f"\rEpoch {epoch}/3: {n:3d}%|#| {n}/100 "
                f"[00:{n // 10:02d}<00:{int(left):02d}, 10.00it/s, loss={1 / (n + epoch):.3f}]"
            )
            now = (epoch - 1) * 10.0 + n / 10
            tracker.update(parser.feed(update), now)
            if n == 50:
                etas.append((epoch, tracker.summary(now).eta_seconds))
        tracker.update(parser.feed("\n"), now)
    # Half of this epoch's 100 steps and every later epoch's 100, at 10 steps/s.
    assert etas == [
        (1, pytest.approx(25.0, abs=1.1)),
        (2, pytest.approx(15.0, abs=1.1)),
        (3, pytest.approx(5.0, abs=1.1)),
    ]
    assert tracker.summary(30.0).eta_seconds == 0.0
