"""The HTTP runner: performs one work item's HTTP call under the egress policy and describes what happened.

One pooled aiohttp session serves every run. Its connector resolves names through `PolicyResolver`, so a name is
only ever connected to an address the policy allowed; IP literals and loopback names are judged before sending.
Redirects are followed here rather than by aiohttp so that every hop is judged the same way, and one deadline
covers the whole exchange (every hop's connect, headers and body).
"""

from __future__ import annotations

import codecs
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Final, Literal, Protocol

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from pacer_common.clock import Clock
from pacer_executor.egress import EgressBlocked, EgressPolicy, PolicyResolver
from pacer_executor.metrics import ExecutorMetrics

log = logging.getLogger(__name__)

RunStatus = Literal["SUCCESS", "FAILURE", "TIMEOUT", "BLOCKED"]

_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
# Browsers turn these into a GET without a body (RFC 9110 15.4 allows it for 301/302 and asks it for 303).
_REDIRECTS_TO_GET: Final = frozenset({301, 302, 303})
_BODY_HEADERS: Final = frozenset({"content-type", "content-length", "content-encoding", "transfer-encoding"})
# Sent to the origin the endpoint names, never to another origin a redirect points at.
_CREDENTIAL_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})
_PACER_HEADERS: Final = frozenset({"x-pacer-run-id", "x-pacer-endpoint-id", "x-pacer-scheduled-for"})


@dataclass(frozen=True)
class WorkItem:
    """One due run: the call to make and how long it may take (`timeout_ms` covers the whole exchange).

    `headers` may carry the target's credentials: they go to the target and nowhere else (never to a log).
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


class Runner(Protocol):
    """Performs work items; `run` reports every target or network problem as an Outcome instead of raising."""

    async def run(self, item: WorkItem) -> Outcome: ...


@dataclass(frozen=True)
class _Hop:
    """One request of the exchange: the first one, or one a redirect asked for."""

    method: str
    url: URL
    headers: Mapping[str, str]
    body: str


@dataclass(frozen=True)
class _Result:
    """An Outcome without its timing; `refusal_category` says what kind of destination a BLOCKED run hit."""

    status: RunStatus
    http_status: int = 0
    error_message: str = ""
    response_body: str = ""
    response_truncated: bool = False
    refusal_category: str = ""

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
        )


class HttpRunner:
    """Runs work items over one pooled aiohttp session; `start` before the first run, `close` at the end."""

    def __init__(
        self,
        policy: EgressPolicy,
        clock: Clock,
        *,
        capture_limit_bytes: int = 65536,
        max_connections: int = 200,
        max_redirects: int = 5,
        user_agent: str = "Pacer/0.1",
        upstream_resolver: AbstractResolver | None = None,
        metrics: ExecutorMetrics | None = None,
    ) -> None:
        """`upstream_resolver` answers DNS questions before the policy filters them (default: getaddrinfo);
        each run's duration and egress refusals are measured in `metrics`."""
        if capture_limit_bytes < 0 or max_connections < 1 or max_redirects < 0:
            raise ValueError("capture_limit_bytes and max_redirects must be >= 0, max_connections >= 1")
        self._policy = policy
        self._clock = clock
        self._capture_limit_bytes = capture_limit_bytes
        self._max_connections = max_connections
        self._max_redirects = max_redirects
        self._user_agent = user_agent
        self._upstream_resolver = upstream_resolver
        self._metrics = metrics or ExecutorMetrics()
        self._resolver: PolicyResolver | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Create the session. Cookies are never kept: one session serves every tenant's endpoints."""
        if self._session is not None:
            raise RuntimeError("HttpRunner already started")
        self._resolver = PolicyResolver(self._policy, self._upstream_resolver or ThreadedResolver())
        connector = aiohttp.TCPConnector(limit=self._max_connections, resolver=self._resolver)
        # trust_env=False: a proxy from the environment would make the proxy, not the checked address, the peer.
        self._session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)

    async def close(self) -> None:
        """Close the session and its connections; the runner cannot be used afterwards."""
        if self._session is not None:
            await self._session.close()
        if self._resolver is not None:
            # The connector closes only resolvers it created itself.
            await self._resolver.close()
        self._session = self._resolver = None

    async def __aenter__(self) -> HttpRunner:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def run(self, item: WorkItem) -> Outcome:
        """Perform `item`'s call and describe it. Never raises for target or network problems."""
        if self._session is None:
            raise RuntimeError("HttpRunner.run before start")
        started_at = self._clock.now()
        began = time.monotonic()
        result = await self._attempt(self._session, item)
        elapsed_s = time.monotonic() - began
        outcome = result.outcome(item.run_id, started_at, self._clock.now(), round(elapsed_s * 1000))
        self._measure(result, elapsed_s)
        _log_outcome(item, outcome)
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
            return _Result("FAILURE", error_message=f"connection failed: {exc}")
        except aiohttp.ClientError as exc:
            return _Result("FAILURE", error_message=_describe(exc))
        except ValueError as exc:
            # Unusable endpoint configuration (URL, method, header names) is the run's failure, not the executor's.
            return _Result("FAILURE", error_message=f"invalid request: {exc}")

    async def _exchange(self, session: aiohttp.ClientSession, item: WorkItem) -> _Result:
        deadline = time.monotonic() + item.timeout_ms / 1000
        hop = _first_hop(item, self._user_agent)
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
                next_hop = _redirect(hop, response)
                if next_hop is None:
                    return await self._final(response)
            hop = next_hop
        return _Result("FAILURE", error_message=f"more than {self._max_redirects} redirects")

    def _check_destination(self, url: URL) -> None:
        if not url.scheme:
            raise ValueError("the URL needs a scheme and a host")
        refusal = self._policy.judge_destination(url.scheme, url.raw_host or "")
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


