"""The Runs pane: runs of the selected instance, running first, then history."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.text import Text
from textual.message import Message

from widgets.filterable_table import FilterableTable
from widgets.formatting import duration, number
from widgets.row_types import RunLike as Run

STATUS_STYLES = {
    "running": "bold green",
    "starting": "yellow",
    "stopping": "bold yellow",
    "finished": "green",
    "stopped": "cyan",
    "failed": "bold red",
    "lost": "red",
    "interrupted": "bold magenta",
}


class RunsTable(FilterableTable):
    COLUMNS = ("Run", "Script", "Status", "Took", "Epoch", "Loss", "Ckpt")

    class Selected(Message):
        def __init__(self, run: Run) -> None:
            super().__init__()
            self.run = run

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.runs: dict[str, Run] = {}
        self.stop_countdowns: dict[str, float] = {}
        self.checkpoint_warn_s: float = 3600.0

    def show_runs(self, runs: Sequence[Run], now: float | None = None) -> None:
        now = time.time() if now is None else now
        ordered = sorted(runs, key=lambda r: (not r.active, -r.started_at))
        self.runs = {r.id: r for r in ordered}
        rows = []
        for run in ordered:
            status = Text(run.status, style=STATUS_STYLES.get(run.status, ""))
            if run.exit_code is not None:
                status.append(f" {run.exit_code}", style="dim")
            if run.id in self.stop_countdowns:
                status.append(f" {self.stop_countdowns[run.id]:.0f}s", style="bold yellow")
            end = run.ended_at if run.ended_at is not None else now
            epoch = "—"
            if run.last_epoch is not None:
                epoch = f"{run.last_epoch:g}" + (f"/{run.total_epochs}" if run.total_epochs else "")
            script = run.script
            if run.parent_run_id:  # lineage: resumed from a checkpoint of that run
                script += f" ↻{run.parent_run_id.rsplit('-', 1)[-1]}"
            ckpt = Text(duration(now - run.last_checkpoint_at) if run.last_checkpoint_at else "—")
            if (
                run.active
                and now - (run.last_checkpoint_at or run.started_at) > self.checkpoint_warn_s
            ):
                ckpt.stylize("bold yellow")
                ckpt.append(" ⚠")
            rows.append(
                (
                    run.id,
                    [
                        short_run_id(run.id),
                        script,
                        status,
                        duration(end - run.started_at),
                        epoch,
                        number(run.last_loss),
                        ckpt,
                    ],
                )
            )
        self.set_rows(rows)

    @property
    def selected_run(self) -> Run | None:
        key = self.selected_key
        return self.runs.get(key) if key else None

    def on_data_table_row_highlighted(self, event: FilterableTable.RowHighlighted) -> None:
        event.stop()
        run = self.runs.get(event.row_key.value) if event.row_key else None
        if run is not None:
            self.post_message(self.Selected(run))


def short_run_id(run_id: str) -> str:
    """`20261123-053759-7758b5` -> `05:37 7758b5`: the time and the unique part."""
    parts = run_id.split("-")
    if len(parts) == 3 and len(parts[1]) == 6:
        return f"{parts[1][:2]}:{parts[1][2:4]} {parts[2]}"
    return run_id
