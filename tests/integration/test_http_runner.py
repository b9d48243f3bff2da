"""HttpRunner against real local servers: outcomes, headers, timeouts, capture, redirects, egress and pools.

Most tests use an aiohttp server; those about what travels on a connection (smuggling, per-tenant pools) use the
lenient raw-socket target of `tests.support.raw_target`, which numbers connections and frames requests the way a
target open to request smuggling does.

Only loopback addresses are ever contacted. Tests that name other addresses assert that they are refused before
any connection, which is the behaviour under test.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDictProxy
from yarl import URL

from pacer_common import signing
from pacer_common.clock import FakeClock
from pacer_executor.egress import EgressPolicy
from pacer_executor.runner import HttpRunner, Outcome, WorkItem
from tests.support import polling
from tests.support.raw_target import RawRequest, RawTarget

LOOPBACK_OK = EgressPolicy(allow_loopback=True)
ONLY_127_0_0_1 = EgressPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
LARGE_BODY = b"a" * (1024 * 1024)
# A body that, sent as chunked, ends after its first line: a lenient target reads the rest as a second request.
SMUGGLING_BODY = "0\r\n\r\nGET /SMUGGLED HTTP/1.1\r\nHost: smuggled.test\r\n\r\n"


@dataclass(frozen=True)
class Seen:
    """A request as the target received it."""

    method: str
    path_qs: str
    headers: CIMultiDictProxy[str]
    body: str


class Target:
    """A real HTTP server on a loopback address and an ephemeral port that records every request it receives."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.seen: list[Seen] = []
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        # Cancel handlers whose client went away, so a timed-out slow handler does not hold up teardown.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    @property
    def port(self) -> int:
        port: int = self._sock.getsockname()[1]
        return port

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    async def start(self) -> None:
        self._sock.bind((self.host, 0))
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    async def close(self) -> None:
        await self._runner.cleanup()
        self._sock.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        self.seen.append(Seen(request.method, request.path_qs, request.headers, body))
        path = request.path
        if path.startswith("/status/"):
            return web.Response(status=int(path.removeprefix("/status/")), text="unavailable")
        if path.startswith("/redirect/"):
            status = int(path.removeprefix("/redirect/"))
            return web.Response(status=status, headers={"Location": request.query["to"]})
        if path == "/loop":
            return web.Response(status=302, headers={"Location": "/loop"})
        if path == "/sleep":
            await asyncio.sleep(2)
        if path == "/trickle":
            return await _trickle(request)
        if path == "/large":
            return web.Response(body=LARGE_BODY)
        if path == "/text":
            return web.Response(text=request.query["text"])
        return web.Response(text="hello from target")


async def _trickle(request: web.Request) -> web.StreamResponse:
    """Headers at once, then ten bytes every 50 ms for two seconds."""
    response = web.StreamResponse()
    await response.prepare(request)
    for _ in range(40):
        await response.write(b"0123456789")
        await asyncio.sleep(0.05)
    await response.write_eof()
    return response


class FakeDns(AbstractResolver):
    """Answers names from a table of (address, port) pairs; unknown names fail like getaddrinfo."""

    def __init__(self, table: Mapping[str, list[tuple[str, int]]]) -> None:
        self.table = table

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            ResolveResult(hostname=host, host=address, port=answer_port, family=socket.AF_INET, proto=0, flags=0)
            for address, answer_port in self.table[host]
        ]

    async def close(self) -> None:
        pass


@pytest_asyncio.fixture
async def target() -> AsyncIterator[Target]:
    server = Target("127.0.0.1")
    await server.start()
    yield server
    await server.close()


@pytest_asyncio.fixture
async def sink() -> AsyncIterator[Target]:
    """A second server on another loopback address, for requests that must never arrive."""
    server = Target("127.0.0.2")
    await server.start()
    yield server
    await server.close()


@pytest_asyncio.fixture
async def runner() -> AsyncIterator[HttpRunner]:
    async with HttpRunner(LOOPBACK_OK, FakeClock()) as running:
        yield running


