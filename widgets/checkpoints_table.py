"""The Checkpoints pane of the selected run: name, kind, epoch, step, loss, size, age; the best
one marked; unsafe or corrupt files shown as such, never hidden. Sortable by any column
(click its header, or `o` to cycle); `enter` asks for the details of the selected one."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.message import Message

from widgets.filterable_table import FilterableTable
from widgets.formatting import duration, number, size


def _num(value: float | None, missing: float) -> float:
    return missing if value is None or math.isnan(value) else value


# Column label -> (sort key, newest/best first by default).
SORTS: dict[str, tuple[Callable[[Any], Any], bool]] = {
    "Checkpoint": (lambda c: c.name, False),
    "Kind": (lambda c: (c.status, c.kind), False),
    "Epoch": (lambda c: (_num(c.epoch, -1.0), c.mtime), True),
    "Step": (lambda c: (-1 if c.step is None else c.step, _num(c.epoch, -1.0), c.mtime), True),
    "Loss": (lambda c: (_num(c.loss, math.inf), c.mtime), False),
    "Size": (lambda c: c.size_bytes, True),
    "Age": (lambda c: c.mtime, True),
}
SORT_ORDER = ["Step", "Loss", "Age", "Size", "Epoch", "Checkpoint", "Kind"]
STATUS_STYLES = {"unsafe": "bold red", "corrupt": "bold red"}


class CheckpointsTable(FilterableTable):
    COLUMNS = ("★", "Checkpoint", "Kind", "Epoch", "Step", "Loss", "Size", "Age")

    BINDINGS = [
        Binding("o", "cycle_sort", "Sort", id="checkpoints.sort"),
        Binding("enter", "details", "Details", id="checkpoints.details"),
    ]

    class Sorted(Message):
        """The order changed; `description` is e.g. "loss ▲" for the pane's label."""

        def __init__(self, description: str) -> None:
            super().__init__()
            self.description = description

    class DetailsRequested(Message):
        def __init__(self, checkpoint: Any) -> None:
            super().__init__()
            self.checkpoint = checkpoint

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.checkpoints: dict[str, Any] = {}
        self.best_path: str | None = None
        self.in_s3: frozenset[str] = frozenset()  # paths also copied to S3, marked "S3"
        self.sort_column = "Step"
        self.sort_reverse = SORTS["Step"][1]
        self._now: float | None = None

    def show_checkpoints(
        self,
        infos: Sequence[Any],
        best_path: str | None = None,
        now: float | None = None,
        in_s3: frozenset[str] = frozenset(),
    ) -> None:
        """`infos` have path, name, kind, epoch, step, loss, size_bytes, mtime, status, error;
        the paths in `in_s3` get an "S3" mark after their name."""
        self.checkpoints = {c.path: c for c in infos}
        self.best_path = best_path
        self.in_s3 = in_s3
        self._now = now
        self._show()

    def _show(self) -> None:
        now = time.time() if self._now is None else self._now
        key, _ = SORTS[self.sort_column]
        ordered = sorted(self.checkpoints.values(), key=key, reverse=self.sort_reverse)
        rows = []
        for info in ordered:
            mark = Text("★", style="bold yellow") if info.path == self.best_path else Text("")
            kind = Text(info.kind)
            if info.status != "ok":
                kind = Text(info.status, style=STATUS_STYLES.get(info.status, "bold red"))
            name = Text(info.name + ("/" if getattr(info, "is_dir", False) else ""))
            if info.path in self.in_s3:
                name.append(" S3", style="bold cyan")
            rows.append(
                (
                    info.path,
                    [
                        mark,
                        name,
                        kind,
                        number(info.epoch, 3),
                        "—" if info.step is None else str(info.step),
                        number(info.loss),
                        size(info.size_bytes),
                        duration(now - info.mtime),
                    ],
                )
            )
        self.set_rows(rows)

    @property
    def sort_description(self) -> str:
        """For the pane's label: which column orders the rows, and which way."""
        return f"{self.sort_column.lower()} {'▼' if self.sort_reverse else '▲'}"

    def sort_by(self, column: str, reverse: bool | None = None) -> None:
        if column not in SORTS:
            return
        if reverse is None:
            default = SORTS[column][1]
            reverse = (not self.sort_reverse) if column == self.sort_column else default
        self.sort_column, self.sort_reverse = column, reverse
        self._show()
        self.post_message(self.Sorted(self.sort_description))

    def on_data_table_header_selected(self, event: FilterableTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.label))

    def action_cycle_sort(self) -> None:
        following = SORT_ORDER[(SORT_ORDER.index(self.sort_column) + 1) % len(SORT_ORDER)]
        self.sort_by(following, SORTS[following][1])

    def action_details(self) -> None:
        checkpoint = self.selected_checkpoint
        if checkpoint is not None:
            self.post_message(self.DetailsRequested(checkpoint))

    @property
    def selected_checkpoint(self) -> Any | None:
        key = self.selected_key
        return self.checkpoints.get(key) if key else None
