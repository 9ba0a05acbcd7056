"""moto as a real HTTP server on 127.0.0.1, shared by the AWS tests.

Use it with `from tests.moto_server import moto  # noqa: F401` and a `moto` argument. The
server starts once per session; each test gets a clean account (`POST /moto-api/reset`),
fake credentials and `AWS_ENDPOINT_URL` pointing at the server, so no test can reach a real
AWS endpoint: the fixture refuses to hand out a server whose URL is not on 127.0.0.1, and
`AWS_EC2_METADATA_DISABLED` keeps botocore away from the instance metadata address.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

REGION = "us-east-1"


@dataclass(frozen=True)
class MotoServer:
    url: str

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as reply:
            reply.read()

    def seed_cost_explorer(self, results: list[dict]) -> None:
        """Cost Explorer answers empty unless told what to answer."""
        body = json.dumps({"results": results}).encode()
        request = urllib.request.Request(
            f"{self.url}/moto-api/static/ce/cost-and-usage-results",
            method="POST",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            reply.read()


_SERVER: MotoServer | None = None
_SERVER_LOCK = threading.Lock()


def moto_server() -> MotoServer:
    """The one server of this test process, started on first use (tests only import the
    `moto` fixture, so the server is not a fixture of its own)."""
    global _SERVER
    with _SERVER_LOCK:
        if _SERVER is None:
            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            atexit.register(server.stop)
            host, port = server.get_host_and_port()
            _SERVER = MotoServer(f"http://{host}:{port}")
        return _SERVER


@pytest.fixture(autouse=True)
def no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Active in every test module that imports this module: whatever a test forgets, boto3
    has an endpoint on loopback (a closed port unless `moto` set the server's) and never
    asks the instance metadata address for credentials."""
    import os

    if not os.environ.get("AWS_ENDPOINT_URL", "").startswith("http://127.0.0.1:"):
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def aws_test_env(url: str) -> dict[str, str]:
    """The environment a process needs to talk to the moto server and nothing else."""
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent/runctl-test-aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/runctl-test-aws-credentials",
    }


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    server = moto_server()
    assert server.url.startswith("http://127.0.0.1:"), server.url
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in aws_test_env(server.url).items():
        monkeypatch.setenv(name, value)
    server.reset()
    yield server
    import os

    # A test that changed the endpoint must not have pointed it anywhere but loopback.
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    assert endpoint is None or endpoint.startswith("http://127.0.0.1:"), endpoint


# ---------------------------------------------------------------------------------------------
# Faults injected in front of moto: a botocore `before-send` handler that answers instead of
# the server, so botocore's real retry logic sees a throttle or a 5xx.
# ---------------------------------------------------------------------------------------------
class _Body:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: object):
        yield self.body


def fault_response(code: str, status: int, protocol: str = "ec2", message: str = "injected"):
    from botocore.awsrequest import AWSResponse

    if protocol == "ec2":
        body = (
            "<?xml version='1.0' encoding='UTF-8'?><Response><Errors><Error>"
            f"<Code>{code}</Code><Message>{message}</Message></Error></Errors>"
            "<RequestID>runctl-test</RequestID></Response>"
        ).encode()
        headers = {"Content-Type": "text/xml"}
    elif protocol == "s3":
        body = (
            f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
            f"<Message>{message}</Message><RequestId>runctl-test</RequestId></Error>"
        ).encode()
        headers = {"Content-Type": "application/xml"}
    else:  # JSON protocols (SSM)
        body = json.dumps({"__type": code, "message": message}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.1"}
    return AWSResponse("http://127.0.0.1/injected", status, headers, _Body(body))


class FaultInjector:
    """Answers the first `times` sends of `event` (e.g. "ec2.DescribeInstances") with a fault,
    then lets requests through to moto. `sends` counts every send it saw."""

    def __init__(self, client, event: str, code: str, status: int, times: int, protocol="ec2"):
        self.code, self.status, self.times, self.protocol = code, status, times, protocol
        self.sends = 0
        self.faults = 0
        client.meta.events.register(f"before-send.{event}", self)

    def __call__(self, **_: object):
        self.sends += 1
        if self.faults < self.times:
            self.faults += 1
            return fault_response(self.code, self.status, self.protocol)
        return None


class CallCounter:
    """Counts API calls (not sends: one call with retries counts once)."""

    def __init__(self, client, event: str) -> None:
        self.calls = 0
        client.meta.events.register(f"before-call.{event}", self)

    def __call__(self, **_: object) -> None:
        self.calls += 1
