"""The gateway's answers to requests refused below its routes, sent as raw bytes over a real socket.

Oversized URLs and headers, bytes that are not HTTP/1.1, broken bodies and keys that cannot be keys each get a
problem+json answer with the right status, quote none of the sent bytes and log one line without a traceback. The
gateway runs in-process exactly as `pacer-gateway` serves it (`GatewayRunner` on a real socket) over a recording
fake control plane; the last test runs the `pacer-gateway` process itself.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from pacer.control.v1 import control_service_pb2 as pb
from pacer_gateway.app import create_app
from pacer_gateway.protocol import MAX_FIELD_BYTES, MAX_HEADERS, MAX_URL_BYTES, GatewayRunner
from tests.support import polling
from tests.support.processes import ServiceProcess, free_port

pytestmark = pytest.mark.timeout(60)

PROBLEM = "application/problem+json"
# Sent in every refused request: it must never come back in an answer.
MARKER = b"Zq7xSentBytes"
READ_DEADLINE_S = 10.0
KEY = b"pk_test1234_" + b"s" * 40


class RecordingControl:
    """Answers every RPC with its empty response and remembers the calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def call(self, rpc: str, request: Any, key: str | None) -> Any:
        self.calls.append(rpc)
        return getattr(pb, f"{rpc}Response")()


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    raw: bytes = field(repr=False)

    @property
    def problem(self) -> dict[str, Any]:
        assert self.headers["content-type"] == PROBLEM, self.raw[:300]
        document: dict[str, Any] = json.loads(self.body)
        assert document["status"] == self.status
        assert document["type"] == "about:blank"
        assert document["title"]
        assert document["detail"]
        return document


