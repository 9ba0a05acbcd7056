"""The Costs pane and the cost banner.

The pane: a summary (burn $/h now, today and this month, AWS's own figures from Cost Explorer
beside them, the price catalog's date) over one row per instance: $/h now or its state, spent
today and this month, time idle and whether the idle auto-stop is on. The banner: one line over
the dashboard naming the instances that cost more than they should, hidden when none does.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.visual import visualize
from textual.widgets import Static

from widgets.filterable_table import FilterableTable
from widgets.formatting import duration, money
from widgets.row_types import CostAlertLike, CostLineLike

STATE_STYLES = {"stopped": "dim", "terminated": "dim strike", "gone": "dim strike"}
LABEL_WIDTH = 16  # the side panel is narrow: $/h, today, month and auto-stop must fit beside it


class CostsTable(FilterableTable):
    """One row per instance; idle time comes last, past the panel's edge when it is narrow."""

    COLUMNS = ("Instance", "Now", "Today", "Month", "Auto-stop", "Idle")

    def show_costs(self, lines: Sequence[CostLineLike]) -> None:
        self.set_rows(cost_rows(lines))


def cost_rows(lines: Sequence[CostLineLike]) -> list[tuple[str, list]]:
    """The Costs table's rows (key, cells) for these lines. Pure: the instances worker makes
    them for a big account, not the main thread."""
    rows = []
    for line in lines:
        if line.burn_usd_per_hour:
            now = Text(money(line.burn_usd_per_hour, per_hour=True))
        else:
            now = Text(line.state, style=STATE_STYLES.get(line.state, ""))
        rows.append(
            (
                line.key,
                [
                    _shorten(line.label),
                    now,
                    money(line.today_usd),
                    money(line.month_usd),
                    Text("on", style="bold") if line.idle_auto_stop else "off",
                    duration(line.idle_s) if line.idle_s is not None else "—",
                ],
            )
        )
    return rows


class CostsSummary(Static):
    """Totals over the table: our estimate, Cost Explorer's figures and where prices come from."""

    _shown = Text()

    DEFAULT_CSS = """
    CostsSummary {
        height: auto;
        padding: 0 1;
        color: $text-muted;
    }
    """

    def show_summary(
        self, burn: float, today: float, month: float, cost_explorer: str, prices: str
    ) -> None:
        """Shown again only when it changed, and the screen laid out again only when its
        height did (on every refresh, that layout cost the main thread 13-25 ms)."""
        text = Text()
        text.append("Burning ")
        text.append(money(burn, per_hour=True), style="bold")
        text.append(" · today ")
        text.append(money(today), style="bold")
        text.append(" · month ")
        text.append(money(month), style="bold")
        text.append(" (UTC)\n")
        text.append(f"{cost_explorer}\n{prices}")
        if text == self._shown and text.style == self._shown.style:
            return
        # As last laid out (content_size would lay the screen out to answer); 0 until shown.
        width = max(0, self.outer_size.width - self.styles.gutter.width)
        grew = width > 0 and self._height(text, width) != self._height(self._shown, width)
        self._shown = text
        self.update(text, layout=grew or not self.is_mounted)

    def _height(self, text: Text, width: int) -> int:
        return visualize(self, text, markup=False).get_height(self.styles, width)


class CostsPane(Vertical):
    """The summary over the table, in the Costs tab."""

    DEFAULT_CSS = """
    CostsPane {
        height: 1fr;
    }
    CostsPane > CostsTable {
        height: 1fr;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.summary = CostsSummary(id="costs-summary")
        self.table = CostsTable(id="costs")

    def compose(self) -> ComposeResult:
        yield self.summary
        yield self.table


class CostBanner(Static):
    """One line over the panes while any instance has a cost warning."""

    DEFAULT_CSS = """
    CostBanner {
        display: none;
        height: 1;
        padding: 0 1;
        background: $warning 25%;
        color: $text;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    CostBanner.-visible {
        display: block;
    }
    """

    _shown: tuple[str, ...] = ()  # the alerts' text as last shown

    def show_alerts(self, alerts: Sequence[CostAlertLike]) -> None:
        """Shown again only when the alerts changed: an update lays the screen out again."""
        shown = tuple(f"{alert.label}\0{alert.text}" for alert in alerts)
        if shown == self._shown and self.has_class("-visible") == bool(alerts):
            return
        self._shown = shown
        self.set_class(bool(alerts), "-visible")
        if not alerts:
            self.update("")
            return
        by_instance: dict[str, list[str]] = {}
        for alert in alerts:
            by_instance.setdefault(alert.label, []).append(alert.text)
        text = Text("⚠ Costs: ", style="bold")
        text.append(" · ".join(f"{label}: {', '.join(t)}" for label, t in by_instance.items()))
        self.update(text)


def _shorten(label: str) -> str:
    return label if len(label) <= LABEL_WIDTH else label[: LABEL_WIDTH - 1] + "…"
