"""The parser's columns (`feed_columns`: numpy arrays, for whole files) hold exactly the values
of its points (`feed`): every field and metric of every record, bit for bit, on the real
framework logs, on random bytes cut anywhere, and on numbers chosen to be hard to read."""

from __future__ import annotations

import math
import random
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import logcolumns, logparse
from app.logcolumns import Columns
from app.logparse import LogParser, MetricPoint
from tests.test_logparse_batch import FRAGMENTS as BATCH_FRAGMENTS

LOGS = Path(__file__).parent / "fixtures" / "logs"
LOG_NAMES = sorted(p.stem for p in LOGS.glob("*.log"))
# Every field of a point but its metrics (compared by name below).
POINT_FIELDS = ("line", *(name for name in logparse.POINT_FIELDS if name != "metrics"))

# The batch tests' fragments, and numbers that are hard to read exactly or at all.
FRAGMENTS = [
    *BATCH_FRAGMENTS,
    b" 7/9 [1:02:03<?, 3.25s/it]",
    b"-2.5E+03",
    b"0.30000000000000004",
    b"123456789012345678901",
    b"12/12 - 1s - 0us/step - accuracy: ",
    b"top1_acc=",
]


def same_value(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    # Columns hold numbers as doubles: a whole number bigger than 2**53 is its nearest double.
    return (a == b and type(a) is type(b)) or (isinstance(b, int) and a == float(b))


def assert_same_points(got: list[MetricPoint], want: list[MetricPoint]) -> None:
    assert len(got) == len(want)
    for mine, theirs in zip(got, want, strict=True):
        for name in POINT_FIELDS:
            assert same_value(getattr(mine, name), getattr(theirs, name)), (name, mine, theirs)
        assert mine.metrics.keys() == theirs.metrics.keys(), (mine, theirs)
        for name, value in theirs.metrics.items():
            assert same_value(mine.metrics[name], value), (name, mine, theirs)


def columns_in_chunks(data: bytes, cuts: list[int], extra: tuple[str, ...] = ()) -> Columns:
    parser = LogParser(extra)
    parts, start = [], 0
    for cut in [*sorted(cuts), len(data)]:
        parts.append(parser.feed_columns(data[start:cut]))
        start = max(start, cut)
    parts.append(parser.flush_columns())
    return Columns.concat(parts)


def points_of(data: bytes, extra: tuple[str, ...] = ()) -> list[MetricPoint]:
    parser = LogParser(extra)
    return parser.feed(data) + parser.flush()


@pytest.mark.parametrize("name", LOG_NAMES)
def test_every_real_log_gives_the_points_values_in_columns(name):
    data = (LOGS / f"{name}.log").read_bytes()
    want = points_of(data)
    assert want, "a fixture log without points proves nothing"
    for cuts in ([], list(range(4096, len(data), 4096)), [len(data) // 3, len(data) // 2]):
        columns = columns_in_chunks(data, cuts)
        assert_same_points(columns.points(), want)


@pytest.mark.parametrize("name", LOG_NAMES)
def test_the_loss_series_of_columns_is_the_batches(name):
    data = (LOGS / f"{name}.log").read_bytes()
    parser = LogParser()
    batch = parser.feed_batch(data)
    want = [batch.losses(), parser.flush_batch().losses()]
    parser = LogParser()
    got = [parser.feed_columns(data).losses(), parser.flush_columns().losses()]
    for mine, theirs in zip(got, want, strict=True):
        assert mine.train == theirs.train
        assert mine.validation == theirs.validation
        assert mine.validation_after == theirs.validation_after


def hard_doubles(count: int) -> list[float]:
    """Doubles whose shortest repr has 17 digits, random bit patterns, tiny and huge ones."""
    rng = random.Random(5)
    values = []
    for index in range(count):
        kind = index % 5
        if kind == 0:
            value = rng.random()
        elif kind == 1:
            value = struct.unpack("d", struct.pack("Q", rng.getrandbits(62) | (1 << 61)))[0]
        elif kind == 2:
            value = rng.random() * 10 ** rng.randint(-30, 30)
        elif kind == 3:
            value = -rng.uniform(0, 3)
        else:
            value = rng.random() * 1e-5
        values.append(value if math.isfinite(value) else 1.0)
    return values


def test_every_number_reads_as_float_reads_it():
    values = hard_doubles(30_000)
    texts = [repr(v) if i % 3 else f"{v:.17g}" for i, v in enumerate(values)]
    texts += [f"{v:.4e}" for v in values[:2000]] + [f"{v:.20f}" for v in values[:2000]]
    data = "".join(f"step {i} loss={t} lr={t}\n" for i, t in enumerate(texts)).encode()
    columns = LogParser().feed_columns(data)
    want = [float(text) for text in texts]
    assert columns.fields["loss"].values.tolist() == want
    assert columns.metrics["lr"].values.tolist() == want
    assert columns.fields["step"].values.tolist() == list(range(len(texts)))


def test_without_long_double_the_17_digit_numbers_still_read_exactly(monkeypatch):
    """Where long double is a plain double (macOS on ARM, Windows), those go to float()."""
    monkeypatch.setattr(logcolumns, "READS_17_DIGITS", False)
    texts = [repr(v) for v in hard_doubles(3000)]
    data = "".join(f"loss={t}\n" for t in texts).encode()
    assert LogParser().feed_columns(data).fields["loss"].values.tolist() == list(map(float, texts))


def test_conversions_and_special_values_are_the_points():
    data = (
        b"Epoch 2:  45%|####5     | 45/100 [01:02:03<00:04, 12.1it/s, v_num=0, train_loss=nan]\n"
        b" 45/100 [00:03<00:04,  0.00s/it, loss=-inf]\n"
        b" 46/100 [00:03<00:04,  2.50s/it, loss=+1.5E+02]\n"
        b"32/32 - 0s - 0ms/step - loss: 0.4321 - accuracy: 0.81\n"
        b"32/32 - 0s - 5ms/step - loss: 0.4321 - accuracy: 0.81\n"
        b"{'loss': '1.802', 'epoch': '2', 'step': 1e3}\n"
        b"step 123456789012345678901 loss=0.5 top1_acc=0.9 top5_acc=0.99\n"
        b"global_step=nan loss=Infinity\n"
    )
    want = points_of(data)
    assert_same_points(columns_in_chunks(data, []).points(), want)
    rates = [p.rate for p in want]
    assert rates[1] is None and rates[2] == 0.4 and rates[3] is None and rates[4] == 200.0
    assert want[0].elapsed_s == 3723.0 and want[6].step == 123456789012345678901


def test_a_parser_with_extra_patterns_gives_its_points_as_columns():
    data = b"custom thing=3.5 loss=0.25\nstep 1 loss=0.5\n"
    extra = (r"thing=(?P<thing>\S+)",)
    columns = columns_in_chunks(data, [10], extra)
    assert_same_points(columns.points(), points_of(data, extra))
    assert columns.metrics["thing"].values[0] == 3.5


def test_a_megabyte_line_and_garbage_give_the_points():
    data = b"\xff\xfe garbage \x00\x01" * 1000 + b"loss=0.5\n" + b"x" * (1 << 20) + b"\nloss=0.25\n"
    assert_same_points(columns_in_chunks(data, [5000, 600_000]).points(), points_of(data))


def test_a_shape_cache_that_starts_over_keeps_reading_right(monkeypatch):
    monkeypatch.setattr(logcolumns, "MAX_SHAPES", 8)
    data = "".join(f"step {i} {'x' * (i % 40)} loss={i / 7}\n" for i in range(3000)).encode()
    assert_same_points(columns_in_chunks(data, [9000, 30000]).points(), points_of(data))


log_bytes = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=40)), max_size=60
).map(b"".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=log_bytes, cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=20))
def test_any_bytes_in_any_chunks_give_the_points_in_columns(data, cuts):
    assert_same_points(columns_in_chunks(data, cuts).points(), points_of(data))


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=30
    ),
    style=st.sampled_from(["{!r}", "{:.17g}", "{:.3e}", "{:.25f}", "{:+.6f}"]),
)
def test_any_float_in_any_style_reads_as_its_point(values, style):
    data = "".join(
        f"iter {i}: loss {style.format(v)}, val_loss={v!r}\n" for i, v in enumerate(values)
    )
    assert_same_points(columns_in_chunks(data.encode(), []).points(), points_of(data.encode()))