@pytest.fixture
def raw_target() -> Iterator[RawTarget]:
    running = RawTarget().start()
    yield running
    running.stop()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound without listening: connections to it are refused, and nobody else can take it meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def item(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: str = "",
    timeout_ms: int = 5000,
    run_id: str = "run-1",
    tenant_id: str = "",
) -> WorkItem:
    return WorkItem(
        run_id=run_id,
        endpoint_id="ep-1",
        scheduled_for=datetime(2026, 1, 5, 10, 0, tzinfo=UTC),
        url=url,
        method=method,
        headers=headers or {},
        body=body,
        timeout_ms=timeout_ms,
        tenant_id=tenant_id,
    )


async def run_with(
    policy: EgressPolicy,
    work: WorkItem,
    *,
    capture_limit_bytes: int = 65536,
    max_redirects: int = 5,
    upstream_resolver: AbstractResolver | None = None,
) -> Outcome:
    """Run one item on a fresh runner with `policy`."""
    running = HttpRunner(
        policy,
        FakeClock(),
        capture_limit_bytes=capture_limit_bytes,
        max_redirects=max_redirects,
        upstream_resolver=upstream_resolver,
    )
    async with running:
        return await running.run(work)


@pytest.mark.asyncio
async def test_success_sends_the_call_and_captures_the_response(target: Target) -> None:
    clock = FakeClock()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer s3cret", "X-Custom": "1"}
    async with HttpRunner(LOOPBACK_OK, clock) as running:
        outcome = await running.run(item(target.url("/ok?x=1"), method="post", headers=headers, body='{"a": 1}'))

    assert outcome == Outcome(
        run_id="run-1",
        status="SUCCESS",
        started_at=clock.now(),
        finished_at=clock.now(),
        duration_ms=outcome.duration_ms,
        http_status=200,
        response_body="hello from target",
    )
    [seen] = target.seen
    assert (seen.method, seen.path_qs, seen.body) == ("POST", "/ok?x=1", '{"a": 1}')
    assert seen.headers["X-Pacer-Run-Id"] == "run-1"
    assert seen.headers["X-Pacer-Endpoint-Id"] == "ep-1"
    assert seen.headers["X-Pacer-Scheduled-For"] == "2026-01-05T10:00:00.000Z"
    assert seen.headers["User-Agent"] == "Pacer/0.1"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Authorization"] == "Bearer s3cret"
    assert seen.headers["X-Custom"] == "1"


@pytest.mark.asyncio
async def test_endpoint_user_agent_is_kept_but_pacer_headers_cannot_be_spoofed(
    target: Target, runner: HttpRunner
) -> None:
    headers = {"user-agent": "probe/2", "x-pacer-run-id": "spoofed"}
    outcome = await runner.run(item(target.url("/ok"), headers=headers))
    assert outcome.status == "SUCCESS"
    [seen] = target.seen
    assert seen.headers.getall("User-Agent") == ["probe/2"]
    assert seen.headers.getall("X-Pacer-Run-Id") == ["run-1"]


@pytest.mark.asyncio
async def test_server_error_is_a_failure_with_the_status(target: Target, runner: HttpRunner) -> None:
    outcome = await runner.run(item(target.url("/status/503")))
    assert (outcome.status, outcome.http_status, outcome.error_message) == ("FAILURE", 503, "HTTP 503")
    assert outcome.response_body == "unavailable"


@pytest.mark.asyncio
async def test_refused_connection_is_a_failure(closed_port: int, runner: HttpRunner) -> None:
    outcome = await runner.run(item(f"http://127.0.0.1:{closed_port}/"))
    assert (outcome.status, outcome.http_status) == ("FAILURE", 0)
    assert outcome.error_message.startswith("connection failed:")
    assert f"127.0.0.1:{closed_port}" in outcome.error_message


