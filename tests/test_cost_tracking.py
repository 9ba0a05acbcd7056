"""Money spent per EC2 instance, tracked across stop / start in the run store: state intervals
recorded from the provider's rows (against moto as a real HTTP server, with a clock the test
moves), accrued = rate x billed time + EBS while stopped, today / month split at UTC midnight
and the month's start, idle time from the runs table, volume sizes without a call per
instance, and the Pricing API / Cost Explorer schedule."""

# ruff: noqa: F811 - test functions take the imported `moto` fixture by name
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from app.cost_tracking import (
    GONE,
    CostFactsSchedule,
    idle_since,
    prices_note,
    record_sightings,
    track_costs,
)
from app.costs import PriceCatalog
from app.settings import CostSettings
from app.store import InstanceState, Run, RunStore
from providers.aws import AwsProvider
from providers.base import Instance
from tests.moto_server import REGION, CallCounter, MotoServer, moto  # noqa: F401

HOUR = 3600.0
G5_XLARGE = 1.006  # $/h, the bundled catalog in us-east-1
EBS = 0.08  # $/GB-month, the default of costs.ebs_usd_per_gb_month


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def launch(instance_type: str = "g5.xlarge", root_gb: int = 100, data_gb: int = 0) -> str:
    ec2 = boto3.client("ec2", region_name=REGION)
    mappings = [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": root_gb}}]
    if data_gb:
        mappings.append({"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": data_gb}})
    reply = ec2.run_instances(
        ImageId="ami-999844e0",
        MinCount=1,
        MaxCount=1,
        InstanceType=instance_type,
        BlockDeviceMappings=mappings,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "runctl:managed", "Value": "true"}]}
        ],
    )
    return reply["Instances"][0]["InstanceId"]


def launch_time(instance_id: str) -> float:
    ec2 = boto3.client("ec2", region_name=REGION)
    reply = ec2.describe_instances(InstanceIds=[instance_id])
    return reply["Reservations"][0]["Instances"][0]["LaunchTime"].timestamp()


def ec2_row(instance_id: str, state: str, launched: float | None, price: float = 1.0) -> Instance:
    iso = None if launched is None else datetime.fromtimestamp(launched, UTC).isoformat()
    return Instance(
        provider="aws",
        id=instance_id,
        name=None,
        type="g5.xlarge",
        state=state,
        region=REGION,
        launched_at=iso,
        price_per_hour=price,
    )


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    store = RunStore(tmp_path / "state" / "runctl.sqlite3")
    yield store
    store.close()


def test_stop_then_start_costs_rate_times_billed_time_plus_ebs_while_stopped(
    moto: MotoServer, store: RunStore
) -> None:
    instance_id = launch(root_gb=100, data_gb=50)
    start = launch_time(instance_id)
    clock = Clock(start + 1 * HOUR)
    provider = AwsProvider(
        regions=[REGION],
        on_demand_price=PriceCatalog().on_demand,
        clock=clock,
        max_backoff_s=0.0,
    )
    ec2 = boto3.client("ec2", region_name=REGION)
    costs = CostSettings()

    def refresh() -> Instance:
        rows = provider.list_instances()
        track_costs(store, rows, now=clock.now, costs=costs, provider=provider)
        return {row.id: row for row in rows}[instance_id]

    refresh()  # first sight, running: its interval starts at LaunchTime
    clock.now = start + 2 * HOUR
    ec2.stop_instances(InstanceIds=[instance_id])
    assert refresh().state == "stopped"
    clock.now = start + 5 * HOUR
    ec2.start_instances(InstanceIds=[instance_id])
    refresh()  # moto keeps the old LaunchTime on start (EC2 resets it): seen now, then
    clock.now = start + 6 * HOUR
    row = refresh()

    history = store.instance_histories([instance_id])[instance_id]
    assert [(h.state, h.since - start) for h in history] == [
        ("running", 0.0),
        ("stopped", 2 * HOUR),
        ("running", 5 * HOUR),
    ]
    assert history[-1].storage_gb == 150 and history[-1].rate == G5_XLARGE
    billed_h, stopped_h = 3.0, 3.0
    expected = G5_XLARGE * billed_h + 150 * EBS * stopped_h / 730
    assert row.accrued_usd == pytest.approx(expected)  # $3.018 + $0.0493
    assert round(row.accrued_usd, 4) == 3.0673


