"""What instances cost: $/h, money spent so far, and the warnings about forgotten machines.

No textual and no boto3 at import: prices come from the bundled catalog
(`app.price_catalog`, with its as-of date), replaced by the AWS Pricing API's figures when it
answers (cached on disk under the state dir); spot prices come from the provider
(`DescribeSpotPriceHistory`). Accrued cost is computed from state intervals
[(state, since), ...] that the caller keeps (the store), so stop/start is accounted for:
billed states cost the hourly rate, a stopped instance costs its EBS volumes.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app import price_catalog

CACHE_FILE = "prices.json"
BILLED_STATES = frozenset({"pending", "running", "stopping", "shutting-down"})
STORAGE_STATES = frozenset({"stopped"})
HOURS_PER_MONTH = 730.0
# Pricing API "location" names of the regions in the catalog.
REGION_LOCATIONS = {
    "us-east-1": "US East (N. Virginia)",
    "us-east-2": "US East (Ohio)",
    "us-west-1": "US West (N. California)",
    "us-west-2": "US West (Oregon)",
    "ca-central-1": "Canada (Central)",
    "eu-west-1": "EU (Ireland)",
    "eu-west-2": "EU (London)",
    "eu-central-1": "EU (Frankfurt)",
    "eu-north-1": "EU (Stockholm)",
    "ap-south-1": "Asia Pacific (Mumbai)",
    "ap-northeast-1": "Asia Pacific (Tokyo)",
    "ap-northeast-2": "Asia Pacific (Seoul)",
    "ap-southeast-1": "Asia Pacific (Singapore)",
    "ap-southeast-2": "Asia Pacific (Sydney)",
    "sa-east-1": "South America (Sao Paulo)",
}


# ---------------------------------------------------------------------------------------------
# Prices
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Price:
    usd_per_hour: float
    source: str  # "catalog 2025-01-15", "catalog 2025-01-15 (estimated)", "pricing api 2026-..."
    estimated: bool = False


@dataclass
class PriceCatalog:
    """On-demand prices per (instance type, region).

    `exact` holds figures read from the Pricing API (region -> type -> $/h) and is what the
    disk cache stores; everything else comes from the bundled catalog."""

    as_of: str = price_catalog.AS_OF
    exact: dict[str, dict[str, float]] = field(default_factory=dict)
    exact_as_of: str | None = None
    cache_path: Path | None = None
    last_refresh_error: str | None = None

    @classmethod
    def load(cls, state_dir: Path | str | None = None) -> PriceCatalog:
        """The bundled catalog plus the cached Pricing API figures under `state_dir` (a
        missing or unreadable cache is ignored: the bundled prices still answer)."""
        catalog = cls()
        if state_dir is None:
            return catalog
        catalog.cache_path = Path(state_dir) / CACHE_FILE
        try:
            data = json.loads(catalog.cache_path.read_text())
            catalog.exact = {
                str(region): {str(k): float(v) for k, v in prices.items()}
                for region, prices in data.get("prices", {}).items()
            }
            catalog.exact_as_of = data.get("as_of")
        except (OSError, ValueError, AttributeError, TypeError):
            pass
        return catalog

    def price(self, instance_type: str, region: str) -> Price | None:
        exact = self.exact.get(region, {}).get(instance_type)
        if exact is not None:
            return Price(exact, f"pricing api {self.exact_as_of or ''}".strip())
        base = price_catalog.ON_DEMAND_USD_PER_HOUR.get(instance_type)
        if base is None:
            return None
        if region in price_catalog.EXACT_REGIONS:
            return Price(base, f"catalog {self.as_of}")
        factor = price_catalog.REGION_FACTORS.get(region)
        if factor is None:
            return None
        return Price(round(base * factor, 4), f"catalog {self.as_of} (estimated)", True)

    def on_demand(self, instance_type: str, region: str) -> float | None:
        """$/h or None: what `AwsProvider(on_demand_price=...)` takes."""
        found = self.price(instance_type, region)
        return found.usd_per_hour if found else None

    def instance_types(self) -> list[str]:
        """Every type the catalog knows, for the launch dialog's list."""
        return sorted(price_catalog.ON_DEMAND_USD_PER_HOUR, key=_type_order)

    def refresh(
        self,
        pricing_client: Any,
        regions: Sequence[str],
        instance_types: Iterable[str] | None = None,
    ) -> bool:
        """Ask the Pricing API (a boto3 `pricing` client, us-east-1) for the on-demand Linux
        price of each type in each region, and cache what it answers. False, with the reason
        in `last_refresh_error`, when it does not answer: the catalog stays as it was."""
        types = list(instance_types or price_catalog.ON_DEMAND_USD_PER_HOUR)
        found: dict[str, dict[str, float]] = {}
        try:
            for region in regions:
                location = REGION_LOCATIONS.get(region)
                if location is None:
                    continue
                paginator = pricing_client.get_paginator("get_products")
                pages = paginator.paginate(
                    ServiceCode="AmazonEC2",
                    Filters=[
                        _term("location", location),
                        _term("operatingSystem", "Linux"),
                        _term("tenancy", "Shared"),
                        _term("preInstalledSw", "NA"),
                        _term("capacitystatus", "Used"),
                    ],
                )
                for page in pages:
                    for item in page.get("PriceList", ()):
                        parsed = parse_price_list_item(item)
                        if parsed and parsed[0] in types:
                            found.setdefault(region, {})[parsed[0]] = parsed[1]
        except Exception as err:  # any failure leaves the catalog as it was
            self.last_refresh_error = f"AWS Pricing API unavailable ({type(err).__name__}); " + (
                f"using the bundled catalog of {self.as_of}"
            )
            return False
        if not found:
            self.last_refresh_error = "the Pricing API returned no prices; catalog unchanged"
            return False
        self.exact.update(found)
        self.exact_as_of = datetime.now(UTC).date().isoformat()
        self.last_refresh_error = None
        self._save()
        return True

    def _save(self) -> None:
        if self.cache_path is None:
            return
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"as_of": self.exact_as_of, "prices": self.exact}, indent=1)
        fd, tmp = tempfile.mkstemp(dir=self.cache_path.parent, prefix=".prices.")
        with os.fdopen(fd, "w") as handle:
            handle.write(payload)
        os.replace(tmp, self.cache_path)


