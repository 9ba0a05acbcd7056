"""FilterableTable applies new rows as changes: a refresh that keeps the same rows updates only
the cells that changed (no cursor move, no re-highlight), a big one is applied in slices while
keys are still handled, and a rebuild keeps the cursor on its row."""

from __future__ import annotations

from rich.text import Text
from textual.app import App, ComposeResult

from tests.test_dashboard_pilot import until
from widgets.filterable_table import SYNC_ROWS, FilterableTable


class Table(FilterableTable):
    COLUMNS = ("Name", "State", "Uptime")


class TableApp(App):
    def __init__(self) -> None:
        super().__init__()
        self.highlighted: list[str] = []

    def compose(self) -> ComposeResult:
        yield Table()

    def on_data_table_row_highlighted(self, event: FilterableTable.RowHighlighted) -> None:
        self.highlighted.append(event.row_key.value)


def rows(count: int, uptime: str = "5m", state: str = "running") -> list[tuple[str, list]]:
    return [(f"i-{n:04d}", [f"box-{n}", Text(state, style="green"), uptime]) for n in range(count)]


async def test_the_same_rows_again_update_only_their_cells_and_keep_the_cursor() -> None:
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(Table)
        table.set_rows(rows(20))
        table.move_cursor(row=7)
        await pilot.pause()
        app.highlighted.clear()

        table.set_rows(rows(20, uptime="10h05m", state="stopped"))
        assert table.get_row("i-0003")[2] == "10h05m"
        assert table.get_row("i-0003")[1].plain == "stopped"
        await pilot.pause()
        assert table.selected_key == "i-0007" and app.highlighted == []
        # The column grew to fit the longer uptime.
        assert table.ordered_columns[2].content_width >= len("10h05m")

        # A style change alone is a change (Text's own == ignores styles).
        table.set_rows([(k, [c[0], Text("stopped", style="red"), c[2]]) for k, c in rows(20)])
        assert table.get_row("i-0003")[1].style == "red"


async def test_a_big_update_is_applied_in_slices_and_keys_are_handled_meanwhile() -> None:
    count = SYNC_ROWS * 30
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(Table)
        table.set_rows(rows(count))
        assert table.applying and table.row_count < count
        await until(pilot, lambda: table.row_count > 0)
        await pilot.press("down")  # handled while rows are still being added
        await until(pilot, lambda: not table.applying)
        assert table.row_count == count
        assert table.selected_key == "i-0001"

        table.move_cursor(row=count - 5)
        table.set_rows(rows(count, uptime="6m"))
        assert table.applying and table.get_row("i-0000")[2] == "5m"  # set at the end
        await until(pilot, lambda: not table.applying)
        assert all(table.get_row(f"i-{n:04d}")[2] == "6m" for n in range(0, count, 97))
        assert table.selected_key == f"i-{count - 5:04d}"


async def test_a_rebuild_puts_the_cursor_back_on_its_row() -> None:
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(Table)
        table.set_rows(rows(SYNC_ROWS * 3))
        await until(pilot, lambda: not table.applying)
        table.move_cursor(row=250)
        # A new row first: the keys differ, so the table is rebuilt (in slices).
        table.set_rows([("i-new", ["new", Text("pending"), "0s"]), *rows(SYNC_ROWS * 3)])
        await until(pilot, lambda: not table.applying)
        assert table.row_count == SYNC_ROWS * 3 + 1
        assert table.selected_key == "i-0250"

        table.set_filter("box-25")  # a filter keeps only matching rows, the cursor's included
        assert table.selected_key == "i-0250"
