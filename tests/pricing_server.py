"""A small AWS Pricing API (GetProducts) as a real HTTP server on 127.0.0.1, for tests.

moto has no Pricing API backend, so the tests that need the API to answer point boto3 at this
server with `AWS_ENDPOINT_URL_PRICING` (the `pricing_api` fixture), and boto3 stays unpatched:
it signs, serialises, pages and parses exactly as it does against AWS.

The server speaks the AWS JSON 1.1 protocol as botocore sends it (botocore's
`pricing/2017-10-15/service-2.json`): `POST /` with `X-Amz-Target: AWSPriceListService.<op>`
and a JSON body {ServiceCode, Filters: [{Type, Field, Value}], FormatVersion, NextToken,
MaxResults}. It answers GetProducts from a table of `Product`s, honouring TERM_MATCH filters
and paging `page_size` products at a time, and records every request it got. Errors are
JSON {"__type", "message"} with a 4xx/5xx status, as AWS sends them; `fail_page` makes a
given page answer one.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

TARGET_PREFIX = "AWSPriceListService."
JSON_11 = "application/x-amz-json-1.1"
ON_DEMAND_OFFER = "JRTCKXETXF"  # AWS's offer term code of on-demand prices
HOURLY_RATE = "6YS6EN2CT7"  # and of their per-hour rate


@dataclass(frozen=True)
class Product:
    """One EC2 product of the price list: an instance type in a location, at $/h on demand."""

    instance_type: str
    location: str
    usd_per_hour: str  # as AWS writes it: "1.0060000000"
    operating_system: str = "Linux"
    tenancy: str = "Shared"
    pre_installed_sw: str = "NA"
    capacity_status: str = "Used"

    @property
    def sku(self) -> str:
        # Stable and distinct per product, like AWS's 16-character SKUs.
        return base64.b32encode(repr(self).encode())[:16].decode()

    def attributes(self) -> dict[str, str]:
        return {
            "servicecode": "AmazonEC2",
            "instanceType": self.instance_type,
            "location": self.location,
            "locationType": "AWS Region",
            "operatingSystem": self.operating_system,
            "tenancy": self.tenancy,
            "preInstalledSw": self.pre_installed_sw,
            "capacitystatus": self.capacity_status,
            "licenseModel": "No License required",
            "operation": "RunInstances",
            "usagetype": f"BoxUsage:{self.instance_type}",
        }

    def price_list_item(self) -> str:
        """The product as one PriceList entry: a JSON document in a string, as AWS sends it.
        Besides the on-demand term it carries a reserved one with a different hourly rate,
        as real entries do, so a parser that reads the wrong term gets the wrong price."""
        sku = self.sku
        on_demand = f"{sku}.{ON_DEMAND_OFFER}"
        reserved = f"{sku}.4NA7Y494T4"
        document = {
            "product": {
                "productFamily": "Compute Instance",
                "attributes": self.attributes(),
                "sku": sku,
            },
            "serviceCode": "AmazonEC2",
            "terms": {
                "Reserved": {
                    reserved: {
                        "priceDimensions": {
                            f"{reserved}.{HOURLY_RATE}": {
                                "unit": "Hrs",
                                "description": "Linux/UNIX (Amazon VPC), 1yr, No Upfront",
                                "pricePerUnit": {"USD": "0.0123000000"},
                            }
                        },
                        "sku": sku,
                        "offerTermCode": "4NA7Y494T4",
                        "termAttributes": {"LeaseContractLength": "1yr"},
                    }
                },
                "OnDemand": {
                    on_demand: {
                        "priceDimensions": {
                            f"{on_demand}.{HOURLY_RATE}": {
                                "unit": "Hrs",
                                "endRange": "Inf",
                                "beginRange": "0",
                                "description": (
                                    f"${self.usd_per_hour} per On Demand "
                                    f"{self.operating_system} {self.instance_type} Instance Hour"
                                ),
                                "rateCode": f"{on_demand}.{HOURLY_RATE}",
                                "appliesTo": [],
                                "pricePerUnit": {"USD": self.usd_per_hour},
                            }
                        },
                        "sku": sku,
                        "effectiveDate": "2025-06-01T00:00:00Z",
                        "offerTermCode": ON_DEMAND_OFFER,
                        "termAttributes": {},
                    }
                },
            },
            "version": "20250601000000",
            "publicationDate": "2025-06-01T00:00:00Z",
        }
        return json.dumps(document)


@dataclass
class Fault:
    page: int  # 1 = the first page of a query
    status: int
    code: str
    times: int | None  # None: every time that page is asked
    sent: int = 0


@dataclass
class PricingServer:
    """The table the server answers from and what it was asked. Change `products`,
    `page_size` or add faults between calls; `requests` holds each request's target, headers
    and decoded body, in order."""

    products: list[Product] = field(default_factory=list)
    page_size: int = 2
    url: str = ""
    requests: list[dict] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_page(self, page: int, code: str, status: int = 400, times: int | None = None) -> None:
        """Answer requests for page `page` (of any query) with the error `code`."""
        with self.lock:
            self.faults.append(Fault(page, status, code, times))

    def get_products_bodies(self) -> list[dict]:
        with self.lock:
            return [r["body"] for r in self.requests if r["target"].endswith(".GetProducts")]

    # -- the API ------------------------------------------------------------------------------
    def answer(self, target: str, body: dict) -> tuple[int, dict]:
        if target != TARGET_PREFIX + "GetProducts":
            # What AWS answers a target it does not know (botocore names it by __type).
            return 400, _error("UnknownOperationException", f"unknown operation {target}")
        return self._get_products(body)

    def _get_products(self, body: dict) -> tuple[int, dict]:
        service = body.get("ServiceCode")
        if not isinstance(service, str) or not service:
            return 400, _error("ValidationException", "ServiceCode is required")
        try:
            page, offset = _read_token(body.get("NextToken"))
        except ValueError:
            return 400, _error("InvalidNextTokenException", "the NextToken is not valid")
        size = int(body.get("MaxResults") or self.page_size)
        with self.lock:
            for fault in self.faults:
                if fault.page == page and (fault.times is None or fault.sent < fault.times):
                    fault.sent += 1
                    return fault.status, _error(fault.code, f"injected on page {page}")
            matching = [
                p
                for p in self.products
                if service == "AmazonEC2" and _matches(p, body.get("Filters") or [])
            ]
        chunk = matching[offset : offset + size]
        reply: dict = {
            "FormatVersion": "aws_v1",
            "PriceList": [product.price_list_item() for product in chunk],
        }
        if offset + size < len(matching):
            reply["NextToken"] = _token(page + 1, offset + size)
        return 200, reply


def _matches(product: Product, filters: list[dict]) -> bool:
    attributes = product.attributes()
    for term in filters:
        if term.get("Type") != "TERM_MATCH":
            raise ValueError(f"filter type {term.get('Type')} is not served here")
        if attributes.get(term.get("Field")) != term.get("Value"):
            return False
    return True


def _token(page: int, offset: int) -> str:
    # Opaque to the client, like AWS's: the client must hand it back unchanged.
    return base64.urlsafe_b64encode(json.dumps([page, offset]).encode()).decode()


def _read_token(token: str | None) -> tuple[int, int]:
    if token is None:
        return 1, 0
    try:
        page, offset = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(page), int(offset)
    except (TypeError, ValueError) as err:
        raise ValueError(token) from err


def _error(code: str, message: str) -> dict:
    return {"__type": code, "message": message}


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer

    def do_POST(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        target = self.headers.get("X-Amz-Target", "")
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        with state.lock:
            state.requests.append(
                {"path": self.path, "target": target, "headers": dict(self.headers), "body": body}
            )
        if self.path != "/" or not isinstance(body, dict):
            status, reply = 400, _error("SerializationException", "expected a JSON object")
        else:
            try:
                status, reply = state.answer(target, body)
            except Exception as err:  # a request the table cannot serve: AWS's 500 shape
                status, reply = 500, _error("InternalErrorException", str(err))
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", JSON_11)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", "runctl-test")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: object) -> None:  # quiet: pytest shows failures, not traffic
        pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    state: PricingServer


def start(products: list[Product], page_size: int = 2) -> tuple[PricingServer, _HTTPServer]:
    """Serve `products` on 127.0.0.1 (a free port) in a thread; stop with `.shutdown()`."""
    httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
    state = PricingServer(list(products), page_size)
    httpd.state = state
    host, port = httpd.server_address[:2]
    state.url = f"http://{host}:{port}"
    threading.Thread(target=httpd.serve_forever, name="pricing-api", daemon=True).start()
    return state, httpd


@pytest.fixture
def pricing_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[PricingServer]:
    """A Pricing API with no products yet (a test sets `products`), and the environment that
    sends boto3's `pricing` clients, and nothing else, to it, with fake credentials."""
    state, httpd = start([])
    assert state.url.startswith("http://127.0.0.1:"), state.url
    monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", state.url)
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ):
        monkeypatch.setenv(name, value)
    # Every other service goes to a closed loopback port unless the moto fixture set its own.
    if not os.environ.get("AWS_ENDPOINT_URL", "").startswith("http://127.0.0.1:"):
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
