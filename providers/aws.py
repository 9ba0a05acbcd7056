"""AWS EC2: the instances we launched (or every instance), launch, stop, start, terminate.

boto3 is imported inside functions and constructors, never at module import, so the dashboard
paints before the cloud clients exist (`import boto3` costs ~0.5 s). Credentials come from the
standard chain (profile, environment, SSO, instance role); the region from the settings or
the profile. One client per service and region lives in `AwsClients`, reused by every call;
retries are botocore's `standard` mode, and every failure is turned into one of the
`AwsError` classes below whose message says what failed and what to do.

A refresh is one paginated `DescribeInstances` per region, filtered by the tag
`runctl:managed=true` unless every instance is asked for; GPU facts come from
`DescribeInstanceTypes` (cached for the provider's life) and spot prices from
`DescribeSpotPriceHistory` (cached for a few minutes). On-demand prices are not EC2's
business: the caller passes `on_demand_price(type, region)` (the app's price catalog).
"""

from __future__ import annotations

import getpass
import re
import shlex
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from providers.base import Instance, Provider, ProviderError, Transport, TransportError

AWS_PROVIDER = "aws"
MANAGED_TAG = "runctl:managed"
PROJECT_TAG = "runctl:project"
USER_TAG = "runctl:user"
PROTECTED_TAG = "runctl:protected"
# The public parameter AWS keeps pointing at the newest Deep Learning Base AMI of each region.
DLAMI_PARAMETER = (
    "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
)
BOOTSTRAP_LOG = "/var/log/runctl-bootstrap.log"
SPOT_PRICE_TTL_S = 300.0
VOLUME_TTL_S = 600.0  # attached EBS sizes change rarely (a resize, an attach)
VOLUME_FILTER_IDS = 200  # instance ids per DescribeVolumes filter
# States in which an instance costs its hourly rate (EC2 bills from pending to shutting down).
BILLED_STATES = frozenset({"pending", "running", "stopping", "shutting-down"})

THROTTLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "SlowDown",
    }
)
EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired"})
DENIED_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthFailure"}
)
BAD_KEY_CODES = frozenset({"InvalidClientTokenId", "SignatureDoesNotMatch", "AuthFailure"})
SPOT_UNFILLED_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "InsufficientCapacity",
        "InsufficientCapacityOnHost",
    }
)


# ---------------------------------------------------------------------------------------------
# Errors a person can act on
# ---------------------------------------------------------------------------------------------
class AwsError(ProviderError):
    """An AWS failure; `str(err)` is one line saying what failed and what to do."""


class NoCredentials(AwsError):
    def __init__(self, profile: str | None):
        self.profile = profile or "default"
        super().__init__(
            f"No AWS credentials found (profile '{self.profile}'). "
            "Run `aws configure` or set AWS_PROFILE."
        )


class ExpiredCredentials(AwsError):
    def __init__(self, profile: str | None):
        self.profile = profile or "default"
        super().__init__(
            f"The AWS credentials of profile '{self.profile}' have expired. "
            f"Run `aws sso login --profile {self.profile}` or refresh your session token."
        )


class AccessDenied(AwsError):
    def __init__(self, operation: str, region: str | None, detail: str = ""):
        self.operation = operation
        self.region = region
        where = f" in {region}" if region else ""
        super().__init__(
            f"AWS refused {operation}{where}: access denied. "
            f"Grant your IAM user or role the permission for {operation}." + _tail(detail)
        )


class Throttled(AwsError):
    def __init__(self, operation: str, region: str | None):
        self.operation = operation
        self.region = region
        super().__init__(
            f"AWS is throttling {operation} in {region or 'this region'} and retries ran out; "
            "the next refresh will try again (raise aws.refresh_s if this keeps happening)."
        )


class EndpointUnreachable(AwsError):
    def __init__(self, service: str, region: str | None, detail: str):
        self.service = service
        self.region = region
        super().__init__(
            f"Cannot reach the AWS {service} endpoint for {region or 'the default region'} "
            f"({detail}). Check your network, proxy or AWS_ENDPOINT_URL."
        )


class NoRegion(AwsError):
    def __init__(self, profile: str | None):
        super().__init__(
            f"No AWS region configured (profile '{profile or 'default'}'). "
            "Set aws.regions in runctl.toml, AWS_REGION, or `aws configure set region`."
        )


class SpotUnavailable(AwsError):
    """A spot request that cannot be filled now. The UI asks before launching on-demand."""

    def __init__(self, instance_type: str, region: str, code: str, detail: str):
        self.instance_type = instance_type
        self.region = region
        self.code = code
        super().__init__(
            f"No spot capacity for {instance_type} in {region} ({code}). "
            "Try another type or region, raise the max price, or launch on-demand." + _tail(detail)
        )


class ProtectedInstance(AwsError):
    def __init__(self, instance_ids: Sequence[str]):
        self.instance_ids = list(instance_ids)
        super().__init__(
            f"{', '.join(instance_ids)} {'is' if len(instance_ids) == 1 else 'are'} tagged "
            f"{PROTECTED_TAG}=true and cannot be terminated from runctl; remove the tag in "
            "the EC2 console first if you really mean it."
        )


