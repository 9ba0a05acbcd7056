"""The price refresh from the AWS Pricing API when it answers: against a small Pricing API
served on 127.0.0.1 (tests/pricing_server.py; moto has none), with boto3 unpatched, so the
filters, the paging and the PriceList documents go through botocore as they do against AWS.
The case where the API does not answer at all is in test_cost_tracking.py."""

# ruff: noqa: F811 - test functions take the imported fixtures by name
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app import price_catalog
from app.cost_tracking import prices_note
from app.costs import PriceCatalog
from app.settings import load_settings
from app.tui import RunctlApp
from providers.aws import AwsClients
from tests.moto_server import REGION, MotoServer, moto  # noqa: F401
from tests.pricing_server import PricingServer, Product, pricing_api  # noqa: F401
from tests.test_cost_tracking import Clock, launch, launch_time
from tests.test_dashboard_pilot import until

VIRGINIA = "US East (N. Virginia)"
IRELAND = "EU (Ireland)"
TYPES = ["g5.xlarge", "m5.large"]
# What the code must ask for: on-demand Linux on shared hosts, no extra software, capacity
# that is used (not an unused reservation).
FILTERS = [
    {"Type": "TERM_MATCH", "Field": "location", "Value": VIRGINIA},
    {"Type": "TERM_MATCH", "Field": "operatingSystem", "Value": "Linux"},
    {"Type": "TERM_MATCH", "Field": "tenancy", "Value": "Shared"},
    {"Type": "TERM_MATCH", "Field": "preInstalledSw", "Value": "NA"},
    {"Type": "TERM_MATCH", "Field": "capacitystatus", "Value": "Used"},
]
BUNDLED_NOTE = f"Prices: bundled catalog of {price_catalog.AS_OF}"

# Prices unlike the bundled catalog's, so a figure that did not come from the server shows.
PRODUCTS = [
    Product("g5.xlarge", VIRGINIA, "1.5000000000"),
    Product("m5.large", VIRGINIA, "0.1100000000"),
    Product("t3.micro", VIRGINIA, "0.0125000000"),  # served, not asked for
    # Variants the filters must keep out: each costs more than the Linux shared price.
    Product("g5.xlarge", VIRGINIA, "2.4000000000", operating_system="Windows"),
    Product("g5.xlarge", VIRGINIA, "3.1000000000", tenancy="Dedicated"),
    Product("g5.xlarge", VIRGINIA, "2.9000000000", pre_installed_sw="SQL Std"),
    Product("g5.xlarge", VIRGINIA, "1.7000000000", capacity_status="UnusedCapacityReservation"),
    Product("g5.xlarge", IRELAND, "1.2500000000"),
    Product("m5.large", IRELAND, "0.1200000000"),
    Product("g5.xlarge", "EU (Frankfurt)", "1.3000000000"),  # a region not asked for
]
REFRESHED = {
    "us-east-1": {"g5.xlarge": 1.5, "m5.large": 0.11},
    "eu-west-1": {"g5.xlarge": 1.25, "m5.large": 0.12},
}


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def asked_locations(server: PricingServer) -> list[str]:
    return [
        term["Value"]
        for body in server.get_products_bodies()
        for term in body["Filters"]
        if term["Field"] == "location"
    ]


def test_a_refresh_keeps_the_served_prices_of_the_asked_types_and_caches_them(
    pricing_api: PricingServer, tmp_path: Path
) -> None:
    pricing_api.products = PRODUCTS
    catalog = PriceCatalog.load(tmp_path)
    client = AwsClients(max_attempts=1).client("pricing", "us-east-1")

    assert catalog.refresh(client, ["us-east-1", "eu-west-1"], TYPES) is True

    assert catalog.last_refresh_error is None
    assert catalog.exact == REFRESHED
    assert catalog.price("g5.xlarge", "us-east-1").source == f"pricing api {today()}"
    assert catalog.on_demand("m5.large", "eu-west-1") == 0.12
    # Not asked for: the bundled figure stays, though the server sent one.
    assert catalog.price("t3.micro", "us-east-1").source == f"catalog {price_catalog.AS_OF}"
    cache = json.loads((tmp_path / "prices.json").read_text())
    assert cache == {"as_of": today(), "prices": REFRESHED}

    # The next start of the app reads the cache.
    reloaded = PriceCatalog.load(tmp_path)
    assert reloaded.on_demand("g5.xlarge", "us-east-1") == 1.5
    assert reloaded.on_demand("g5.xlarge", "eu-west-1") == 1.25
    assert prices_note(reloaded) == (
        f"{BUNDLED_NOTE}; refreshed from the AWS Pricing API on {today()}"
    )

    # What was asked: every page of both regions (Virginia's 3 matches take two pages of 2),
    # each with the filters and the NextToken of the page before.
    bodies = pricing_api.get_products_bodies()
    assert asked_locations(pricing_api) == [VIRGINIA, VIRGINIA, IRELAND]
    assert [body.get("NextToken") is not None for body in bodies] == [False, True, False]
    assert all(body["ServiceCode"] == "AmazonEC2" for body in bodies)
    assert bodies[0]["Filters"] == FILTERS
    assert bodies[1]["Filters"] == FILTERS
    assert bodies[2]["Filters"] == [{**FILTERS[0], "Value": IRELAND}, *FILTERS[1:]]


