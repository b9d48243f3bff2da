"""The HTTP runner: performs one work item's HTTP call under the egress policy and describes what happened.

Each tenant has its own pooled aiohttp session (`pacer_executor.pools`): runs of different tenants never share a
connection. Every session's connector resolves names through the one `PolicyResolver`, so a name is only ever
connected to an address the policy allowed; IP literals and loopback names are judged before sending. Redirects
are followed here rather than by aiohttp so that every hop is judged the same way, and one deadline covers the
whole exchange (waiting for a connection slot, every hop's connect, headers and body).

Headers that frame or route a message (`pacer_common.headers`) are never sent, whatever an endpoint row says: a
tenant who could set `Transfer-Encoding` or `Content-Length` could make a target read one request as two.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Final, Literal, Protocol

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from pacer_common.clock import Clock
from pacer_common.headers import forbidden_names, without_forbidden
from pacer_common.retries import ATTEMPT_HEADER, NO_RETRY, Attempt, RetryPolicy, worth_retrying
from pacer_common.signing import SIGNATURE_HEADER, header_value
from pacer_executor.egress import EgressBlocked, EgressPolicy, PolicyResolver
from pacer_executor.metrics import ExecutorMetrics
from pacer_executor.pools import TenantPools

log = logging.getLogger(__name__)

RunStatus = Literal["SUCCESS", "FAILURE", "TIMEOUT", "BLOCKED"]

_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
# Browsers turn these into a GET without a body (RFC 9110 15.4 allows it for 301/302 and asks it for 303).
_REDIRECTS_TO_GET: Final = frozenset({301, 302, 303})
# What describes the body (framing headers are never sent at all): it goes where the body goes.
_BODY_HEADERS: Final = frozenset({"content-type", "content-encoding"})
_SIGNED_HEADERS: Final = frozenset({SIGNATURE_HEADER.lower()})
_PACER_HEADERS: Final = frozenset(
    {"x-pacer-run-id", "x-pacer-endpoint-id", "x-pacer-scheduled-for", ATTEMPT_HEADER.lower(), SIGNATURE_HEADER.lower()}
)


@dataclass(frozen=True)
class WorkItem:
    """One due run: the call to make and how long it may take (`timeout_ms` covers the whole exchange).

    `headers` may carry the target's credentials: they go to the target's origin and nowhere else (never to a log,
    never to another origin a redirect names). Runs of different `tenant_id`s never share a connection.
    """

    run_id: str
    endpoint_id: str
    scheduled_for: datetime
    url: str
    method: str
    headers: Mapping[str, str]
    body: str
    timeout_ms: int
    tenant_id: str = ""
    # The secrets to sign with, newest first (pacer_common.signing); never logged. Empty: unsigned.
    signing_secrets: tuple[str, ...] = field(default=(), repr=False)
    # Retries within the run (pacer_executor.attempts), the attempt this is (sent as X-Pacer-Attempt when the run
    # retries) and when the run's lease ends (no attempt starts that could not end before it; None: no bound known).
    retry: RetryPolicy = NO_RETRY
    attempt: int = 1
    lease_expires_at: datetime | None = None


@dataclass(frozen=True)
class Outcome:
    """What a run did. `http_status` is 0 when no final response arrived."""

    run_id: str
    status: RunStatus
    started_at: datetime
    finished_at: datetime
    duration_ms: int
    http_status: int = 0
    error_message: str = ""
    response_body: str = ""
    response_truncated: bool = False
    # True when another attempt may pass (pacer_common.retries.worth_retrying).
    transient: bool = False
    # Every attempt of a retried run, first to last (the fields above are the run's); empty for one attempt.
    attempts: tuple[Attempt, ...] = ()


class Runner(Protocol):
    """Performs work items; `run` reports every target or network problem as an Outcome instead of raising."""

    async def run(self, item: WorkItem) -> Outcome: ...


@dataclass(frozen=True)
class _Hop:
    """One request of the exchange: the first one, or one a redirect asked for.

    `endpoint_headers` are those the endpoint configured that this hop may carry; `pacer_headers` are Pacer's own
    (X-Pacer-*, and User-Agent unless the endpoint's headers name one), sent on every hop.
    """

    method: str
    url: URL
    endpoint_headers: Mapping[str, str]
    pacer_headers: Mapping[str, str]
    body: str

    @property
    def headers(self) -> dict[str, str]:
        """What this hop sends; the two parts never share a name."""
        return {**self.endpoint_headers, **self.pacer_headers}


@dataclass(frozen=True)
class _Result:
    """An Outcome without its timing; `refusal_category` says what kind of destination a BLOCKED run hit."""

    status: RunStatus
    http_status: int = 0
    error_message: str = ""
    response_body: str = ""
    response_truncated: bool = False
    refusal_category: str = ""
    connect_failed: bool = False  # no connection could be made, or it broke before an answer

    def outcome(self, run_id: str, started_at: datetime, finished_at: datetime, duration_ms: int) -> Outcome:
        """This result with the run's identity and timing."""
        return Outcome(
            run_id=run_id,
            status=self.status,
            started_at=started_at,
            finished_at=finished_at,
            duration_ms=duration_ms,
            http_status=self.http_status,
            error_message=self.error_message,
            response_body=self.response_body,
            response_truncated=self.response_truncated,
            transient=worth_retrying(self.status, self.http_status, connect_failed=self.connect_failed),
        )


class HttpRunner:
    """Runs work items over connection pools kept per tenant; `start` before the first run, `close` at the end."""

    def __init__(
        self,
        policy: EgressPolicy,
        clock: Clock,
        *,
        capture_limit_bytes: int = 65536,
        max_connections: int = 200,
        tenant_pools: int = 256,
        max_redirects: int = 5,
        user_agent: str = "Pacer/0.1",
        upstream_resolver: AbstractResolver | None = None,
        metrics: ExecutorMetrics | None = None,
        log_runs: bool = False,
    ) -> None:
        """`max_connections` bounds the connections in use at once, all tenants together (a run uses one at a
        time); `tenant_pools` bounds how many tenants keep a pool of idle connections (least recently used
        evicted). `upstream_resolver` answers DNS questions before the policy filters them (default: getaddrinfo);
        each run's duration and egress refusals are measured in `metrics`."""
        if capture_limit_bytes < 0 or max_connections < 1 or tenant_pools < 1 or max_redirects < 0:
            raise ValueError("capture_limit_bytes and max_redirects must be >= 0, max_connections, tenant_pools >= 1")
        self._policy = policy
        # The policy is frozen, so its verdict on a scheme and host never changes: judged once per destination.
        self._judge_destination = functools.lru_cache(maxsize=4096)(policy.judge_destination)
        self._clock = clock
        self._capture_limit_bytes = capture_limit_bytes
        self._max_connections = max_connections
        self._tenant_pools = tenant_pools
        self._max_redirects = max_redirects
        self._user_agent = user_agent
        self._upstream_resolver = upstream_resolver
        self._metrics = metrics or ExecutorMetrics()
        self._log_runs = log_runs
        self._connection_slots = asyncio.Semaphore(max_connections)
        self._resolver: PolicyResolver | None = None
        self._pools: TenantPools[aiohttp.ClientSession] | None = None

    async def start(self) -> None:
        """Make ready to run; each tenant's session opens with its first run."""
        if self._pools is not None:
            raise RuntimeError("HttpRunner already started")
        self._resolver = PolicyResolver(self._policy, self._upstream_resolver or ThreadedResolver())
        self._pools = TenantPools(self._open_session, self._tenant_pools)

    def _open_session(self) -> aiohttp.ClientSession:
        """One tenant's session: connections only to addresses the policy allowed, and no cookies kept between
        runs (one endpoint's cookie must not reach another endpoint's call)."""
        # Each session may use every slot: `_connection_slots` keeps the total within max_connections.
        connector = aiohttp.TCPConnector(limit=self._max_connections, resolver=self._resolver)
        # trust_env=False: a proxy from the environment would make the proxy, not the checked address, the peer.
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)

    async def close(self) -> None:
        """Close every session and its connections; the runner cannot be used afterwards."""
        if self._pools is not None:
            await self._pools.close()
        if self._resolver is not None:
            # Connectors close only resolvers they created themselves.
            await self._resolver.close()
        self._pools = self._resolver = None

    async def __aenter__(self) -> HttpRunner:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def run(self, item: WorkItem) -> Outcome:
        """Perform `item`'s call, on its tenant's connections only, and describe it. Never raises for target or
        network problems."""
        if self._pools is None:
            raise RuntimeError("HttpRunner.run before start")
        started_at = self._clock.now()
        began = time.monotonic()
        _log_dropped(item)
        async with self._pools.pool(item.tenant_id) as session:
            result = await self._attempt(session, item)
        elapsed_s = time.monotonic() - began
        outcome = result.outcome(item.run_id, started_at, self._clock.now(), round(elapsed_s * 1000))
        self._measure(result, elapsed_s)
        _log_outcome(item, outcome, self._log_runs)
        return outcome

    def _measure(self, result: _Result, elapsed_s: float) -> None:
        self._metrics.run_finished(result.status, elapsed_s)
        if result.status == "BLOCKED":
            self._metrics.egress_refused(result.refusal_category)

    async def _attempt(self, session: aiohttp.ClientSession, item: WorkItem) -> _Result:
        try:
            return await self._exchange(session, item)
        except EgressBlocked as blocked:
            return _Result(
                "BLOCKED", error_message=f"egress refused: {blocked.reason}", refusal_category=blocked.category
            )
        except TimeoutError:
            # Before ClientError: aiohttp's timeout errors are both.
            return _Result("TIMEOUT", error_message=f"no complete response within {item.timeout_ms} ms")
        except aiohttp.ClientConnectorDNSError as exc:
            return _Result("FAILURE", error_message=f"DNS lookup failed: {exc}")
        except aiohttp.ClientConnectorError as exc:
            return _Result("FAILURE", error_message=f"connection failed: {exc}", connect_failed=True)
        except aiohttp.ServerDisconnectedError as exc:
            return _Result("FAILURE", error_message=_describe(exc), connect_failed=True)
        except aiohttp.ClientError as exc:
            return _Result("FAILURE", error_message=_describe(exc))
        except ValueError as exc:
            # Unusable endpoint configuration (URL, method, header names) is the run's failure, not the executor's.
            return _Result("FAILURE", error_message=f"invalid request: {exc}")

    async def _exchange(self, session: aiohttp.ClientSession, item: WorkItem) -> _Result:
        deadline = time.monotonic() + item.timeout_ms / 1000
        await _take_slot(self._connection_slots, deadline)
        try:
            return await self._hops(session, _first_hop(item, self._user_agent, self._clock.now()), deadline)
        finally:
            self._connection_slots.release()

    async def _hops(self, session: aiohttp.ClientSession, first: _Hop, deadline: float) -> _Result:
        """Send `first` and follow its redirects, one connection at a time."""
        hop = first
        for _ in range(self._max_redirects + 1):
            self._check_destination(hop.url)
            async with session.request(
                hop.method,
                hop.url,
                headers=dict(hop.headers),
                data=hop.body or None,
                allow_redirects=False,
                timeout=_remaining(deadline),
            ) as response:
                next_hop = _redirect(hop, response, self._user_agent)
                if next_hop is None:
                    return await self._final(response)
            hop = next_hop
        return _Result("FAILURE", error_message=f"more than {self._max_redirects} redirects")

    def _check_destination(self, url: URL) -> None:
        if not url.scheme:
            raise ValueError("the URL needs a scheme and a host")
        refusal = self._judge_destination(url.scheme, url.raw_host or "")
        if refusal is not None:
            raise EgressBlocked(refusal.reason, refusal.category)
        if not url.raw_host:
            raise ValueError("the URL needs a scheme and a host")

    async def _final(self, response: aiohttp.ClientResponse) -> _Result:
        body, truncated = await _capture(response.content, self._capture_limit_bytes)
        status = response.status
        if 200 <= status < 300:
            return _Result("SUCCESS", http_status=status, response_body=body, response_truncated=truncated)
        return _Result(
            "FAILURE",
            http_status=status,
            error_message=f"HTTP {status}",
            response_body=body,
            response_truncated=truncated,
        )


