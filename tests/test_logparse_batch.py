"""The parser's batches (`feed_batch`, read on demand) give what its points give: the same
points, and losses that fill a `LossHistory` as the points would (and the history's own fast
scan keeps its losses in step when a value does not read)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.log_history import LossHistory
from app.logparse import LogParser, MetricPoint, PointBatch, parse_text

LOGS = Path(__file__).parent / "fixtures" / "logs"
LOG_NAMES = sorted(p.stem for p in LOGS.glob("*.log"))

FRAGMENTS = [
    b"\r",
    b"\n",
    b"\x08" * 3,
    b"\x1b[A",
    b"Epoch 3/10 ",
    b" 45%|\xe2\x96\x88\xe2\x96\x8c  | 45/100 [00:03<00:04, 12.1it/s, loss=0.1]",
    b"step 12/500 ",
    b"loss=",
    b"val_loss: ",
    b"Validation: ",
    b"0.123",
    b"nan",
    b"-inf",
    b"1e-3",
    b"{'loss': '",
    b"{'eval_loss': ",
    b"', 'epoch': ",
    b"}",
    b"32/32 - 0s - 5ms/step - loss: ",
    b"\xe2\x94\x82 val_loss \xe2\x94\x82 0.5 \xe2\x94\x82",
    b"\xff",
    b"  ",
]


def batches(data: bytes, chunk: int) -> tuple[list[PointBatch], LogParser]:
    parser = LogParser()
    out = [parser.feed_batch(data[start : start + chunk]) for start in range(0, len(data), chunk)]
    return [*out, parser.flush_batch()], parser


def history_of_points(points: list[MetricPoint]) -> LossHistory:
    history = LossHistory(max_buckets=64)
    history.add_points(points)
    return history


def history_of_batches(parts: list[PointBatch]) -> LossHistory:
    history = LossHistory(max_buckets=64)
    for batch in parts:
        history.add_losses(batch.losses())
    return history


def same_history(a: LossHistory, b: LossHistory) -> bool:
    """The same chart: sums may differ in their last bits (a bucket's run of points is summed
    at once rather than one by one)."""
    for mine, theirs in ((a.train, b.train), (a.validation, b.validation)):
        state, other = mine.state(), theirs.state()
        sums, other_sums = state.pop("sums"), other.pop("sums")
        if repr(state) != repr(other) or len(sums) != len(other_sums):  # repr: nan != nan
            return False
        if not all(map(math.isclose, sums, other_sums)):
            return False
    return a.train_records == b.train_records


@pytest.mark.parametrize("name", LOG_NAMES)
@pytest.mark.parametrize("chunk", [997, 1 << 20])
def test_batches_of_every_real_log_give_its_points_and_its_loss_history(name, chunk):
    data = (LOGS / f"{name}.log").read_bytes()
    points = parse_text(data)
    parts, _ = batches(data, chunk)
    assert sum(len(batch) for batch in parts) == len(points)
    assert [point for batch in parts for point in batch.points()] == points
    assert same_history(history_of_batches(parts), history_of_points(points))
    # Losses read without building points, then the points: both as before.
    parts, _ = batches(data, chunk)
    assert same_history(history_of_batches(parts), history_of_points(points))
    assert [point for batch in parts for point in batch.points()] == points


def test_losses_follow_the_points_semantics():
    text = (
        "Epoch 1/2 step 1/4 loss=0.5 val_loss=0.7\n"
        "\rEpoch 0:  50%|#    | 2/4 [00:01<00:01, 2.0it/s, train_loss=0.4]"
        "\rValidation DataLoader 0: 100%|#| 2/2 [00:00<00:00, 9.0it/s, loss=0.9]\n"
        "{'eval_loss': 0.65, 'epoch': 1.0}\n"
        "{'train_runtime': 3.4, 'train_loss': 0.45, 'epoch': 2.0}\n"
        "Test set: Average loss: 0.61\n"
        "iter 3: loss nan, time 1.2ms\n"
    )
    series = LogParser().feed_batch(text).losses()
    assert repr(series.train) == "[0.5, 0.4, nan]"  # not the summary's train_loss
    # A validation bar's `loss`, an eval dict, a line that starts with "Test".
    assert series.validation == [0.7, 0.9, 0.65, 0.61]
    assert series.validation_after == [1, 2, 2, 2]
    assert all(type(after) is int for after in series.validation_after)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.lists(st.sampled_from(FRAGMENTS), max_size=200).map(b"".join),
    chunk=st.integers(min_value=1, max_value=400),
)
def test_any_log_in_any_chunks_gives_the_losses_of_its_points(data, chunk):
    points = parse_text(data)
    parts, parser = batches(data, chunk)
    assert same_history(history_of_batches(parts), history_of_points(points))
    assert parser.lines_seen == parse_lines_seen(data)


def parse_lines_seen(data: bytes) -> int:
    parser = LogParser()
    parser.feed(data)
    parser.flush()
    return parser.lines_seen


def test_line_numbers_of_records_cut_at_returns_and_backspaces():
    data = b"a\rloss=1\r\nloss=2\x08\x08\x08loss=3\nx\n\rloss=4\rloss=5"
    assert [(p.line, p.loss) for p in parse_text(data)] == [
        (1, 1.0),
        (2, 2.0),
        (2, 3.0),
        (4, 4.0),
        (4, 5.0),
    ]


def test_a_shape_whose_values_do_not_read_gives_nothing_and_is_analysed_once():
    # The ANSI code sits inside the number: no record of this shape reads as a value.
    lines = [f"step {n} loss=0.\x1b[1m{n}5\x1b[0m" for n in range(1, 9)]
    parser = LogParser()
    assert parser.feed("\n".join(lines) + "\n") == []
    assert parser.analysed_bytes == len(lines[0].encode())


def test_results_are_never_shared_between_calls():
    parser = LogParser()
    first = parser.feed("no metrics here\n")
    first.append("mutated")
    assert parser.feed("still none\n") == [] and parser.flush() == []
    assert len(parser.feed_batch("")) == 0 and parser.feed_batch("").points() == []


def test_the_fast_scan_skips_a_validation_value_that_does_not_read():
    history = LossHistory()
    history.add_block(b"loss=0.5\nval_loss: 1-2\nloss=0.4\nval_loss=0.3\n")
    assert history.train.points == 2 and history.train_records == 2
    assert history.validation.points == 1 and history.validation.counts[2] == 1