def test_a_start_ec2_reports_by_launch_time_begins_then_not_when_seen(store: RunStore) -> None:
    t0 = at("2026-11-23T08:00:00")
    record_sightings(store, [ec2_row("i-1", "running", t0)], t0 + HOUR, {"i-1": 8.0})
    record_sightings(store, [ec2_row("i-1", "stopped", t0)], t0 + 2 * HOUR, {})
    restarted = t0 + 3 * HOUR  # EC2 set LaunchTime when it started again
    record_sightings(store, [ec2_row("i-1", "running", restarted)], t0 + 3.25 * HOUR, {})
    history = store.instance_histories(["i-1"])["i-1"]
    assert [(h.state, h.since) for h in history] == [
        ("running", t0),
        ("stopped", t0 + 2 * HOUR),
        ("running", restarted),
    ]
    assert history[-1].recorded_at == t0 + 3.25 * HOUR
    assert history[-1].storage_gb == 8.0  # kept from the last known size


def test_today_and_month_split_at_utc_midnight_and_the_month_start(store: RunStore) -> None:
    now = at("2026-11-01T03:00:00")
    # Running since 22:00 on October 31st: 5 h in all, 3 h of them today and this month.
    record_sightings(store, [ec2_row("i-night", "running", at("2026-10-31T22:00:00"))], now, {})
    # Stopped since 21:00 yesterday with 730 GB: storage only, $0.08 an hour.
    store.record_instance_states(
        [
            InstanceState("i-disk", REGION, "running", at("2026-10-31T20:00:00"), now, 2.0, 730),
            InstanceState("i-disk", REGION, "stopped", at("2026-10-31T21:00:00"), now, 2.0, 730),
        ]
    )
    rows = [ec2_row("i-night", "running", at("2026-10-31T22:00:00"), price=1.0)]
    rows.append(ec2_row("i-disk", "stopped", None, price=2.0))
    report = track_costs(store, rows, now=now, costs=CostSettings())
    lines = {line.key: line for line in report.lines}
    night, disk = lines["aws:i-night"], lines["aws:i-disk"]
    assert night.today_usd == pytest.approx(3.0) and night.month_usd == pytest.approx(3.0)
    assert night.total_usd == pytest.approx(5.0) and rows[0].accrued_usd == pytest.approx(5.0)
    assert disk.today_usd == pytest.approx(3 * 0.08) and disk.month_usd == pytest.approx(0.24)
    assert disk.total_usd == pytest.approx(2.0 + 6 * 0.08)
    assert report.burn_usd_per_hour == 1.0  # the stopped one burns no compute
    assert report.today_usd == pytest.approx(3.24) and report.month_usd == pytest.approx(3.24)

    # Later in the month: today starts at midnight, the month keeps November 1st.
    later = at("2026-11-23T02:00:00")
    report = track_costs(store, rows, now=later, costs=CostSettings())
    night = {line.key: line for line in report.lines}["aws:i-night"]
    assert night.today_usd == pytest.approx(2.0)
    assert night.month_usd == pytest.approx((later - at("2026-11-01T00:00:00")) / HOUR)


def test_an_instance_ec2_no_longer_lists_stops_counting_but_stays_in_the_month(
    store: RunStore,
) -> None:
    t0 = at("2026-11-05T10:00:00")
    record_sightings(store, [ec2_row("i-old", "running", t0)], t0 + HOUR, {})
    # Terminated while nobody watched and gone from DescribeInstances an hour later.
    report = track_costs(store, [], now=t0 + 5 * HOUR, costs=CostSettings())
    assert report.month_usd == pytest.approx(5.0)  # still running as far as we know
    record_sightings(store, [], t0 + 5 * HOUR, {}, answered_regions=[REGION])
    assert store.instance_histories(["i-old"])["i-old"][-1].state == GONE
    later = at("2026-11-20T10:00:00")
    report = track_costs(store, [], now=later, costs=CostSettings())
    [line] = report.lines
    assert line.key == "aws:i-old" and line.state == GONE
    assert line.month_usd == pytest.approx(5.0) and report.burn_usd_per_hour == 0
    # A region that did not answer says nothing about its instances.
    record_sightings(store, [ec2_row("i-new", "running", later)], later, {})
    record_sightings(store, [], later + HOUR, {}, answered_regions=["eu-west-1"])
    assert store.instance_histories(["i-new"])["i-new"][-1].state == "running"


