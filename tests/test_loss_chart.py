"""The loss history (bounded buckets, the fast whole-file scan) and the chart that draws it."""

from __future__ import annotations

import json
import math
import random
import time

from textual.app import App, ComposeResult

from app.log_history import (
    BucketSeries,
    LossHistory,
    iter_line_blocks,
    scan_loss_history,
    scan_loss_history_parallel,
)
from app.log_index import BytesSource
from app.logparse import LogParser, MetricPoint
from widgets.loss_chart import LossChart, smooth

FORMATS = b"""\
Epoch 1/10 step 5/100 loss: 0.5 lr=3e-4
loss=1e-3 aux_loss=5 cross 7 interval_loss=4
{'loss': 0.6931, 'grad_norm': 1.2, 'learning_rate': 5e-05, 'epoch': 0.33}
{'loss': '1.802', 'epoch': '2'}
{'eval_loss': 0.4, 'epoch': 2.0}
{"epoch": 1, "step": 10, "loss": 0.5}
Epoch 2:  45%|####| 45/100 [00:03<00:04, 12.1it/s, v_num=0, train_loss=0.123, val_loss=0.153]
32/32 - 0s - 5ms/step - loss: 0.4321 - accuracy: 0.81 - val_loss: 0.1
iter 100: loss 2.3456, time 12.34ms, mfu 12.34%
step 250: train loss 2.1234, val loss 2.2345
Loss 0.43 avg loss 0.17
Validation loss: 0.3
loss=nan
"""


def test_the_fast_scan_reads_the_common_formats() -> None:
    history = LossHistory()
    history.add_block(FORMATS)
    train = [0.5, 1e-3, 0.6931, 1.802, 0.5, 0.123, 0.4321, 2.3456, 2.1234, 0.43, 0.17]
    assert history.train_records == len(train) + 1  # + the nan
    assert history.train.points == len(train)
    assert history.nonfinite == 1
    assert math.isclose(sum(history.train.sums), sum(train))
    assert history.validation.points == 5
    assert math.isclose(sum(history.validation.sums), 0.4 + 0.153 + 0.1 + 2.2345 + 0.3)


def test_validation_is_placed_at_the_training_record_count() -> None:
    history = LossHistory()
    history.add_block(b"loss=1\nloss=2\nval_loss=9\nloss=3\n")
    columns = history.validation.columns(3, 3)
    assert columns == [None, None, (1, 9.0, 9.0, 9.0)]


def test_parser_points_feed_the_same_history() -> None:
    history = LossHistory()
    history.add_points(
        [
            MetricPoint(1, loss=1.0),
            MetricPoint(2, loss=2.0, metrics={"val_loss": 3.0}),
            MetricPoint(3, metrics={"eval_loss": 4.0}, is_validation=True),
        ]
    )
    assert history.train_records == 2
    assert history.validation.points == 2 and history.validation.last == 4.0


def test_a_million_points_fit_in_bounded_buckets() -> None:
    series = BucketSeries(max_buckets=512)
    rng = random.Random(1)
    values = [rng.random() for _ in range(1_000_000)]
    started = time.perf_counter()
    for start in range(0, len(values), 100_000):
        series.extend(start, values[start : start + 100_000])
    assert time.perf_counter() - started < 2
    assert len(series.counts) <= 512
    assert series.points == 1_000_000 and sum(series.counts) == 1_000_000
    assert math.isclose(sum(series.sums), sum(values))
    assert min(series.lows) == min(values) and max(series.highs) == max(values)
    columns = series.columns(100, 1_000_000)
    assert all(column is not None for column in columns)
    assert sum(column[0] for column in columns) == 1_000_000


def test_nan_and_inf_are_counted_not_plotted() -> None:
    series = BucketSeries()
    series.extend(0, [1.0, math.nan, 2.0, math.inf, -math.inf])
    series.add(10, math.nan)
    assert series.points == 2 and series.nonfinite == 4
    assert max(series.highs) == 2.0


def test_blocks_end_at_line_breaks_and_a_huge_line_is_split() -> None:
    data = b"a" * 10 + b"\n" + b"b" * 100 + b"\n" + b"c" * 5
    blocks = list(iter_line_blocks(BytesSource(data), block_bytes=64))
    assert blocks[0] == (b"a" * 10 + b"\n", 11)
    assert b"".join(block for block, _ in blocks) == data and blocks[-1][1] == len(data)
    # A line over four blocks long is taken in pieces rather than held whole.
    pieces = list(iter_line_blocks(BytesSource(data), block_bytes=16))
    assert b"".join(block for block, _ in pieces) == data
    assert max(len(block) for block, _ in pieces) <= 5 * 16


