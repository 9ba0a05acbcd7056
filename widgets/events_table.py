"""The Events view: recent operations (launch, stop, sync, cloud calls) and how they ended."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from rich.text import Text

from widgets.filterable_table import FilterableTable

RESULT_STYLES = {"ok": "green", "error": "bold red", "running": "bold yellow"}


class EventsTable(FilterableTable):
    COLUMNS = ("When", "Operation", "Target", "Result", "Took", "Message")

    def show_operations(self, operations: Sequence[Any]) -> None:
        """`operations` have name, target, started_at, duration_s, result, message."""
        rows = []
        for index, op in enumerate(reversed(list(operations))):
            took = "…" if op.duration_s is None else f"{op.duration_s:.2f}s"
            rows.append(
                (
                    f"{index}",
                    [
                        time.strftime("%H:%M:%S", time.localtime(op.started_at)),
                        op.name,
                        op.target,
                        Text(op.result, style=RESULT_STYLES.get(op.result, "")),
                        took,
                        op.message,
                    ],
                )
            )
        self.set_rows(rows)