def test_two_connections_record_one_state_change_once(tmp_path: Path) -> None:
    path = tmp_path / "runctl.sqlite3"
    first, second = RunStore(path), RunStore(path)
    t0 = at("2026-11-23T08:00:00")
    rows = [ec2_row("i-1", "running", t0)]
    assert len(record_sightings(first, rows, t0 + 60, {})) == 1
    assert record_sightings(second, rows, t0 + 61, {}) == []
    stopped = [ec2_row("i-1", "stopped", t0)]
    record_sightings(second, stopped, t0 + 120, {})
    record_sightings(first, stopped, t0 + 121, {})
    assert [h.state for h in first.instance_histories(["i-1"])["i-1"]] == ["running", "stopped"]
    first.close()
    second.close()


def run_on(
    instance_id: str, started: float, ended: float | None, status: str, run_id: str | None = None
) -> Run:
    return Run(
        id=run_id or f"run-{started:.0f}",
        host=instance_id,
        provider="aws",
        instance_id=instance_id,
        project_root="/p",
        script="train.py",
        args=[],
        started_at=started,
        ended_at=ended,
        status=status,
        run_dir="/runs/x",
        checkpoint_dir="/runs/x/checkpoints",
    )


def test_idle_since_reads_the_run_store(store: RunStore) -> None:
    t0 = at("2026-11-23T08:00:00")
    row = ec2_row("i-1", "running", t0 - 5 * HOUR)
    record_sightings(store, [row], t0, {})
    # Never had a run: idle since it was first seen running (not since LaunchTime).
    assert idle_since(store, row, t0 + HOUR) == t0
    store.add_run(run_on("i-1", t0 + 600, None, "running"))
    assert idle_since(store, row, t0 + HOUR) is None  # a run is active
    store.update_run(f"run-{t0 + 600:.0f}", status="finished", ended_at=t0 + 1800)
    assert idle_since(store, row, t0 + HOUR) == t0 + 1800
    assert idle_since(store, ec2_row("i-1", "stopped", None), t0 + HOUR) is None

    warned = track_costs(store, [row], now=t0 + 1800 + 31 * 60, costs=CostSettings())
    assert [(a.kind, a.text) for a in warned.alerts] == [("idle", "idle for 31 min: no run active")]
    assert row.warnings == ["idle for 31 min: no run active"]
    calm = ec2_row("i-1", "running", t0 - 5 * HOUR)
    assert track_costs(store, [calm], now=t0 + 1800 + 29 * 60, costs=CostSettings()).alerts == []

    # Stopped and started again: the time stopped is not idle time.
    record_sightings(store, [ec2_row("i-1", "stopped", None)], t0 + 2 * HOUR, {})
    record_sightings(store, [ec2_row("i-1", "running", t0 + 4 * HOUR)], t0 + 4 * HOUR + 30, {})
    assert idle_since(store, row, t0 + 5 * HOUR) == t0 + 4 * HOUR + 30


def test_uptime_and_accrued_warnings_and_the_idle_auto_stop_column(store: RunStore) -> None:
    t0 = at("2026-11-23T08:00:00")
    row = ec2_row("i-1", "running", t0 - 25 * HOUR, price=1.0)
    row.uptime_s = 25 * HOUR
    costs = CostSettings(idle_auto_stop=["i-1"])
    report = track_costs(store, [row], now=t0, costs=costs)
    kinds = {alert.kind: alert.text for alert in report.alerts}
    assert kinds == {
        "uptime": "running for 25 h 00 min (over 24 h)",
        "accrued": "$25.00 spent (over $10)",
    }
    [line] = report.lines
    assert line.idle_auto_stop and line.burn_usd_per_hour == 1.0


