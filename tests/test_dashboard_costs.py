"""The Costs pane and the cost warnings in the dashboard, against moto as a real HTTP server on
127.0.0.1 and with a clock the test moves: burn / today / month with the catalog's date and
Cost Explorer's figures beside them, the idle auto-stop column, an uptime warning that notifies
once however often the pane refreshes, and an idle warning read from the run store."""

# ruff: noqa: F811 - test functions take the imported `moto` fixture by name
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from app.costs import start_of_day, start_of_month
from app.settings import load_settings
from app.tui import RunctlApp
from tests.moto_server import REGION, MotoServer, moto  # noqa: F401 (a fixture)
from tests.test_cost_tracking import Clock, launch_time, run_on
from tests.test_dashboard_aws import launch_managed
from tests.test_dashboard_pilot import until

HOUR = 3600.0
RUN_ID = "run-1"


def launch(instance_type: str) -> tuple[str, float]:
    """A managed instance named "trainer"; returns its id and LaunchTime."""
    instance_id = launch_managed(instance_type)
    return instance_id, launch_time(instance_id)


def make_app(project: Path, clock: Clock, costs: str = "") -> RunctlApp:
    (project / "runctl.toml").write_text(
        f'[aws]\nregions = ["{REGION}"]\n[costs]\nrefresh_prices = false\n{costs}'
    )
    return RunctlApp(load_settings(project), project, clock=clock)


def summary_text(app: RunctlApp) -> str:
    return str(app.costs_pane.summary.render())


def cost_notifications(app: RunctlApp) -> list[str]:
    return [n.message for n in app._notifications if n.title == "Cost warning"]


async def refreshed(pilot, app: RunctlApp) -> None:
    """Press g and wait for the costs of that refresh."""
    before = app.cost_report
    await pilot.press("g")
    await until(pilot, lambda: app.cost_report is not before, timeout=60)


async def test_the_pane_shows_burn_today_month_the_catalog_date_and_cost_explorer(
    moto: MotoServer, project: Path
) -> None:
    instance_id, launched = launch("g5.xlarge")
    clock = Clock(launched + 2 * HOUR)
    today = datetime.fromtimestamp(clock.now, UTC).date()
    first = today.replace(day=1)
    days = [(first, "40.00"), (today, "2.25")] if today != first else [(today, "2.25")]
    moto.seed_cost_explorer(
        [
            {
                "ResultsByTime": [
                    {
                        "TimePeriod": {"Start": day.isoformat(), "End": day.isoformat()},
                        "Total": {"UnblendedCost": {"Amount": amount, "Unit": "USD"}},
                        "Estimated": True,
                    }
                    for day, amount in days
                ]
            }
        ]
    )
    app = make_app(project, clock, f'idle_auto_stop = ["{instance_id}"]\n')
    async with app.run_test(size=(120, 36)) as pilot:
        await until(
            pilot,
            lambda: (
                "Cost Explorer: today" in summary_text(app)
                and f"aws:{instance_id}" in app.instances
            ),
            timeout=60,
        )
        rate = 1.006
        today_usd = rate * (clock.now - max(launched, start_of_day(clock.now))) / HOUR
        month_usd = rate * (clock.now - max(launched, start_of_month(clock.now))) / HOUR
        month_actual = sum(float(amount) for _, amount in days)
        text = summary_text(app)
        assert text.splitlines() == [
            f"Burning $1.01/h · today ${today_usd:,.2f} · month ${month_usd:,.2f} (UTC)",
            f"Cost Explorer: today $2.25 · month ${month_actual:,.2f}",
            "Prices: bundled catalog of 2025-01-15",
        ]
        row = [str(cell) for cell in app.costs_pane.table.get_row(f"aws:{instance_id}")]
        assert row[:4] == ["trainer", "$1.01/h", f"${today_usd:,.2f}", f"${month_usd:,.2f}"]
        assert row[4] == "on"  # idle auto-stop
        # The Instances pane shows the same money, from the recorded intervals.
        instance = app.instances[f"aws:{instance_id}"]
        assert round(instance.accrued_usd, 6) == round(rate * 2, 6)
        assert not app.cost_banner.has_class("-visible")


async def test_an_uptime_warning_is_a_banner_and_one_notification(
    moto: MotoServer, project: Path
) -> None:
    instance_id, launched = launch("t3.micro")
    clock = Clock(launched + 25 * HOUR)
    app = make_app(project, clock)
    app.store.add_run(run_on(instance_id, launched + 60, None, "running", RUN_ID))  # not idle
    async with app.run_test(size=(120, 36)) as pilot:
        # The report is posted just before the instance rows, from the same worker: both.
        await until(
            pilot,
            lambda: app.cost_report is not None and f"aws:{instance_id}" in app.instances,
            timeout=60,
        )
        assert app.cost_banner.has_class("-visible")
        banner = str(app.cost_banner.render())
        assert "trainer: running for 25 h 00 min (over 24 h)" in banner
        assert cost_notifications(app) == ["trainer: running for 25 h 00 min (over 24 h)"]
        assert "running for 25 h" in " ".join(app.instances[f"aws:{instance_id}"].warnings)

        clock.now += HOUR
        await refreshed(pilot, app)
        await refreshed(pilot, app)
        assert "running for 26 h 00 min" in str(app.cost_banner.render())
        assert len(cost_notifications(app)) == 1  # not again on every refresh
        tabs = app.query_one("#lower-tabs")
        assert str(tabs.get_tab("tab-costs").label) == "Costs ⚠ 1"


async def test_an_idle_warning_comes_from_the_run_store(moto: MotoServer, project: Path) -> None:
    instance_id, launched = launch("t3.micro")
    clock = Clock(launched + HOUR)
    app = make_app(project, clock)
    app.store.add_run(run_on(instance_id, launched + 60, None, "running", RUN_ID))
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app.cost_report is not None, timeout=60)
        assert app.cost_report.alerts == []  # a run is active

        app.store.update_run(RUN_ID, status="finished", ended_at=clock.now)
        clock.now += 20 * 60
        await refreshed(pilot, app)
        assert app.cost_report.alerts == []  # idle 20 min: under the 30 of the settings
        row = [str(cell) for cell in app.costs_pane.table.get_row(f"aws:{instance_id}")]
        assert row[4] == "off" and row[5] == "20m00s"

        clock.now += 15 * 60
        await refreshed(pilot, app)
        assert [alert.kind for alert in app.cost_report.alerts] == ["idle"]
        assert cost_notifications(app) == ["trainer: idle for 35 min: no run active"]
        assert "trainer: idle for 35 min" in str(app.cost_banner.render())