def _describe(exc: aiohttp.ClientError) -> str:
    """What went wrong, without the request URL that some aiohttp errors repeat: a URL can carry a token in its
    query or user info, and this text is logged as well as stored."""
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{type(exc).__name__}: {exc.status}, {exc.message}"
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return f"{type(exc).__name__}: the URL cannot be requested"
    return f"{type(exc).__name__}: {exc}"


def _first_hop(item: WorkItem, user_agent: str, now: datetime) -> _Hop:
    """The endpoint's request plus Pacer's headers, which replace any the endpoint set under the same names.

    Headers a tenant may not set (`pacer_common.headers.is_forbidden`) are dropped: rows written before the control
    plane refused them still hold them. The endpoint's User-Agent, if any, replaces Pacer's. A signed endpoint's
    request carries X-Pacer-Signature, made at `now` over the run id and the body.
    """
    endpoint_headers = _without(without_forbidden(item.headers), _PACER_HEADERS)
    pacer_headers = {
        "X-Pacer-Run-Id": item.run_id,
        "X-Pacer-Endpoint-Id": item.endpoint_id,
        "X-Pacer-Scheduled-For": rfc3339_utc(item.scheduled_for),
    }
    if item.retry.retries:
        pacer_headers[ATTEMPT_HEADER] = str(item.attempt)
    if item.signing_secrets:
        signed_at = int(now.timestamp())
        pacer_headers[SIGNATURE_HEADER] = header_value(item.signing_secrets, signed_at, item.run_id, item.body.encode())
    if not any(name.lower() == "user-agent" for name in endpoint_headers):
        pacer_headers = {"User-Agent": user_agent, **pacer_headers}
    return _Hop(item.method.strip().upper() or "GET", URL(item.url), endpoint_headers, pacer_headers, item.body)