def _term(name: str, value: str) -> dict[str, str]:
    return {"Type": "TERM_MATCH", "Field": name, "Value": value}


def _type_order(name: str) -> tuple[str, int, str]:
    family, _, size = name.partition(".")
    sizes = ["nano", "micro", "small", "medium", "large", "xlarge"]
    if size in sizes:
        rank = sizes.index(size)
    elif size.endswith("xlarge") and size[:-6].isdigit():
        rank = 5 + int(size[:-6])
    else:
        rank = 1000
    return (family, rank, size)


def parse_price_list_item(item: str | dict) -> tuple[str, float] | None:
    """(instance type, $/h) from one Pricing API PriceList entry (a JSON string)."""
    data = json.loads(item) if isinstance(item, str) else item
    attributes = data.get("product", {}).get("attributes", {})
    kind = attributes.get("instanceType")
    for term in data.get("terms", {}).get("OnDemand", {}).values():
        for dimension in term.get("priceDimensions", {}).values():
            usd = dimension.get("pricePerUnit", {}).get("USD")
            if kind and usd is not None and float(usd) > 0:
                return kind, float(usd)
    return None


# ---------------------------------------------------------------------------------------------
# Money spent
# ---------------------------------------------------------------------------------------------
Interval = tuple[str, float]  # (state, since as a unix time); sorted by time


def billed_seconds(intervals: Sequence[Interval], now: float, start: float | None = None) -> float:
    """Seconds spent in billed states (pending/running/stopping) from `start` to `now`."""
    return _seconds_in(intervals, BILLED_STATES, now, start)


def _seconds_in(
    intervals: Sequence[Interval], states: frozenset[str], now: float, start: float | None
) -> float:
    total = 0.0
    ordered = sorted(intervals, key=lambda pair: pair[1])
    for index, (state, since) in enumerate(ordered):
        until = ordered[index + 1][1] if index + 1 < len(ordered) else now
        lo = since if start is None else max(since, start)
        hi = min(until, now)
        if state in states and hi > lo:
            total += hi - lo
    return total


def accrued_usd(
    intervals: Sequence[Interval],
    usd_per_hour: float,
    now: float | None = None,
    *,
    storage_gb: float = 0.0,
    storage_usd_per_gb_month: float = price_catalog.EBS_GP3_USD_PER_GB_MONTH,
    start: float | None = None,
) -> float:
    """Money spent by one instance: rate x time in billed states, plus its EBS volumes while
    stopped; from `start` (e.g. midnight for "today") or from the first interval."""
    now = time.time() if now is None else now
    running = billed_seconds(intervals, now, start) / 3600.0 * usd_per_hour
    stopped_h = _seconds_in(intervals, STORAGE_STATES, now, start) / 3600.0
    storage = stopped_h * storage_gb * storage_usd_per_gb_month / HOURS_PER_MONTH
    return running + storage