class AwsRequestFailed(AwsError):
    """Any other AWS error: the code and AWS's own message."""

    def __init__(self, operation: str, region: str | None, code: str, detail: str):
        self.operation = operation
        self.code = code
        where = f" in {region}" if region else ""
        super().__init__(f"{operation}{where} failed: {code}." + _tail(detail))


def _tail(detail: str) -> str:
    detail = " ".join(detail.split())
    return f" ({detail[:200]})" if detail else ""


def translate_error(
    err: BaseException,
    *,
    operation: str,
    region: str | None,
    profile: str | None,
    service: str = "ec2",
) -> AwsError:
    """The AwsError for a botocore exception (or `err` itself when it already is one)."""
    if isinstance(err, AwsError):
        return err
    from botocore import exceptions as bx

    if isinstance(err, bx.NoCredentialsError | bx.PartialCredentialsError):
        return NoCredentials(profile)
    if isinstance(err, bx.ProfileNotFound):
        return AwsRequestFailed(
            operation, region, "ProfileNotFound", f"{err}; check aws.profile or AWS_PROFILE"
        )
    if isinstance(err, bx.NoRegionError):
        return NoRegion(profile)
    sso_errors = tuple(
        getattr(bx, name)
        for name in ("SSOTokenLoadError", "UnauthorizedSSOTokenError", "TokenRetrievalError")
        if hasattr(bx, name)
    )
    if sso_errors and isinstance(err, sso_errors):
        return ExpiredCredentials(profile)
    if isinstance(err, bx.EndpointConnectionError | bx.ConnectTimeoutError | bx.ReadTimeoutError):
        return EndpointUnreachable(service, region, type(err).__name__)
    if isinstance(err, bx.ClientError):
        error = err.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", ""))
        if code in EXPIRED_CODES:
            return ExpiredCredentials(profile)
        if code in THROTTLE_CODES:
            return Throttled(operation, region)
        if code in DENIED_CODES and not (code == "AuthFailure" and "credentials" in message):
            return AccessDenied(operation, region, message)
        if code in BAD_KEY_CODES:
            return AwsRequestFailed(
                operation,
                region,
                code,
                f"{message}; the access key is not valid: run `aws configure` again",
            )
        return AwsRequestFailed(operation, region, code, message)
    if isinstance(err, bx.BotoCoreError):
        return AwsRequestFailed(operation, region, type(err).__name__, str(err))
    raise err