def _first_hop(item: WorkItem, user_agent: str) -> _Hop:
    """The endpoint's request plus Pacer's headers, which replace any the endpoint set under the same names."""
    headers = {name: value for name, value in item.headers.items() if name.lower() not in _PACER_HEADERS}
    if not any(name.lower() == "user-agent" for name in headers):
        headers["User-Agent"] = user_agent
    headers["X-Pacer-Run-Id"] = item.run_id
    headers["X-Pacer-Endpoint-Id"] = item.endpoint_id
    headers["X-Pacer-Scheduled-For"] = rfc3339_utc(item.scheduled_for)
    return _Hop(item.method.strip().upper() or "GET", URL(item.url), headers, item.body)


def rfc3339_utc(moment: datetime) -> str:
    """`moment` as RFC 3339 UTC with milliseconds, e.g. 2026-01-05T10:00:00.000Z; naive values are taken as UTC."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _remaining(deadline: float) -> aiohttp.ClientTimeout:
    """A timeout for the next hop that ends at the exchange's deadline."""
    left = deadline - time.monotonic()
    if left <= 0:
        # aiohttp reads total=0 as "no timeout", so an exhausted budget must stop here.
        raise TimeoutError
    return aiohttp.ClientTimeout(total=left)


def _redirect(hop: _Hop, response: aiohttp.ClientResponse) -> _Hop | None:
    """The request a redirect response asks for, or None if `response` is final (including 3xx without Location)."""
    location = response.headers.get("Location")
    if response.status not in _REDIRECTS or not location:
        return None
    target = response.url.join(URL(location)).with_fragment(None)
    headers = dict(hop.headers)
    if target.origin() != hop.url.origin():
        headers = _without(headers, _CREDENTIAL_HEADERS)
    if response.status in _REDIRECTS_TO_GET and hop.method != "HEAD":
        return _Hop("GET", target, _without(headers, _BODY_HEADERS), "")
    return replace(hop, url=target, headers=headers)


def _without(headers: Mapping[str, str], names: frozenset[str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() not in names}


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
    truncated = len(data) > limit_bytes
    # A cut may split a multi-byte character; a non-final decode drops the fragment instead of showing U+FFFD.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return decoder.decode(bytes(data[:limit_bytes]), final=not truncated), truncated


def _log_outcome(item: WorkItem, outcome: Outcome) -> None:
    """One structured line per run; the URL and header values stay out (they may carry credentials)."""
    log.info(
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