@pytest.mark.asyncio
async def test_dns_failure_is_a_failure() -> None:
    outcome = await run_with(LOOPBACK_OK, item("http://nowhere.invalid/"), upstream_resolver=FakeDns({}))
    assert (outcome.status, outcome.http_status) == ("FAILURE", 0)
    assert outcome.error_message.startswith("DNS lookup failed:")
    assert "nowhere.invalid" in outcome.error_message


@pytest.mark.asyncio
async def test_slow_headers_time_out(target: Target, runner: HttpRunner) -> None:
    outcome = await runner.run(item(target.url("/sleep"), timeout_ms=200))
    assert (outcome.status, outcome.http_status) == ("TIMEOUT", 0)
    assert "200 ms" in outcome.error_message


@pytest.mark.asyncio
async def test_slow_body_times_out(target: Target, runner: HttpRunner) -> None:
    outcome = await runner.run(item(target.url("/trickle"), timeout_ms=300))
    assert outcome.status == "TIMEOUT"


@pytest.mark.asyncio
async def test_timeout_covers_redirect_hops(target: Target, runner: HttpRunner) -> None:
    outcome = await runner.run(item(target.url("/redirect/302?to=/sleep"), timeout_ms=300))
    assert outcome.status == "TIMEOUT"
    assert [seen.path_qs for seen in target.seen] == ["/redirect/302?to=/sleep", "/sleep"]


@pytest.mark.asyncio
async def test_large_body_is_captured_up_to_the_limit(target: Target, runner: HttpRunner) -> None:
    outcome = await runner.run(item(target.url("/large")))
    assert (outcome.status, outcome.response_truncated) == ("SUCCESS", True)
    assert outcome.response_body == "a" * 65536


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("limit", "text", "body", "truncated"),
    [
        (16, "exactly 16 bytes", "exactly 16 bytes", False),
        (16, "seventeen bytes!!", "seventeen bytes!", True),
        (5, "ééé", "éé", True),  # six bytes cut inside the third character: the fragment is dropped
        (0, "x", "", True),
    ],
)
async def test_capture_limit(target: Target, limit: int, text: str, body: str, truncated: bool) -> None:
    work = item(target.url(f"/text?text={text}"))
    outcome = await run_with(LOOPBACK_OK, work, capture_limit_bytes=limit)
    assert (outcome.response_body, outcome.response_truncated) == (body, truncated)


@pytest.mark.asyncio
async def test_loopback_is_blocked_by_default_and_nothing_is_sent(target: Target) -> None:
    outcome = await run_with(EgressPolicy(), item(target.url("/ok")))
    assert (outcome.status, outcome.http_status) == ("BLOCKED", 0)
    assert "127.0.0.1 is a loopback address" in outcome.error_message
    assert target.seen == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "policy",
    [LOOPBACK_OK, EgressPolicy(allow_private=True, allowed_networks=(ipaddress.ip_network("169.254.0.0/16"),))],
)
async def test_cloud_metadata_is_blocked(policy: EgressPolicy) -> None:
    outcome = await run_with(policy, item("http://169.254.169.254/latest/meta-data/"))
    assert outcome.status == "BLOCKED"
    assert "169.254.169.254 is a cloud metadata address" in outcome.error_message


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://127.0.0.2:{sink}/ok", "127.0.0.2 is a loopback address"),
        ("http://[::1]:{sink}/ok", "::1 is a loopback address"),
        ("http://10.0.0.1/", "10.0.0.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("ftp://127.0.0.1/file", "scheme 'ftp' is not allowed"),
    ],
)
async def test_redirect_to_a_refused_destination_is_blocked(
    target: Target, sink: Target, location: str, reason: str
) -> None:
    redirect = target.url(f"/redirect/302?to={location.format(sink=sink.port)}")
    outcome = await run_with(ONLY_127_0_0_1, item(redirect))
    assert outcome.status == "BLOCKED"
    assert reason in outcome.error_message
    assert len(target.seen) == 1
    assert sink.seen == []


