"""The log of the selected run: Textual's `Log` (not RichLog) with a line cap.

Lines arrive in time-based batches from the app's follower; a batch longer than the cap only
writes the lines that would survive it, so a burst never makes the view do throw-away work.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import Log


class RunLog(Log):
    DEFAULT_CSS = """
    RunLog {
        border: round $primary 50%;
        scrollbar-size-vertical: 1;
    }
    RunLog:focus { border: round $accent; }
    """

    def __init__(self, max_lines: int = 10_000, **kwargs) -> None:
        super().__init__(max_lines=max_lines, highlight=False, auto_scroll=True, **kwargs)
        self.lines_received = 0

    def replace_lines(self, lines: Sequence[str]) -> None:
        self.clear()
        self.lines_received = 0
        self.append_lines(lines)

    def append_lines(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        self.lines_received += len(lines)
        cap = self.max_lines or len(lines)
        self.write_lines(lines[-cap:] if len(lines) > cap else lines)
