"""The AWS provider and the price catalog, built from the settings.

One place decides how the app talks to AWS (profile, regions, retries, prices), so the
dashboard, the headless commands and the benchmarks all get the same provider. boto3 is
imported only when `aws_provider` is called.
"""

from __future__ import annotations

from typing import Any

from app.costs import PriceCatalog
from providers.aws import AwsError, AwsProvider


class AwsDisabled(AwsError):
    def __init__(self) -> None:
        super().__init__("AWS is turned off (aws.enabled = false in runctl.toml).")


def price_catalog(settings: Any) -> PriceCatalog:
    """The bundled catalog plus the Pricing API figures cached under the state dir."""
    return PriceCatalog.load(getattr(settings, "state_dir", None))


def aws_provider(
    settings: Any,
    catalog: PriceCatalog | None = None,
    show_all: bool | None = None,
    **client_options: Any,
) -> AwsProvider:
    """The provider for `settings.aws`. Raises AwsError (disabled, no region, no profile,
    no credentials) with a message that says what to configure."""
    aws = settings.aws
    if not aws.enabled:
        raise AwsDisabled()
    catalog = catalog or price_catalog(settings)
    provider = AwsProvider(
        aws.profile,
        aws.regions,
        show_all=aws.show_all if show_all is None else show_all,
        on_demand_price=catalog.on_demand,
        **client_options,
    )
    provider.clients.check_credentials()
    return provider