@pytest.mark.parametrize(
    ("code", "status"), [("ThrottlingException", 400), ("InternalErrorException", 500)]
)
def test_an_error_on_the_second_page_leaves_the_catalog_and_its_cache_as_they_were(
    pricing_api: PricingServer, tmp_path: Path, code: str, status: int
) -> None:
    cache = tmp_path / "prices.json"
    cache.write_text(json.dumps({"as_of": "2026-01-02", "prices": {REGION: {"g5.xlarge": 1.2}}}))
    before = cache.read_bytes()
    pricing_api.products = PRODUCTS
    pricing_api.fail_page(2, code, status)
    catalog = PriceCatalog.load(tmp_path)
    client = AwsClients(max_attempts=1).client("pricing", "us-east-1")

    assert catalog.refresh(client, ["us-east-1", "eu-west-1"], TYPES) is False

    # The first page did answer (g5.xlarge at 1.5); none of it is kept.
    assert len(pricing_api.get_products_bodies()) == 2
    assert catalog.last_refresh_error == (
        f"AWS Pricing API unavailable ({code}); using the bundled catalog of {price_catalog.AS_OF}"
    )
    assert catalog.exact == {REGION: {"g5.xlarge": 1.2}}
    assert catalog.on_demand("g5.xlarge", REGION) == 1.2
    assert catalog.on_demand("m5.large", "eu-west-1") == PriceCatalog().on_demand(
        "m5.large", "eu-west-1"
    )
    assert cache.read_bytes() == before
    assert (
        prices_note(catalog) == f"{BUNDLED_NOTE}; refreshed from the AWS Pricing API on 2026-01-02"
    )


def test_a_throttled_page_is_asked_again_and_the_refresh_completes(
    pricing_api: PricingServer, tmp_path: Path
) -> None:
    pricing_api.products = PRODUCTS
    pricing_api.fail_page(2, "ThrottlingException", times=1)
    catalog = PriceCatalog.load(tmp_path)
    # The app's retry settings (5 attempts), without the backoff's sleeps.
    client = AwsClients(max_backoff_s=0).client("pricing", "us-east-1")

    assert catalog.refresh(client, ["us-east-1", "eu-west-1"], TYPES) is True

    assert catalog.exact == REFRESHED
    # Page 2 twice: throttled, then answered with the same NextToken.
    bodies = pricing_api.get_products_bodies()
    assert len(bodies) == 4
    assert bodies[1] == bodies[2]


async def test_the_dashboard_refreshes_prices_and_prices_instances_with_them(
    moto: MotoServer, pricing_api: PricingServer, project: Path
) -> None:
    pricing_api.products = PRODUCTS
    instance_id = launch("g5.xlarge")
    clock = Clock(launch_time(instance_id) + 3600.0)
    (project / "runctl.toml").write_text(
        f'[aws]\nregions = ["{REGION}"]\n[costs]\nrefresh_prices = true\n'
    )
    settings = load_settings(project)
    app = RunctlApp(settings, project, clock=clock)
    refreshed_note = f"{BUNDLED_NOTE}; refreshed from the AWS Pricing API on {today()}"
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: refreshed_note in str(app.costs_pane.summary.render()), 60)
        # The Pricing API answers in us-east-1: the requests were signed for it.
        authorization = pricing_api.requests[0]["headers"]["Authorization"]
        assert "/us-east-1/pricing/aws4_request" in authorization
        assert asked_locations(pricing_api) == [VIRGINIA, VIRGINIA]
        cache = json.loads((settings.state_dir / "prices.json").read_text())
        assert cache["prices"] == {REGION: {"g5.xlarge": 1.5, "m5.large": 0.11, "t3.micro": 0.0125}}

        # The next listing prices the instance at the refreshed rate.
        key = f"aws:{instance_id}"

        def rate_shown() -> str:
            if key not in app.costs_pane.table.rows:
                return ""
            return str(app.costs_pane.table.get_row(key)[1])

        await pilot.press("g")
        # The Costs pane's report is posted just before the instance rows: wait for both.
        await until(
            pilot,
            lambda: rate_shown() == "$1.50/h" and app.instances[key].price_per_hour == 1.5,
            60,
        )