def test_the_scan_fills_in_block_by_block() -> None:
    lines = [f"step {i} loss={1 / (i + 1):.5f}\n" for i in range(20_000)]
    lines[5000] = "step 5000 val_loss=0.25\n"
    data = "".join(lines).encode()
    progress = list(scan_loss_history(BytesSource(data), block_bytes=64 * 1024, report_every_s=0))
    assert len(progress) > 3
    fractions = [p.fraction for p in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert progress[0].history.train_records < progress[-1].history.train_records
    final = progress[-1].history
    assert final.train_records == 19_999 and final.validation.points == 1
    # The parser path (for projects whose own patterns define the loss) agrees.
    parsed = list(scan_loss_history(BytesSource(data), parser=LogParser()))[-1].history
    assert parsed.train_records == 19_999
    assert math.isclose(sum(parsed.train.sums), sum(final.train.sums))


def test_the_parallel_scan_joins_its_parts_in_order(tmp_path) -> None:
    lines = [f"step {i} loss={(i % 97) / 10:.1f}" for i in range(60_000)]
    lines[100] = "step 100 loss=nan"
    lines[59_000] = "{'eval_loss': 0.25}"
    path = tmp_path / "output.log"
    path.write_text("\n".join(lines) + "\n")
    serial = list(scan_loss_history(BytesSource(path.read_bytes())))[-1].history
    progress = list(scan_loss_history_parallel(str(path), processes=2, part_bytes=64 * 1024))
    assert len(progress) > 5
    assert [p.scanned_bytes for p in progress] == sorted(p.scanned_bytes for p in progress)
    assert progress[-1].fraction == 1.0
    joined = progress[-1].history
    assert joined.train_records == serial.train_records == 59_999
    assert joined.train.points == serial.train.points and joined.nonfinite == 1
    assert math.isclose(sum(joined.train.sums), sum(serial.train.sums))
    assert min(joined.train.lows) == 0.0 and max(joined.train.highs) == 9.6
    # The validation point keeps its place: near the end, in both.
    column = [i for i, c in enumerate(joined.validation.columns(100, joined.train_records)) if c]
    assert column == [98]


def test_a_history_survives_its_json_state() -> None:
    history = LossHistory()
    history.add_block(FORMATS)
    again = LossHistory.from_state(json.loads(json.dumps(history.state())))
    assert again.state() == history.state()


def test_cancelling_stops_the_scan() -> None:
    data = b"loss=1\n" * 100_000
    progress = list(scan_loss_history(BytesSource(data), block_bytes=4096, cancelled=lambda: True))
    assert progress == []


def test_smoothing_is_debiased_and_keeps_gaps() -> None:
    assert smooth([2.0, None, 2.0]) == [2.0, None, 2.0]
    values = smooth([1.0, 0.0, 0.0, 0.0])
    assert values[0] == 1.0 and values[1] < 1.0 and values[3] < values[2]


class ChartApp(App[None]):
    def compose(self) -> ComposeResult:
        yield LossChart()


def chart_text(app: ChartApp) -> str:
    return app.query_one(LossChart).render().plain


def decaying_history(count: int, with_validation: bool) -> LossHistory:
    history = LossHistory()
    rng = random.Random(3)
    history.train.extend(
        0, [3 * math.exp(-i / (count / 5)) + 0.3 * rng.random() for i in range(count)]
    )
    history.train_records = count
    if with_validation:
        xs = list(range(0, count, count // 20))
        history.validation.add_many(xs, [3 * math.exp(-x / (count / 5)) + 0.4 for x in xs])
    return history


async def test_the_chart_draws_a_million_points_fast() -> None:
    app = ChartApp()
    async with app.run_test(size=(100, 14)) as pilot:
        chart = app.query_one(LossChart)
        assert "no loss in the log yet" in chart_text(app)
        chart.show(LossHistory(), progress=0.0)
        assert "reading the log" in chart_text(app)
        history = decaying_history(1_000_000, with_validation=True)
        started = time.perf_counter()
        chart.show(history, progress=0.5)
        text = chart_text(app)
        assert time.perf_counter() - started < 0.5
        await pilot.pause()
        rows = text.splitlines()
        assert len(rows) == chart.content_region.height
        braille = [ch for ch in text if 0x2800 < ord(ch) <= 0x28FF]
        assert len(braille) > 80
        assert "val loss" in rows[-1] and "reading 50%" in rows[-1]
        assert "1,000,000 records" in rows[-1]
        # Decaying: the line starts high on the left and ends low on the right.
        plot = [row[8:] for row in rows[:-1]]
        first_row_with_left = next(i for i, r in enumerate(plot) if r[:3].strip())
        first_row_with_right = next(i for i, r in enumerate(plot) if r[-3:].strip())
        assert first_row_with_left < first_row_with_right


async def test_live_points_continue_the_scanned_history() -> None:
    app = ChartApp()
    async with app.run_test(size=(60, 10)):
        chart = app.query_one(LossChart)
        scanned = decaying_history(1000, with_validation=False)
        live = LossHistory()
        live.add_points([MetricPoint(i, loss=math.nan if i == 3 else 0.1) for i in range(10)])
        chart.show(scanned, live)
        footer = chart_text(app).splitlines()[-1]
        assert "1,010 records" in footer
        assert "1 nan/inf skipped" in footer
        assert "val loss" not in footer


def test_a_block_is_scanned_in_slices_of_whole_lines_with_the_same_result(monkeypatch) -> None:
    """add_block reads a big block a slice of whole lines at a time (a regex call holds the
    GIL); slices cut nothing: the history is the one a single scan gives."""
    import app.log_history as log_history

    lines = [f"step {i} loss={(i % 89) / 10:.1f}" for i in range(3_000)]
    for i in range(7, 3_000, 400):
        lines[i] = f"epoch {i} val_loss={(i % 13) / 10:.1f} train_loss=0.5"
    data = ("\n".join(lines) + "\n").encode()
    whole = LossHistory()
    whole.add_block(data)
    monkeypatch.setattr(log_history, "BLOCK_SLICE_BYTES", 100)  # ~3 lines a slice
    sliced = LossHistory()
    sliced.add_block(memoryview(data))
    assert sliced.train_records == whole.train_records == 3_000
    assert sliced.train.sums == whole.train.sums
    assert sliced.validation.points == whole.validation.points == 8
    width = whole.train_records
    assert sliced.validation.columns(width, width) == whole.validation.columns(width, width)
