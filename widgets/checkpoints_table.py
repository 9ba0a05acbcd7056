"""The Checkpoints pane of the selected run: name, kind, epoch, step, loss, size, age; the best
one marked; unsafe or corrupt files shown as such, never hidden."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from rich.text import Text

from widgets.filterable_table import FilterableTable
from widgets.formatting import age, number, size


class CheckpointsTable(FilterableTable):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.checkpoints: dict[str, Any] = {}

    def on_mount(self) -> None:
        self.add_columns("", "Checkpoint", "Kind", "Epoch", "Step", "Loss", "Size", "Age")

    def show_checkpoints(
        self, infos: Sequence[Any], best_path: str | None = None, now: float | None = None
    ) -> None:
        """`infos` have path, name, kind, epoch, step, loss, size_bytes, mtime, status, error."""
        now = time.time() if now is None else now
        ordered = sorted(infos, key=lambda c: (c.step or 0, c.epoch or 0, c.mtime), reverse=True)
        self.checkpoints = {c.path: c for c in ordered}
        rows = []
        for info in ordered:
            mark = Text("★", style="bold yellow") if info.path == best_path else Text("")
            kind = Text(info.kind)
            if info.status != "ok":
                kind = Text(info.status, style="bold red")
            rows.append(
                (
                    info.path,
                    [
                        mark,
                        info.name,
                        kind,
                        number(info.epoch, 3),
                        "—" if info.step is None else str(info.step),
                        number(info.loss),
                        size(info.size_bytes),
                        age(now - info.mtime),
                    ],
                )
            )
        self.set_rows(rows)

    @property
    def selected_checkpoint(self) -> Any | None:
        key = self.selected_key
        return self.checkpoints.get(key) if key else None