@pytest.mark.asyncio
async def test_see_other_redirect_is_followed_as_get(target: Target) -> None:
    work = item(
        target.url("/redirect/303?to=/ok"),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": "Bearer s3cret"},
        body='{"a": 1}',
    )
    outcome = await run_with(ONLY_127_0_0_1, work)
    assert (outcome.status, outcome.http_status, outcome.response_body) == ("SUCCESS", 200, "hello from target")
    first, second = target.seen
    assert (first.method, first.body) == ("POST", '{"a": 1}')
    assert (second.method, second.path_qs, second.body) == ("GET", "/ok", "")
    assert "Content-Type" not in second.headers
    assert second.headers["Authorization"] == "Bearer s3cret"  # same origin
    assert second.headers["X-Pacer-Run-Id"] == "run-1"


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [307, 308])
async def test_temporary_and_permanent_redirects_keep_method_and_body(
    target: Target, runner: HttpRunner, status: int
) -> None:
    work = item(target.url(f"/redirect/{status}?to=/ok"), method="PUT", body="payload")
    outcome = await runner.run(work)
    assert outcome.status == "SUCCESS"
    assert [(seen.method, seen.body) for seen in target.seen] == [("PUT", "payload"), ("PUT", "payload")]


ENDPOINT_HEADERS = {
    "Authorization": "Bearer s3cret",
    "X-Api-Key": "key-for-the-first-origin",
    "Cookie": "session=1",
    "User-Agent": "probe/2",
    "Content-Type": "text/plain",
}


def redirect_to(target: Target, status: int, location: str) -> str:
    return str(URL(target.url(f"/redirect/{status}")).with_query(to=location))


@pytest.mark.asyncio
async def test_redirect_to_another_origin_sends_none_of_the_endpoint_headers(
    target: Target, runner: HttpRunner
) -> None:
    # localhost and 127.0.0.1 are different origins, served by the same target.
    work = item(redirect_to(target, 302, f"http://localhost:{target.port}/ok"), headers=ENDPOINT_HEADERS)
    outcome = await runner.run(work)
    assert outcome.status == "SUCCESS"
    first, second = target.seen
    assert {name: first.headers[name] for name in ENDPOINT_HEADERS} == ENDPOINT_HEADERS
    assert not (set(ENDPOINT_HEADERS) - {"User-Agent"}) & set(second.headers)
    assert second.headers["X-Pacer-Run-Id"] == "run-1"
    assert second.headers["X-Pacer-Endpoint-Id"] == "ep-1"
    assert second.headers.getall("User-Agent") == ["Pacer/0.1"]


@pytest.mark.asyncio
async def test_a_cross_origin_temporary_redirect_keeps_the_body_and_its_type_only(
    target: Target, runner: HttpRunner
) -> None:
    work = item(
        redirect_to(target, 307, f"http://localhost:{target.port}/ok"),
        method="POST",
        headers=ENDPOINT_HEADERS,
        body="payload",
    )
    assert (await runner.run(work)).status == "SUCCESS"
    _, second = target.seen
    assert (second.method, second.body, second.headers["Content-Type"]) == ("POST", "payload", "text/plain")
    assert not (set(ENDPOINT_HEADERS) - {"Content-Type", "User-Agent"}) & set(second.headers)
    assert second.headers.getall("User-Agent") == ["Pacer/0.1"]


@pytest.mark.asyncio
async def test_endpoint_headers_dropped_on_another_origin_stay_dropped_back_on_the_first(
    target: Target, runner: HttpRunner
) -> None:
    back = redirect_to(target, 302, target.url("/ok"))
    there = str(URL(back).with_host("localhost"))
    outcome = await runner.run(item(redirect_to(target, 302, there), headers={"X-Api-Key": "k"}))
    assert outcome.status == "SUCCESS"
    assert [("X-Api-Key" in seen.headers) for seen in target.seen] == [True, False, False]


