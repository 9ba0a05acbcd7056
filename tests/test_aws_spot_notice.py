"""Spot interruption notices read on the host through a Transport, against a local stand-in
for the instance metadata service that speaks IMDSv2 (token first, then the notice)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from providers.aws import SpotNotice, spot_interruption_notice
from providers.base import TransportError
from providers.local import LocalTransport

TOKEN = "imds-session-token"


class FakeImds(ThreadingHTTPServer):
    notice: bytes | None = None
    unauthenticated_gets = 0


class Handler(BaseHTTPRequestHandler):
    server: FakeImds

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_PUT(self) -> None:
        if self.path == "/latest/api/token" and self.headers.get(
            "X-aws-ec2-metadata-token-ttl-seconds"
        ):
            self._answer(200, TOKEN.encode())
        else:
            self._answer(400, b"")

    def do_GET(self) -> None:
        if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
            self.server.unauthenticated_gets += 1
            self._answer(401, b"")
        elif self.path == "/latest/meta-data/spot/instance-action" and self.server.notice:
            self._answer(200, self.server.notice)
        else:
            self._answer(404, b"")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    server = FakeImds(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url(server: FakeImds) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_no_notice_then_a_notice(imds):
    transport = LocalTransport()
    assert spot_interruption_notice(transport, url(imds)) is None
    imds.notice = b'{"action": "terminate", "time": "2026-11-23T20:40:00Z"}'
    assert spot_interruption_notice(transport, url(imds)) == SpotNotice(
        "terminate", "2026-11-23T20:40:00Z"
    )
    assert imds.unauthenticated_gets == 0  # always IMDSv2: the token goes with every read


def test_an_unreachable_metadata_service_is_an_error_not_a_silent_none(imds):
    imds.shutdown()
    imds.server_close()
    with pytest.raises(TransportError, match="cannot read spot interruption notices"):
        spot_interruption_notice(LocalTransport(), url(imds))