def _log_dropped(item: WorkItem) -> None:
    """Say which headers of `item` are never sent (names only: values may be secrets)."""
    dropped = forbidden_names(item.headers)
    if dropped:
        log.warning(
            "forbidden headers dropped",
            extra={
                "event": "run.headers_dropped",
                "run_id": item.run_id,
                "endpoint_id": item.endpoint_id,
                "tenant": item.tenant_id,
                "headers": [name.lower() for name in dropped],
            },
        )


def rfc3339_utc(moment: datetime) -> str:
    """`moment` as RFC 3339 UTC with milliseconds, e.g. 2026-01-05T10:00:00.000Z; naive values are taken as UTC."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _take_slot(slots: asyncio.Semaphore, deadline: float) -> None:
    """Wait for one of `slots`, until `deadline` (time.monotonic) at most: TimeoutError then."""
    if not slots.locked():
        await slots.acquire()  # a free slot is taken at once: no timer to arm and cancel
        return
    async with asyncio.timeout(deadline - time.monotonic()):
        await slots.acquire()


def _remaining(deadline: float) -> aiohttp.ClientTimeout:
    """A timeout for the next hop that ends at the exchange's deadline."""
    left = deadline - time.monotonic()
    if left <= 0:
        # aiohttp reads total=0 as "no timeout", so an exhausted budget must stop here.
        raise TimeoutError
    return aiohttp.ClientTimeout(total=left)


