"""A DataTable whose rows can be filtered by text (`/` in the dashboard) without losing them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual import events
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist


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

    def set_rows(self, rows: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Replace all rows (key, cells), keeping the cursor on the same key when it is there."""
        self._all_rows = list(rows)
        self._render_rows()

    def on_mount(self) -> None:
        self.add_columns(*self.COLUMNS)
        self._render_rows()

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip().lower()
        self._render_rows()

    def _render_rows(self) -> None:
        if not self.columns:
            return  # not mounted yet: on_mount shows the rows
        selected = self.selected_key
        self.clear()
        for key, cells in self._all_rows:
            if self.filter_text and not any(
                self.filter_text in _plain(cell).lower() for cell in cells
            ):
                continue
            self.add_row(*cells, key=key)
        if selected is not None and selected in self.rows:
            self.move_cursor(row=self.get_row_index(selected), animate=False)

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


def _plain(cell: Any) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)
