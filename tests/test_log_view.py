"""LogView driven through Pilot in a small host app: the tail at once, scrolling back, following,
truncation, giant lines, garbage, search and the errors-only filter."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

from textual.app import App, ComposeResult

from app.log_index import BytesSource, FileSource, LogIndex
from widgets.log_view import LogView


class LogViewApp(App[None]):
    def __init__(self, index: LogIndex | None) -> None:
        super().__init__()
        self.index = index
        self.messages: list[object] = []

    def compose(self) -> ComposeResult:
        yield LogView(self.index, id="log")

    def on_mount(self) -> None:
        self.query_one("#log-lines").focus()

    def on_log_view_jumped_to_line(self, message: LogView.JumpedToLine) -> None:
        self.messages.append(message)

    def on_log_view_reset(self, message: LogView.Reset) -> None:
        self.messages.append(message)

    def on_log_view_indexed(self, message: LogView.Indexed) -> None:
        self.messages.append(message)


def screen_text(app: LogViewApp) -> list[str]:
    lines = app.query_one(LogView).lines
    return [lines.render_line(y).text.rstrip() for y in range(lines.size.height)]


async def wait_for(pilot, predicate: Callable[[], object], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s; screen: {screen_text(pilot.app)}")
        await pilot.pause(0.02)


def numbered_log(count: int, every: int = 0, special: bytes = b"") -> bytes:
    return b"".join(
        special % i if every and i % every == every - 1 else b"line %06d loss=0.5\n" % i
        for i in range(count)
    )


class GatedSource(BytesSource):
    """Reads before `gate` wait for `opened`: the backward indexing is held back on demand."""

    def __init__(self, data: bytes, gate: int) -> None:
        super().__init__(data)
        self.gate = gate
        self.opened = threading.Event()

    def read(self, offset: int, length: int) -> bytes:
        if offset < self.gate:
            self.opened.wait(30)
        return super().read(offset, length)


async def test_the_tail_of_a_big_log_is_on_screen_at_once(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    path.write_bytes(numbered_log(300_000))  # 7.5 MB
    app = LogViewApp(LogIndex(FileSource(path)))
    async with app.run_test(size=(100, 30)) as pilot:
        started = time.monotonic()
        await wait_for(pilot, lambda: "line 299999 loss=0.5" in screen_text(app))
        assert time.monotonic() - started < 5
        view = app.query_one(LogView)
        await wait_for(pilot, lambda: any(isinstance(m, LogView.Indexed) for m in app.messages))
        assert view.line_count == 300_000
        assert screen_text(app)[-1] == "line 299999 loss=0.5"  # still the tail
        await pilot.press("home")
        await wait_for(pilot, lambda: screen_text(app)[0] == "line 000000 loss=0.5")
        assert not view.following


async def test_lines_stay_put_while_older_lines_are_indexed() -> None:
    data = numbered_log(100_000)
    source = GatedSource(data, gate=len(data) - 300_000)
    app = LogViewApp(LogIndex(source, chunk_bytes=4096))
    async with app.run_test(size=(80, 20)) as pilot:
        view = app.query_one(LogView)
        await wait_for(pilot, lambda: "line 099999 loss=0.5" in screen_text(app))
        for _ in range(30):
            await pilot.press("up")
        before = screen_text(app)
        assert "line 099999 loss=0.5" not in before and not view.following
        source.opened.set()
        await wait_for(pilot, lambda: view.index.complete and view.line_count == 100_000)
        await pilot.pause()
        assert screen_text(app) == before


async def test_appends_are_followed_at_the_bottom_only() -> None:
    source = BytesSource(numbered_log(1000))
    app = LogViewApp(LogIndex(source))
    async with app.run_test(size=(80, 20)) as pilot:
        view = app.query_one(LogView)
        await wait_for(pilot, lambda: "line 000999 loss=0.5" in screen_text(app))
        offset = source.size()
        source.append(b"fresh line one\nfresh line two\n")
        assert view.append(offset, b"fresh line one\nfresh line two\n") == 2
        await wait_for(pilot, lambda: screen_text(app)[-1] == "fresh line two")
        # A progress bar without its newline yet: its latest state shows.
        offset = source.size()
        source.append(b"epoch 1: 10%\repoch 1: 20%")
        view.append(offset, b"epoch 1: 10%\repoch 1: 20%")
        await wait_for(pilot, lambda: screen_text(app)[-1] == "epoch 1: 20%")
        await pilot.press("pageup")
        assert not view.following
        before = screen_text(app)
        offset = source.size()
        source.append(b"\nnot followed\n")
        view.append(offset, b"\nnot followed\n")
        await pilot.pause()
        assert screen_text(app) == before
        await pilot.press("end")
        await wait_for(pilot, lambda: screen_text(app)[-1] == "not followed")
        assert view.following
        source.append(b"polled line\n")
        assert view.poll() == 1
        await wait_for(pilot, lambda: screen_text(app)[-1] == "polled line")


async def test_a_truncated_log_is_shown_from_its_new_start(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    path.write_bytes(numbered_log(5000))
    app = LogViewApp(LogIndex(FileSource(path)))
    async with app.run_test(size=(80, 20)) as pilot:
        view = app.query_one(LogView)
        await wait_for(pilot, lambda: "line 004999 loss=0.5" in screen_text(app))
        path.write_bytes(b"restarted 1\nrestarted 2\n")
        view.poll()
        await wait_for(pilot, lambda: any(isinstance(m, LogView.Reset) for m in app.messages))
        await wait_for(pilot, lambda: screen_text(app)[:2] == ["restarted 1", "restarted 2"])
        assert view.line_count == 2
        # A follower that noticed the shrink itself calls reload().
        rotated = tmp_path / "new.log"
        rotated.write_bytes(b"rotated\n")
        os.replace(rotated, path)
        view.reload()
        await wait_for(pilot, lambda: screen_text(app)[0] == "rotated")
        # Rotated to a bigger file while a follower hands over bytes at its old offset: the view
        # notices the new file instead of indexing the bytes as if they were appended.
        rotated.write_bytes(b"".join(b"second file %d\n" % i for i in range(50)))
        os.replace(rotated, path)
        assert view.append(8, b"second file 0\n") == 0
        await wait_for(pilot, lambda: screen_text(app)[-1] == "second file 49")
        # One Reset each: the poll, the reload, the rotation seen by append.
        await wait_for(pilot, lambda: sum(isinstance(m, LogView.Reset) for m in app.messages) == 3)


async def test_a_one_megabyte_line_is_cut_and_nothing_stalls(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    path.write_bytes(b"before\n" + b"x" * (1 << 20) + b"\nafter\n")
    app = LogViewApp(LogIndex(FileSource(path)))
    async with app.run_test(size=(80, 20)) as pilot:
        await wait_for(pilot, lambda: "after" in screen_text(app))
        started = time.monotonic()
        rows = screen_text(app)
        assert time.monotonic() - started < 0.5
        assert rows[0] == "before" and rows[2] == "after"
        assert rows[1] == "x" * len(rows[1]) and len(rows[1]) > 70
        view = app.query_one(LogView)
        assert "more bytes" in view.lines.line_text(1)


async def test_binary_garbage_shows_replacement_characters() -> None:
    garbage = random.Random(7).randbytes(200_000)
    app = LogViewApp(LogIndex(BytesSource(b"start\n" + garbage + b"\nend\n")))
    async with app.run_test(size=(80, 20)) as pilot:
        await wait_for(pilot, lambda: screen_text(app)[-1] == "end")
        await pilot.press("home")
        await wait_for(pilot, lambda: screen_text(app)[0] == "start")
        assert "\ufffd" in "".join(screen_text(app))


async def test_search_next_previous_and_regex() -> None:
    data = numbered_log(20_000, every=5000, special=b"step %06d ERROR disk full\n")
    app = LogViewApp(LogIndex(BytesSource(data)))
    async with app.run_test(size=(80, 20)) as pilot:
        view = app.query_one(LogView)
        await wait_for(pilot, lambda: view.index.complete and view.line_count == 20_000)
        await pilot.press("home")
        await pilot.press("slash")
        await pilot.press(*"error", "enter")
        await wait_for(pilot, lambda: view.cursor_line == 4999)
        assert any("step 004999 ERROR" in row for row in screen_text(app))
        view.lines.focus()
        await pilot.press("n")
        await wait_for(pilot, lambda: view.cursor_line == 9999)
        await pilot.press("N")
        await wait_for(pilot, lambda: view.cursor_line == 4999)
        await pilot.press("n", "n", "n")
        await wait_for(pilot, lambda: view.cursor_line == 19999)
        await pilot.press("n")
        await wait_for(pilot, lambda: "no match" in str(view.status.render()))
        assert view.cursor_line == 19999
        jumps = [m.line_number for m in app.messages if isinstance(m, LogView.JumpedToLine)]
        assert jumps[:3] == [5000, 10000, 5000]
        # A regex, searched from the top of the screen once the match is scrolled away.
        await pilot.press("home")
        await pilot.press("ctrl+f")
        view.search_input.value = ""
        await pilot.press("ctrl+r", *"step 01\\d+ ERROR", "enter")
        assert view.regex_box.value
        await wait_for(pilot, lambda: view.cursor_line == 14999)
        await pilot.press("escape")
        assert not view.has_class("-searching")


async def test_a_bad_regex_says_so() -> None:
    app = LogViewApp(LogIndex(BytesSource(numbered_log(100))))
    async with app.run_test(size=(80, 20)) as pilot:
        view = app.query_one(LogView)
        await pilot.press("slash", "ctrl+r", *"(oops", "enter")
        await wait_for(pilot, lambda: "bad regex" in str(view.status.render()))


async def test_the_filter_shows_lines_that_matter_and_enter_jumps() -> None:
    data = numbered_log(50_000, every=10_000, special=b"step %06d loss=nan\n") + (
        b"Traceback (most recent call last):\nRuntimeError: CUDA error: out of memory\n"
    )
    app = LogViewApp(LogIndex(BytesSource(data), chunk_bytes=4096))
    async with app.run_test(size=(100, 20)) as pilot:
        view = app.query_one(LogView)
        await wait_for(pilot, lambda: view.line_count > 0)
        await pilot.press("i")
        assert view.filtered
        await wait_for(pilot, lambda: view._scan_done)
        rows = screen_text(app)
        assert rows[0].split("│")[0].strip() == "10000"
        assert "loss=nan" in rows[0]
        assert rows[5].strip().startswith("50001") and "Traceback" in rows[5]
        assert len(view.interesting_lines) == 7
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: not view.filtered)
        await wait_for(pilot, lambda: view.index.complete)
        jump = [m for m in app.messages if isinstance(m, LogView.JumpedToLine)][-1]
        assert view.cursor_line == jump.line
        assert view.lines.line_text(view.cursor_line) == "step 019999 loss=nan"
        assert any(row == "step 019999 loss=nan" for row in screen_text(app))
        # New lines that matter are found as they arrive.
        offset = view.index.indexed_bytes
        view.index.source.append(b"WARNING late\n")
        view.append(offset, b"WARNING late\n")
        await wait_for(pilot, lambda: len(view.interesting_lines) == 8)
        assert view.interesting_texts[-1] == "WARNING late"


async def test_a_view_without_a_log_shows_its_placeholder() -> None:
    app = LogViewApp(None)
    async with app.run_test(size=(80, 10)) as pilot:
        view = app.query_one(LogView)
        view.clear("logs of runpod runs are not shown yet")
        await wait_for(
            pilot, lambda: screen_text(app)[0] == "logs of runpod runs are not shown yet"
        )
        assert view.append(0, b"ignored\n") == 0 and view.poll() == 0
        view.open_index(LogIndex(BytesSource(b"now a log\n")))
        await wait_for(pilot, lambda: screen_text(app)[0] == "now a log")