@pytest.mark.asyncio
async def test_same_origin_redirect_keeps_the_endpoint_headers(target: Target, runner: HttpRunner) -> None:
    outcome = await runner.run(item(redirect_to(target, 307, target.url("/ok")), headers=ENDPOINT_HEADERS))
    assert outcome.status == "SUCCESS"
    _, second = target.seen
    assert {name: second.headers[name] for name in ENDPOINT_HEADERS} == ENDPOINT_HEADERS


@pytest.mark.asyncio
async def test_redirects_are_limited(target: Target) -> None:
    outcome = await run_with(LOOPBACK_OK, item(target.url("/loop")), max_redirects=2)
    assert (outcome.status, outcome.error_message) == ("FAILURE", "more than 2 redirects")
    assert len(target.seen) == 3


@pytest.mark.asyncio
async def test_localhost_name_goes_through_the_resolver(target: Target) -> None:
    by_name = item(f"http://localhost:{target.port}/ok")
    # Allowing the name, not the range: only the resolver, which sees the name, can let this through.
    allow_name = EgressPolicy(allowed_hosts=("localhost",))
    assert (await run_with(allow_name, by_name)).status == "SUCCESS"
    assert (await run_with(allow_name, item(target.url("/ok")))).status == "BLOCKED"
    assert (await run_with(EgressPolicy(), by_name)).status == "BLOCKED"
    assert len(target.seen) == 1


@pytest.mark.asyncio
async def test_connection_goes_only_to_checked_addresses(target: Target, sink: Target) -> None:
    dns = FakeDns({"svc.test": [("127.0.0.2", sink.port), ("127.0.0.1", target.port)]})
    outcome = await run_with(ONLY_127_0_0_1, item(f"http://svc.test:{target.port}/ok"), upstream_resolver=dns)
    assert outcome.status == "SUCCESS"
    assert len(target.seen) == 1
    assert sink.seen == []


@pytest.mark.asyncio
async def test_name_resolving_only_to_refused_addresses_is_blocked(target: Target, sink: Target) -> None:
    dns = FakeDns({"rebound.test": [("127.0.0.2", sink.port)]})
    redirect = target.url(f"/redirect/302?to=http://rebound.test:{sink.port}/ok")
    outcome = await run_with(ONLY_127_0_0_1, item(redirect), upstream_resolver=dns)
    assert outcome.status == "BLOCKED"
    assert "rebound.test: 127.0.0.2 is a loopback address" in outcome.error_message
    assert sink.seen == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("url", "status", "fragment"),
    [
        ("ftp://127.0.0.1/file", "BLOCKED", "scheme 'ftp' is not allowed"),
        ("file:///etc/passwd", "BLOCKED", "scheme 'file' is not allowed"),
        ("/relative/path", "FAILURE", "needs a scheme and a host"),
        ("http://127.0.0.1:99999/", "FAILURE", "invalid request"),
    ],
)
async def test_unusable_urls_become_outcomes(runner: HttpRunner, url: str, status: str, fragment: str) -> None:
    outcome = await runner.run(item(url))
    assert outcome.status == status
    assert fragment in outcome.error_message


@pytest.mark.asyncio
async def test_run_before_start_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError, match="before start"):
        await HttpRunner(LOOPBACK_OK, FakeClock()).run(item("http://127.0.0.1/"))


# -- framing headers, smuggling and per-tenant pools ------------------------------------------------------------


