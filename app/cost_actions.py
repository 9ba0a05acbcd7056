"""The dashboard's Costs side: the Costs pane, the cost banner and its notifications, Cost
Explorer's figures and the daily price refresh.

A mixin of `RunctlApp` (app/tui.py). The instances worker hands the EC2 rows to
`track_aws_costs` (app/cost_tracking.py records state changes and computes the money); the
report comes back by message. Cost Explorer (at most every 10 minutes) and the Pricing API (at
most once a day, cached on disk) are asked in a worker of their own, after a refresh.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from textual import work
from textual.css.query import NoMatches
from textual.message import Message
from textual.widgets import TabbedContent
from textual.worker import get_current_worker

from providers.base import Instance
from widgets.costs_panel import cost_rows

if TYPE_CHECKING:
    from app.cost_tracking import CostAlert, CostFactsSchedule, CostReport
    from app.costs import PriceCatalog
    from app.tui import RunctlApp

# app.cost_tracking (and the store and price code under it) is imported where it is first
# used, after the dashboard painted: nothing of it is on screen in the first frame.

BILLING_REGION = "us-east-1"  # Cost Explorer and the Pricing API answer there
SHOWN_IN_NOTIFICATION = 3


class CostsTracked(Message):
    def __init__(self, report: CostReport, table_rows: list[tuple[str, list]]) -> None:
        super().__init__()
        self.report = report
        self.table_rows = table_rows  # the Costs table's rows of report.lines, made in the worker


class CostFactsAnswered(Message):
    """Cost Explorer answered (`actuals`, None: not available) and/or prices were refreshed."""

    def __init__(self, asked_cost_explorer: bool, actuals: dict[str, float] | None) -> None:
        super().__init__()
        self.asked_cost_explorer = asked_cost_explorer
        self.actuals = actuals


class CostActions:
    """Costs pane, banner and cost facts (mixed into RunctlApp)."""

    cost_report: CostReport | None = None
    _price_catalog: PriceCatalog | None = None
    _cost_facts: CostFactsSchedule | None = None
    _cost_explorer: dict[str, float] | None = None
    _cost_explorer_asked = False
    _announced_costs: frozenset[tuple[str, str]] = frozenset()
    _cost_table_rows: list[tuple[str, list]] = []  # of cost_report.lines; replaced, not mutated

    @property
    def price_catalog(self: RunctlApp) -> PriceCatalog:
        """The bundled catalog plus the Pricing API figures cached on disk (read once)."""
        if self._price_catalog is None:
            from app.aws_session import price_catalog

            self._price_catalog = price_catalog(self.settings)
        return self._price_catalog

    def track_aws_costs(self: RunctlApp, rows: list[Instance], provider: Any) -> list[Instance]:
        """In the instances worker: record the rows' states, set their accrued $ and cost
        warnings, and send the Costs pane its report."""
        from app.cost_tracking import track_costs

        report = track_costs(
            self.store, rows, now=self.clock(), costs=self.settings.costs, provider=provider
        )
        self.post_message(CostsTracked(report, cost_rows(report.lines)))
        return rows

    def on_costs_tracked(self: RunctlApp, event: CostsTracked) -> None:
        self.cost_report = event.report
        self._cost_table_rows = event.table_rows
        for problem in event.report.problems:
            self._say_once(problem)
        self._announce_cost_alerts(event.report.alerts)
        self._show_costs()
        self._ask_for_cost_facts()

    def _announce_cost_alerts(self: RunctlApp, alerts: list[CostAlert]) -> None:
        """One notification per instance and kind of warning, when it first appears (again
        after it went away: stopped and started, say), never on every refresh."""
        new = [alert for alert in alerts if alert.key not in self._announced_costs]
        self._announced_costs = frozenset(alert.key for alert in alerts)
        if not new:
            return
        lines = [f"{alert.label}: {alert.text}" for alert in new[:SHOWN_IN_NOTIFICATION]]
        if len(new) > SHOWN_IN_NOTIFICATION:
            lines.append(f"and {len(new) - SHOWN_IN_NOTIFICATION} more: see the Costs tab")
        self.notify("\n".join(lines), title="Cost warning", severity="warning", timeout=20)

    def _show_costs(self: RunctlApp) -> None:
        from app.cost_tracking import CostReport, cost_explorer_note, host_lines, prices_note

        report = self.cost_report or CostReport()
        hosts = host_lines(self.instances.values())
        self.costs_pane.table.set_rows([*self._cost_table_rows, *cost_rows(hosts)])
        self.costs_pane.summary.show_summary(
            report.burn_usd_per_hour + sum(line.burn_usd_per_hour for line in hosts),
            report.today_usd,
            report.month_usd,
            # Without a provider (AWS off, unconfigured, refused) Cost Explorer is not asked.
            cost_explorer_note(
                self._cost_explorer, self._cost_explorer_asked or self._aws_provider is None
            ),
            prices_note(self.price_catalog),
        )
        self.cost_banner.show_alerts(report.alerts)
        if self.costs_pane.is_mounted:
            with contextlib.suppress(NoMatches):  # the app may be closing
                tab = self.costs_pane.query_ancestor(TabbedContent).get_tab("tab-costs")
                label = f"Costs ⚠ {len(report.alerts)}" if report.alerts else "Costs"
                if tab.label.plain != label:  # a new label lays the whole screen out again
                    tab.label = label

    # -- Cost Explorer and the Pricing API ---------------------------------------------------------
    def _ask_for_cost_facts(self: RunctlApp) -> None:
        if self._aws_provider is None:
            return
        if self._cost_facts is None:
            from app.cost_tracking import CostFactsSchedule

            self._cost_facts = CostFactsSchedule()
        now = self.clock()
        ask_cost_explorer = self._cost_facts.cost_explorer_due(now)
        ask_prices = self._cost_facts.prices_due(
            now, self.price_catalog, self.settings.costs.refresh_prices
        )
        if ask_cost_explorer:
            self._cost_facts.cost_explorer_asked_at = now
        if ask_prices:
            self._cost_facts.prices_asked_at = now
        if ask_cost_explorer or ask_prices:
            self.refresh_cost_facts(self._aws_provider, ask_cost_explorer, ask_prices)

    @work(
        thread=True,
        exclusive=True,
        group="cost-facts",
        exit_on_error=False,
        description="Asking Cost Explorer and the Pricing API",
    )
    def refresh_cost_facts(
        self: RunctlApp, provider: Any, ask_cost_explorer: bool, ask_prices: bool
    ) -> None:
        from app.costs import cost_explorer_actuals

        if ask_cost_explorer:
            client = provider.clients.client("ce", BILLING_REGION)
            actuals = cost_explorer_actuals(client, self.clock())
            self.post_message(CostFactsAnswered(True, actuals))
        if ask_prices and not get_current_worker().is_cancelled:
            # A failure keeps the catalog as it was (and says why in last_refresh_error);
            # the next try is a day later.
            client = provider.clients.client("pricing", BILLING_REGION)
            self.price_catalog.refresh(client, provider.regions)
            self.post_message(CostFactsAnswered(False, None))

    def on_cost_facts_answered(self: RunctlApp, event: CostFactsAnswered) -> None:
        if event.asked_cost_explorer:
            self._cost_explorer_asked = True
            self._cost_explorer = event.actuals
        self._show_costs()