def parse(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", len(body)))
    return Reply(int(status_line.split()[1]), headers, body[:length], raw)


async def exchange(port: int, raw: bytes) -> Reply:
    """Send `raw` on a fresh connection and read the answer until the gateway closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return parse(await asyncio.wait_for(reader.read(), READ_DEADLINE_S))
    finally:
        writer.close()


def get(path: bytes = b"/jobs", headers: bytes = b"") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n" + headers + b"\r\n"


@dataclass(frozen=True)
class Gateway:
    port: int
    control: RecordingControl


@pytest_asyncio.fixture
async def gateway(caplog: pytest.LogCaptureFixture) -> AsyncIterator[Gateway]:
    caplog.set_level(logging.INFO)
    control = RecordingControl()
    runner = GatewayRunner(create_app(control))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield Gateway(runner.addresses[0][1], control)
    await runner.cleanup()


def assert_logged_without_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert "Traceback" not in caplog.text
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert MARKER.decode() not in caplog.text


CHUNKED_POST = (
    b"POST /jobs HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer " + KEY + b"\r\n"
    b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
)
REFUSED = {
    "url over the limit": (get(b"/jobs/" + MARKER + b"u" * MAX_URL_BYTES), 414),
    "header value over the limit": (get(headers=b"X-Note: " + MARKER + b"v" * MAX_FIELD_BYTES + b"\r\n"), 431),
    "header name over the limit": (get(headers=MARKER + b"n" * MAX_FIELD_BYTES + b": v\r\n"), 431),
    "too many headers": (get(headers=b"".join(b"X-%s-%d: v\r\n" % (MARKER, i) for i in range(MAX_HEADERS + 1))), 431),
    "tls to the plain port": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + MARKER + b"\r\n\r\n", 400),
    "bad method": (b"GE(T /jobs/" + MARKER + b" HTTP/1.1\r\nHost: gateway\r\n\r\n", 400),
    "not http at all": (MARKER + b"\x00\x01\x02\r\n\r\n", 400),
    "bad http version": (b"GET /jobs HTTP/" + MARKER + b"\r\nHost: gateway\r\n\r\n", 400),
    "space in a header name": (get(headers=b"X " + MARKER + b": v\r\n"), 400),
    "control character in a header value": (get(headers=b"X-Note: " + MARKER + b"\x01\r\n"), 400),
    "bare LF line endings": (b"GET /jobs HTTP/1.1\nHost: gateway\nX-Note: " + MARKER + b"\n\n", 400),
    "invalid chunk size": (CHUNKED_POST + b"zz\r\n" + MARKER + b"\r\n0\r\n\r\n", 400),
    "conflicting body lengths": (
        b"POST /jobs HTTP/1.1\r\nHost: gateway\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" + MARKER,
        400,
    ),
}


@pytest.mark.parametrize(("raw", "status"), list(REFUSED.values()), ids=list(REFUSED))
@pytest.mark.asyncio
async def test_a_refused_request_is_a_problem_quoting_nothing_and_logging_one_line(gateway, caplog, raw, status):
    reply = await exchange(gateway.port, raw)

    assert reply.status == status
    problem = reply.problem
    assert problem["code"] == "INVALID_ARGUMENT"
    assert MARKER not in reply.raw
    assert gateway.control.calls == []
    assert_logged_without_traceback(caplog)
    [refusal] = [r for r in caplog.records if getattr(r, "event", None) == "http.malformed"]
    assert refusal.status == status


@pytest.mark.asyncio
async def test_the_limits_are_exact(gateway):
    """The longest URL accepted, then one byte more; a header within the limit, and one just past it."""
    longest_path = b"/" + b"p" * (MAX_URL_BYTES - 1)
    assert (await exchange(gateway.port, get(longest_path))).status == 404  # parsed, routed, no such route
    assert (await exchange(gateway.port, get(longest_path + b"p"))).status == 414

    def padded(value_bytes: int) -> bytes:
        return get(b"/healthz", b"X-Pad: " + b"h" * value_bytes + b"\r\n")

    # aiohttp means the limit for name and value together, but counts the name of the first header only.
    assert (await exchange(gateway.port, padded(MAX_FIELD_BYTES - len(b"X-Pad")))).status == 200
    assert (await exchange(gateway.port, padded(MAX_FIELD_BYTES + 1))).status == 431

    many = b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS - 2))  # plus Host and Connection
    assert (await exchange(gateway.port, get(b"/healthz", many))).status == 200
    assert (await exchange(gateway.port, get(b"/healthz", many + b"X-One-More: v\r\n"))).status == 431


@pytest.mark.asyncio
async def test_a_body_whose_content_encoding_is_broken_is_400(gateway, caplog):
    raw = (
        b"POST /jobs HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\nAuthorization: Bearer " + KEY + b"\r\n"
        b"Content-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % (len(MARKER) + 4)
    )
    reply = await exchange(gateway.port, raw + MARKER + b"gzip")

    assert reply.status == 400
    assert "encoding" in reply.problem["detail"]
    assert MARKER not in reply.raw
    assert gateway.control.calls == []
    # aiohttp reads the rest of the body after the answer and fails again: that must not log a traceback either.
    await until(lambda: any(getattr(r, "event", None) == "http.body_dropped" for r in caplog.records))
    assert_logged_without_traceback(caplog)


@pytest.mark.asyncio
async def test_a_client_that_leaves_mid_body_costs_no_traceback(gateway, caplog):
    _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(CHUNKED_POST + b"40\r\n" + MARKER)  # a 64-byte chunk, cut short
    await writer.drain()
    writer.close()
    await writer.wait_closed()

    await until(lambda: any(r.name == "aiohttp.access" for r in caplog.records))  # the request is over
    assert gateway.control.calls == []
    assert_logged_without_traceback(caplog)


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (b"Bearer pk_\xc3\xbc" + b"u" * 40, 401),  # UTF-8 u-umlaut
        (b"Bearer pk_\xe2\x84\xaa" + b"k" * 40, 401),  # U+212A KELVIN SIGN, which IGNORECASE would match as 'k'
        (b"Bearer pk_\xff\xfe", 401),  # bytes that are not UTF-8
        (b"Bearer pk_a\tb", 401),  # HTAB is legal in a header value, never in a key
        (b"Bearer " + b"k" * 300, 401),  # far longer than any key
        (b"Bearer pk_a\x01b", 400),  # other control characters: the HTTP parser refuses the header itself
        (b"Bearer pk_a\x7fb", 400),
    ],
    ids=["utf8", "kelvin", "not-utf8", "tab", "too-long", "ctrl-01", "ctrl-7f"],
)
@pytest.mark.asyncio
async def test_a_key_that_cannot_be_a_key_is_refused_without_calling_the_control_plane(
    gateway, caplog, authorization, status
):
    reply = await exchange(gateway.port, get(b"/jobs/job_1", b"Authorization: " + authorization + b"\r\n"))

    assert reply.status == status
    problem = reply.problem
    assert problem["code"] == ("UNAUTHENTICATED" if status == 401 else "INVALID_ARGUMENT")
    if status == 401:
        assert reply.headers["www-authenticate"] == 'Bearer realm="pacer"'
    assert authorization[7:] not in reply.raw
    assert gateway.control.calls == []
    assert_logged_without_traceback(caplog)


@pytest.mark.asyncio
async def test_a_well_formed_key_still_reaches_the_control_plane(gateway):
    reply = await exchange(gateway.port, get(b"/jobs/job_1", b"Authorization: Bearer " + KEY + b"\r\n"))
    assert reply.status == 200
    assert gateway.control.calls == ["GetJob"]


until = functools.partial(polling.eventually, timeout_s=READ_DEADLINE_S, poll_s=0.02)


# -- the pacer-gateway process --------------------------------------------------------------------------------------


def test_the_gateway_process_answers_refusals_as_problems_and_logs_no_traceback(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "PACER_GATEWAY_ADDR": f"127.0.0.1:{port}",
        "PACER_CONTROL_ADDR": "127.0.0.1:1",  # nothing listens: a well-formed call gets 503
        "PACER_LOG_LEVEL": "INFO",
        "PACER_METRICS_ADDR": "",
    }
    gateway = ServiceProcess("pacer-gateway", env, tmp_path / "gateway.log")
    try:
        wait_listening(port, gateway)
        replies = asyncio.run(_send_all(port))
    finally:
        gateway.stop()

    assert [reply.status for reply in replies] == [414, 431, 400, 401, 503]
    for reply in replies:
        assert reply.headers["content-type"] == PROBLEM
        assert MARKER not in reply.raw
        assert b"127.0.0.1:1" not in reply.raw
    logs = gateway.logs()
    assert "Traceback" not in logs
    assert MARKER.decode() not in logs
    events = [json.loads(line).get("event") for line in logs.splitlines() if line.startswith("{")]
    assert events.count("http.malformed") == 3


async def _send_all(port: int) -> list[Reply]:
    return [
        await exchange(port, get(b"/jobs/" + MARKER + b"u" * MAX_URL_BYTES)),
        await exchange(port, get(headers=b"X-Note: " + MARKER + b"v" * MAX_FIELD_BYTES + b"\r\n")),
        await exchange(port, b"\x16\x03\x01\x02\x00" + MARKER + b"\r\n\r\n"),
        await exchange(port, get(b"/jobs/job_1", b"Authorization: Bearer pk_\xe2\x84\xaa" + MARKER + b"\r\n")),
        await exchange(port, get(b"/jobs/job_1", b"Authorization: Bearer " + KEY + b"\r\n")),
    ]


def wait_listening(port: int, service: ServiceProcess, deadline_s: float = 20.0) -> None:
    """Poll until the process answers /healthz; fail early if it exits."""
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        if service.process.poll() is not None:
            raise AssertionError(f"pacer-gateway exited with {service.process.returncode}:\n{service.logs()}")
        try:
            if asyncio.run(exchange(port, get(b"/healthz"))).status == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"pacer-gateway did not listen on {port} within {deadline_s} s:\n{service.logs()}")
