"""Property-based tests: whatever bytes arrive, in whatever chunks, the parser neither raises
nor does more work than the input's size allows."""

from __future__ import annotations

import math
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.logparse import MAX_RECORD_BYTES, MAX_SHAPES, LogParser, MetricPoint, parse_text

LOGS = Path(__file__).parent / "fixtures" / "logs"
REAL_LOG = (LOGS / "hf_trainer.log").read_bytes() + (LOGS / "keras_verbose1.log").read_bytes()

FRAGMENTS = [
    b"\r",
    b"\n",
    b"\x08" * 5,
    b"\x1b[A",
    b"\x1b[2K",
    b"Epoch 3/10 ",
    b" 45%|\xe2\x96\x88\xe2\x96\x8c  | 45/100 [00:03<00:04, 12.1it/s, loss=0.1]",
    b"step 12/500 ",
    b"loss=",
    b"0.123",
    b"nan",
    b"-inf",
    b"1e-3",
    b"{'loss': '",
    b"', 'epoch': ",
    b'{"step": ',
    b"}",
    b"32/32 - 0s - 5ms/step - loss: ",
    b"\xe2\x94\x82 val_loss \xe2\x94\x82 0.5 \xe2\x94\x82",
    b"\xff\xfe",
    b"  ",
]

log_bytes = st.one_of(
    st.binary(max_size=3000),
    st.lists(st.sampled_from(FRAGMENTS), max_size=300).map(b"".join),
)


def feed_in_chunks(data: bytes, cuts: list[int]) -> tuple[LogParser, list[MetricPoint]]:
    parser = LogParser()
    points: list[MetricPoint] = []
    start = 0
    for cut in [*sorted({min(c, len(data)) for c in cuts}), len(data)]:
        points += parser.feed(data[start:cut])
        start = cut
    points += parser.flush()
    return parser, points


def same(a: list[MetricPoint], b: list[MetricPoint]) -> bool:
    # nan != nan, so compare through repr
    return repr(a) == repr(b)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=log_bytes, cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=20))
def test_any_bytes_in_any_chunks_parse_the_same_and_never_raise(data, cuts):
    parser, points = feed_in_chunks(data, cuts)
    assert same(points, parse_text(data))
    # Work done is bounded by the input: each record is analysed at most once per occurrence,
    # and a held-back partial record is copied once when it completes.
    assert parser.analysed_bytes <= len(data)
    assert parser.joined_bytes <= len(data)
    records = data.count(b"\n") + data.count(b"\r") + data.count(b"\x08") + 1
    assert len(points) <= records
    for point in points:
        assert point.line >= 1
        assert point.line <= data.count(b"\n") + 1


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=500), cut=st.integers(min_value=0, max_value=500))
def test_any_text_as_str_parses_like_its_bytes(text, cut):
    parser = LogParser()
    points = parser.feed(text[:cut]) + parser.feed(text[cut:]) + parser.flush()
    assert same(points, parse_text(text.encode("utf-8", "surrogatepass")))


@settings(max_examples=100, deadline=None)
@given(
    updates=st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(1, 10**6), st.floats(allow_nan=True)),
        min_size=1,
        max_size=200,
    )
)
def test_carriage_return_storms_give_one_point_per_update(updates):
    text = "".join(
        f"\r{n * 100 // total if total else 0:3d}%|#   | {n}/{total} [00:01<00:02, 3.5it/s, loss={loss!r}]"
        for n, total, loss in updates
    )
    parser = LogParser()
    points = parser.feed(text + "\r") + parser.flush()
    assert len(points) == len(updates)
    assert all(p.line == 1 for p in points)
    for point, (n, total, loss) in zip(points, updates, strict=True):
        assert (point.step, point.total_steps) == (n, total)
        assert repr(point.loss) == repr(loss) or (math.isnan(loss) and math.isnan(point.loss))


@settings(max_examples=200, deadline=None)
@given(
    value=st.floats(allow_nan=True, allow_infinity=True),
    name=st.sampled_from(["loss", "val_loss", "lr"]),
)
def test_every_float_survives_the_round_trip(value, name):
    points = parse_text(f"step 7 {name}={value!r}\n")
    assert len(points) == 1
    got = points[0].loss if name == "loss" else points[0].metrics[name]
    assert repr(got) == repr(value)


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(REAL_LOG)))
def test_a_truncated_log_gives_a_prefix_of_the_points(cut):
    whole = parse_text(REAL_LOG)
    parser = LogParser()
    prefix = parser.feed(REAL_LOG[:cut])  # no flush: the cut record is still incomplete
    assert same(prefix, whole[: len(prefix)])


def test_a_huge_line_is_held_in_bounded_memory_and_analysed_once():
    parser = LogParser()
    chunk = b"loss=0.5 " * 10_000  # 90 kB per chunk, no line end
    for _ in range(40):
        assert parser.feed(chunk) == []
    assert parser._pending_bytes <= MAX_RECORD_BYTES
    points = parser.feed(b"\n")
    assert len(points) == 1 and points[0].loss == 0.5
    assert parser.analysed_bytes <= MAX_RECORD_BYTES
    assert parser.joined_bytes <= MAX_RECORD_BYTES


def test_adversarial_long_lines_are_analysed_once_each():
    lines = [
        b"loss=" * 50_000,
        b"1%|" * 50_000,
        b"{'a': " * 50_000,
        b"epoch " * 50_000,
        b"32/32 " + b"- x " * 50_000,
        b"\x1b[" * 50_000,
        b"9" * 200_000,
    ]
    parser = LogParser()
    data = b"\n".join(lines) + b"\n"
    parser.feed(data)
    assert parser.analysed_bytes <= len(data)


def test_the_shape_cache_is_bounded():
    def word(number: int) -> str:  # a different word, so a different shape, for every line
        letters = ""
        while True:
            number, digit = divmod(number, 26)
            letters += chr(97 + digit)
            if not number:
                return letters

    parser = LogParser()
    parser.feed("".join(f"{word(i)} loss=1\n" for i in range(MAX_SHAPES + 500)))
    assert len(parser._plans) <= MAX_SHAPES
