"""Prices, money spent across stop/start, warnings and the idle auto-stop decision."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
from botocore.config import Config

from app.costs import (
    CostThresholds,
    PriceCatalog,
    accrued_usd,
    cost_explorer_actuals,
    cost_warnings,
    idle_auto_stop,
    parse_price_list_item,
    summarize_costs,
)
from app.price_catalog import AS_OF
from tests.moto_server import moto, no_real_aws  # noqa: F401

HOUR = 3600.0
T0 = datetime(2026, 3, 10, 8, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("kind", "price"),
    [
        ("t3.micro", 0.0104),
        ("m5.xlarge", 0.192),
        ("m6i.large", 0.096),
        ("m7i.2xlarge", 0.4032),
        ("c5.large", 0.085),
        ("c6i.4xlarge", 0.68),
        ("g4dn.xlarge", 0.526),
        ("g5.xlarge", 1.006),
        ("g6.xlarge", 0.8048),
        ("p3.2xlarge", 3.06),
        ("p4d.24xlarge", 32.7726),
        ("p5.48xlarge", 98.32),
    ],
)
def test_known_types_have_their_list_price(kind, price):
    found = PriceCatalog().price(kind, "us-east-1")
    assert found is not None and found.usd_per_hour == pytest.approx(price)
    assert found.source == f"catalog {AS_OF}" and not found.estimated


def test_other_regions_are_marked_estimated_and_unknown_types_have_no_price():
    catalog = PriceCatalog()
    frankfurt = catalog.price("g5.xlarge", "eu-central-1")
    assert frankfurt.estimated and frankfurt.usd_per_hour > 1.006
    assert catalog.price("g5.xlarge", "us-west-2").usd_per_hour == pytest.approx(1.006)
    assert catalog.on_demand("x9.huge", "us-east-1") is None
    assert catalog.on_demand("g5.xlarge", "mars-north-1") is None
    assert catalog.instance_types()[:3] == ["c5.large", "c5.xlarge", "c5.2xlarge"]


def test_cached_pricing_api_figures_win_over_the_catalog(tmp_path):
    (tmp_path / "prices.json").write_text(
        json.dumps({"as_of": "2026-03-01", "prices": {"us-east-1": {"g5.xlarge": 0.99}}})
    )
    catalog = PriceCatalog.load(tmp_path)
    found = catalog.price("g5.xlarge", "us-east-1")
    assert (found.usd_per_hour, found.source) == (0.99, "pricing api 2026-03-01")
    assert catalog.on_demand("g4dn.xlarge", "us-east-1") == pytest.approx(0.526)
    (tmp_path / "prices.json").write_text("{not json")
    assert PriceCatalog.load(tmp_path).on_demand("g5.xlarge", "us-east-1") == pytest.approx(1.006)


def test_pricing_api_unreachable_keeps_the_catalog(moto, tmp_path):  # noqa: F811
    # moto has no Pricing API: the call fails, the catalog stays and says why.
    pricing = boto3.client(
        "pricing", region_name="us-east-1", config=Config(retries={"total_max_attempts": 1})
    )
    catalog = PriceCatalog.load(tmp_path)
    assert catalog.refresh(pricing, ["us-east-1"], ["g5.xlarge"]) is False
    assert catalog.last_refresh_error.startswith("AWS Pricing API unavailable")
    assert f"using the bundled catalog of {AS_OF}" in catalog.last_refresh_error
    assert catalog.on_demand("g5.xlarge", "us-east-1") == pytest.approx(1.006)
    assert not (tmp_path / "prices.json").exists()


def test_a_pricing_api_entry_is_parsed():
    item = {
        "product": {"attributes": {"instanceType": "g5.xlarge", "location": "US East (Ohio)"}},
        "terms": {
            "OnDemand": {
                "X.JRTCKXETXF": {
                    "priceDimensions": {
                        "X.JRTCKXETXF.6YS6EN2CT7": {
                            "unit": "Hrs",
                            "pricePerUnit": {"USD": "1.0060000000"},
                        }
                    }
                }
            }
        },
    }
    assert parse_price_list_item(json.dumps(item)) == ("g5.xlarge", 1.006)


def test_accrued_cost_counts_running_time_across_stop_and_start():
    intervals = [
        ("pending", T0),
        ("running", T0 + 60),
        ("stopping", T0 + 2 * HOUR),
        ("stopped", T0 + 2 * HOUR + 60),
        ("pending", T0 + 10 * HOUR),
        ("running", T0 + 10 * HOUR + 60),
    ]
    now = T0 + 11 * HOUR
    # Billed: 2h01m before the stop, then 1h after the start; stopped 7h59m.
    billed_h = (2 * HOUR + 60 + HOUR) / HOUR
    assert accrued_usd(intervals, 1.0, now) == pytest.approx(billed_h)
    with_disk = accrued_usd(intervals, 1.0, now, storage_gb=730, storage_usd_per_gb_month=0.1)
    stopped_h = (8 * HOUR - 60) / HOUR
    assert with_disk == pytest.approx(billed_h + stopped_h * 0.1)


def test_costs_pane_summary_splits_today_and_this_month():
    yesterday_evening = T0 - 10 * HOUR  # 22:00 the day before
    histories = {
        "i-running": ([("running", yesterday_evening)], 2.0, 0.0),
        "i-stopped": ([("running", T0 - HOUR), ("stopped", T0)], 1.0, 0.0),
    }
    now = T0 + HOUR  # 09:00
    summary = summarize_costs(histories, now)
    assert summary.burn_usd_per_hour == pytest.approx(2.0)
    running = summary.instances[0]
    assert running.today_usd == pytest.approx(9 * 2.0)  # since midnight UTC
    assert running.total_usd == pytest.approx(11 * 2.0)
    assert summary.today_usd == pytest.approx(18.0 + 1.0)
    assert summary.month_usd == pytest.approx(22.0 + 1.0)


def test_warnings_for_uptime_spend_and_idle():
    thresholds = CostThresholds(uptime_warn_hours=24, accrued_warn_usd=10, idle_warn_minutes=30)
    found = cost_warnings(
        state="running",
        uptime_s=50 * HOUR,
        accrued_usd=52.3,
        idle_s=45 * 60,
        thresholds=thresholds,
    )
    assert found == [
        "running for 2 d 2 h (over 24 h)",
        "$52.30 spent (over $10)",
        "idle for 45 min: no run active",
    ]
    quiet = cost_warnings(
        state="running", uptime_s=HOUR, accrued_usd=1.0, idle_s=None, thresholds=thresholds
    )
    assert quiet == []
    assert (
        cost_warnings(
            state="stopped", uptime_s=None, accrued_usd=99.0, idle_s=None, thresholds=thresholds
        )
        == []
    )


def test_thresholds_come_from_the_cost_settings():
    from app.settings import CostSettings

    thresholds = CostThresholds.of(CostSettings(uptime_warn_hours=6))
    assert thresholds == CostThresholds(6.0, 10.0, 30.0)


def test_idle_auto_stop_decides_only_when_enabled_idle_and_long_enough():
    now = T0
    common = dict(state="running", idle_minutes=30, now=now)
    assert not idle_auto_stop(enabled=False, run_active=False, idle_since=now - HOUR, **common).stop
    assert not idle_auto_stop(enabled=True, run_active=True, idle_since=None, **common).stop
    early = idle_auto_stop(enabled=True, run_active=False, idle_since=now - 600, **common)
    assert not early.stop and early.reason == "idle 10 min; stops in 20 min"
    due = idle_auto_stop(enabled=True, run_active=False, idle_since=now - 1860, **common)
    assert due.stop and due.reason == "idle for 31 min (limit 30 min)"
    stopped = idle_auto_stop(
        enabled=True, run_active=False, idle_since=now - HOUR, state="stopped", idle_minutes=30
    )
    assert not stopped.stop


def test_cost_explorer_figures_when_it_answers_and_none_when_empty(moto):  # noqa: F811
    ce = boto3.client("ce", region_name="us-east-1")
    assert cost_explorer_actuals(ce) is None  # moto answers empty unless seeded
    today = datetime.now(UTC).date().isoformat()
    moto.seed_cost_explorer(
        [
            {
                "ResultsByTime": [
                    {
                        "TimePeriod": {"Start": today, "End": today},
                        "Total": {"UnblendedCost": {"Amount": "12.5", "Unit": "USD"}},
                    }
                ]
            }
        ]
    )
    assert cost_explorer_actuals(ce) == {"today_usd": 12.5, "month_usd": 12.5}