def test_volume_sizes_take_one_describe_volumes_per_region_then_come_from_the_cache(
    moto: MotoServer,
) -> None:
    ids = [launch(root_gb=100), launch(root_gb=30, data_gb=20), launch(root_gb=8)]
    provider = AwsProvider(regions=[REGION], max_backoff_s=0.0)
    counter = CallCounter(provider.clients.client("ec2", REGION), "ec2.DescribeVolumes")
    assert provider.volume_gb(REGION, ids) == {ids[0]: 100, ids[1]: 50, ids[2]: 8}
    assert counter.calls == 1
    assert provider.volume_gb(REGION, ids[:2]) == {ids[0]: 100, ids[1]: 50}
    assert counter.calls == 1


def test_the_pricing_api_refresh_against_moto_keeps_the_bundled_catalog(
    moto: MotoServer, tmp_path: Path
) -> None:
    """moto has no Pricing API backend (every call answers HTTP 500): the refresh fails, says
    why, writes no cache and leaves the bundled prices in place."""
    from providers.aws import AwsClients

    catalog = PriceCatalog.load(tmp_path)
    client = AwsClients(max_attempts=1).client("pricing", "us-east-1")
    assert catalog.refresh(client, [REGION], ["g5.xlarge"]) is False
    assert "Pricing API unavailable" in catalog.last_refresh_error
    assert catalog.on_demand("g5.xlarge", REGION) == G5_XLARGE
    assert not (tmp_path / "prices.json").exists()
    assert prices_note(catalog) == (
        "Prices: bundled catalog of 2025-01-15 (the AWS Pricing API did not answer)"
    )


def test_prices_are_asked_once_a_day_and_cost_explorer_every_ten_minutes(tmp_path: Path) -> None:
    now = at("2026-11-23T08:00:00")
    catalog = PriceCatalog.load(tmp_path)
    schedule = CostFactsSchedule()
    assert schedule.prices_due(now, catalog, enabled=True)
    assert not schedule.prices_due(now, catalog, enabled=False)
    schedule.prices_asked_at = now  # and it failed
    assert not schedule.prices_due(now + 23 * HOUR, catalog, enabled=True)
    assert schedule.prices_due(now + 24 * HOUR, catalog, enabled=True)
    # A cache written today: nothing to ask; the pane names both dates.
    (tmp_path / "prices.json").write_text(
        json.dumps({"as_of": "2026-11-23", "prices": {REGION: {"g5.xlarge": 1.1}}})
    )
    cached = PriceCatalog.load(tmp_path)
    assert not CostFactsSchedule().prices_due(now, cached, enabled=True)
    assert cached.on_demand("g5.xlarge", REGION) == 1.1
    assert prices_note(cached) == (
        "Prices: bundled catalog of 2025-01-15; refreshed from the AWS Pricing API on 2026-11-23"
    )

    assert schedule.cost_explorer_due(now)
    schedule.cost_explorer_asked_at = now
    assert not schedule.cost_explorer_due(now + 599)
    assert schedule.cost_explorer_due(now + 600)


def test_the_headless_listing_counts_the_recorded_intervals_too(
    moto: MotoServer, project: Path
) -> None:
    """`runctl-tui instances --json` reads and writes the same store as the dashboard: an
    instance that ran 2 h and stopped 3 h before its last start costs that much more than the
    time since LaunchTime."""
    from app.instances_report import collect_instances
    from app.settings import load_settings

    instance_id = launch(root_gb=100)
    started = launch_time(instance_id)
    (project / "runctl.toml").write_text(f'[aws]\nregions = ["{REGION}"]\n')
    settings = load_settings(project)
    store = RunStore(settings.store_path)
    store.record_instance_states(
        [
            InstanceState(instance_id, REGION, "running", started - 5 * HOUR, 0, G5_XLARGE, 100),
            InstanceState(instance_id, REGION, "stopped", started - 3 * HOUR, 0, G5_XLARGE, 100),
        ]
    )
    store.close()
    rows, problems = collect_instances(settings, show_all=False)
    assert problems == []
    [row] = [row for row in rows if row.id == instance_id]
    before = G5_XLARGE * 2 + 100 * EBS * 3 / 730
    assert row.accrued_usd == pytest.approx(before + G5_XLARGE * row.uptime_s / HOUR, abs=1e-3)
    assert row.to_json()["accrued_usd"] == row.accrued_usd