@pytest.mark.asyncio
async def test_headers_a_tenant_may_not_set_are_never_sent(target: Target, runner: HttpRunner) -> None:
    forbidden = {
        "Transfer-Encoding": "chunked",
        "Content-Length": "1",
        "Host": "elsewhere.test",
        "Connection": "close",
        "Keep-Alive": "timeout=1",
        "Upgrade": "h2c",
        "TE": "trailers",
        "Trailer": "X-Later",
        "Expect": "100-continue",
        "Proxy-Authorization": "Basic eDp5",
    }
    headers = {**forbidden, "X-Api-Key": "k", "Content-Type": "text/plain"}
    outcome = await runner.run(item(target.url("/ok"), method="POST", headers=headers, body="hello"))
    assert outcome.status == "SUCCESS"
    [seen] = target.seen
    assert seen.body == "hello"
    assert seen.headers.getall("Host") == [f"127.0.0.1:{target.port}"]
    assert seen.headers.getall("Content-Length") == ["5"]
    assert not {"Transfer-Encoding", "Connection", "Keep-Alive", "Upgrade", "TE", "Trailer", "Expect"} & set(
        seen.headers
    )
    assert "Proxy-Authorization" not in seen.headers
    assert (seen.headers["X-Api-Key"], seen.headers["Content-Type"]) == ("k", "text/plain")


def answer(outcome: Outcome) -> dict[str, str]:
    found: dict[str, str] = json.loads(outcome.response_body)
    return found


def runs_of(raw_target: RawTarget, path: str) -> list[RawRequest]:
    return [request for request in raw_target.seen() if request.path == path]


@pytest.mark.asyncio
@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("framing", [{"Transfer-Encoding": "chunked"}, {"transfer-encoding": "Chunked"}])
async def test_a_request_cannot_be_smuggled_behind_an_endpoint_body(
    raw_target: RawTarget, runner: HttpRunner, method: str, framing: dict[str, str]
) -> None:
    def smuggler(run_id: str) -> WorkItem:
        return item(raw_target.url("/a"), method=method, headers=framing, body=SMUGGLING_BODY, run_id=run_id)

    first, second = await runner.run(smuggler("run-1")), await runner.run(smuggler("run-2"))

    assert [request.path for request in raw_target.seen()] == ["/a", "/a"]
    assert [request.body.decode() for request in raw_target.seen()] == [SMUGGLING_BODY, SMUGGLING_BODY]
    assert (answer(first)["run_id"], answer(second)["run_id"]) == ("run-1", "run-2")


@pytest.mark.asyncio
async def test_tenants_never_share_a_connection(raw_target: RawTarget, runner: HttpRunner) -> None:
    for number in range(3):
        for tenant in ("a", "b"):
            work = item(raw_target.url(f"/{tenant}"), run_id=f"{tenant}-{number}", tenant_id=tenant)
            outcome = await runner.run(work)
            assert answer(outcome)["run_id"] == f"{tenant}-{number}"

    connections_of = {tenant: {r.connection for r in runs_of(raw_target, f"/{tenant}")} for tenant in ("a", "b")}
    assert len(connections_of["a"]) == len(connections_of["b"]) == 1  # each tenant's runs reuse its connection
    assert not connections_of["a"] & connections_of["b"]


eventually = functools.partial(polling.eventually, timeout_s=5.0)


@pytest.mark.asyncio
async def test_the_least_recently_used_tenant_pool_is_closed_beyond_the_bound(raw_target: RawTarget) -> None:
    async with HttpRunner(LOOPBACK_OK, FakeClock(), tenant_pools=2) as running:
        for tenant in ("a", "b", "a", "c"):  # c's pool evicts b's, the least recently used
            assert (await running.run(item(raw_target.url(f"/{tenant}"), tenant_id=tenant))).status == "SUCCESS"
        [b_connection] = {r.connection for r in runs_of(raw_target, "/b")}
        await eventually(lambda: b_connection in raw_target.closed_connections(), "b's connection to close")
        assert raw_target.closed_connections() == {b_connection}

        assert (await running.run(item(raw_target.url("/b"), tenant_id="b"))).status == "SUCCESS"
        assert len({r.connection for r in runs_of(raw_target, "/b")}) == 2


