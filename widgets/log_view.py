"""A log view for logs of any size: the tail at once, older lines read on demand, live appends,
search, and a filter that shows only the lines that matter.

`LogView` renders rows straight from a line index with the Line API (`ScrollView.render_line`),
as Toolong does, so nothing but the rows on screen (and a page around them) is ever decoded.
The index is given, not built here: any object with the `LogIndex` interface of
`app/log_index.py` (`open`, `extend_backward`, `update`, `append`, `read_lines`, `line_count`,
`line_of_offset`, `search`, `compile_search`, `scan_interesting`, ...). It reads from a byte
source (a local file today; a remote log read by offset later), so the view does no I/O of its
own beyond asking the index for lines.

Driving it: `open_index(index)` when the run changes; then either `append(offset, data)` with
the bytes a follower read (the app's `follow_local_file` loop) or `poll()` to let the index read
what is new itself; `reload()` when the follower says the file was truncated or replaced.
Blocking work (indexing backwards, search, the interesting-lines scan) runs in thread workers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import on, work
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Checkbox, Input, Static
from textual.worker import get_current_worker

from widgets.after_first_frame import AfterFirstFrame

PAGE_MARGIN = 100  # lines read above and below the screen in one go
TAIL_LINES = 400  # lines indexed before the first paint
COMMIT_EVERY_S = 0.2  # how often backward indexing hands its lines to the view


class LogLines(ScrollView, can_focus=True):
    """The rows: lines of the index, or (filtered) only the interesting lines with their line
    numbers and a cursor. Owned by `LogView`, which feeds it."""

    COMPONENT_CLASSES = {
        "log-lines--cursor",
        "log-lines--match",
        "log-lines--line-number",
        "log-lines--placeholder",
    }

    DEFAULT_CSS = """
    LogLines {
        background: $surface;
        scrollbar-size-vertical: 1;
    }
    LogLines > .log-lines--cursor { background: $accent 35%; }
    LogLines > .log-lines--match { background: $warning 60%; color: $text; }
    LogLines > .log-lines--line-number { color: $text-muted; }
    LogLines > .log-lines--placeholder { color: $text-muted; text-style: italic; }
    """

    BINDINGS = [
        Binding("up", "cursor_up", "Up", show=False, id="log.cursor_up"),
        Binding("down", "cursor_down", "Down", show=False, id="log.cursor_down"),
        Binding("enter", "jump", "Jump to line", show=False, id="log.jump"),
        Binding("n", "search_next", "Next match", show=False, id="log.search_next"),
        Binding("N,shift+n", "search_previous", "Previous match", show=False, id="log.search_prev"),
    ]

    def __init__(self, view: LogView, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.view = view
        self._page_first = 0
        self._page: list[str] = []
        self._width = 0  # the widest line seen: the horizontal scroll range

    # -- the page of lines around the screen -------------------------------------------------------
    def invalidate(self) -> None:
        self._page = []

    def shift_page(self, added: int) -> None:
        self._page_first += added

    def line_text(self, line: int) -> str:
        index = self.view.index
        if index is None:
            return ""
        if not self._page_first <= line < self._page_first + len(self._page):
            height = max(1, self.scrollable_content_region.height)
            self._page_first = max(0, line - PAGE_MARGIN)
            self._page = [
                text.expandtabs(4) if "\t" in text else text
                for text in index.read_lines(self._page_first, height + 2 * PAGE_MARGIN)
            ]
            widest = max((len(text) for text in self._page), default=0)
            if widest > self._width:
                self._width = widest
                self.call_after_refresh(self.view.resize_lines)
        position = line - self._page_first
        return self._page[position] if 0 <= position < len(self._page) else ""

    @property
    def content_width(self) -> int:
        return self._width

    # -- rendering ---------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        row = scroll_y + y
        width = self.scrollable_content_region.width
        base = self.rich_style
        view = self.view
        text = self._filter_row(row) if view.filtered else self._log_row(row)
        if text is None:
            return Strip.blank(width, base)
        segments = list(text.render(self.app.console))
        strip = Strip(segments).crop(scroll_x, scroll_x + width)
        return strip.extend_cell_length(width).apply_style(base)

    def _log_row(self, row: int) -> Text | None:
        view = self.view
        if row >= view.line_count:
            if row == 0 and view.placeholder:
                style = self.get_component_rich_style("log-lines--placeholder")
                return Text(view.placeholder, style=style)
            return None
        text = Text(self.line_text(row), no_wrap=True, end="")
        if row == view.cursor_line:
            text.stylize(self.get_component_rich_style("log-lines--cursor"))
        if view.match_pattern is not None:
            match_style = self.get_component_rich_style("log-lines--match")
            for match in view.match_pattern.finditer(text.plain):
                if match.end() > match.start():
                    text.stylize(match_style, match.start(), match.end())
        return text

    def _filter_row(self, row: int) -> Text | None:
        view = self.view
        if row >= len(view.interesting_lines):
            if row == 0:
                style = self.get_component_rich_style("log-lines--placeholder")
                return Text(view.filter_placeholder(), style=style)
            return None
        number_style = self.get_component_rich_style("log-lines--line-number")
        text = Text(no_wrap=True, end="")
        text.append(f"{view.interesting_lines[row] + 1:>9} │ ", style=number_style)
        text.append(view.interesting_texts[row])
        if row == view.filter_cursor:
            text.stylize(self.get_component_rich_style("log-lines--cursor"))
        return text

    # -- keys --------------------------------------------------------------------------------------
    def action_cursor_up(self) -> None:
        if self.view.filtered:
            self.view.move_filter_cursor(-1)
        else:
            self.scroll_up(animate=False, force=True)

    def action_cursor_down(self) -> None:
        if self.view.filtered:
            self.view.move_filter_cursor(1)
        else:
            self.scroll_down(animate=False, force=True)

    # Jumps are immediate (no animation): a search that starts right after one must start from
    # where the view is going, not from where an animation happens to be.
    def action_scroll_home(self) -> None:
        if self.view.filtered:
            self.view.move_filter_cursor(-len(self.view.interesting_lines))
        else:
            self.scroll_to(y=0, animate=False, force=True)

    def action_scroll_end(self) -> None:
        if self.view.filtered:
            self.view.move_filter_cursor(len(self.view.interesting_lines))
        else:
            self.view.action_follow()

    def action_page_up(self) -> None:
        self._scroll_page(-1)

    def action_page_down(self) -> None:
        self._scroll_page(1)

    def _scroll_page(self, direction: int) -> None:
        height = max(1, self.scrollable_content_region.height - 1)
        if self.view.filtered:
            self.view.move_filter_cursor(direction * height)
        else:
            self.scroll_to(y=self.scroll_y + direction * height, animate=False, force=True)

    def action_jump(self) -> None:
        if self.view.filtered:
            self.view.jump_to_filter_cursor()

    def action_search_next(self) -> None:
        self.view.search(backward=False)

    def action_search_previous(self) -> None:
        self.view.search(backward=True)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if not self.view.filtered:
            # Following is on exactly when the view is at the bottom: scroll up to read, scroll
            # (or press end) to the bottom to follow again.
            self.view.following = new_value >= self.max_scroll_y
        self.view.update_status()


class LogView(Vertical):
    """A log of any size: tail at once, scroll back, follow, search (`/`, ctrl+f, n / N, a regex
    toggle) and a filter (`i`) showing only Traceback / Error / WARNING / nan / inf / OOM lines
    with their line numbers; enter on one jumps to it in the full log."""

    DEFAULT_CSS = """
    LogView {
        height: 1fr;
        border: round $primary 50%;
    }
    LogView:focus-within { border: round $accent; }
    LogView > LogLines { height: 1fr; }
    LogView > #log-search-bar { height: 1; display: none; }
    LogView.-searching > #log-search-bar { display: block; }
    LogView #log-search-input { width: 1fr; height: 1; border: none; padding: 0 1; }
    LogView #log-search-regex { width: auto; height: 1; border: none; padding: 0 1; }
    LogView > #log-status { height: 1; color: $text-muted; padding: 0 1; }
    LogView.-filtered > #log-status { color: $warning; }
    """

    BINDINGS = [
        Binding("slash,ctrl+f", "open_search", "Search", id="log.search"),
        Binding("i", "toggle_filter", "Errors only", id="log.filter"),
        Binding("ctrl+r", "toggle_regex", "Regex", show=False, id="log.regex"),
        Binding("escape", "close_search", "Close search", show=False, id="log.close_search"),
        Binding("end", "follow", "Follow", show=False, id="log.follow_end"),
    ]

    following: reactive[bool] = reactive(True)
    filtered: reactive[bool] = reactive(False)

    class JumpedToLine(Message):
        """The view moved to a line (a search match or a line picked in the filter).
        `line` is the row in the view; `line_number` the 1-based line of the file, when the
        index already reaches the file's start (else None)."""

        def __init__(self, view: LogView, line: int, line_number: int | None) -> None:
            super().__init__()
            self.view = view
            self.line = line
            self.line_number = line_number

    class Reset(Message):
        """The log shrank or was replaced: it is shown (and should be parsed) from its start."""

        def __init__(self, view: LogView) -> None:
            super().__init__()
            self.view = view

    class Indexed(Message):
        """The index reaches the start of the log: every line number is now the file's own."""

        def __init__(self, view: LogView, line_count: int) -> None:
            super().__init__()
            self.view = view
            self.line_count = line_count

    def __init__(self, index: Any | None = None, *, placeholder: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index: Any | None = None
        self.placeholder = placeholder
        self.line_count = 0
        self.cursor_line: int | None = None  # the highlighted line: last match or jump target
        self.match_pattern: re.Pattern[str] | None = None
        self._query = ""
        self._search_pattern: Any | None = None  # what index.compile_search returns
        self.status_message = ""
        self._clear_interesting()
        self._pending_index = index

    def _clear_interesting(self) -> None:
        self.interesting_lines: list[int] = []
        self.interesting_offsets: list[int] = []
        self.interesting_texts: list[str] = []
        self.interesting_dropped = 0
        self.filter_cursor = 0
        self._scan_started = False
        self._scan_done = False
        self._scanned_bytes = 0
        self._scanned_line = 0
        self._scan_total = 0

    def compose(self) -> ComposeResult:
        yield LogLines(self, id="log-lines")
        # Hidden until `/`: mounted after the first frame, which it would slow (~10 ms).
        with AfterFirstFrame(Horizontal(id="log-search-bar")):
            yield Input(placeholder="search — enter: next, n / N in the log", id="log-search-input")
            yield Checkbox("regex", id="log-search-regex")
        yield Static("", id="log-status")

    def on_mount(self) -> None:
        self.lines = self.query_one(LogLines)
        self.status = self.query_one("#log-status", Static)
        if self._pending_index is not None:
            self.open_index(self._pending_index)
            self._pending_index = None
        self.update_status()

    # -- driving it --------------------------------------------------------------------------------
    def open_index(self, index: Any, placeholder: str = "no output yet") -> None:
        """Show a new log (the run changed): its tail at once, then the rest indexed backwards.
        `placeholder` shows while the log is empty."""
        self.workers.cancel_group(self, "log-index")
        self.workers.cancel_group(self, "log-search")
        self.workers.cancel_group(self, "log-interesting")
        self.index = index
        self.placeholder = placeholder
        self.line_count = 0
        self.cursor_line = None
        self.following = True
        self.status_message = ""
        self._clear_interesting()
        self.lines.invalidate()
        self.lines._width = 0
        self.resize_lines()
        self._index_log(index, open_tail=True)

    def clear(self, placeholder: str = "") -> None:
        """Show no log (e.g. a remote run whose log cannot be read yet)."""
        self.workers.cancel_group(self, "log-index")
        self.workers.cancel_group(self, "log-search")
        self.workers.cancel_group(self, "log-interesting")
        self.index = None
        self.placeholder = placeholder
        self.line_count = 0
        self._clear_interesting()
        self.lines.invalidate()
        self.resize_lines()

    def append(self, offset: int, data: bytes) -> int:
        """New bytes of the log at `offset` (the follower already read them); returns the lines
        added. Overlaps are skipped and gaps read from the source, so a follower that started a
        little early or late is fine."""
        index = self.index
        if index is None or index.generation == 0 or not data:
            return 0  # not opened yet: the opening reads up to the size it sees
        if index.replaced():
            # Rotated or truncated: a follower reading on from its old offset would be wrong,
            # so say so (`Reset`) and show the new file; the app restarts its follower.
            self.reload()
            return 0
        added = index.append(offset, data)
        self._grew()
        return added

    def poll(self) -> int:
        """Let the index read what is new from its source (it resets if the log shrank or was
        replaced); returns the lines added. For sources nobody follows for us."""
        index = self.index
        if index is None or index.generation == 0:
            return 0
        change = index.update()
        if change.reset:
            self._after_reset()
            return 0
        if change.lines_added or index.indexed_bytes:
            self._grew()
        return change.lines_added

    def reload(self) -> None:
        """The follower saw the file shrink or be replaced: show it from its start again."""
        if self.index is not None:
            self.index.open(TAIL_LINES)
            self._after_reset()

    def _after_reset(self) -> None:
        self.workers.cancel_group(self, "log-search")
        self.workers.cancel_group(self, "log-interesting")
        filtered = self.filtered
        self._clear_interesting()
        self.cursor_line = None
        self.line_count = self.index.line_count
        self.lines.invalidate()
        self.following = True
        self.resize_lines()
        self.scroll_to_end()
        self.status_message = "the log was truncated or replaced; following it from its start"
        self.post_message(self.Reset(self))
        self._index_log(self.index, open_tail=False)
        if filtered:
            self._start_scan()
        self.update_status()

    def _grew(self) -> None:
        count = self.index.line_count
        if count == self.line_count and not self.lines._page:
            return
        # The last line may have grown (a progress bar without a newline yet): reread the page.
        self.lines.invalidate()
        self.line_count = count
        self.resize_lines()
        if self.following and not self.filtered:
            self.scroll_to_end()
        else:
            self.lines.refresh()
        if self._scan_done and self._scanned_bytes < self.index.indexed_bytes:
            self._scan_interesting(self.index, self.index.generation)
        self.update_status()

    # -- indexing ----------------------------------------------------------------------------------
    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="log-index",
        description="Indexing the log",
    )
    def _index_log(self, index: Any, open_tail: bool) -> None:
        """Index the tail first (when opening) and then backwards to the start of the log."""
        if open_tail:
            index.open(TAIL_LINES)
            self.app.call_from_thread(self._tail_opened, index, index.generation)
        generation = index.generation
        worker = get_current_worker()
        while not index.complete and not worker.is_cancelled:
            # Read on until COMMIT_EVERY_S has passed, then commit on the UI thread: line
            # numbers change in the same moment the rows move, a few times a second.
            started = time.monotonic()
            block = None
            while time.monotonic() - started < COMMIT_EVERY_S:
                block = index.read_backward(below=block)
                if block is None or block.new_first_chunk == 0 or worker.is_cancelled:
                    break
            if index.generation != generation or worker.is_cancelled:
                return
            self.app.call_from_thread(self._prepend_lines, index, generation, block)
        if index.complete and not worker.is_cancelled:
            self.app.call_from_thread(self._index_complete, index, generation)

    def _tail_opened(self, index: Any, generation: int) -> None:
        if index is not self.index or index.generation != generation:
            return
        self.line_count = index.line_count
        self.lines.invalidate()
        self.resize_lines()
        self.scroll_to_end()
        self.update_status()

    def _prepend_lines(self, index: Any, generation: int, block: Any) -> None:
        if index is not self.index or index.generation != generation:
            return
        added = index.commit_backward(block)
        if not added:
            return
        # Every row moved down by `added`: keep the same lines on screen.
        self.line_count = index.line_count
        self.lines.shift_page(added)
        if self.cursor_line is not None:
            self.cursor_line += added
        following = self.following
        self.resize_lines()
        if following and not self.filtered:
            self.scroll_to_end()
        elif not self.filtered:
            self.lines.scroll_to(y=self.lines.scroll_y + added, animate=False, force=True)
        self.update_status()

    def _index_complete(self, index: Any, generation: int) -> None:
        if index is not self.index or index.generation != generation:
            return
        self.update_status()
        self.post_message(self.Indexed(self, index.line_count))

    # -- geometry ----------------------------------------------------------------------------------
    def resize_lines(self) -> None:
        if self.filtered:
            rows = max(1, len(self.interesting_lines))
            width = 12 + max((len(t) for t in self.interesting_texts[:1000]), default=0)
        else:
            rows = self.line_count or (1 if self.placeholder else 0)
            width = self.lines.content_width
        self.lines.virtual_size = Size(width, rows)
        self.lines.refresh()

    def scroll_to_end(self) -> None:
        self.lines.scroll_to(y=self.lines.max_scroll_y, animate=False, force=True)
        self.following = True

    def scroll_to_line(self, line: int) -> None:
        """Put `line` in the middle of the view."""
        height = self.lines.scrollable_content_region.height
        self.lines.scroll_to(y=max(0, line - height // 2), animate=False, force=True)
        self.following = self.lines.scroll_y >= self.lines.max_scroll_y
        self.lines.refresh()

    def action_follow(self) -> None:
        if self.filtered:
            self.filtered = False
        self.scroll_to_end()

    def watch_following(self, following: bool) -> None:
        self.set_class(following, "-following")

    # -- search ------------------------------------------------------------------------------------
    @property
    def search_input(self) -> Input:
        return self.query_one("#log-search-input", Input)

    @property
    def regex_box(self) -> Checkbox:
        return self.query_one("#log-search-regex", Checkbox)

    def _search_bar_ready(self, then: Callable[[], object]) -> bool:
        """Whether the search bar is mounted; it is not only in the instant just after start,
        and then `then` runs once it is (a key pressed that early is not lost)."""
        if self.query("#log-search-input"):
            return True
        self.call_after_refresh(then)
        return False

    def action_open_search(self) -> None:
        if not self._search_bar_ready(self.action_open_search):
            return
        self.add_class("-searching")
        self.search_input.focus()

    def action_close_search(self) -> None:
        if self.has_class("-searching"):
            self.remove_class("-searching")
            self.lines.focus()
        elif self.filtered:
            self.filtered = False
        else:
            raise SkipAction()  # nothing of ours to close: let escape reach the app

    def action_toggle_regex(self) -> None:
        if not self._search_bar_ready(self.action_toggle_regex):
            return
        self.regex_box.value = not self.regex_box.value

    @on(Checkbox.Changed, "#log-search-regex")
    def _regex_toggled(self, event: Checkbox.Changed) -> None:
        event.stop()
        self._query = ""  # recompile on the next search

    @on(Input.Submitted, "#log-search-input")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.search(backward=False)

    def search(self, backward: bool = False) -> None:
        """Find the next (or previous) line matching the search box, from the highlighted line
        (or the screen); smart case: a query with a capital letter matches case."""
        index = self.index
        if not self._search_bar_ready(lambda: self.search(backward)):
            return
        query = self.search_input.value
        if index is None or not query:
            if not query:
                self.action_open_search()
            return
        if query != self._query or self._search_pattern is None:
            regex = self.regex_box.value
            ignore_case = query == query.lower()
            try:
                self._search_pattern = index.compile_search(
                    query, regex=regex, ignore_case=ignore_case
                )
                flags = re.IGNORECASE if ignore_case else 0
                self.match_pattern = re.compile(query if regex else re.escape(query), flags)
            except re.error as error:
                self._search_pattern = None
                self.match_pattern = None
                self.status_message = f"bad regex: {error}"
                self.update_status()
                return
            self._query = query
        if self.filtered:
            self.filtered = False
        top = int(self.lines.scroll_y)
        height = self.lines.scrollable_content_region.height
        if self.cursor_line is not None and top <= self.cursor_line < top + height:
            start = self.cursor_line  # from the highlighted match while it is on screen
        elif backward:
            start = top + height
        else:
            start = top - 1
        self.status_message = f"searching for {query!r}…"
        self.update_status()
        self._run_search(index, index.generation, self._search_pattern, start, backward, query)

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="log-search",
        description="Searching the log",
    )
    def _run_search(
        self,
        index: Any,
        generation: int,
        pattern: Any,
        start: int,
        backward: bool,
        query: str,
    ) -> None:
        worker = get_current_worker()
        offset = index.search(
            pattern, start, backward=backward, cancelled=lambda: worker.is_cancelled
        )
        if not worker.is_cancelled:
            self.app.call_from_thread(self._search_done, index, generation, offset, backward, query)

    def _search_done(
        self, index: Any, generation: int, offset: int | None, backward: bool, query: str
    ) -> None:
        if index is not self.index or index.generation != generation:
            return
        if offset is None:
            where = "above" if backward else "below"
            self.status_message = f"no match for {query!r} {where}"
            if backward and not index.complete:
                self.status_message += " (the start of the log is still being indexed)"
            self.update_status()
            self.app.bell()
            return
        line = index.line_of_offset(offset)
        if line is None:
            return
        self.status_message = ""
        self.jump_to_line(line)

    def jump_to_line(self, line: int) -> None:
        """Highlight `line` and show it in the middle of the full log."""
        self.filtered = False
        self.cursor_line = line
        self.scroll_to_line(line)
        self.update_status()
        number = line + 1 if self.index is not None and self.index.complete else None
        self.post_message(self.JumpedToLine(self, line, number))

    # -- the filter --------------------------------------------------------------------------------
    def action_toggle_filter(self) -> None:
        self.filtered = not self.filtered

    def watch_filtered(self, filtered: bool) -> None:
        self.set_class(filtered, "-filtered")
        if not self.is_mounted:
            return
        if filtered:
            self._start_scan()
            self.resize_lines()
            self._show_filter_cursor()
        else:
            self.resize_lines()
            if self.cursor_line is not None:
                self.scroll_to_line(self.cursor_line)
            elif self.following:
                self.scroll_to_end()
        self.update_status()

    def _start_scan(self) -> None:
        if not self._scan_started and self.index is not None:
            self._scan_started = True
            self._scan_interesting(self.index, self.index.generation)

    def filter_placeholder(self) -> str:
        if not self._scan_done:
            return "looking for errors, warnings, nan, inf, OOM…"
        return "no Traceback, Error, WARNING, nan, inf or OOM lines in this log"

    @work(
        thread=True,
        exclusive=True,
        exit_on_error=False,
        group="log-interesting",
        description="Finding errors and warnings in the log",
    )
    def _scan_interesting(self, index: Any, generation: int) -> None:
        worker = get_current_worker()
        batches = index.scan_interesting(
            start_offset=self._scanned_bytes,
            first_line=self._scanned_line,
            end_offset=index.indexed_bytes,
            cancelled=lambda: worker.is_cancelled,
        )
        for batch in batches:
            if worker.is_cancelled:
                return
            self.app.call_from_thread(self._interesting_found, index, generation, batch)
        if not worker.is_cancelled:
            self.app.call_from_thread(self._scan_finished, index, generation)

    def _interesting_found(self, index: Any, generation: int, batch: Any) -> None:
        if index is not self.index or index.generation != generation:
            return
        if batch.scanned_bytes <= self._scanned_bytes:
            return  # a batch of an older scan, already applied
        # A scan restarted for new bytes may overlap what an older one already applied.
        fresh = [i for i, offset in enumerate(batch.offsets) if offset >= self._scanned_bytes]
        self.interesting_lines.extend(batch.lines[i] for i in fresh)
        self.interesting_offsets.extend(batch.offsets[i] for i in fresh)
        self.interesting_texts.extend(batch.texts[i].expandtabs(4) for i in fresh)
        self.interesting_dropped += batch.dropped
        self._scanned_bytes = batch.scanned_bytes
        self._scanned_line = batch.next_line
        self._scan_total = batch.total_bytes
        if self.filtered:
            self.resize_lines()
        self.update_status()

    def _scan_finished(self, index: Any, generation: int) -> None:
        if index is not self.index or index.generation != generation:
            return
        self._scan_done = True
        if self.filtered:
            self.lines.refresh()
        self.update_status()

    def move_filter_cursor(self, delta: int) -> None:
        if not self.interesting_lines:
            return
        self.filter_cursor = max(
            0, min(len(self.interesting_lines) - 1, self.filter_cursor + delta)
        )
        self._show_filter_cursor()

    def _show_filter_cursor(self) -> None:
        height = self.lines.scrollable_content_region.height
        top = int(self.lines.scroll_y)
        if self.filter_cursor < top:
            self.lines.scroll_to(y=self.filter_cursor, animate=False, force=True)
        elif self.filter_cursor >= top + height:
            self.lines.scroll_to(y=self.filter_cursor - height + 1, animate=False, force=True)
        self.lines.refresh()
        self.update_status()

    def jump_to_filter_cursor(self) -> None:
        """Enter on an interesting line: show it in the full log."""
        index = self.index
        if index is None or not self.interesting_offsets:
            return
        offset = self.interesting_offsets[self.filter_cursor]
        index.extend_backward_to(offset)
        line = index.line_of_offset(offset)
        if line is None:
            return
        if self.line_count != index.line_count:
            self.line_count = index.line_count
            self.lines.invalidate()
        self.jump_to_line(line)

    # -- status ------------------------------------------------------------------------------------
    def update_status(self) -> None:
        if not self.is_mounted:
            return
        index = self.index
        parts: list[str] = []
        if index is None:
            self.status.update(self.status_message)
            return
        if self.filtered:
            found = len(self.interesting_lines)
            parts.append(f"errors only: {found:,} lines")
            if self.interesting_dropped:
                parts.append(f"{self.interesting_dropped:,} more not kept")
            if not self._scan_done and self._scan_total:
                parts.append(f"scanning {self._scanned_bytes / self._scan_total:.0%}")
            if found:
                parts.append(f"{self.filter_cursor + 1:,}/{found:,} — enter jumps")
        else:
            bottom = min(self.line_count, int(self.lines.scroll_y) + self.lines.size.height)
            if index.complete:
                parts.append(f"line {bottom:,}/{self.line_count:,}")
            else:
                done = 1 - index.region_start / max(1, index.indexed_bytes)
                parts.append(f"{self.line_count:,} lines · indexing {done:.0%}")
            if self.following:
                parts.append("following")
        if self.status_message:
            parts.append(self.status_message)
        self.status.update(" · ".join(parts))
