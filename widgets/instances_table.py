"""The Instances pane: every machine of every provider as one row."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.message import Message

from widgets.filterable_table import FilterableTable
from widgets.formatting import duration, money
from widgets.row_types import InstanceLike as Instance

STATE_STYLES = {
    "running": "green",
    "reachable": "green",
    "pending": "yellow",
    "stopping": "yellow",
    "stopped": "dim",
    "terminated": "dim strike",
    "unreachable": "red",
}


class InstancesTable(FilterableTable):
    COLUMNS = ("Provider", "Instance", "Type", "GPU", "State", "Uptime", "$/h")

    class Selected(Message):
        def __init__(self, instance: Instance) -> None:
            super().__init__()
            self.instance = instance

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.instances: dict[str, Instance] = {}

    def show_instances(
        self, instances: Sequence[Instance], rows: list[tuple[str, list]] | None = None
    ) -> None:
        """`rows`: `instance_rows(instances)` when the caller made them already (a worker)."""
        self.instances = {f"{i.provider}:{i.id}": i for i in instances}
        self.set_rows(rows if rows is not None else instance_rows(instances))

    @property
    def selected_instance(self) -> Instance | None:
        key = self.selected_key
        return self.instances.get(key) if key else None

    def on_data_table_row_highlighted(self, event: FilterableTable.RowHighlighted) -> None:
        event.stop()
        instance = self.instances.get(event.row_key.value) if event.row_key else None
        if instance is not None:
            self.post_message(self.Selected(instance))


def instance_rows(instances: Sequence[Instance]) -> list[tuple[str, list]]:
    """The table's rows (key, cells) for these instances. Pure: the instances worker makes them
    for a big account (1,500 EC2 instances: ~40 ms), not the main thread."""
    rows = []
    for key, inst in {f"{i.provider}:{i.id}": i for i in instances}.items():
        state = Text(inst.state, style=STATE_STYLES.get(inst.state, ""))
        if inst.warnings:
            state.append(" ⚠", style="bold yellow")
        rows.append(
            (
                key,
                [
                    inst.provider,
                    inst.name or inst.id,
                    inst.type or "—",
                    inst.gpu or "—",
                    state,
                    duration(inst.uptime_s),
                    money(inst.price_per_hour),
                ],
            )
        )
    return rows