# ---------------------------------------------------------------------------------------------
# One client per service and region
# ---------------------------------------------------------------------------------------------
class AwsClients:
    """The boto3 session and its clients, one per (service, region), created on first use.

    `max_attempts` is the total number of sends per call (standard retry mode);
    `max_backoff_s` caps botocore's exponential backoff between them (tests use ~0).
    `on_retry(message)` is told each time a call is retried ("AWS is throttling ...;
    retrying"), so the UI can say so instead of looking frozen."""

    def __init__(
        self,
        profile: str | None = None,
        *,
        max_attempts: int = 5,
        max_backoff_s: float | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        import boto3
        from botocore import exceptions as bx
        from botocore.session import get_session

        from providers import aws_parsing

        self.profile = profile
        core = get_session()
        aws_parsing.register(core)  # big XML replies must not hold the GIL for 150 ms
        try:
            self.session = (
                boto3.Session(botocore_session=core, profile_name=profile)
                if profile
                else boto3.Session(botocore_session=core)
            )
        except bx.ProfileNotFound as err:
            raise translate_error(
                err, operation="loading the profile", region=None, profile=profile
            ) from None
        self.max_attempts = max_attempts
        self.max_backoff_s = max_backoff_s
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.on_retry = on_retry
        self.last_retry: str | None = None
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def default_region(self) -> str | None:
        return self.session.region_name

    def check_credentials(self) -> None:
        """Raise NoCredentials when the chain finds nothing (no network call is made, except
        to the instance metadata service when running on EC2)."""
        from botocore import exceptions as bx

        try:
            credentials = self.session.get_credentials()
        except bx.BotoCoreError as err:
            raise translate_error(
                err, operation="loading credentials", region=None, profile=self.profile
            ) from None
        if credentials is None:
            raise NoCredentials(self.profile)

    def client(self, service: str, region: str) -> Any:
        key = (service, region)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = self._new_client(service, region)
            return client

    def _new_client(self, service: str, region: str) -> Any:
        from botocore.config import Config

        config = Config(
            region_name=region,
            retries={"mode": "standard", "total_max_attempts": self.max_attempts},
            connect_timeout=self.connect_timeout_s,
            read_timeout=self.read_timeout_s,
            max_pool_connections=16,
        )
        client = self.session.client(service, config=config)
        event = client.meta.service_model.service_id.hyphenize()
        if self.max_backoff_s is not None:
            _cap_backoff(client, event, self.max_attempts, self.max_backoff_s)
        client.meta.events.register(f"needs-retry.{event}", self._noticed_retry)
        return client

    def _noticed_retry(self, response: Any = None, operation: Any = None, **kwargs: Any) -> None:
        # Runs beside botocore's own retry handler and decides nothing (returns None): it
        # only records that a call is being retried, so the UI can say "retrying".
        if not response:
            if kwargs.get("caught_exception") is not None:
                message = f"cannot reach AWS for {getattr(operation, 'name', 'a call')}; retrying"
                self._report_retry(message)
            return None
        http, parsed = response
        code = (parsed or {}).get("Error", {}).get("Code", "")
        status = getattr(http, "status_code", 200)
        name = getattr(operation, "name", "a call")
        if code in THROTTLE_CODES:
            self._report_retry(f"AWS is throttling {name}; retrying")
        elif status >= 500:
            self._report_retry(f"AWS answered {status} to {name}; retrying")
        return None

    def _report_retry(self, message: str) -> None:
        self.last_retry = message
        if self.on_retry is not None:
            self.on_retry(message)

    def call(self, service: str, region: str, operation: str, **params: Any) -> Any:
        """client.<operation>(**params) with errors translated (operation: snake_case name)."""
        try:
            return getattr(self.client(service, region), operation)(**params)
        except Exception as err:
            raise self.error(err, service, region, _api_name(operation)) from None

    def paginate(self, service: str, region: str, operation: str, **params: Any) -> Iterable[Any]:
        try:
            paginator = self.client(service, region).get_paginator(operation)
            yield from paginator.paginate(**params)
        except Exception as err:
            raise self.error(err, service, region, _api_name(operation)) from None

    def error(self, err: BaseException, service: str, region: str | None, api: str) -> AwsError:
        return translate_error(
            err, operation=api, region=region, profile=self.profile, service=service
        )


def _cap_backoff(client: Any, event: str, max_attempts: int, max_backoff_s: float) -> None:
    """Keep botocore's standard retry decisions but sleep at most `max_backoff_s` between
    attempts: its handler is re-registered (public botocore.retries API) behind a wrapper."""
    from botocore.retries import standard

    unique_id = f"retry-config-{event}"
    client.meta.events.unregister(f"needs-retry.{event}", unique_id=unique_id)
    handler = standard.register_retry_handler(client, max_attempts=max_attempts)
    client.meta.events.unregister(f"needs-retry.{event}", unique_id=unique_id)

    def capped(**kwargs: Any) -> Any:
        delay = handler.needs_retry(**kwargs)
        if delay is None or delay is False:
            return delay
        return min(float(delay), max_backoff_s)

    client.meta.events.register(f"needs-retry.{event}", capped, unique_id=unique_id)


def _api_name(operation: str) -> str:
    """describe_instances -> DescribeInstances (what IAM policies and errors call it)."""
    return "".join(part.capitalize() for part in operation.split("_"))


# ---------------------------------------------------------------------------------------------
# What the Instances pane shows
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GpuInfo:
    name: str
    count: int
    memory_mib: int  # per GPU

    def label(self) -> str:
        """'A10G x1, 22 GiB'"""
        return f"{self.name} x{self.count}, {round(self.memory_mib / 1024)} GiB"


@dataclass(slots=True)
class RegionResult:
    """What one region's refresh produced: rows, or the error that stopped it."""

    region: str
    instances: list[Instance] = field(default_factory=list)
    error: AwsError | None = None
    detail_error: AwsError | None = None  # GPU facts or spot prices missing; rows still shown
    describe_calls: int = 0
    seconds: float = 0.0


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _tags(raw: Iterable[dict]) -> dict[str, str]:
    return {tag["Key"]: tag.get("Value", "") for tag in raw or ()}


class AwsProvider(Provider):
    """EC2 in the configured regions; see the module docstring."""

    name = AWS_PROVIDER

    def __init__(
        self,
        profile: str | None = None,
        regions: Sequence[str] = (),
        *,
        show_all: bool = False,
        on_demand_price: Callable[[str, str], float | None] | None = None,
        clients: AwsClients | None = None,
        clock: Callable[[], float] = time.time,
        transport_factory: Callable[[Instance], Transport] | None = None,
        **client_options: Any,
    ) -> None:
        self.clients = clients or AwsClients(profile, **client_options)
        self.profile = profile
        configured = [r for r in regions if r]
        if not configured:
            region = self.clients.default_region()
            if not region:
                raise NoRegion(profile)
            configured = [region]
        self.regions = list(dict.fromkeys(configured))
        self.show_all = show_all
        self.on_demand_price = on_demand_price
        self.clock = clock
        self.transport_factory = transport_factory
        self._gpu_cache: dict[str, GpuInfo | None] = {}
        self._spot_cache: dict[tuple[str, str, str], tuple[float, float | None]] = {}
        self._volume_cache: dict[tuple[str, str], tuple[float, float]] = {}
        self._lock = threading.Lock()
        self.last_results: dict[str, RegionResult] = {}

    # -- listing --------------------------------------------------------------------------
    def list_instances(self, show_all: bool | None = None) -> list[Instance]:
        """Every instance in every region. A region that fails is left out and its error
        kept in `last_results`; when every region fails, the first error is raised."""
        results = self.refresh(show_all)
        errors = [r.error for r in results if r.error is not None]
        if errors and len(errors) == len(results):
            raise errors[0]
        return [row for result in results for row in result.instances]

    def refresh(self, show_all: bool | None = None) -> list[RegionResult]:
        """One RegionResult per region (regions are read in parallel threads)."""
        self.clients.check_credentials()
        everything = self.show_all if show_all is None else show_all
        if len(self.regions) == 1:
            results = [self._refresh_region(self.regions[0], everything)]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(8, len(self.regions))) as pool:
                results = list(
                    pool.map(lambda r: self._refresh_region(r, everything), self.regions)
                )
        self.last_results = {r.region: r for r in results}
        return results

    def _refresh_region(self, region: str, show_all: bool) -> RegionResult:
        started = time.monotonic()
        result = RegionResult(region)
        params: dict[str, Any] = {"PaginationConfig": {"PageSize": 1000}}
        if not show_all:
            params["Filters"] = [{"Name": f"tag:{MANAGED_TAG}", "Values": ["true"]}]
        raw: list[dict] = []
        try:
            for page in self.clients.paginate("ec2", region, "describe_instances", **params):
                result.describe_calls += 1
                for reservation in page.get("Reservations", ()):
                    raw.extend(reservation.get("Instances", ()))
        except AwsError as err:
            result.error = err
            result.seconds = time.monotonic() - started
            return result
        # GPU facts and spot prices only decorate the rows: when they fail, the rows are
        # still shown (without them) and the reason is kept for the pane's status line.
        gpus: dict[str, GpuInfo | None] = {}
        spot: dict[tuple[str, str], float | None] = {}
        try:
            gpus = self.gpu_info(region, {item["InstanceType"] for item in raw})
            spot_types = {
                (item["InstanceType"], item.get("Placement", {}).get("AvailabilityZone", ""))
                for item in raw
                if item.get("InstanceLifecycle") == "spot" and item["State"]["Name"] != "terminated"
            }
            spot = self.spot_prices(region, spot_types) if spot_types else {}
        except AwsError as err:
            result.detail_error = err
        now = self.clock()
        result.instances = [self._row(item, region, gpus, spot, now) for item in raw]
        result.seconds = time.monotonic() - started
        return result

    def _row(
        self,
        item: dict,
        region: str,
        gpus: dict[str, GpuInfo | None],
        spot: dict[tuple[str, str], float | None],
        now: float,
    ) -> Instance:
        tags = _tags(item.get("Tags", ()))
        state = item["State"]["Name"]
        kind = item["InstanceType"]
        lifecycle = "spot" if item.get("InstanceLifecycle") == "spot" else "on-demand"
        launched: datetime | None = item.get("LaunchTime")
        uptime = None
        if launched is not None and state in BILLED_STATES:
            # EC2 resets LaunchTime on every start, so this is the time since the last start.
            uptime = max(0.0, now - launched.timestamp())
        if lifecycle == "spot":
            az = item.get("Placement", {}).get("AvailabilityZone", "")
            price = spot.get((kind, az))
        else:
            price = self.on_demand_price(kind, region) if self.on_demand_price else None
        accrued = price * uptime / 3600.0 if price is not None and uptime is not None else None
        gpu = gpus.get(kind)
        warnings: list[str] = []
        if state == "terminated":
            warnings.append("terminated")
        if tags.get(MANAGED_TAG) != "true":
            warnings.append("not managed by runctl")
        return Instance(
            provider=AWS_PROVIDER,
            id=item["InstanceId"],
            name=tags.get("Name"),
            type=kind,
            gpu=gpu.label() if gpu else None,
            state=state,
            lifecycle=lifecycle,
            region=region,
            launched_at=_iso(launched),
            uptime_s=uptime,
            price_per_hour=price,
            accrued_usd=0.0 if state in ("stopped", "terminated") and accrued is None else accrued,
            warnings=warnings,
            address=item.get("PublicIpAddress") or item.get("PrivateIpAddress"),
            reachable=None,
        )

    def raw_instance(self, instance_id: str, region: str) -> dict:
        """The DescribeInstances record of one instance (tags, profile, addresses)."""
        reply = self.clients.call("ec2", region, "describe_instances", InstanceIds=[instance_id])
        for reservation in reply.get("Reservations", ()):
            for item in reservation.get("Instances", ()):
                return item
        raise AwsRequestFailed("DescribeInstances", region, "NotFound", f"{instance_id} is gone")

    # -- GPU facts and spot prices --------------------------------------------------------
    def gpu_info(self, region: str, instance_types: Iterable[str]) -> dict[str, GpuInfo | None]:
        """GPU of each type (None: no GPU), from DescribeInstanceTypes, cached for good:
        instance types do not change."""
        wanted = sorted(set(instance_types))
        with self._lock:
            missing = [t for t in wanted if t not in self._gpu_cache]
        for start in range(0, len(missing), 100):  # the API takes at most 100 types a call
            found = self._describe_types(region, missing[start : start + 100])
            with self._lock:
                self._gpu_cache.update(found)
        with self._lock:
            return {t: self._gpu_cache.get(t) for t in wanted}

    def _describe_types(self, region: str, chunk: list[str]) -> dict[str, GpuInfo | None]:
        found: dict[str, GpuInfo | None] = dict.fromkeys(chunk)
        try:
            pages = self.clients.paginate(
                "ec2", region, "describe_instance_types", InstanceTypes=chunk
            )
            for page in pages:
                for info in page.get("InstanceTypes", ()):
                    found[info["InstanceType"]] = _gpu_of(info)
        except AwsRequestFailed as err:
            # One type the region does not offer (retired, or not there) fails the whole
            # call: EC2 names them; ask again without them (they stay "no GPU facts").
            unknown = set(re.findall(r"[a-z0-9-]+\.[a-z0-9-]+", str(err).partition("[")[2]))
            if err.code != "InvalidInstanceType" or not unknown & set(chunk):
                raise
            rest = [t for t in chunk if t not in unknown]
            if rest:
                found.update(self._describe_types(region, rest))
        return found

    def spot_prices(
        self, region: str, type_zones: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], float | None]:
        """The current Linux spot price of each (type, availability zone), one
        DescribeSpotPriceHistory call for all that are not cached."""
        now = time.monotonic()
        wanted = set(type_zones)
        result: dict[tuple[str, str], float | None] = {}
        missing = set()
        with self._lock:
            for kind, zone in wanted:
                cached = self._spot_cache.get((region, kind, zone))
                if cached and now - cached[0] < SPOT_PRICE_TTL_S:
                    result[(kind, zone)] = cached[1]
                else:
                    missing.add((kind, zone))
        if missing:
            latest: dict[tuple[str, str], tuple[datetime, float]] = {}
            pages = self.clients.paginate(
                "ec2",
                region,
                "describe_spot_price_history",
                InstanceTypes=sorted({kind for kind, _ in missing}),
                ProductDescriptions=["Linux/UNIX"],
                StartTime=datetime.now(UTC),
            )
            for page in pages:
                for entry in page.get("SpotPriceHistory", ()):
                    key = (entry["InstanceType"], entry.get("AvailabilityZone", ""))
                    stamp = entry.get("Timestamp") or datetime.now(UTC)
                    if key not in latest or stamp > latest[key][0]:
                        latest[key] = (stamp, float(entry["SpotPrice"]))
            by_type: dict[str, float] = {}
            for (kind, _zone), (_stamp, price) in latest.items():
                by_type[kind] = max(by_type.get(kind, 0.0), price)
            with self._lock:
                for kind, zone in missing:
                    price = latest.get((kind, zone), (None, by_type.get(kind)))[1]
                    self._spot_cache[(region, kind, zone)] = (now, price)
                    result[(kind, zone)] = price
        return result

    def price_of(self, instance_type: str, region: str, spot: bool = False) -> float | None:
        """$/h of a type before launching: the catalog price, or the highest current spot price
        across the region's zones."""
        if not spot:
            return self.on_demand_price(instance_type, region) if self.on_demand_price else None
        prices = self.spot_prices(region, [(instance_type, "")])
        return prices.get((instance_type, ""))

    def volume_gb(self, region: str, instance_ids: Iterable[str]) -> dict[str, float]:
        """GB of the EBS volumes attached to each instance (root and data: what a stopped
        instance keeps paying for). Sizes asked about in the last VOLUME_TTL_S come from the
        cache; the rest in one paginated DescribeVolumes per 200 instances, filtered by
        attachment, never a call per instance."""
        now = time.monotonic()
        result: dict[str, float] = {}
        missing = []
        with self._lock:
            for instance_id in dict.fromkeys(instance_ids):
                cached = self._volume_cache.get((region, instance_id))
                if cached and now - cached[0] < VOLUME_TTL_S:
                    result[instance_id] = cached[1]
                else:
                    missing.append(instance_id)
        for start in range(0, len(missing), VOLUME_FILTER_IDS):
            chunk = missing[start : start + VOLUME_FILTER_IDS]
            found = dict.fromkeys(chunk, 0.0)
            pages = self.clients.paginate(
                "ec2",
                region,
                "describe_volumes",
                Filters=[{"Name": "attachment.instance-id", "Values": chunk}],
            )
            for page in pages:
                for volume in page.get("Volumes", ()):
                    for attachment in volume.get("Attachments", ()):
                        if attachment.get("InstanceId") in found:
                            found[attachment["InstanceId"]] += float(volume.get("Size", 0))
            with self._lock:
                for instance_id, gb in found.items():
                    self._volume_cache[(region, instance_id)] = (now, gb)
            result.update(found)
        return result

    # -- launch ---------------------------------------------------------------------------
    def type_choices(
        self, region: str, instance_types: Sequence[str]
    ) -> list[tuple[str, GpuInfo | None, float | None]]:
        """(type, GPU, on-demand $/h) for the launch dialog's list, in the order given (GPU
        facts: one DescribeInstanceTypes per 100 types, then cached)."""
        gpus = self.gpu_info(region, instance_types)
        return [
            (kind, gpus.get(kind), self.price_of(kind, region, spot=False))
            for kind in instance_types
        ]

    def resolve_ami(
        self, region: str, configured_ami: str | None, parameter: str = DLAMI_PARAMETER
    ) -> tuple[str, str]:
        """(AMI id, where it came from): the public Deep Learning AMI parameter of the region
        when it answers, else the configured AMI, else an error saying what to set."""
        try:
            reply = self.clients.call("ssm", region, "get_parameter", Name=parameter)
            return reply["Parameter"]["Value"], f"SSM parameter {parameter}"
        except AccessDenied:
            if not configured_ami:
                raise
        except AwsError:
            pass
        if configured_ami:
            return configured_ami, "aws.ami in runctl.toml"
        raise AwsRequestFailed(
            "GetParameter",
            region,
            "NoAmi",
            f"the Deep Learning AMI parameter {parameter} is not available in {region}; "
            "set aws.ami to an AMI id of that region",
        )

    def plan_launch(self, options: LaunchOptions) -> LaunchPlan:
        """The exact RunInstances request for `options` (reads the AMI and its root device;
        creates nothing). Show `plan.request` as the dry run, then call `launch(plan)`."""
        region = options.region or self.regions[0]
        ami, ami_source = self.resolve_ami(region, options.ami, options.ami_parameter)
        images = self.clients.call("ec2", region, "describe_images", ImageIds=[ami])
        if not images.get("Images"):
            raise AwsRequestFailed(
                "DescribeImages", region, "InvalidAMIID.NotFound", f"{ami} is not in {region}"
            )
        root_device = images["Images"][0].get("RootDeviceName") or "/dev/sda1"
        tags = [
            {"Key": MANAGED_TAG, "Value": "true"},
            {"Key": PROJECT_TAG, "Value": options.project},
            {"Key": USER_TAG, "Value": options.user or _local_user()},
            {"Key": "Name", "Value": options.name or f"runctl-{options.project}"},
        ]
        request: dict[str, Any] = {
            "ImageId": ami,
            "InstanceType": options.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "BlockDeviceMappings": [
                {
                    "DeviceName": root_device,
                    "Ebs": {
                        "VolumeSize": int(options.root_volume_gb),
                        "VolumeType": "gp3",
                        "DeleteOnTermination": True,
                    },
                }
            ],
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tags},
                {"ResourceType": "volume", "Tags": tags},
            ],
            "UserData": bootstrap_user_data(options.runs_root),
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        }
        if options.key_name:
            request["KeyName"] = options.key_name
        if options.security_group_ids:
            request["SecurityGroupIds"] = list(options.security_group_ids)
        if options.subnet_id:
            request["SubnetId"] = options.subnet_id
        if options.instance_profile:
            key = "Arn" if options.instance_profile.startswith("arn:") else "Name"
            request["IamInstanceProfile"] = {key: options.instance_profile}
        if options.spot:
            spot_options: dict[str, Any] = {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
            }
            if options.spot_max_price is not None:
                spot_options["MaxPrice"] = f"{options.spot_max_price:.4f}"
            request["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot_options}
        price = self.price_of(options.instance_type, region, options.spot)
        gpu = self.gpu_info(region, [options.instance_type]).get(options.instance_type)
        return LaunchPlan(region, request, ami_source, root_device, price, gpu)

    def launch(self, plan: LaunchPlan) -> list[str]:
        """Create the instance(s) of `plan`; their ids. A spot request that cannot be filled
        raises SpotUnavailable: ask the user, then `launch(plan.on_demand())` if they agree."""
        try:
            reply = self.clients.client("ec2", plan.region).run_instances(**plan.request)
        except Exception as err:
            from botocore.exceptions import ClientError

            if plan.is_spot and isinstance(err, ClientError):
                code = err.response.get("Error", {}).get("Code", "")
                if code in SPOT_UNFILLED_CODES:
                    message = err.response.get("Error", {}).get("Message", "")
                    raise SpotUnavailable(
                        plan.request["InstanceType"], plan.region, code, message
                    ) from None
            raise self.clients.error(err, "ec2", plan.region, "RunInstances") from None
        return [item["InstanceId"] for item in reply.get("Instances", ())]

    def wait_ready(
        self,
        instance_ids: Sequence[str],
        region: str,
        progress: Callable[[str, str], None] | None = None,
        reachable: Callable[[Instance], bool] | None = None,
        poll_s: float = 5.0,
        timeout_s: float = 900.0,
        cancelled: Callable[[], bool] | None = None,
    ) -> list[Instance]:
        """pending -> running -> reachable, telling `progress(step, message)` at each step.
        `reachable(instance)` is the caller's check (an SSH `true`, or SSM online); it is
        polled until it answers True. Raises AwsError on timeout or when an instance dies."""
        report = progress or (lambda step, message: None)
        ids = list(instance_ids)
        deadline = time.monotonic() + timeout_s
        report("pending", f"waiting for {', '.join(ids)} to start")
        while True:
            rows = self._describe_ids(ids, region)
            states = {row.id: row.state for row in rows}
            dead = [i for i, s in states.items() if s in ("terminated", "shutting-down")]
            if dead:
                raise AwsRequestFailed(
                    "RunInstances",
                    region,
                    "InstanceTerminated",
                    f"{', '.join(dead)} ended before running (capacity, quota or a spot "
                    "interruption): see the EC2 console's state reason",
                )
            if rows and all(s == "running" for s in states.values()):
                break
            self._pause(deadline, poll_s, cancelled, "to be running")
        addresses = ", ".join(f"{row.id} at {row.address or 'no address'}" for row in rows)
        report("running", addresses)
        if reachable is not None:
            report("reachable", "checking the connection")
            for row in rows:
                while not reachable(row):
                    self._pause(deadline, poll_s, cancelled, "to be reachable")
                row.reachable = True
            report("reachable", "ready for runs")
        return rows

    def _pause(
        self, deadline: float, poll_s: float, cancelled: Callable[[], bool] | None, what: str
    ) -> None:
        if cancelled is not None and cancelled():
            raise AwsRequestFailed("waiting", None, "Cancelled", f"stopped waiting {what}")
        if time.monotonic() > deadline:
            raise AwsRequestFailed(
                "waiting", None, "Timeout", f"the instance took too long {what}; check the console"
            )
        time.sleep(poll_s)

    def _describe_ids(self, ids: Sequence[str], region: str) -> list[Instance]:
        rows: list[Instance] = []
        pages = self.clients.paginate("ec2", region, "describe_instances", InstanceIds=list(ids))
        raw = [
            item for page in pages for r in page.get("Reservations", ()) for item in r["Instances"]
        ]
        gpus = self.gpu_info(region, {item["InstanceType"] for item in raw})
        now = self.clock()
        rows = [self._row(item, region, gpus, {}, now) for item in raw]
        return rows

    # -- stop / start / terminate ----------------------------------------------------------
    def stop(self, instance_ids: Sequence[str], region: str) -> dict[str, str]:
        """{id: new state}."""
        reply = self.clients.call("ec2", region, "stop_instances", InstanceIds=list(instance_ids))
        return {c["InstanceId"]: c["CurrentState"]["Name"] for c in reply["StoppingInstances"]}

    def start(self, instance_ids: Sequence[str], region: str) -> dict[str, str]:
        reply = self.clients.call("ec2", region, "start_instances", InstanceIds=list(instance_ids))
        return {c["InstanceId"]: c["CurrentState"]["Name"] for c in reply["StartingInstances"]}

    def terminate(self, instance_ids: Sequence[str], region: str) -> dict[str, str]:
        """Refuses (ProtectedInstance) when any of them is tagged runctl:protected=true."""
        ids = list(instance_ids)
        pages = self.clients.paginate("ec2", region, "describe_instances", InstanceIds=ids)
        protected = [
            item["InstanceId"]
            for page in pages
            for reservation in page.get("Reservations", ())
            for item in reservation["Instances"]
            if _tags(item.get("Tags", ())).get(PROTECTED_TAG, "").lower() == "true"
        ]
        if protected:
            raise ProtectedInstance(protected)
        reply = self.clients.call("ec2", region, "terminate_instances", InstanceIds=ids)
        return {c["InstanceId"]: c["CurrentState"]["Name"] for c in reply["TerminatingInstances"]}

    def transport_for(self, instance: Instance) -> Transport:
        if self.transport_factory is None:
            raise TransportError(
                f"no transport for {instance.id}: the app chooses SSH or SSM for EC2 instances"
            )
        return self.transport_factory(instance)


def mark_vanished(
    previous: Iterable[Instance], current: Iterable[Instance], answered_regions: Iterable[str]
) -> list[Instance]:
    """Rows the app knew that EC2 no longer lists at all (terminated long ago or outside
    runctl), as `terminated` rows: shown as such instead of staying stale. Only regions that
    answered this refresh count; a failed region says nothing about its instances."""
    seen = {row.id for row in current}
    regions = set(answered_regions)
    gone = []
    for row in previous:
        if row.provider == AWS_PROVIDER and row.region in regions and row.id not in seen:
            if row.state != "terminated":
                warnings = [*row.warnings, "terminated outside runctl (EC2 no longer lists it)"]
            else:
                warnings = list(row.warnings)
            gone.append(replace(row, state="terminated", uptime_s=None, warnings=warnings))
    return gone


def _gpu_of(info: dict) -> GpuInfo | None:
    gpus = (info.get("GpuInfo") or {}).get("Gpus") or []
    if not gpus:
        return None
    first = gpus[0]
    count = sum(int(g.get("Count", 0)) for g in gpus)
    memory = int((first.get("MemoryInfo") or {}).get("SizeInMiB", 0))
    return GpuInfo(str(first.get("Name", "GPU")), count, memory)


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@dataclass(slots=True)
class LaunchOptions:
    """What the launch dialog asks for."""

    instance_type: str
    project: str
    region: str | None = None
    name: str | None = None
    user: str | None = None
    spot: bool = False
    spot_max_price: float | None = None  # $/h; None = up to the on-demand price
    ami: str | None = None  # used when the Deep Learning AMI parameter does not answer
    ami_parameter: str = DLAMI_PARAMETER
    key_name: str | None = None
    security_group_ids: Sequence[str] = ()
    subnet_id: str | None = None
    instance_profile: str | None = None  # name or ARN; needed for SSM and S3
    root_volume_gb: int = 100
    runs_root: str = "~/runctl"


@dataclass(slots=True)
class LaunchPlan:
    """A RunInstances request ready to send, and what the dialog shows beside it."""

    region: str
    request: dict[str, Any]
    ami_source: str
    root_device: str
    price_per_hour: float | None
    gpu: GpuInfo | None

    @property
    def is_spot(self) -> bool:
        return "InstanceMarketOptions" in self.request

    def on_demand(self) -> LaunchPlan:
        """The same request without the spot market (after the user agreed)."""
        request = {k: v for k, v in self.request.items() if k != "InstanceMarketOptions"}
        return LaunchPlan(self.region, request, self.ami_source, self.root_device, None, self.gpu)

    def describe(self) -> str:
        """The dry run: the exact request, as JSON (user data shown as text)."""
        import json

        shown = dict(self.request)
        shown["UserData"] = f"<{len(self.request['UserData'])} bytes: sh bootstrap, see below>"
        return json.dumps(shown, indent=2, sort_keys=True) + "\n\n" + self.request["UserData"]


def bootstrap_user_data(runs_root: str = "~/runctl", log_path: str = BOOTSTRAP_LOG) -> str:
    """The first-boot script: prepares the login user's runs root, records what the host
    has (GPU driver, python, disk), and logs every step with a timestamp to `log_path`.
    It is plain POSIX sh (cloud-init runs it as root) and tolerates missing tools."""
    root = shlex.quote(runs_root.removeprefix("~/")) if runs_root.startswith("~/") else None
    absolute = shlex.quote(runs_root) if root is None else None
    return f"""#!/bin/sh
# runctl bootstrap: prepares this host for runs; every step is logged.
LOG={shlex.quote(log_path)}
log() {{ printf '%s %s\\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >> "$LOG"; }}
mkdir -p "$(dirname "$LOG")" && : >> "$LOG" || LOG=/tmp/runctl-bootstrap.log
log "runctl bootstrap started"
RUN_USER=${{RUNCTL_USER:-}}
if [ -z "$RUN_USER" ]; then
  for candidate in ubuntu ec2-user admin; do
    if id "$candidate" >/dev/null 2>&1; then RUN_USER=$candidate; break; fi
  done
fi
[ -n "$RUN_USER" ] || RUN_USER=$(id -un)
USER_HOME=${{RUNCTL_HOME_DIR:-$(getent passwd "$RUN_USER" 2>/dev/null | cut -d: -f6)}}
[ -n "$USER_HOME" ] || USER_HOME=$HOME
log "run user: $RUN_USER ($USER_HOME)"
RUNS_ROOT={f'"$USER_HOME"/{root}' if root is not None else absolute}
mkdir -p "$RUNS_ROOT/runs" "$RUNS_ROOT/projects" && log "runs root ready: $RUNS_ROOT"
if [ "$(id -u)" = 0 ] && [ "$RUN_USER" != root ]; then
  chown -R "$RUN_USER" "$RUNS_ROOT" && log "runs root owned by $RUN_USER"
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  log "gpu: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | tr '\\n' ';')"
else
  log "gpu: nvidia-smi not found (no GPU driver on this image)"
fi
for tool in python3 tar setsid; do
  if command -v "$tool" >/dev/null 2>&1; then log "found $tool: $(command -v "$tool")"
  else log "missing $tool: runs need it"; fi
done
log "disk: $(df -h "$RUNS_ROOT" 2>/dev/null | tail -n 1)"
log "runctl bootstrap done"
"""


# ---------------------------------------------------------------------------------------------
# Spot interruption notices, read on the host through any Transport (IMDSv2)
# ---------------------------------------------------------------------------------------------
IMDS_URL = "http://169.254.169.254"
# $1 = the metadata service. Exit 0 + JSON: a notice; exit 10: no notice; else: failure.
SPOT_NOTICE_SCRIPT = (
    'token=$(curl -fsS -m 2 -X PUT "$1/latest/api/token" '
    '-H "X-aws-ec2-metadata-token-ttl-seconds: 60") || exit 4; '
    'code=$(curl -sS -m 2 -o "${TMPDIR:-/tmp}/runctl-spot.$$" -w "%{http_code}" '
    '-H "X-aws-ec2-metadata-token: $token" "$1/latest/meta-data/spot/instance-action") '
    "|| exit 5; "
    'if [ "$code" = 200 ]; then cat "${TMPDIR:-/tmp}/runctl-spot.$$"; status=0; '
    'elif [ "$code" = 404 ]; then status=10; else echo "metadata answered $code" >&2; status=6; fi; '
    'rm -f "${TMPDIR:-/tmp}/runctl-spot.$$"; exit $status'
)


@dataclass(frozen=True, slots=True)
class SpotNotice:
    action: str  # "terminate" | "stop" | "hibernate"
    time: str  # ISO 8601, when EC2 will act (about two minutes after the notice)


def spot_interruption_notice(transport: Transport, imds_url: str = IMDS_URL) -> SpotNotice | None:
    """The instance's pending spot interruption, asked on the host itself (IMDSv2 with a
    session token); None when there is none. Raises TransportError when the metadata
    service cannot be asked (e.g. IMDS disabled)."""
    import json

    result = transport.run(["sh", "-c", SPOT_NOTICE_SCRIPT, "sh", imds_url], timeout=15)
    if result.returncode == 10:
        return None
    if not result.ok:
        raise TransportError(
            f"cannot read spot interruption notices on {transport.label}: "
            f"{result.describe_failure()}"
        )
    try:
        data = json.loads(result.stdout)
        return SpotNotice(str(data["action"]), str(data["time"]))
    except (ValueError, KeyError, TypeError):
        raise TransportError(
            f"unexpected spot notice on {transport.label}: {result.text()[:200]!r}"
        ) from None