def start_of_day(now: float) -> float:
    moment = datetime.fromtimestamp(now, UTC)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def start_of_month(now: float) -> float:
    moment = datetime.fromtimestamp(now, UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


@dataclass(frozen=True, slots=True)
class InstanceCost:
    instance_id: str
    usd_per_hour: float  # 0 when not billed now
    today_usd: float
    month_usd: float
    total_usd: float


@dataclass(frozen=True, slots=True)
class CostSummary:
    """The Costs pane: burn now, today, this month (UTC), per instance."""

    burn_usd_per_hour: float
    today_usd: float
    month_usd: float
    instances: list[InstanceCost]


def summarize_costs(
    histories: dict[str, tuple[Sequence[Interval], float, float]],
    now: float | None = None,
    *,
    storage_usd_per_gb_month: float = price_catalog.EBS_GP3_USD_PER_GB_MONTH,
) -> CostSummary:
    """`histories`: instance id -> (state intervals, $/h, root+data volume GB)."""
    now = time.time() if now is None else now
    day, month = start_of_day(now), start_of_month(now)
    rows = []
    for instance_id, (intervals, rate, storage_gb) in histories.items():
        current = sorted(intervals, key=lambda pair: pair[1])[-1][0] if intervals else ""

        def spent(start: float | None, intervals=intervals, rate=rate, gb=storage_gb) -> float:
            return accrued_usd(
                intervals,
                rate,
                now,
                storage_gb=gb,
                storage_usd_per_gb_month=storage_usd_per_gb_month,
                start=start,
            )

        rows.append(
            InstanceCost(
                instance_id,
                rate if current in BILLED_STATES else 0.0,
                spent(day),
                spent(month),
                spent(None),
            )
        )
    return CostSummary(
        sum(r.usd_per_hour for r in rows),
        sum(r.today_usd for r in rows),
        sum(r.month_usd for r in rows),
        rows,
    )


def cost_explorer_actuals(ce_client: Any, now: float | None = None) -> dict[str, float] | None:
    """AWS's own figures for today and this month (UnblendedCost, USD), or None when Cost
    Explorer does not answer (not enabled, no permission, unreachable). Shown beside our
    estimate, never instead of it."""
    now = time.time() if now is None else now
    today = datetime.fromtimestamp(now, UTC).date()
    first = today.replace(day=1)
    tomorrow = datetime.fromtimestamp(now + 86400, UTC).date()
    try:
        reply = ce_client.get_cost_and_usage(
            TimePeriod={"Start": first.isoformat(), "End": tomorrow.isoformat()},
            Granularity="DAILY",
            Metrics=["UnblendedCost"],
        )
    except Exception:
        return None
    month_total = today_total = 0.0
    seen = False
    for day in reply.get("ResultsByTime", ()):
        amount = day.get("Total", {}).get("UnblendedCost", {}).get("Amount")
        if amount is None:
            continue
        seen = True
        month_total += float(amount)
        if day.get("TimePeriod", {}).get("Start") == today.isoformat():
            today_total += float(amount)
    if not seen:
        return None
    return {"today_usd": today_total, "month_usd": month_total}


# ---------------------------------------------------------------------------------------------
# Warnings and the idle auto-stop
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CostThresholds:
    uptime_warn_hours: float = 24.0
    accrued_warn_usd: float = 10.0
    idle_warn_minutes: float = 30.0

    @classmethod
    def of(cls, settings: Any) -> CostThresholds:
        """From the app's CostSettings (or anything with the same attributes)."""
        return cls(
            float(getattr(settings, "uptime_warn_hours", cls.uptime_warn_hours)),
            float(getattr(settings, "accrued_warn_usd", cls.accrued_warn_usd)),
            float(getattr(settings, "idle_warn_minutes", cls.idle_warn_minutes)),
        )


def cost_warnings(
    *,
    state: str,
    uptime_s: float | None,
    accrued_usd: float | None,
    idle_s: float | None,
    thresholds: CostThresholds,
) -> list[str]:
    """The warnings of one instance, each a short sentence for a banner or a notification.
    `idle_s`: seconds since a run last ended on it while it kept running (None: a run is
    active, or not known)."""
    found = []
    if state != "running":
        return found
    if uptime_s is not None and uptime_s > thresholds.uptime_warn_hours * 3600:
        found.append(f"running for {_duration(uptime_s)} (over {thresholds.uptime_warn_hours:g} h)")
    if accrued_usd is not None and accrued_usd > thresholds.accrued_warn_usd:
        found.append(f"${accrued_usd:.2f} spent (over ${thresholds.accrued_warn_usd:g})")
    if idle_s is not None and idle_s > thresholds.idle_warn_minutes * 60:
        found.append(f"idle for {_duration(idle_s)}: no run active")
    return found


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} d {hours % 24} h"


@dataclass(frozen=True, slots=True)
class AutoStopDecision:
    stop: bool
    reason: str


def idle_auto_stop(
    *,
    enabled: bool,
    state: str,
    run_active: bool,
    idle_since: float | None,
    idle_minutes: float,
    now: float | None = None,
) -> AutoStopDecision:
    """Whether the idle auto-stop should stop this instance now. The caller copies the
    instance's checkpoints to S3 first and stops only when that succeeded."""
    now = time.time() if now is None else now
    if not enabled:
        return AutoStopDecision(False, "auto-stop is off for this instance")
    if state != "running":
        return AutoStopDecision(False, f"instance is {state}")
    if run_active:
        return AutoStopDecision(False, "a run is active")
    if idle_since is None:
        return AutoStopDecision(False, "idle time unknown")
    idle = now - idle_since
    if idle < idle_minutes * 60:
        left = idle_minutes * 60 - idle
        return AutoStopDecision(False, f"idle {_duration(idle)}; stops in {_duration(left)}")
    return AutoStopDecision(True, f"idle for {_duration(idle)} (limit {idle_minutes:g} min)")


PriceLookup = Callable[[str, str], float | None]
