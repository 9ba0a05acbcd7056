"""The Costs pane: $/h per instance, what each has cost so far, and the burn rate now."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from widgets.filterable_table import FilterableTable
from widgets.formatting import duration, money
from widgets.row_types import InstanceLike


class CostsTable(FilterableTable):
    COLUMNS = ("Instance", "State", "$/h", "Uptime", "Spent", "Warnings")

    def show_costs(self, instances: Sequence[InstanceLike]) -> None:
        rows = []
        burn = 0.0
        spent = 0.0
        for inst in instances:
            running = inst.state in ("running", "reachable")
            if running and inst.price_per_hour:
                burn += inst.price_per_hour
            spent += inst.accrued_usd or 0.0
            warn = Text("; ".join(inst.warnings), style="bold yellow") if inst.warnings else ""
            rows.append(
                (
                    f"{inst.provider}:{inst.id}",
                    [
                        inst.name or inst.id,
                        inst.state,
                        money(inst.price_per_hour, per_hour=True),
                        duration(inst.uptime_s),
                        money(inst.accrued_usd),
                        warn,
                    ],
                )
            )
        total = Text("burning now", style="bold")
        rows.append(
            (
                "__total__",
                [total, "", Text(money(burn, per_hour=True), style="bold"), "", money(spent), ""],
            )
        )
        self.set_rows(rows)