@pytest.mark.asyncio
async def test_a_pool_evicted_during_a_run_is_closed_only_after_it(raw_target: RawTarget) -> None:
    raw_target.answer_delay_s = 0.3
    async with HttpRunner(LOOPBACK_OK, FakeClock(), tenant_pools=1) as running:
        slow = asyncio.create_task(running.run(item(raw_target.url("/a"), run_id="a-1", tenant_id="a")))
        await eventually(lambda: bool(runs_of(raw_target, "/a")), "a's request")
        other = await running.run(item(raw_target.url("/b"), run_id="b-1", tenant_id="b"))  # evicts a's pool
        outcome = await slow

        assert (outcome.status, answer(outcome)["run_id"]) == ("SUCCESS", "a-1")
        assert (other.status, answer(other)["run_id"]) == ("SUCCESS", "b-1")
        [a_connection] = {r.connection for r in runs_of(raw_target, "/a")}
        await eventually(lambda: a_connection in raw_target.closed_connections(), "a's connection to close")


@pytest.mark.asyncio
async def test_connections_in_use_stay_within_the_bound_across_tenants(raw_target: RawTarget) -> None:
    raw_target.answer_delay_s = 0.05
    async with HttpRunner(LOOPBACK_OK, FakeClock(), max_connections=2) as running:
        work = [item(raw_target.url("/x"), run_id=f"r{n}", tenant_id=f"t{n % 4}") for n in range(8)]
        outcomes = await asyncio.gather(*(running.run(one) for one in work))
    assert {outcome.status for outcome in outcomes} == {"SUCCESS"}
    assert raw_target.most_at_once == 2


@pytest.mark.asyncio
async def test_waiting_for_a_connection_counts_toward_the_timeout(raw_target: RawTarget) -> None:
    raw_target.answer_delay_s = 0.5
    async with HttpRunner(LOOPBACK_OK, FakeClock(), max_connections=1) as running:
        busy = asyncio.create_task(running.run(item(raw_target.url("/busy"), tenant_id="a")))
        await eventually(lambda: bool(runs_of(raw_target, "/busy")), "the first request")
        waiting = await running.run(item(raw_target.url("/late"), tenant_id="b", timeout_ms=100))
        assert (await busy).status == "SUCCESS"
    assert waiting.status == "TIMEOUT"
    assert runs_of(raw_target, "/late") == []


SIGNING_SECRETS = ("new-secret-0123456789abcdef0123456789", "old-secret-0123456789abcdef0123456789")


@pytest.mark.asyncio
async def test_a_signed_run_carries_one_signature_per_secret_and_a_stored_one_is_replaced(target: Target) -> None:
    clock = FakeClock()
    work = replace(
        item(target.url("/ok"), method="POST", body='{"a": 1}', headers={"x-pacer-signature": "t=1,v1=forged"}),
        signing_secrets=SIGNING_SECRETS,
    )
    async with HttpRunner(LOOPBACK_OK, clock) as running:
        assert (await running.run(work)).status == "SUCCESS"
    [seen] = target.seen
    sent_at = int(clock.now().timestamp())
    expected = signing.header_value(SIGNING_SECRETS, sent_at, "run-1", b'{"a": 1}')
    assert seen.headers.getall("X-Pacer-Signature") == [expected]
    assert expected.count("v1=") == 2


@pytest.mark.asyncio
@pytest.mark.parametrize(("status", "signed_again"), [(303, False), (307, True)])
async def test_a_redirect_keeps_the_signature_only_with_the_body_it_covers(
    target: Target, runner: HttpRunner, status: int, signed_again: bool
) -> None:
    work = replace(item(target.url(f"/redirect/{status}?to=/ok"), method="POST", body="x"), signing_secrets=("s" * 32,))
    assert (await runner.run(work)).status == "SUCCESS"
    first, second = target.seen
    assert "X-Pacer-Signature" in first.headers
    assert ("X-Pacer-Signature" in second.headers) == signed_again


@pytest.mark.asyncio
async def test_an_unsigned_run_has_no_signature(target: Target, runner: HttpRunner) -> None:
    assert (await runner.run(item(target.url("/ok")))).status == "SUCCESS"
    assert "X-Pacer-Signature" not in target.seen[0].headers