def _redirect(hop: _Hop, response: aiohttp.ClientResponse, user_agent: str) -> _Hop | None:
    """The request a redirect response asks for, or None if `response` is final (including 3xx without Location).

    On a hop to another origin (scheme, host or port) none of the headers the endpoint configured goes along:
    they were meant for the endpoint's origin and may carry its credentials under any name (`X-Api-Key`), so
    only Pacer's own headers are sent (X-Pacer-*, and Pacer's User-Agent in place of an endpoint's), plus
    Content-Type and Content-Encoding when the body goes along (307, 308), since they describe it. Once dropped,
    they stay dropped, even if a later hop returns to the first origin.
    """
    location = response.headers.get("Location")
    if response.status not in _REDIRECTS or not location:
        return None
    target = response.url.join(URL(location)).with_fragment(None)
    to_get = response.status in _REDIRECTS_TO_GET and hop.method != "HEAD"
    method, body = ("GET", "") if to_get else (hop.method, hop.body)
    endpoint_headers, pacer_headers = hop.endpoint_headers, hop.pacer_headers
    if target.origin() != hop.url.origin():
        endpoint_headers = _only(endpoint_headers, _BODY_HEADERS)
        pacer_headers = {"User-Agent": user_agent, **pacer_headers}
    if to_get:
        endpoint_headers = _without(endpoint_headers, _BODY_HEADERS)
        # The signature covers the body this hop no longer carries: it could not verify.
        pacer_headers = _without(pacer_headers, _SIGNED_HEADERS)
    return _Hop(method, target, endpoint_headers, pacer_headers, body)


def _without(headers: Mapping[str, str], names: frozenset[str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() not in names}


def _only(headers: Mapping[str, str], names: frozenset[str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() in names}


async def _capture(stream: aiohttp.StreamReader, limit_bytes: int) -> tuple[str, bool]:
    """Read at most `limit_bytes` (plus one byte to learn whether more exists) and decode it as UTF-8.

    The rest is never read: releasing a response with unread body closes its connection instead of draining it.
    """
    data = bytearray()
    while len(data) <= limit_bytes:
        chunk = await stream.read(limit_bytes + 1 - len(data))
        if not chunk:
            break
        data += chunk
    if len(data) <= limit_bytes:
        return data.decode("utf-8", errors="replace"), False
    # A cut may split a multi-byte character; a non-final decode drops the fragment instead of showing U+FFFD.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return decoder.decode(bytes(data[:limit_bytes]), final=False), True


def _log_outcome(item: WorkItem, outcome: Outcome, every_run: bool) -> None:
    """One structured line per run, at INFO when `every_run` or the run did not succeed, else at DEBUG (one line per
    run at INFO would cost more CPU than the run itself at a thousand runs a second); the URL and header values stay
    out (they may carry credentials)."""
    level = logging.INFO if every_run or outcome.status != "SUCCESS" else logging.DEBUG
    if not log.isEnabledFor(level):
        return
    log.log(
        level,
        "run finished",
        extra={
            "event": "run.finished",
            "run_id": item.run_id,
            "endpoint_id": item.endpoint_id,
            "tenant": item.tenant_id,
            "status": outcome.status,
            "http_status": outcome.http_status,
            "duration_ms": outcome.duration_ms,
            "error_message": outcome.error_message,
        },
    )
