"""Money spent per EC2 instance, tracked across stop / start in the run store.

Each refresh hands the provider's rows to `track_costs`: a state change is recorded as a new
interval (`RunStore.record_instance_states`; the first sight of a running instance starts at
its LaunchTime), then accrued, today and this month (UTC) are computed from every recorded
interval with `app.costs` — the rate while billed, the attached EBS volumes while stopped.
Instances EC2 no longer lists are recorded as `gone`, so they stop counting. The warnings
(uptime, accrued, idle) come back per instance and kind, for a banner and one notification
each. `idle_since` reads the runs table: the idle auto-stop calls it too.

No textual and no boto3: the dashboard's instances worker and `runctl-tui instances` call it
alike, so both show the same figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.costs import (
    BILLED_STATES,
    CostThresholds,
    PriceCatalog,
    cost_warnings,
    start_of_month,
    summarize_costs,
)
from app.store import InstanceState, RunStore
from providers.base import Instance, ProviderError

AWS = "aws"
GONE = "gone"  # no longer listed by a region that answered: terminated long ago, or hidden
FINAL_STATES = frozenset({"terminated", GONE})
COST_EXPLORER_EVERY_S = 600.0
PRICES_EVERY_S = 86400.0


@dataclass(frozen=True, slots=True)
class CostAlert:
    """One warning of one instance; `kind` is uptime, accrued or idle."""

    instance_id: str
    label: str
    kind: str
    text: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.instance_id, self.kind)


@dataclass(frozen=True, slots=True)
class CostLine:
    """One instance in the Costs pane."""

    key: str  # "aws:i-0abc", as in the Instances pane
    label: str  # its Name tag, or its id
    state: str
    usd_per_hour: float | None  # its rate; None when its price is unknown
    burn_usd_per_hour: float  # the rate while billed now, else 0
    today_usd: float | None
    month_usd: float | None
    total_usd: float | None
    idle_s: float | None
    idle_auto_stop: bool


@dataclass
class CostReport:
    """What one refresh found: totals, lines, warnings and what could not be read."""

    burn_usd_per_hour: float = 0.0
    today_usd: float = 0.0
    month_usd: float = 0.0
    lines: list[CostLine] = field(default_factory=list)
    alerts: list[CostAlert] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Recording state changes
# ---------------------------------------------------------------------------------------------
def _launched(row: Instance) -> float | None:
    if not row.launched_at:
        return None
    return datetime.fromisoformat(row.launched_at).timestamp()


def _since(state: str, launched: float | None, last: InstanceState | None, now: float) -> float:
    """When a newly seen state began. A billed state began at LaunchTime when EC2 set it after
    what we last recorded (EC2 resets it on each start); an instance that reappears with an
    older LaunchTime ran on while it was not listed; anything else began when it was seen."""
    if state in BILLED_STATES and launched is not None:
        if last is None or launched >= last.since:
            return min(launched, now)
        if last.state == GONE:
            return last.since
    return now


def _latest_rate(history: Sequence[InstanceState]) -> float | None:
    return next((row.rate for row in reversed(history) if row.rate is not None), None)


def record_sightings(
    store: RunStore,
    rows: Sequence[Instance],
    now: float,
    storage_gb: dict[str, float],
    answered_regions: Sequence[str] = (),
) -> list[InstanceState]:
    """Record the EC2 rows' states where they changed, and `gone` for tracked instances that a
    region in `answered_regions` no longer lists. Returns the intervals appended."""
    ec2 = [row for row in rows if row.provider == AWS and row.id.startswith("i-")]
    histories = store.instance_histories([row.id for row in ec2], live_since=now)
    sightings = []
    for row in ec2:
        history = histories.get(row.id, [])
        last = history[-1] if history else None
        gb = storage_gb.get(row.id, last.storage_gb if last else 0.0)
        rate = row.price_per_hour if row.price_per_hour is not None else _latest_rate(history)
        since = _since(row.state, _launched(row), last, now)
        sightings.append(InstanceState(row.id, row.region, row.state, since, now, rate, gb))
    listed = {row.id for row in ec2}
    for instance_id, history in histories.items():
        last = history[-1]
        if instance_id in listed or last.state in FINAL_STATES:
            continue
        if last.region in answered_regions:
            sightings.append(
                InstanceState(instance_id, last.region, GONE, now, now, last.rate, last.storage_gb)
            )
    return store.record_instance_states(sightings)


# ---------------------------------------------------------------------------------------------
# Idle time
# ---------------------------------------------------------------------------------------------
def idle_since(
    store: RunStore,
    instance: Instance,
    now: float,
    history: Sequence[InstanceState] | None = None,
) -> float | None:
    """Since when a running instance has had no active run: the end of its last run, or when
    this running stretch was first seen (so time spent stopped is not idle), whichever is later.
    None while a run is active on it or when it is not running. `history`: its recorded
    intervals, when the caller has them already."""
    if instance.state != "running":
        return None
    runs = store.runs(instance.provider, instance.id, limit=100)
    if any(run.active for run in runs):
        return None
    if history is None:
        history = store.instance_histories([instance.id]).get(instance.id, [])
    seen = now
    for row in reversed(history):
        if row.state not in BILLED_STATES:
            break
        seen = min(seen, row.recorded_at)
    ended = [run.ended_at or run.started_at for run in runs]
    return max([seen, *ended])


# ---------------------------------------------------------------------------------------------
# Money and warnings
# ---------------------------------------------------------------------------------------------
def warnings_by_kind(
    row: Instance, idle_s: float | None, thresholds: CostThresholds
) -> dict[str, str]:
    """{kind: sentence} of the warnings `cost_warnings` gives this row, one measure at a time."""
    measures = {
        "uptime": {"uptime_s": row.uptime_s},
        "accrued": {"accrued_usd": row.accrued_usd},
        "idle": {"idle_s": idle_s},
    }
    found = {}
    for kind, measure in measures.items():
        args: dict[str, Any] = {"uptime_s": None, "accrued_usd": None, "idle_s": None, **measure}
        for text in cost_warnings(state=row.state, thresholds=thresholds, **args):
            found[kind] = text
    return found


def track_costs(
    store: RunStore,
    rows: Sequence[Instance],
    *,
    now: float,
    costs: Any,
    provider: Any = None,
) -> CostReport:
    """Record the EC2 rows' states, then set each row's `accrued_usd` (every interval since it
    was first seen) and cost warnings, and return the Costs pane's report. `costs`: the
    settings' [costs] section; `provider`: the AwsProvider that listed the rows (its regions'
    answers and attached volume sizes), or None."""
    report = CostReport()
    ec2 = [row for row in rows if row.provider == AWS and row.id.startswith("i-")]
    storage: dict[str, float] = {}
    answered: list[str] = []
    if provider is not None:
        answered = [r for r, result in provider.last_results.items() if result.error is None]
        by_region: dict[str, list[str]] = {}
        for row in ec2:
            if row.state != "terminated" and row.region:
                by_region.setdefault(row.region, []).append(row.id)
        for region, ids in by_region.items():
            try:
                storage.update(provider.volume_gb(region, ids))
            except ProviderError as err:
                report.problems.append(f"EBS volume sizes in {region} unknown: {err}")
    record_sightings(store, ec2, now, storage, answered)

    histories = store.instance_histories([row.id for row in ec2], live_since=start_of_month(now))
    priced = {}
    for instance_id, history in histories.items():
        rate = _latest_rate(history)
        if rate is not None:
            intervals = [(row.state, row.since) for row in history]
            priced[instance_id] = (intervals, rate, history[-1].storage_gb)
    summary = summarize_costs(
        priced, now, storage_usd_per_gb_month=float(costs.ebs_usd_per_gb_month)
    )
    spent = {item.instance_id: item for item in summary.instances}
    report.burn_usd_per_hour = summary.burn_usd_per_hour
    report.today_usd, report.month_usd = summary.today_usd, summary.month_usd

    thresholds = CostThresholds.of(costs)
    auto_stop = set(getattr(costs, "idle_auto_stop", ()) or ())
    for row in ec2:
        cost = spent.get(row.id)
        row.accrued_usd = cost.total_usd if cost else None
        idle_s = None
        started = idle_since(store, row, now, histories.get(row.id, []))
        if started is not None:
            idle_s = max(0.0, now - started)
        kinds = warnings_by_kind(row, idle_s, thresholds)
        row.warnings.extend(kinds.values())
        label = row.name or row.id
        report.alerts.extend(CostAlert(row.id, label, k, text) for k, text in kinds.items())
        report.lines.append(
            _line(row.id, label, row.state, histories.get(row.id), cost, idle_s, auto_stop)
        )
    listed = {row.id for row in ec2}
    for instance_id, history in histories.items():
        cost = spent.get(instance_id)
        if instance_id in listed or cost is None or cost.month_usd <= 0:
            continue
        state = history[-1].state
        report.lines.append(_line(instance_id, instance_id, state, history, cost, None, auto_stop))
    return report


def _line(
    instance_id: str,
    label: str,
    state: str,
    history: Sequence[InstanceState] | None,
    cost: Any,
    idle_s: float | None,
    auto_stop: set[str],
) -> CostLine:
    return CostLine(
        key=f"{AWS}:{instance_id}",
        label=label,
        state=state,
        usd_per_hour=_latest_rate(history or ()),
        burn_usd_per_hour=cost.usd_per_hour if cost else 0.0,
        today_usd=cost.today_usd if cost else None,
        month_usd=cost.month_usd if cost else None,
        total_usd=cost.total_usd if cost else None,
        idle_s=idle_s,
        idle_auto_stop=instance_id in auto_stop,
    )


def host_lines(instances: Iterable[Instance]) -> list[CostLine]:
    """Machines of other providers that have a configured $/h (SSH hosts): they burn it while
    up; what they cost over a day or a month is not tracked."""
    lines = []
    for row in instances:
        if row.provider == AWS or not row.price_per_hour:
            continue
        burning = row.state in ("running", "reachable")
        lines.append(
            CostLine(
                key=f"{row.provider}:{row.id}",
                label=row.name or row.id,
                state=row.state,
                usd_per_hour=row.price_per_hour,
                burn_usd_per_hour=row.price_per_hour if burning else 0.0,
                today_usd=None,
                month_usd=None,
                total_usd=None,
                idle_s=None,
                idle_auto_stop=False,
            )
        )
    return lines


# ---------------------------------------------------------------------------------------------
# Cost Explorer and the Pricing API: when to ask, and what the pane says about them
# ---------------------------------------------------------------------------------------------
@dataclass
class CostFactsSchedule:
    """Cost Explorer is asked at most every COST_EXPLORER_EVERY_S; the Pricing API at most
    once a day, and not at all when the cached prices are from today."""

    cost_explorer_asked_at: float | None = None
    prices_asked_at: float | None = None

    def cost_explorer_due(self, now: float) -> bool:
        asked = self.cost_explorer_asked_at
        return asked is None or now - asked >= COST_EXPLORER_EVERY_S

    def prices_due(self, now: float, catalog: PriceCatalog, enabled: bool) -> bool:
        today = datetime.fromtimestamp(now, UTC).date().isoformat()
        if not enabled or catalog.exact_as_of == today:
            return False
        asked = self.prices_asked_at
        return asked is None or now - asked >= PRICES_EVERY_S


def prices_note(catalog: PriceCatalog) -> str:
    note = f"Prices: bundled catalog of {catalog.as_of}"
    if catalog.exact_as_of and catalog.exact_as_of > catalog.as_of:
        note += f"; refreshed from the AWS Pricing API on {catalog.exact_as_of}"
    elif catalog.last_refresh_error:
        note += " (the AWS Pricing API did not answer)"
    return note


def cost_explorer_note(actuals: dict[str, float] | None, asked: bool) -> str:
    if actuals is not None:
        return (
            f"Cost Explorer: today ${actuals['today_usd']:,.2f} · "
            f"month ${actuals['month_usd']:,.2f}"
        )
    return "Cost Explorer: not available" if asked else "Cost Explorer: asking…"
