"""A DataTable whose rows can be filtered by text (`/` in the dashboard) without losing them.

Rows are replaced as a whole (`set_rows`) but applied as changes: when the rows shown are still
there in the same order, only the cells that changed are updated, and rows are only added or
rebuilt when the keys differ. A big update (1,500 EC2 instances) is applied by an async worker
in slices of a few milliseconds, so that keys and frames are handled in between (all at once,
adding and then measuring 1,500 rows blocked the main thread for ~0.3 s per table), and the
changed cells are set together at its end, so the table is drawn again once, not per slice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from time import perf_counter
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.coordinate import Coordinate
from textual.render import measure
from textual.widgets import DataTable
from textual.widgets._data_table import default_cell_formatter  # how the table measures
from textual.widgets.data_table import CellDoesNotExist, Column, ColumnKey, RowKey

SYNC_ROWS = 100  # tables of up to this many rows are updated at once, as before
SLICE_S = 0.003  # bigger ones a slice of about this long at a time: what a key waits for
PAUSE_S = 0.003  # then the main loop is left to keys and frames for as long
_NOTHING = object()  # no cursor position to restore
_NOT_PLAIN = frozenset("[\n\t")  # markup (in a str), more lines or tabs: measured as rendered


class FilterableTable(DataTable):
    """Keeps every row it was given; shows those whose text contains the filter. Rows given
    before the table is mounted are kept and shown when it is."""

    COLUMNS: tuple[str, ...] = ()

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", True)
        super().__init__(**kwargs)
        self._all_rows: list[tuple[str, Sequence[Any]]] = []
        self.filter_text = ""
        self._generation = 0  # bumped by every update: a newer one drops the older's slices
        self._restore_key: object = _NOTHING  # the row the cursor was on before a rebuild
        self._applying = False  # slices of the last rows given are still to be applied

    def set_rows(self, rows: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Replace all rows (key, cells), keeping the cursor on the same key when it is there.
        Up to SYNC_ROWS rows are shown at once; more are applied in slices (see `applying`)."""
        self._all_rows = list(rows)
        self._render_rows()

    def on_mount(self) -> None:
        self.add_columns(*self.COLUMNS)
        self._render_rows()

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip().lower()
        self._render_rows()

    @property
    def applying(self) -> bool:
        """Whether rows given are still being applied, a slice at a time."""
        return self._applying

    def _render_rows(self) -> None:
        if not self.columns:
            return  # not mounted yet: on_mount shows the rows
        needle = self.filter_text
        wanted = (
            [row for row in self._all_rows if any(needle in _plain(c).lower() for c in row[1])]
            if needle
            else self._all_rows
        )
        shown = self.ordered_rows
        if len(shown) > len(wanted) or any(
            row.key.value != key for row, (key, _) in zip(shown, wanted, strict=False)
        ):
            # The rows shown are not the first of those wanted, in order: start again. The
            # cursor goes back to its row when that row is added (unless moved meanwhile).
            if self._restore_key is _NOTHING:
                self._restore_key = self.selected_key
            self.clear()
        self._generation += 1  # an older application still under way stops at its next slice
        if len(wanted) <= SYNC_ROWS:
            changes = _Changes()
            self._apply_slice(wanted, 0, None, changes)
            self._set_cells(changes)
            self._applied()
        else:
            self._applying = True
            self.run_worker(
                partial(self._apply_in_slices, wanted, self._generation),
                group="apply-rows",
                exclusive=True,
                description="Applying rows",
            )

    async def _apply_in_slices(
        self, wanted: list[tuple[str, Sequence[Any]]], generation: int
    ) -> None:
        """About SLICE_S of work at a time; in between, the loop runs everything else (keys,
        frames, and the table measuring the rows just added). Changed cells are set at the
        end, all at once: set slice by slice, each slice made the next frame draw the table
        again (~10 ms each)."""
        changes = _Changes()
        start = 0
        while start < len(wanted):
            if generation != self._generation:
                return
            start = self._apply_slice(wanted, start, perf_counter() + SLICE_S, changes)
            await asyncio.sleep(PAUSE_S)
        if generation == self._generation:
            self._set_cells(changes)
            self._applied()

    def drop_caches(self) -> None:
        """Forget the cells rendered or measured so far (visible ones are rendered again on
        demand): after gc.freeze(), a cache made before it would keep whatever is added to
        it later once the table clears it (app/gc_pauses.py)."""
        self._clear_caches()

    def _applied(self) -> None:
        self._applying = False
        self._restore_key = _NOTHING  # its row is gone (or filtered out)

    def _apply_slice(
        self,
        wanted: list[tuple[str, Sequence[Any]]],
        start: int,
        deadline: float | None,
        changes: _Changes,
    ) -> int:
        """Rows of `wanted` from `start` on, until `deadline` (a perf_counter time; None: to
        the end): rows not shown are added, shown ones compared, their changed cells noted in
        `changes`. Returns where it stopped, at least one row further."""
        columns = self.ordered_columns
        end = start
        while end < len(wanted) and (deadline is None or end == start or perf_counter() < deadline):
            key, cells = wanted[end]
            end += 1
            if key in self.rows:
                self._compare_row(key, cells, columns, changes)
                continue
            self.add_row(*cells, key=key)
            if key == self._restore_key:
                self._restore_key = _NOTHING
                if self.cursor_coordinate == Coordinate(0, 0):  # else the user moved it
                    self.move_cursor(row=self.get_row_index(key), animate=False)
        return end

    def _compare_row(
        self, key: str, cells: Sequence[Any], columns: list[Column], changes: _Changes
    ) -> None:
        """Notes the cells of a shown row that changed, and those wider than their column
        (columns never narrow, as with rows added)."""
        height = self.rows[key].height
        for column, before, after in zip(columns, self.get_row(key), cells, strict=False):
            if _same(before, after):
                continue
            changes.cells.append((key, column.key, after))
            width = self._cell_width(after, height)
            if width > max(column.content_width, changes.widest.get(column.key, (0,))[0]):
                changes.widest[column.key] = (width, key, after)

    def _set_cells(self, changes: _Changes) -> None:
        """`update_cell` for each change, with one repaint instead of one per cell (~8 us
        each: 1,500 uptimes). A column widens to its widest new cell, and only that cell is
        measured again (the table re-measures a whole column when a cell given to measure is
        narrower than the column)."""
        for key, column_key, cell in changes.cells:
            self._data[RowKey(key)][column_key] = cell
        if changes.cells:
            self._update_count += 1
            self.refresh()
        for column_key, (_, key, cell) in changes.widest.items():
            self.update_cell(key, column_key, cell, update_width=True)

    def _cell_width(self, cell: Any, height: int) -> int:
        """The width the table measures for `cell`; plain one-line text is counted directly
        (16 us less per cell: 1,500 changed uptimes)."""
        if height == 1:
            text = cell.plain if isinstance(cell, Text) else cell
            if isinstance(text, str) and not _NOT_PLAIN.intersection(text):
                return cell_len(text)
        renderable = default_cell_formatter(cell, wrap=height != 1, height=height)
        return measure(self.app.console, renderable, 1)

    async def _on_idle(self, event: events.Idle) -> None:
        # DataTable measures new cells on idle, but its render caches are not keyed by column
        # width: rows painted before the measurement stayed cut to the header's width
        # ("exam" for "example-json"). When a width changes, drop those renderings.
        widths = [column.content_width for column in self.columns.values()]
        await super()._on_idle(event)
        if widths != [column.content_width for column in self.columns.values()]:
            self._clear_caches()
            self.refresh()

    @property
    def selected_key(self) -> str | None:
        if self.row_count == 0:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except CellDoesNotExist:  # cursor outside the rows after a clear
            return None


@dataclass
class _Changes:
    """Cells of shown rows that differ from the rows given, and per column the widest new
    cell wider than the column."""

    cells: list[tuple[str, ColumnKey, Any]] = field(default_factory=list)
    widest: dict[ColumnKey, tuple[int, str, Any]] = field(default_factory=dict)


def _plain(cell: Any) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def _same(before: Any, after: Any) -> bool:
    """Whether a cell would look the same (Text's own == ignores its style)."""
    if isinstance(before, Text) and isinstance(after, Text):
        return (
            before.plain == after.plain
            and before.style == after.style
            and before.spans == after.spans
        )
    return type(before) is type(after) and before == after
