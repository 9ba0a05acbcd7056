"""The line index: tail first, backwards lazily, forwards as the log grows, resets, search, the
interesting-lines scan — checked against `bytes.split` as the reference."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import pytest

from app.log_index import (
    BytesSource,
    FileSource,
    LogIndex,
    compile_search,
    cut_for_display,
    scan_interesting,
)


def reference_lines(data: bytes) -> list[str]:
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    return [line.decode("utf-8", "replace") for line in lines] if data else []


def fully_indexed(data: bytes, chunk_bytes: int = 64) -> LogIndex:
    index = LogIndex(BytesSource(data), chunk_bytes=chunk_bytes)
    index.open(min_lines=1)
    while not index.complete:
        index.extend_backward(chunk_bytes * 3)
    return index


@pytest.mark.parametrize("seed", range(12))
def test_every_line_matches_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    parts = []
    for _ in range(rng.randint(0, 300)):
        parts.append(b"x" * rng.choice([0, 1, 5, 63, 64, 65, 200]) + b"\n")
    if rng.random() < 0.5:
        parts.append(b"unterminated")
    data = b"".join(parts)
    index = fully_indexed(data, chunk_bytes=rng.choice([16, 64, 100]))
    expected = reference_lines(data)
    assert index.line_count == len(expected)
    assert index.read_lines(0, len(expected) + 5) == expected
    for line in rng.sample(range(len(expected)), min(20, len(expected))):
        assert index.read_lines(line, 1) == [expected[line]]
        start = index.line_start(line)
        assert index.line_of_offset(start) == line
        assert index.line_of_offset(index.line_end(line)) == line


def test_the_tail_is_readable_before_the_start_is_indexed() -> None:
    data = b"".join(b"line %06d\n" % i for i in range(100_000))
    index = LogIndex(BytesSource(data), chunk_bytes=4096)
    known = index.open(min_lines=50)
    assert not index.complete
    assert 50 <= known < 2000
    assert index.read_lines(known - 2, 2) == ["line 099998", "line 099999"]
    added = index.extend_backward(64 * 1024)
    assert added > 0 and index.line_count == known + added
    # Numbers shift by the lines added; the same text is now further down.
    assert index.read_lines(known + added - 1, 1) == ["line 099999"]
    while not index.complete:
        index.extend_backward()
    assert index.line_count == 100_000
    assert index.read_lines(12_345, 1) == ["line 012345"]


def test_memory_is_a_count_per_chunk_not_per_line() -> None:
    data = b"a\n" * 500_000
    index = fully_indexed(data, chunk_bytes=64 * 1024)
    assert index.line_count == 500_000
    assert len(index._counts) == len(data) // (64 * 1024) + 1


def test_appends_are_indexed_from_the_bytes_the_follower_read() -> None:
    source = BytesSource(b"one\ntwo\nthr")
    index = LogIndex(source, chunk_bytes=8)
    index.open()
    assert index.read_lines(0, 5) == ["one", "two", "thr"]
    offset = source.size()
    source.append(b"ee\nfour\n")
    assert index.append(offset, b"ee\nfour\n") == 1
    assert index.read_lines(0, 5) == ["one", "two", "three", "four"]
    # The same bytes again (a poll after a follow) change nothing.
    assert index.append(offset, b"ee\nfour\n") == 0
    source.append(b"five\n")
    assert index.update().lines_added == 1
    assert index.read_lines(4, 1) == ["five"]


def test_a_truncated_or_replaced_file_restarts_the_index(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    path.write_bytes(b"".join(b"old %d\n" % i for i in range(1000)))
    index = LogIndex(FileSource(path))
    index.open()
    assert index.update().reset is False
    path.write_bytes(b"new 0\n")  # truncated in place: smaller than indexed
    change = index.update()
    assert change.reset and index.read_lines(0, 5) == ["new 0"]
    replacement = tmp_path / "rotated.log"
    replacement.write_bytes(b"rotated 0\nrotated 1\nrotated 2\nrotated 3\nrotated 4\nrotated 5\n")
    os.replace(replacement, path)  # bigger, but another inode
    change = index.update()
    assert change.reset and index.read_lines(0, 1) == ["rotated 0"]


def test_invalid_utf8_becomes_replacement_characters() -> None:
    index = fully_indexed(b"ok\n\xff\xfe bad \xc3\n\x00\x01binary\n")
    lines = index.read_lines(0, 3)
    assert lines[0] == "ok"
    assert "\ufffd" in lines[1] and "bad" in lines[1]
    assert lines[2].endswith("binary")


def test_a_one_megabyte_line_is_cut_and_its_neighbours_stay_whole() -> None:
    data = b"before\n" + b"x" * (1 << 20) + b"\nafter\n"
    index = fully_indexed(data, chunk_bytes=64 * 1024)
    lines = index.read_lines(0, 3, max_chars=100)
    assert lines[0] == "before" and lines[2] == "after"
    assert lines[1].startswith("x" * 100) and "more bytes" in lines[1]
    assert len(lines[1]) < 200
    # Many long lines take the line-by-line path: each read is bounded.
    many = fully_indexed((b"y" * 300_000 + b"\n") * 8, chunk_bytes=64 * 1024)
    assert all(len(line) < 200 for line in many.read_lines(0, 8, max_chars=100))


def test_a_progress_storm_line_shows_its_latest_update() -> None:
    storm = b"".join(b"\r%d/100000 it" % i for i in range(100_000))
    index = fully_indexed(b"start\n" + storm + b"\nend\n", chunk_bytes=64 * 1024)
    line = index.read_lines(1, 1)[0]
    assert line.endswith("99999/100000 it") and "bytes of updates" in line


def test_cut_for_display_says_how_much_is_hidden() -> None:
    assert cut_for_display(b"abc", 3) == "abc"
    assert cut_for_display(b"abcdef", 10, max_chars=3) == "abc … [7 more bytes]"


def test_search_forward_backward_regex_and_case() -> None:
    data = b"".join(
        (b"step %d loss=0.5\n" % i) if i % 1000 else (b"step %d ERROR disk full\n" % i)
        for i in range(1, 20_001)
    )
    index = fully_indexed(data, chunk_bytes=4096)
    plain = compile_search("error")
    offset = index.search(plain, 0, block_bytes=10_000)
    assert offset is not None and index.line_of_offset(offset) == 999
    offset = index.search(plain, 999, block_bytes=10_000)
    assert index.line_of_offset(offset) == 1999
    offset = index.search(plain, 1999, backward=True, block_bytes=10_000)
    assert index.line_of_offset(offset) == 999
    assert index.search(plain, 999, backward=True) is None
    assert index.search(compile_search("error", ignore_case=False), 0) is None
    regex = compile_search(r"step 1\d{4} ERROR", regex=True)
    assert index.line_of_offset(index.search(regex, 0)) == 9999
    assert index.search(compile_search("step 1\\d{4}"), 0) is None  # plain text is literal
    assert index.search(plain, 19_999) is None
    with pytest.raises(re.error):
        compile_search("(unclosed", regex=True)


def test_plain_search_finds_what_the_regex_finds() -> None:
    rng = random.Random(5)
    words = [b"alpha", b"Beta", b"GAMMA", b"delta\xff", b"beta"]
    data = b"".join(b" ".join(rng.choices(words, k=5)) + b"\n" for _ in range(3000))
    index = fully_indexed(data, chunk_bytes=4096)
    for text in ("beta", "Beta", "gamma", "a b"):
        for ignore_case in (True, False):
            plain = compile_search(text, ignore_case=ignore_case)
            regex = compile_search(re.escape(text), regex=True, ignore_case=ignore_case)
            line = -1
            for _ in range(5):
                found = index.search(plain, line, block_bytes=5000)
                assert found == index.search(regex, line, block_bytes=5000)
                if found is None:
                    break
                line = index.line_of_offset(found)
            back = index.search(plain, 2999, backward=True, block_bytes=5000)
            assert back == index.search(regex, 2999, backward=True, block_bytes=5000)


def test_search_stops_when_cancelled() -> None:
    index = fully_indexed(b"a\n" * 10_000, chunk_bytes=4096)
    assert index.search(compile_search("zzz"), 0, cancelled=lambda: True) is None


def test_interesting_lines_with_their_numbers() -> None:
    lines = [
        "epoch 1 loss=0.5",
        "Traceback (most recent call last):",
        "nanoGPT info: all fine",
        "loss=nan",
        "RuntimeError: CUDA error: an illegal memory access",
        "torch.cuda.OutOfMemoryError: CUDA out of memory",
        "lr=inf",
        "UserWarning: something",
        "plain line",
        "2026 WARNING low disk",
    ]
    data = ("\n".join(lines) + "\n").encode() * 3
    batches = list(scan_interesting(BytesSource(data), block_bytes=100))
    found = [line for batch in batches for line in batch.lines]
    expected = [n + 10 * copy for copy in range(3) for n in (1, 3, 4, 5, 6, 7, 9)]
    assert found == expected
    texts = [text for batch in batches for text in batch.texts]
    assert texts[0].startswith("Traceback")
    assert batches[-1].scanned_bytes == len(data)
    capped = list(scan_interesting(BytesSource(data), max_kept=2))
    assert sum(len(b.lines) for b in capped) == 2
    assert sum(b.dropped for b in capped) == 19


def test_interesting_scan_from_a_later_offset_keeps_numbering() -> None:
    data = b"a\nb\nError here\n"
    batches = list(scan_interesting(BytesSource(data), start_offset=4, first_line=2))
    assert batches[0].lines == [2] and batches[0].offsets == [4]


def test_an_empty_or_missing_log_fills_in_when_written(tmp_path: Path) -> None:
    empty = LogIndex(BytesSource(b""))
    assert empty.open() == 0 and empty.complete and empty.read_lines(0, 10) == []
    empty.source.append(b"first\n")
    assert empty.append(0, b"first\n") == 1
    path = tmp_path / "later.log"
    missing = LogIndex(FileSource(path))
    assert missing.open() == 0
    path.write_bytes(b"written later\n")
    change = missing.update()
    assert missing.read_lines(0, 5) == ["written later"] and missing.line_count == 1
    assert change.reset or change.lines_added == 1
